#!/usr/bin/env python3
"""governance control plane: busbarctl keys create/list/show/update/revoke/delete and spend
(table and --json, exit codes 0/1/2), the HTTP admin API with and without its bearer token,
changes visible at once, external database edits picked up, keys surviving a restart."""

import json
import os
import re
import sqlite3
import stat
import time

from harness import (check, eq, free_port, lane, pool, provider, request, run, validate,
                     wait_for)

ADMIN_TOKEN = 'bb-test-admin-token-0123456789'
SECRET_RE = re.compile(r'^sk-bb-[0-9a-f]{32}$')
ID_RE = re.compile(r'^vk_[0-9a-f]{16}$')


def start(ctx, http=False, **kw):
    m = ctx.mock()
    conf = {
        'providers': {'mock': provider(m)},
        'models': {'alpha': lane('mock', 'gpt-4o'), 'beta': lane('mock', 'm')},
        'pools': {'p': pool(('alpha', 1), ('beta', 1))},
    }
    env = {}
    if http:
        conf['admin'] = {'socket': ctx.path('busbar-admin.sock'),
                         'listen': '127.0.0.1:%d' % free_port(),
                         'token_env': 'BB_TEST_ADMIN_TOKEN'}
        env['BB_TEST_ADMIN_TOKEN'] = ADMIN_TOKEN
    conf.update(kw)
    return ctx.busbar(conf, env=env)


def ctl_ok(bb, *args):
    p = bb.ctl(*args)
    eq(p.returncode, 0, 'busbarctl %s exit code (stderr %r)' % (' '.join(args), p.stderr[-400:]))
    return p.stdout


def ctl_json(bb, *args):
    out = ctl_ok(bb, '--json', *args)
    try:
        j = json.loads(out)
    except ValueError:
        raise AssertionError('busbarctl --json %s printed no JSON: %r' % (' '.join(args), out[:300]))
    eq(j.get('ok'), True, 'ok in %s reply' % ' '.join(args))
    return j


def ctl_fails(bb, code, *args):
    p = bb.ctl(*args)
    eq(p.returncode, code, 'busbarctl %s exit code (stdout %r, stderr %r)'
       % (' '.join(args), p.stdout[-200:], p.stderr[-300:]))
    return p


def db_path(bb):
    return os.path.join(bb.state_dir, 'busbar.db')


