#!/usr/bin/env python3
"""The status page (GET /status on the admin listener) in a real headless browser (Debian
chromium): against a live busbar whose lane `bad` tripped its breaker, the rendered DOM shows
that lane open, the healthy lane closed, and the key's spend; without a token it asks for one.
BB_STATUS_SCREENSHOT=PATH also writes a screenshot (how docs/status-page.png is made)."""

import json
import os
import re
import shutil
import subprocess

from harness import check, eq, free_port, lane, pool, provider, request, run, scaled

TOKEN = 'status-admin-token-0123456789'


def chromium():
    for name in ('chromium', 'chromium-browser'):
        p = shutil.which(name)
        if p:
            return p
    raise AssertionError('chromium is missing (Debian package chromium; tests/run.sh installs it)')


def browse(ctx, url, extra=()):
    """The DOM after the page ran its scripts (virtual time lets fetch + render finish)."""
    profile = ctx.path('chromium-profile-%d' % len(os.listdir(ctx.tmp)))
    argv = [chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
            '--no-first-run', '--disable-background-networking', '--disable-component-update',
            '--disable-sync', '--disable-dev-shm-usage', '--user-data-dir=' + profile,
            '--virtual-time-budget=5000'] + (list(extra) or ['--dump-dom']) + [url]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=scaled(60),
                       stdin=subprocess.DEVNULL)
    eq(p.returncode, 0, 'chromium exit code (stderr %r)' % p.stderr[-800:])
    return p.stdout


def rows(dom, table):
    body = re.search(r'<table id="%s">.*?<tbody>(.*?)</tbody>' % table, dom, re.S)
    check(body, 'table %s in the DOM: %r' % (table, dom[:1500]))
    return re.findall(r'<tr ([^>]*)>(.*?)</tr>', body.group(1), re.S)


def test_status_page_shows_open_lane(ctx):
    m = ctx.mock()
    aport = free_port()
    conf = {
        'providers': {'mock': provider(m)},
        'models': {'bad': lane('mock', 'm;status=503'), 'good': lane('mock', 'm', price={'input': 2.5, 'output': 10.0})},
        'pools': {'p': pool(('bad', 5), ('good', 1),
                            breaker={'trip': {'mode': 'consecutive', 'consecutive_n': 2},
                                     'base_cooldown_secs': 120, 'max_cooldown_secs': 240})},
        'admin': {'listen': '127.0.0.1:%d' % aport, 'token_env': 'BB_ADMIN_TOKEN',
                  'socket': ctx.path('busbar-admin.sock')},
        'auth': {'mode': 'keys'},
    }
    bb = ctx.busbar(conf, env={'BB_ADMIN_TOKEN': TOKEN})
    p = bb.ctl('--json', 'keys', 'create', '--name', 'status')
    eq(p.returncode, 0, 'keys create')
    key = json.loads(p.stdout)
    for _ in range(4):
        eq(bb.chat('p', headers={'Authorization': 'Bearer ' + key['secret']}).status, 200, 'chat')
    r = request(aport, 'GET', '/status')
    eq(r.status, 200, 'GET /status')
    check(r.headers['content-type'].startswith('text/html'), 'content type')
    check(not re.search(r'<(script|link|img)[^>]+(src|href)=', r.text), 'no external assets')
    eq(request(aport, 'GET', '/admin/status').status, 401, '/admin/status without the token')

    dom = browse(ctx, 'http://127.0.0.1:%d/status#token=%s' % (aport, TOKEN))
    pools = rows(dom, 'pools')
    states = {re.search(r'data-lane="([^"]+)"', a).group(1): re.search(r'data-state="([^"]+)"',
                                                                        a).group(1)
              for a, _ in pools}
    eq(states, {'bad': 'open', 'good': 'closed'}, 'breaker states rendered for pool p')
    bad = next(cells for a, cells in pools if 'data-lane="bad"' in a)
    check('state-open' in bad and '>open<' in bad, 'the open lane is rendered as open: %r' % bad)
    keys = rows(dom, 'keys')
    krow = [cells for a, cells in keys if key['id'] in a]
    check(krow and re.search(r'>0\.0000[1-9]\d*<|>0\.000[1-9]\d*<', krow[0]),
          'spend row of the key with its spend: %r' % keys)
    check('generation 1' in dom, 'header rendered: %r' % dom[:600])

    dom = browse(ctx, 'http://127.0.0.1:%d/status' % aport)
    check('enter the admin token' in dom, 'without a token the page asks for one')

    shot = os.environ.get('BB_STATUS_SCREENSHOT')
    if shot:
        browse(ctx, 'http://127.0.0.1:%d/status#token=%s' % (aport, TOKEN),
               ['--screenshot=' + os.path.abspath(shot), '--window-size=1100,760',
                '--hide-scrollbars'])


if __name__ == '__main__':
    run([test_status_page_shows_open_lane])
