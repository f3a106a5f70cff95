#!/usr/bin/env python3
"""busbarctl: status (table and --json), reload, errors and exit codes, the admin socket."""

import json
import os
import stat

from harness import (check, eq, lane, pool, provider, run, run_ctl, wait_for)


def start(ctx, workers=2, **kw):
    m = ctx.mock()
    conf = {
        'providers': {'mock': provider(m)},
        'models': {'alpha': lane('mock', 'm', max_concurrent=4), 'beta': lane('mock', 'm')},
        'pools': {'p': pool(('alpha', 2), ('beta', 1))},
    }
    conf.update(kw)
    return m, ctx.busbar(conf, workers=workers)


def status_json(bb):
    p = bb.ctl('status', '--json')
    eq(p.returncode, 0, 'busbarctl status --json exit code (stderr %r)' % p.stderr[-300:])
    try:
        return json.loads(p.stdout)
    except ValueError:
        raise AssertionError('busbarctl status --json printed no JSON: %r' % p.stdout[:500])


def lane_names(st):
    out = []
    for x in st.get('lanes') or []:
        out.append(x.get('name') or x.get('lane') if isinstance(x, dict) else x)
    return out


def test_status_json(ctx):
    m, bb = start(ctx)
    workers = bb.wait_workers(2)
    st = status_json(bb)
    eq(st.get('generation'), 1, 'generation')
    pids = sorted(w['pid'] for w in st['workers'])
    eq(pids, sorted(workers), 'worker pids in status vs the master\'s children')
    names = lane_names(st)
    check('alpha' in names and 'beta' in names, 'lanes in status: %r' % st.get('lanes'))


def test_status_table(ctx):
    m, bb = start(ctx)
    workers = bb.wait_workers(2)
    p = bb.ctl('status')
    eq(p.returncode, 0, 'busbarctl status exit code (stderr %r)' % p.stderr[-300:])
    out = p.stdout
    check(out.strip() and not out.lstrip().startswith('{'), 'status is not a table: %r'
          % out[:300])
    for pid in workers:
        check(str(pid) in out, 'worker pid %d not in status table:\n%s' % (pid, out))
    for name in ('alpha', 'beta'):
        check(name in out, 'lane %s not in status table:\n%s' % (name, out))
    check('generation' in out.lower(), 'no generation in status table:\n%s' % out)
    ctx.note('status table:\n' + out)


def test_reload_via_ctl(ctx):
    m, bb = start(ctx)
    old = set(bb.wait_workers(2))
    p = bb.ctl('reload')
    eq(p.returncode, 0, 'busbarctl reload exit code (output %r)' % (p.stdout + p.stderr))
    wait_for(lambda: status_json(bb).get('generation') == 2, 10, 'generation 2 in status')
    new = bb.wait_workers(2, timeout=15, exclude=old)
    st = status_json(bb)
    eq(sorted(w['pid'] for w in st['workers']), sorted(new), 'worker pids after reload')
    eq(bb.chat('p').status, 200, 'request after reload')


def test_default_admin_socket(ctx):
    """Without admin.socket the socket is <state_dir>/admin.sock, mode 0600."""
    m, bb = start(ctx)
    # Restart with the default location.
    bb.stop()
    conf = dict(bb.conf)
    conf.pop('admin')
    bb.write_config(conf)
    bb.start()
    sock = os.path.join(bb.state_dir, 'admin.sock')
    check(os.path.exists(sock), 'no admin socket at %s' % sock)
    mode = stat.S_IMODE(os.stat(sock).st_mode)
    check(stat.S_ISSOCK(os.stat(sock).st_mode), '%s is not a socket' % sock)
    eq(oct(mode & 0o077), oct(0), 'admin socket group/other permissions (mode %s)' % oct(mode))
    p = bb.ctl('status', '--json', socket_path=sock)
    eq(p.returncode, 0, 'busbarctl status via the default socket')


def test_ctl_errors(ctx):
    p = run_ctl(['--socket', ctx.path('nothing-here.sock'), 'status'])
    eq(p.returncode, 1, 'busbarctl against a missing socket: exit code')
    check(p.stderr.strip(), 'busbarctl printed no error for a missing socket')
    p = run_ctl(['--socket', ctx.path('x.sock'), 'no-such-command'])
    eq(p.returncode, 2, 'busbarctl with an unknown command: exit code (usage error)')
    p = run_ctl([])
    eq(p.returncode, 2, 'busbarctl without arguments: exit code (usage error)')


if __name__ == '__main__':
    run([test_status_json, test_status_table, test_reload_via_ctl, test_default_admin_socket,
         test_ctl_errors])