def test_keys_lifecycle_table(ctx):
    bb = start(ctx)
    out = ctl_ok(bb, 'keys', 'create', '--name', 'team-alpha', '--pools', 'p', '--budget', '10',
                 '--period', 'daily', '--rpm', '60', '--tpm', '100000', '--parallel', '4',
                 '--expires', '30d')
    m = re.search(r'key (vk_[0-9a-f]{16}) created', out)
    check(m, 'no "key vk_… created" line in:\n%s' % out)
    kid = m.group(1)
    check(re.search(r'^secret:\s+sk-bb-[0-9a-f]{32}$', out, re.M), 'no secret line in:\n' + out)
    check('shown only this once' in out, 'no shown-once warning in:\n' + out)
    ctx.note('keys create:\n' + out)

    out = ctl_ok(bb, 'keys', 'list')
    check(not out.lstrip().startswith('{'), 'keys list is not a table: %r' % out[:200])
    lines = out.strip().splitlines()
    check(lines[0].split()[:3] == ['ID', 'NAME', 'STATUS'], 'table head: %r' % lines[0])
    row = [ln for ln in lines if ln.startswith(kid)]
    check(row, 'key %s not in the table:\n%s' % (kid, out))
    for want in ('team-alpha', 'active', '$10.00 daily', '60', '100000', '4'):
        check(want in row[0].split() or want in row[0], '%r not in row %r' % (want, row[0]))

    out = ctl_ok(bb, 'keys', 'show', kid)
    for want in ('id:                %s' % kid, 'status:            active', 'pools:             p',
                 'budget:            $10.00 daily', 'rpm:               60',
                 'max parallel:      4'):
        check(want in out, '%r not in keys show:\n%s' % (want, out))
    check('sk-bb-' not in out, 'keys show leaks a secret:\n' + out)

    # An update is visible immediately (no reload, no wait).
    ctl_ok(bb, 'keys', 'update', kid, '--rpm', '5', '--budget', '2.5', '--pools', 'p,other')
    out = ctl_ok(bb, 'keys', 'show', kid)
    for want in ('rpm:               5 (0 used this minute)', 'budget:            $2.50 daily',
                 'pools:             p,other'):
        check(want in out, '%r not in keys show after update:\n%s' % (want, out))
    ctl_ok(bb, 'keys', 'update', kid, '--disable')
    check('status:            disabled' in ctl_ok(bb, 'keys', 'show', kid), 'not disabled')
    ctl_ok(bb, 'keys', 'update', kid, '--enable', '--budget', 'none', '--rpm', '0')
    out = ctl_ok(bb, 'keys', 'show', kid)
    check('budget:            none' in out and 'rpm:               unlimited' in out,
          'budget/rpm not cleared:\n' + out)

    out = ctl_ok(bb, 'keys', 'revoke', kid)
    check('revoked' in out, 'revoke output: %r' % out)
    check('status:            revoked' in ctl_ok(bb, 'keys', 'show', kid), 'not revoked')
    p = ctl_fails(bb, 1, 'keys', 'update', kid, '--rpm', '1')
    check('revoked' in p.stderr, 'update of a revoked key: %r' % p.stderr)

    ctl_ok(bb, 'keys', 'delete', kid)
    p = ctl_fails(bb, 1, 'keys', 'show', kid)
    check('no key' in p.stderr, 'show after delete: %r' % p.stderr)
    ctl_fails(bb, 1, 'keys', 'delete', kid)
    check(kid not in ctl_ok(bb, 'keys', 'list'), 'deleted key still listed')


def test_keys_json(ctx):
    bb = start(ctx)
    j = ctl_json(bb, 'keys', 'create', '--name', 'j', '--budget', '12.345678', '--period',
                 'monthly', '--expires', '2030-01-02', '--aws')
    check(ID_RE.match(j['id']), 'id shape: %r' % j['id'])
    check(SECRET_RE.match(j['secret']), 'secret shape: %r' % j['secret'])
    check(re.match(r'^AKIA[A-Z2-7]{16}$', j['aws_access_key_id'] or ''), 'aws id: %r'
          % j.get('aws_access_key_id'))
    eq(len(j['aws_secret_access_key']), 40, 'aws secret length')
    eq(j['budget_micros'], 12345678, 'budget in exact micro-dollars')
    eq(j['period'], 'monthly', 'period')
    eq(j['expires'], '2030-01-02T00:00:00Z', 'expiry (00:00 UTC of the date)')
    eq(j['status'], 'active', 'status')
    eq(j['live']['published'], True, 'published to the workers before the reply')
    eq(j['live']['spent_micros'], 0, 'spent')
    kid = j['id']

    lst = ctl_json(bb, 'keys', 'list')
    eq([k['id'] for k in lst['keys']], [kid], 'ids in keys list --json')
    check('secret' not in lst['keys'][0] and 'aws_secret_access_key' not in lst['keys'][0],
          'list leaks a secret: %r' % lst['keys'][0])
    check(j['secret'] not in json.dumps(lst), 'the secret appears in keys list')

    u = ctl_json(bb, 'keys', 'update', kid, '--tpm', '777', '--name', 'renamed')
    eq((u['tpm'], u['name']), (777, 'renamed'), 'update reply')
    s = ctl_json(bb, 'keys', 'show', kid)
    eq((s['tpm'], s['name'], s['budget_micros']), (777, 'renamed', 12345678), 'show after update')
    r = ctl_json(bb, 'keys', 'revoke', kid)
    eq(r['status'], 'revoked', 'revoke reply status')
    eq(r['live']['published'], False, 'unpublished at once on revoke')
    d = ctl_json(bb, 'keys', 'delete', kid)
    eq(d, {'id': kid, 'deleted': True, 'ok': True}, 'delete reply')
    p = ctl_fails(bb, 1, '--json', 'keys', 'show', kid)
    j = json.loads(p.stdout)
    eq((j['ok'], j['code'], j['status']), (False, 'not_found', 404), 'show of a deleted key')

    # The store is mode 0600 (it holds AWS secrets) and never holds a plain secret.
    mode = stat.S_IMODE(os.stat(db_path(bb)).st_mode)
    eq(mode, 0o600, 'mode of %s' % db_path(bb))


