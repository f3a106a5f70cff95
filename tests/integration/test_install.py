#!/usr/bin/env python3
"""Install like a daemon: `meson install` (into a DESTDIR) puts busbar in sbin and busbarctl in
bin, the config and catalogue in <sysconfdir>/busbar, the schema, alert rules and dashboard in
<datadir>/busbar, the man pages and the systemd unit (ExecReload = SIGHUP, hardening kept,
paths of this prefix), which `systemd-analyze verify` accepts; the installed busbar prints its
version and validates the installed config."""

import os
import re
import shutil
import subprocess

from harness import SOURCE_ROOT, check, eq, run, scaled

BUILD = os.environ.get('BB_BUILD_ROOT') or os.path.join(SOURCE_ROOT, 'build')


def sh(argv, what, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=scaled(120),
                       stdin=subprocess.DEVNULL, **kw)
    eq(p.returncode, 0, '%s exit code (stdout %r, stderr %r)' % (what, p.stdout[-800:],
                                                                 p.stderr[-800:]))
    return p


def prefix_of():
    p = sh(['meson', 'introspect', '--buildoptions', BUILD], 'meson introspect')
    import json
    opts = {o['name']: o['value'] for o in json.loads(p.stdout)}
    return opts['prefix'], opts['sbindir'], opts['bindir'], opts['sysconfdir'], opts['datadir']


def test_meson_install(ctx):
    dest = ctx.path('destdir')
    sh(['meson', 'install', '-C', BUILD, '--no-rebuild', '--destdir', dest], 'meson install')
    prefix, sbindir, bindir, sysconfdir, datadir = prefix_of()

    def inst(*parts):
        p = os.path.join(prefix, *parts)
        return dest + p
    busbar = inst(sbindir, 'busbar')
    check(os.access(busbar, os.X_OK), 'busbar installed in sbin: %s' % busbar)
    check(os.access(inst(bindir, 'busbarctl'), os.X_OK), 'busbarctl installed in bin')
    etc = inst(sysconfdir, 'busbar')
    share = inst(datadir, 'busbar')
    for f in (os.path.join(etc, 'config.yaml'), os.path.join(etc, 'providers.yaml'),
              os.path.join(share, 'schema.sql'), os.path.join(share, 'prometheus-alerts.yaml'),
              os.path.join(share, 'grafana-dashboard.json'),
              inst('lib', 'sysusers.d', 'busbar.conf')):
        check(os.path.isfile(f), 'installed: %s' % f)
    for page in ('man8/busbar.8', 'man8/busbarctl.8', 'man5/busbar.yaml.5'):
        f = inst(datadir, 'man', page)
        check(os.path.isfile(f), 'man page %s' % f)
        text = open(f).read()
        check(text.startswith('.TH ') and '@' not in text.split('\n')[0] and
              not re.search(r'@[A-Z]+@', text), 'man page %s filled in' % page)

    p = sh([busbar, '--version'], 'busbar --version')
    check(re.fullmatch(r'busbar \d+\.\d+\.\d+\n', p.stdout), 'version line %r' % p.stdout)
    p = sh([busbar, '-t', '-c', os.path.join(etc, 'config.yaml')], 'busbar -t installed config')
    check('configuration OK' in p.stdout, 'installed config valid: %r' % p.stdout)
    p = sh([inst(bindir, 'busbarctl'), '--version'], 'busbarctl --version')

    unit = inst('lib', 'systemd', 'system', 'busbar.service')
    check(os.path.isfile(unit), 'unit installed: %s' % unit)
    text = open(unit).read()
    eq(re.findall(r'^ExecReload=(.*)$', text, re.M), ['/bin/kill -HUP $MAINPID'], 'ExecReload')
    start = re.findall(r'^ExecStart=(\S+)', text, re.M)
    eq(start, [os.path.join(prefix, sbindir, 'busbar')], 'ExecStart is the installed busbar')
    check('-c %s/config.yaml' % os.path.join(prefix, sysconfdir, 'busbar') in text,
          'ExecStart uses the installed config')
    for h in ('NoNewPrivileges=yes', 'ProtectSystem=strict', 'MemoryDenyWriteExecute=yes',
              'StateDirectory=busbar'):
        check(h in text, 'unit keeps %s' % h)
    # systemd-analyze checks the unit as installed; its paths name the real root, so point
    # them into DESTDIR for the check (executables must exist)
    systemd_analyze = shutil.which('systemd-analyze')
    check(systemd_analyze, 'systemd-analyze is missing (Debian package systemd)')
    local = ctx.path('busbar.service')
    with open(local, 'w') as f:
        f.write(text.replace(prefix + '/', dest + prefix + '/'))
    p = subprocess.run([systemd_analyze, 'verify', local], capture_output=True, text=True,
                       timeout=scaled(60), stdin=subprocess.DEVNULL)
    eq((p.returncode, p.stdout + p.stderr), (0, ''), 'systemd-analyze verify')


if __name__ == '__main__':
    run([test_meson_install])