def test_usage_errors(ctx):
    bb = start(ctx)
    for args in (['keys'], ['keys', 'create'], ['keys', 'create', '--name'],
                 ['keys', 'create', '--name', 'x', '--rpm', 'x'],
                 ['keys', 'create', '--name', 'x', '--rpm', '-1'],
                 ['keys', 'create', '--name', 'x', '--budget', '1.2345678'],
                 ['keys', 'create', '--name', 'x', '--budget', 'lots'],
                 ['keys', 'create', '--name', 'x', '--period', 'weekly'],
                 ['keys', 'create', '--name', 'x', '--expires', 'tomorrow'],
                 ['keys', 'create', '--name', 'x', '--bogus', '1'],
                 ['keys', 'create', '--name', 'x', '--enable'],
                 ['keys', 'show'], ['keys', 'frob'], ['keys', 'list', 'extra'],
                 ['keys', 'update', 'vk_0000000000000000'],
                 ['keys', 'update', 'vk_0000000000000000', '--aws'],
                 ['keys', 'update', 'vk_0000000000000000', '--enable', '--disable'],
                 ['spend', '--by', 'week'], ['spend', '--since', '2026-13-01'],
                 ['spend', 'extra']):
        p = ctl_fails(bb, 2, *args)
        check(p.stderr.strip(), 'no message for usage error %r' % args)
    ctl_fails(bb, 1, 'keys', 'show', 'vk_0000000000000000')
    ctl_fails(bb, 1, 'keys', 'update', 'vk_0000000000000000', '--rpm', '1')
    ctl_fails(bb, 1, 'keys', 'revoke', 'vk_0000000000000000')
    # Errors the master finds are operation errors (1), with the message.
    p = ctl_fails(bb, 1, 'keys', 'create', '--name', 'x', '--pools', 'a,a')
    check('listed twice' in p.stderr, 'duplicate pool message: %r' % p.stderr)
    p = ctl_fails(bb, 1, 'keys', 'create', '--name', 'x', '--pools',
                  ','.join('p%d' % i for i in range(17)))
    check('at most 16 pools' in p.stderr, 'too many pools message: %r' % p.stderr)
    # Nothing was created by any of that.
    eq(ctl_json(bb, 'keys', 'list')['keys'], [], 'keys after failed commands')
    # A master that is not there: operation error.
    p = ctl_fails(bb, 1, '--socket', ctx.path('nothing.sock'), 'keys', 'list')
    check('cannot connect' in p.stderr, 'connect error: %r' % p.stderr)


def add_rollups(bb, rows):
    """Write daily rollups straight into the store (what the usage sink maintains)."""
    con = sqlite3.connect(db_path(bb), timeout=5)
    with con:
        for key_id, day, pool_, model, reqs, inp, out, cost in rows:
            con.execute('INSERT INTO rollup_daily (key_id, day, pool, model, requests, '
                        'input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, '
                        'reasoning_tokens, cost_micros) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, ?)',
                        (key_id, day, pool_, model, reqs, inp, out, cost))
    con.close()


def test_spend(ctx):
    bb = start(ctx)
    a = ctl_json(bb, 'keys', 'create', '--name', 'alpha-team')['id']
    b = ctl_json(bb, 'keys', 'create', '--name', 'beta-team')['id']
    add_rollups(bb, [
        (a, '2026-03-01', 'p', 'alpha', 3, 300, 30, 1500000),
        (a, '2026-03-02', 'p', 'beta', 2, 200, 20, 250001),
        (b, '2026-03-02', 'p', 'alpha', 1, 100, 10, 7),
        (b, '2026-03-03', 'q', 'beta', 5, 500, 50, 1000000),
    ])
    j = ctl_json(bb, 'spend')
    eq(j['by'], 'key', 'default grouping')
    got = {r['group']: (r['requests'], r['cost_micros'], r['name']) for r in j['rows']}
    eq(got, {a: (5, 1750001, 'alpha-team'), b: (6, 1000007, 'beta-team')}, 'spend by key')
    eq(j['total']['cost_micros'], 2750008, 'total (exact micro-dollars)')
    eq(j['total']['cost_usd'], '2.750008', 'total in USD')
    eq(j['rows'][0]['group'], a, 'dearest first')

    j = ctl_json(bb, 'spend', '--by', 'model')
    eq({r['group']: r['cost_micros'] for r in j['rows']}, {'alpha': 1500007, 'beta': 1250001},
       'spend by model')
    j = ctl_json(bb, 'spend', '--by', 'pool', '--key', b)
    eq({r['group']: r['input_tokens'] for r in j['rows']}, {'p': 100, 'q': 500},
       'spend by pool for one key')
    j = ctl_json(bb, 'spend', '--by', 'day', '--since', '2026-03-02', '--until', '2026-03-02')
    eq([(r['group'], r['requests']) for r in j['rows']], [('2026-03-02', 3)], 'one day')
    j = ctl_json(bb, 'spend', '--by', 'day')
    eq([r['group'] for r in j['rows']], ['2026-03-01', '2026-03-02', '2026-03-03'],
       'days oldest first')

    out = ctl_ok(bb, 'spend')
    check(out.startswith('spend by key'), 'spend header: %r' % out[:100])
    lines = out.strip().splitlines()
    head = [ln for ln in lines if ln.startswith('KEY')]
    check(head and head[0].split() == ['KEY', 'NAME', 'REQUESTS', 'INPUT', 'OUTPUT', 'CACHE_READ',
                                       'CACHE_WRITE', 'REASONING', 'COST'],
          'spend table head: %r' % head)
    row_a = [ln for ln in lines if ln.startswith(a)]
    check(row_a and '$1.750001' in row_a[0] and 'alpha-team' in row_a[0], 'row: %r' % row_a)
    total = [ln for ln in lines if ln.startswith('TOTAL')]
    check(total and '$2.750008' in total[0], 'total row: %r' % total)
    out = ctl_ok(bb, 'spend', '--by', 'day', '--since', '2026-03-03')
    check('2026-03-03' in out and '2026-03-01' not in out, 'since filter:\n' + out)
    ctx.note('spend table:\n' + ctl_ok(bb, 'spend'))


def http(bb, method, path, body=None, token=ADMIN_TOKEN, headers=None):
    h = dict(headers or {})
    if token is not None:
        h['Authorization'] = 'Bearer ' + token
    port = int(bb.conf['admin']['listen'].rsplit(':', 1)[1])
    return request(port, method, path, body=body, headers=h)


def test_http_admin_api(ctx):
    bb = start(ctx, http=True)
    # Without the token, or with a wrong one: 401, and nothing about the keys.
    for tok in (None, 'wrong-token-wrong-token', ADMIN_TOKEN + 'x', ''):
        r = http(bb, 'GET', '/admin/keys', token=tok)
        eq(r.status, 401, 'GET /admin/keys with token %r' % tok)
        check(r.headers.get('www-authenticate', '').startswith('Bearer'),
              'WWW-Authenticate: %r' % r.headers)
    r = http(bb, 'POST', '/admin/keys', body={'name': 'x'}, token=None)
    eq(r.status, 401, 'POST without a token')
    r = http(bb, 'GET', '/admin/keys', token=None, headers={'Authorization': 'Basic Zm9vOmJhcg=='})
    eq(r.status, 401, 'basic auth')
    eq(ctl_json(bb, 'keys', 'list')['keys'], [], 'nothing created without the token')

    r = http(bb, 'POST', '/admin/keys', body={'name': 'web', 'pools': ['p'], 'budget': 5,
                                              'rpm': 100, 'max_parallel': 2})
    eq(r.status, 201, 'POST /admin/keys (body %r)' % r.body[:300])
    k = r.json()
    check(SECRET_RE.match(k['secret']), 'secret: %r' % k['secret'])
    eq((k['budget_micros'], k['rpm'], k['max_parallel'], k['pools']), (5000000, 100, 2, ['p']),
       'created key')
    kid = k['id']
    eq(r.headers.get('content-type'), 'application/json', 'content type')

    r = http(bb, 'GET', '/admin/keys')
    eq(r.status, 200, 'GET /admin/keys')
    eq([x['id'] for x in r.json()['keys']], [kid], 'list over HTTP')
    r = http(bb, 'GET', '/admin/keys/' + kid)
    eq((r.status, r.json()['name']), (200, 'web'), 'GET /admin/keys/{id}')

    r = http(bb, 'PATCH', '/admin/keys/' + kid, body={'rpm': 7, 'budget': '0.5',
                                                      'expires': '2031-05-06'})
    eq(r.status, 200, 'PATCH (body %r)' % r.body[:300])
    eq((r.json()['rpm'], r.json()['budget_micros']), (7, 500000), 'PATCH reply')
    # The same change through busbarctl, immediately.
    s = ctl_json(bb, 'keys', 'show', kid)
    eq((s['rpm'], s['budget_micros'], s['expires']), (7, 500000, '2031-05-06T00:00:00Z'),
       'busbarctl keys show after PATCH')
    # And the other way round.
    ctl_ok(bb, 'keys', 'update', kid, '--tpm', '999')
    eq(http(bb, 'GET', '/admin/keys/' + kid).json()['tpm'], 999, 'HTTP after busbarctl update')

    for body, want in (({'rpm': 'many'}, 'rpm'), ({'nmae': 'x'}, "unknown field 'nmae'"),
                       ({'period': 'weekly'}, 'period'), ({'budget': 'lots'}, 'budget')):
        r = http(bb, 'PATCH', '/admin/keys/' + kid, body=body)
        eq(r.status, 400, 'PATCH %r' % body)
        check(want in r.json()['error']['message'], '%r not in %r' % (want, r.json()))
    r = http(bb, 'POST', '/admin/keys', body=b'{"name": ')
    eq(r.status, 400, 'malformed JSON')
    r = http(bb, 'POST', '/admin/keys', body=[1, 2])
    eq(r.status, 400, 'a JSON array body')
    r = http(bb, 'GET', '/admin/keys/vk_0000000000000000')
    eq((r.status, r.json()['error']['code']), (404, 'not_found'), 'unknown key')
    r = http(bb, 'PUT', '/admin/keys/' + kid, body={})
    eq(r.status, 405, 'PUT')
    check('PATCH' in r.headers.get('allow', ''), 'Allow: %r' % r.headers)
    r = http(bb, 'GET', '/admin/nothing')
    eq(r.status, 404, 'unknown admin path')

    r = http(bb, 'GET', '/admin/spend?by=day&since=2026-01-01')
    eq(r.status, 200, 'GET /admin/spend (body %r)' % r.body[:300])
    eq((r.json()['by'], r.json()['since'], r.json()['rows']), ('day', '2026-01-01', []),
       'spend reply')
    r = http(bb, 'GET', '/admin/spend?by=year')
    eq(r.status, 400, 'spend by year')
    r = http(bb, 'GET', '/admin/spend?color=red')
    eq(r.status, 400, 'spend with an unknown parameter')

    r = http(bb, 'POST', '/admin/keys/%s/revoke' % kid)
    eq((r.status, r.json()['status']), (200, 'revoked'), 'POST …/revoke')
    eq(ctl_json(bb, 'keys', 'show', kid)['status'], 'revoked', 'revoked as seen by busbarctl')
    r = http(bb, 'PATCH', '/admin/keys/' + kid, body={'rpm': 1})
    eq(r.status, 409, 'PATCH of a revoked key')
    r = http(bb, 'DELETE', '/admin/keys/' + kid)
    eq((r.status, r.json()), (200, {'id': kid, 'deleted': True}), 'DELETE')
    eq(http(bb, 'GET', '/admin/keys/' + kid).status, 404, 'GET after DELETE')
    # The data plane does not serve the admin API.
    r = bb.request('GET', '/admin/keys', headers={'Authorization': 'Bearer ' + ADMIN_TOKEN})
    check(r.status in (401, 404), 'data plane answered /admin/keys with %d' % r.status)


def test_admin_api_needs_its_token(ctx):
    """admin.listen with the token variable unset: busbar -t and the master refuse, naming it."""
    bb = start(ctx, http=True)
    bb.stop()
    p = validate(bb.config_path, bb.providers_path, env={'BB_TEST_ADMIN_TOKEN': ''})
    check(p.returncode != 0 and 'BB_TEST_ADMIN_TOKEN is not set' in p.out,
          'busbar -t without the token: %r' % p.out[-400:])
    p = validate(bb.config_path, bb.providers_path, env={'BB_TEST_ADMIN_TOKEN': 'short'})
    check(p.returncode != 0 and 'too short' in p.out, 'short token: %r' % p.out[-400:])


def test_external_edits_and_restart(ctx):
    bb = start(ctx)
    kid = ctl_json(bb, 'keys', 'create', '--name', 'ext')['id']
    con = sqlite3.connect(db_path(bb), timeout=5)
    with con:
        con.execute('UPDATE keys SET revoked_at = 1 WHERE id = ?', (kid,))
    # An operator's edit of the database reaches the workers' table within ~1 s.
    wait_for(lambda: ctl_json(bb, 'keys', 'show', kid)['live']['published'] is False, 5,
             'externally revoked key unpublished')
    bb.wait_log(r'key changes picked up')
    with con:
        con.execute('UPDATE keys SET revoked_at = NULL WHERE id = ?', (kid,))
    con.close()
    wait_for(lambda: ctl_json(bb, 'keys', 'show', kid)['live']['published'] is True, 5,
             'externally restored key published again')

    k2 = ctl_json(bb, 'keys', 'create', '--name', 'kept', '--rpm', '9')['id']
    eq(bb.stop(), 0, 'graceful stop exit code')
    bb.start()
    lst = ctl_json(bb, 'keys', 'list')
    got = {k['id']: (k['name'], k['rpm'], k['live']['published']) for k in lst['keys']}
    eq(got, {kid: ('ext', None, True), k2: ('kept', 9, True)}, 'keys after a restart')
    st = json.loads(ctl_ok(bb, 'status', '--json'))
    eq(st['governance']['db'], db_path(bb), 'governance.db in status')
    eq(st['governance']['keys'], 2, 'keys published in status')
    check('governance: 2 keys published' in ctl_ok(bb, 'status'), 'status table governance line')


if __name__ == '__main__':
    run([test_keys_lifecycle_table, test_keys_json, test_usage_errors, test_spend,
         test_http_admin_api, test_admin_api_needs_its_token, test_external_edits_and_restart])
