#!/usr/bin/env python3
"""cluster mode (SPEC §7, docs/cluster.md) with the real things: a real redis-server (Debian)
and three busbar nodes, each with its own state dir, behind a real haproxy (Debian,
round-robin) on loopback.

Checked: a key created on one node is usable on another within 1 s; a 300-way burst over the
three nodes against a budget that fits 50 worst cases spends at most the budget, and the sum
of the nodes' ledgers equals what Redis recorded (`busbarctl spend --cluster`); an RPM cap
holds cluster-wide; a key revoked on A gets 401 on B and C within 1 s; a lane tripped on A is
skipped by B and C within 1 s and exactly one half-open probe runs cluster-wide after the
cooldown; Redis killed under load (on_redis_error: local) → no failed request and no crash,
Redis back → cluster enforcement resumes and the spend admitted locally meanwhile is
reconciled (ledgers = Redis again); on_redis_error: deny → 503 in the client's dialect, and a
stopped Redis delays no request past cluster.timeout_ms; a node killed with reservations
outstanding has them released after lease_secs; TLS (a throwaway CA made with openssl) and
AUTH (an ACL user, password from the environment) to Redis.
"""

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

from harness import (TEST_KEY_ENV, check, eq, fail, free_port, lane, make_certs, pool,
                     provider, request, run, scaled, spawn, tail, wait_for)
from test_governance import (PRICE_A, bearer, body_len, burst, check_401, check_dialect_error,
                             check_quota, cost_micros, create_key, ctl_json, ledger, mock_ir,
                             usd, worst_micros)

REDIS_PASSWORD_ENV = 'BB_TEST_REDIS_PASSWORD'


# --------------------------------------------------------------------------------------------
# a real redis-server, and a minimal RESP client to look inside it

class Redis:
    def __init__(self, ctx, tls_certs=None, user=None, password=None, aof=True):
        self.ctx = ctx
        self.port = free_port()
        self.dir = ctx.path('redis-%d' % self.port)
        os.makedirs(self.dir, exist_ok=True)
        self.tls = tls_certs
        self.user, self.password = user, password
        self.argv = ['redis-server', '--bind', '127.0.0.1', '--dir', self.dir, '--save', '',
                     '--appendonly', 'yes' if aof else 'no', '--appendfsync', 'always',
                     '--daemonize', 'no', '--logfile', os.path.join(self.dir, 'redis.log')]
        if tls_certs:
            self.argv += ['--port', '0', '--tls-port', str(self.port),
                          '--tls-cert-file', tls_certs['server'],
                          '--tls-key-file', tls_certs['server_key'],
                          '--tls-ca-cert-file', tls_certs['ca'], '--tls-auth-clients', 'no']
        else:
            self.argv += ['--port', str(self.port)]
        if user:
            self.argv += ['--user', 'default', 'off', '--user', user, 'on', '>' + password,
                          '~*', '&*', '+@all']
        elif password:
            self.argv += ['--requirepass', password]
        self.proc = None
        self.start()
        ctx.on_close(self.stop)

    def start(self):
        check(any(os.access(os.path.join(d, 'redis-server'), os.X_OK)
                  for d in os.environ.get('PATH', '').split(':') + ['/usr/bin']),
              'redis-server is not installed (tests/run.sh installs it)')
        self.proc = spawn(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.ping(), 10, 'redis-server on port %d' % self.port)

    def ping(self):
        try:
            return self.cmd('PING') == 'PONG'
        except OSError:
            return False

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=5)

    def url(self):
        return '%s://%s127.0.0.1:%d/0' % ('rediss' if self.tls else 'redis',
                                          self.user + '@' if self.user else '', self.port)

    def cmd(self, *args):
        s = socket.create_connection(('127.0.0.1', self.port), timeout=5)
        if self.tls:
            c = ssl.create_default_context(cafile=self.tls['ca'])
            s = c.wrap_socket(s, server_hostname='127.0.0.1')
        f = s.makefile('rb')
        try:
            if self.password:
                auth = [self.user, self.password] if self.user else [self.password]
                s.sendall(resp_encode(['AUTH'] + auth))
                check(resp_read(f) == 'OK', 'AUTH to the test redis')
            s.sendall(resp_encode(list(args)))
            return resp_read(f)
        finally:
            f.close()
            s.close()


def resp_encode(args):
    out = b'*%d\r\n' % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b'$%d\r\n%s\r\n' % (len(a), a)
    return out


def resp_read(f):
    line = f.readline()
    if not line:
        raise OSError('redis closed the connection')
    t, rest = line[:1], line[1:-2]
    if t == b'+':
        return rest.decode()
    if t == b'-':
        raise OSError('redis error: ' + rest.decode())
    if t == b':':
        return int(rest)
    if t == b'$':
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode()
    if t == b'*':
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise OSError('bad RESP line %r' % line)


# --------------------------------------------------------------------------------------------
# haproxy in front of the nodes

class HAProxy:
    def __init__(self, ctx, ports):
        check(os.access('/usr/sbin/haproxy', os.X_OK), 'haproxy is not installed '
              '(tests/run.sh installs it)')
        self.port = free_port()
        cfg = ctx.path('haproxy.cfg')
        with open(cfg, 'w') as f:
            f.write('global\n  maxconn 4000\n'
                    'defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n'
                    '  timeout server 60s\n'
                    'frontend fe\n  bind 127.0.0.1:%d\n  default_backend nodes\n'
                    'backend nodes\n  balance roundrobin\n' % self.port)
            for i, p in enumerate(ports):
                f.write('  server n%d 127.0.0.1:%d\n' % (i, p))
        self.log = ctx.path('haproxy.log')
        self.proc = spawn(['/usr/sbin/haproxy', '-db', '-f', cfg],
                          stdout=open(self.log, 'wb'), stderr=subprocess.STDOUT)
        wait_for(self._up, 10, 'haproxy on port %d' % self.port)
        ctx.on_close(self.stop)

    def _up(self):
        if self.proc.poll() is not None:
            fail('haproxy exited: %s' % tail(self.log))
        try:
            socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------
# the nodes

COOLDOWN = 1    # base_cooldown_secs of the breaker test pool


def models(m):
    """alpha (priced) in pool p; pool b: 'bad' (500 for its first 3 attempts, counted across the
    nodes by the mock) before 'good'; pool s: a lane whose answer takes 30 s."""
    return {
        'providers': {'mockp': provider(m)},
        'models': {'alpha': lane('mockp', 'gpt-4o;slowfirst=150;words=40', price=PRICE_A),
                   'bad': lane('mockp', 'm-bad;status=500;fail_first=3', price=PRICE_A),
                   'good': lane('mockp', 'm-good', price=PRICE_A),
                   'slow': lane('mockp', 'm-slow;slowfirst=30000', price=PRICE_A)},
        'pools': {'p': pool(('alpha', 1)),
                  'b': pool(('bad', 100), ('good', 1),
                            breaker={'trip': {'mode': 'consecutive', 'consecutive_n': 2},
                                     'base_cooldown_secs': COOLDOWN,
                                     'max_cooldown_secs': 60}),
                  's': pool(('slow', 1))},
    }


ADMIN_TOKEN = 'cluster-test-admin-token-0123456789'


def start_nodes(ctx, redis, names=('a', 'b', 'c'), on_error='local', timeout_ms=1000,
                lease_secs=None, password=None, http_first=False, wait_synced=True):
    """One mock and a busbar node per name, in cluster mode on redis. Each node calls the mock
    with its own upstream key ("sk-node-<name>"), so the mock's log tells which node tried.
    timeout_ms is generous by default: these tests check what Redis decides, not timeouts
    (test_deny_and_timeout does)."""
    m = ctx.mock()
    nodes = []
    for n in names:
        cl = {'redis_url': redis.url(), 'key_prefix': 'bbtest:', 'node_id': n,
              'on_redis_error': on_error, 'timeout_ms': timeout_ms}
        if lease_secs:
            cl['lease_secs'] = lease_secs
        if redis.password:
            cl['password_env'] = REDIS_PASSWORD_ENV
        if redis.tls:
            cl['tls'] = {'ca_file': redis.tls['ca']}
        conf = dict(models(m), auth={'mode': 'keys'}, cluster=cl)
        e = {TEST_KEY_ENV: 'sk-node-' + n}
        if http_first and not nodes:   # the first node also serves the HTTP admin API
            conf['admin'] = {'socket': ctx.path('node-%s-admin.sock' % n),
                             'listen': '127.0.0.1:%d' % free_port(),
                             'token_env': 'BB_TEST_ADMIN_TOKEN'}
            e['BB_TEST_ADMIN_TOKEN'] = ADMIN_TOKEN
        if redis.password:
            e[REDIS_PASSWORD_ENV] = password or redis.password
        nodes.append(ctx.busbar(conf, name='node-' + n, env=e))
    for b in nodes:
        if not password and wait_synced:
            wait_for(lambda: ctl_json(b, 'status').get('cluster', {}).get('synced'), 10,
                     '%s in step with Redis' % b.name)
    return m, nodes


def admin_http(b, method, path, body=None):
    port = int(b.conf['admin']['listen'].rsplit(':', 1)[1])
    return request(port, method, path, body=body,
                   headers={'Authorization': 'Bearer ' + ADMIN_TOKEN})


def node_of(attempt):
    return (attempt.get('authorization') or '').rsplit('-', 1)[-1]


def cluster_status(b):
    return ctl_json(b, 'status')['cluster']


def chat(port, key, model='p', timeout=30, **extra):
    body = {'model': model, 'messages': [{'role': 'user', 'content': 'hello cluster'}]}
    body.update(extra)
    return request(port, 'POST', '/v1/chat/completions', body, headers=bearer(key),
                   timeout=timeout)


def ledgers_total(nodes, kid):
    rows = []
    for b in nodes:
        rows += [r for r in ledger(b) if r['key_id'] == kid]
    return rows


def cluster_spend(b, kid):
    sp = ctl_json(b, 'spend', '--cluster', '--key', kid)
    return sp['total']['requests'], sp['total']['cost_micros']


def wait_minute_room(redis, secs):
    """Wait until the Redis clock has at least secs left in its UTC minute."""
    t = int(redis.cmd('TIME')[0])
    if 60 - t % 60 < secs:
        time.sleep(60 - t % 60 + 0.2)


# --------------------------------------------------------------------------------------------
# keys, budgets, limits, revocation

def test_keys_budget_rpm_revoke(ctx):
    redis = Redis(ctx)
    m, (a, b, c) = start_nodes(ctx, redis, http_first=True)
    lb = HAProxy(ctx, [a.port, b.port, c.port])

    # a key created through A's HTTP admin API works on B within 1 s
    r = admin_http(a, 'POST', '/admin/keys', {'name': 'made-by-http', 'pools': ['p']})
    eq(r.status, 201, 'POST /admin/keys on A')
    kh = r.json()
    wait_for(lambda: chat(b.port, kh, max_tokens=1).status == 200, 1,
             'the key made through A\'s admin API to work on B')

    # a key created on B is usable on C (and on A) within 1 s
    k = create_key(b, '--pools', 'p', name='made-on-b')
    t0 = time.monotonic()
    wait_for(lambda: chat(c.port, k).status == 200, 1, 'the key made on B to work on C')
    ctx.note('key made on B usable on C after %.0f ms' % ((time.monotonic() - t0) * 1000))
    eq(chat(a.port, k).status, 200, 'the key made on B, on A')
    eq(ctl_json(c, 'keys', 'show', k['id'])['name'], 'made-on-b', 'the key in C\'s store')
    # a node that starts later has caught up before it serves: its very first request works
    m2, (d,) = start_nodes(ctx, redis, names=('d',), wait_synced=False)
    eq(chat(d.port, k, max_tokens=1).status, 200, 'the first request on a node just started')
    eq(cluster_status(d)['admitted_local'], 0, 'decided by Redis, not locally')
    log = d.log()
    check(0 <= log.find('cluster: in step with') < log.find('] worker ') and
          log.find('] worker ') >= 0,
          'the new node caught up before its first worker started:\n%s' % log[-1500:])
    d.stop()

    # 300-way burst through the load balancer against a budget that fits 50 worst cases
    body = {'model': 'p', 'messages': [{'role': 'user', 'content': 'hello cluster'}],
            'max_tokens': 40}
    worst = worst_micros(PRICE_A, body_len(body), 40)
    actual = cost_micros(PRICE_A, mock_ir('openai', 2, 40))
    budget = 50 * worst + worst // 2
    kb = create_key(a, '--pools', 'p', '--budget', usd(budget), name='burst')
    wait_for(lambda: all(chat(n.port, kb, max_tokens=1).status == 200 for n in (b, c)), 1,
             'the burst key on every node')
    # settlements land just after the answers: let those two settle before the burst
    wait_for(lambda: redis.cmd('ZCARD', 'bbtest:k:%s:r' % kb['id']) == 0, 2,
             'no reservation of the burst key outstanding')
    spent_before = sum(r['cost_micros'] for r in ledgers_total([a, b, c], kb['id']))
    decided = lambda n: (lambda s: s['admitted_redis'] + s['refused_redis'])(cluster_status(n))
    decided_before = [decided(n) for n in (a, b, c)]
    res = burst(300, lambda i: request(lb.port, 'POST', '/v1/chat/completions', body,
                                       headers=bearer(kb), timeout=60), timeout=120)
    errs = [x for x in res if isinstance(x, Exception)]
    check(not errs, 'burst requests failed: %r' % errs[:3])
    codes = {}
    for r in res:
        codes[r.status] = codes.get(r.status, 0) + 1
    ctx.note('burst: %r (worst case %d µ$, actual %d µ$, budget %d µ$)'
             % (codes, worst, actual, budget))
    for r in res:
        if r.status != 200:
            check_quota(r, 'openai', 'a burst refusal')
    check(codes.get(429), 'the budget refused nothing')
    rows = ledgers_total([a, b, c], kb['id'])
    per_node = [len([r for r in ledger(n, drain=False) if r['key_id'] == kb['id']])
                for n in (a, b, c)]
    asked = [decided(n) - x for n, x in zip((a, b, c), decided_before)]
    ctx.note('ledger rows per node: %r; admissions Redis decided per node: %r' % (per_node, asked))
    check(min(asked) >= 50, 'every node must have competed for the budget: %r' % asked)
    total = sum(r['cost_micros'] for r in rows)
    check(total <= budget, 'the cluster overshot the budget: %d µ$ > %d µ$' % (total, budget))
    check(len(rows) - len([r for r in res if r.status == 200]) == 2,
          'ledger rows = the two checks + the burst\'s admitted requests')
    room = (budget - spent_before) // worst
    check(codes.get(200, 0) >= room, '%d admitted, fewer than the %d worst cases the budget '
          'still held' % (codes.get(200, 0), room))
    for n in (a, b, c):   # every admission of the burst was Redis's decision
        st = cluster_status(n)
        eq((st['timeouts'], st['admitted_local'], st['denied']), (0, 0, 0),
           '%s: admissions not decided by Redis' % n.name)
    eq(cluster_spend(a, kb['id']), (len(rows), total),
       'Redis\'s spend (requests, µ$) = the sum of the three ledgers')
    eq(cluster_spend(c, kb['id']), (len(rows), total), 'spend --cluster on another node')
    r = admin_http(a, 'GET', '/admin/spend?cluster=true&by=day&key=' + kb['id'])
    eq(r.status, 200, 'GET /admin/spend?cluster=true')
    eq((r.json()['total']['requests'], r.json()['total']['cost_micros']), (len(rows), total),
       'the admin API\'s cluster spend')
    r = admin_http(a, 'GET', '/admin/spend?cluster=true&by=model')
    eq(r.status, 400, 'cluster spend by model (the counters are per key and day)')

    # an RPM cap holds across the nodes
    wait_minute_room(redis, 8)
    kr = create_key(b, '--pools', 'p', '--rpm', '12', name='rpm')
    wait_for(lambda: all(ctl_json(n, 'keys', 'show', kr['id'])['id'] for n in (a, c)), 1,
             'the rpm key on every node')
    res = burst(36, lambda i: request(lb.port, 'POST', '/v1/chat/completions',
                                      dict(body, max_tokens=1), headers=bearer(kr), timeout=30))
    statuses = sorted(r.status for r in res)
    eq(statuses.count(200), 12, 'admitted under a cluster-wide RPM cap of 12 (%r)' % statuses)
    for r in res:
        if r.status != 200:
            check_dialect_error(r, 'openai', 429, 'rpm refusal', openai_type='rate_limit_error')
            check(1 <= int(r.headers['retry-after']) <= 60, 'Retry-After of an rpm refusal')

    # revoked on A: 401 on B and C within 1 s
    kv = create_key(a, '--pools', 'p', name='to-revoke')
    wait_for(lambda: all(chat(n.port, kv, max_tokens=1).status == 200 for n in (b, c)), 1,
             'the key to revoke on B and C')
    ctl_json(a, 'keys', 'revoke', kv['id'])
    t0 = time.monotonic()
    for n in (b, c):
        wait_for(lambda: chat(n.port, kv, max_tokens=1).status == 401,
                 1 - (time.monotonic() - t0), 'the key revoked on A refused by %s' % n.name)
    ctx.note('revocation effective on B and C after %.0f ms' % ((time.monotonic() - t0) * 1000))
    check_401(chat(c.port, kv), 'openai', 'revoked key on C')
    wait_for(lambda: ctl_json(c, 'keys', 'show', kv['id'])['status'] == 'revoked', 1,
             'the revocation in C\'s store')
    # deleted on C: gone on A
    ctl_json(c, 'keys', 'delete', k['id'])
    wait_for(lambda: a.ctl('keys', 'show', k['id']).returncode == 1, 1,
             'the key deleted on C gone from A')
    check_401(chat(a.port, k), 'openai', 'deleted key on A')
    st = cluster_status(a)
    ctx.note('A: %s' % json.dumps(st))
    eq((st['connected'], st['synced'], st['denied'], st['timeouts']), (True, True, 0, 0),
       'A\'s cluster status')
    check(st['admitted_redis'] > 0 and st['keys_applied'] > 0, 'A\'s cluster counters')
    out = a.ctl('status').stdout
    check('cluster: node a, connected to %s' % redis.url() in out,
          'busbarctl status names the cluster state: %r' % out[-600:])


# --------------------------------------------------------------------------------------------
# breakers

def lane_state(b, name):
    for ln in ctl_json(b, 'status')['lanes']:
        if ln['name'] == name:
            return ln['breaker_state']
    fail('%s has no lane %s' % (b.name, name))


def test_breaker_shared(ctx):
    redis = Redis(ctx, aof=False)
    m, (a, b, c) = start_nodes(ctx, redis)
    k = create_key(a, name='brk')
    wait_for(lambda: all(chat(n.port, k, model='p', max_tokens=1).status == 200
                         for n in (b, c)), 1, 'the key on B and C')
    m.reset()
    # two failures on A trip b/bad there (each request fails over to good: the client sees 200)
    for _ in range(2):
        eq(chat(a.port, k, model='b').status, 200, 'a request on A failing over')
    t_trip = time.monotonic()
    eq(lane_state(a, 'b/bad'), 'open', 'b/bad on A after two failures')
    for n in (b, c):
        wait_for(lambda: lane_state(n, 'b/bad') == 'open', 1 - (time.monotonic() - t_trip),
                 'b/bad tripped on A to open on %s' % n.name)
    ctx.note('b/bad open on B and C %.0f ms after it tripped on A'
             % ((time.monotonic() - t_trip) * 1000))
    seq0 = max([x['seq'] for x in m.attempts()] or [0])
    for n in (b, c):
        for _ in range(3):
            eq(chat(n.port, k, model='b').status, 200, 'a request on %s' % n.name)
    bad = [x for x in m.attempts() if x['seq'] > seq0 and x['model'].startswith('m-bad')]
    eq(bad, [], 'attempts on the lane tripped on A, from B or C')

    # after the cooldown exactly one probe runs cluster-wide (it fails: attempt 3 of the
    # mock's fail_first=3), the lane opens again for twice as long everywhere; the next probe
    # succeeds and closes it everywhere
    stop = threading.Event()
    seen = []

    def traffic(node):
        while not stop.is_set():
            try:
                seen.append(chat(node.port, k, model='b', timeout=10).status)
            except OSError as e:
                seen.append(repr(e))
    threads = [threading.Thread(target=traffic, args=(n,), daemon=True) for n in (a, b, c)
               for _ in range(2)]
    for t in threads:
        t.start()
    try:
        atts = m.wait_attempts(lambda at: len([x for x in at if x['model'].startswith('m-bad')
                                               and x['status'] == 200]) >= 1,
                               8, 'the second probe to succeed')
        t_closed = time.monotonic()
        for n in (a, b, c):
            wait_for(lambda: lane_state(n, 'b/bad') == 'closed', 1,
                     'b/bad closed on %s after the probe succeeded' % n.name)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    eq(sorted(set(seen)), [200], 'statuses during the probes')
    bad = [x for x in atts if x['model'].startswith('m-bad')]
    first_ok = min(i for i, x in enumerate(bad) if x['status'] == 200)
    probes = bad[2:first_ok + 1]
    ctx.note('probes: %s; closed everywhere %.0f ms after the success'
             % (', '.join('%s at +%.2fs (%d)' % (node_of(x), (x['t_ms'] - bad[1]['t_ms']) / 1000,
                                                  x['status']) for x in probes),
                (time.monotonic() - t_closed) * 1000))
    eq([x['status'] for x in probes], [500, 200], 'the half-open probes: one per cooldown')
    gap1 = (probes[0]['t_ms'] - bad[1]['t_ms']) / 1000
    gap2 = (probes[1]['t_ms'] - probes[0]['t_ms']) / 1000
    check(gap1 >= 0.85 * COOLDOWN, 'the first probe came %.2fs after the trip' % gap1)
    check(gap2 >= 1.7 * COOLDOWN, 'the second probe came %.2fs after the first (the cooldown '
          'doubles after a failed probe)' % gap2)
    # B and C each applied A's open; the close comes from whichever node ran the successful
    # probe, so at least one of them applied it from another node (both, when A probed)
    applied = [cluster_status(n)['breaker_applied'] for n in (b, c)]
    check(sum(applied) >= 3, 'B and C applied the open and the close (applied: %r)' % applied)


# --------------------------------------------------------------------------------------------
# Redis down and back

def test_redis_down_local(ctx):
    redis = Redis(ctx)
    m, (a, b, c) = start_nodes(ctx, redis, timeout_ms=200)
    lb = HAProxy(ctx, [a.port, b.port, c.port])
    k = create_key(a, '--pools', 'p', '--budget', '1000', name='load')
    wait_for(lambda: all(chat(n.port, k, max_tokens=1).status == 200 for n in (b, c)), 1,
             'the key on B and C')
    stop = threading.Event()
    seen = []

    def load():
        while not stop.is_set():
            try:
                seen.append(chat(lb.port, k, max_tokens=2, timeout=10).status)
            except OSError as e:
                seen.append(repr(e))
    threads = [threading.Thread(target=load, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        redis.kill()
        t_kill = time.monotonic()
        time.sleep(2)
        n_during = len(seen)
        for n in (a, b, c):
            st = cluster_status(n)
            eq((st['connected'], st['synced']), (False, False), '%s with Redis down' % n.name)
            check(st['admitted_local'] > 0 and st['fallbacks'] > 0,
                  '%s admitted locally with Redis down: %r' % (n.name, st))
        redis.start()
        t_back = time.monotonic()
        for n in (a, b, c):
            wait_for(lambda: cluster_status(n)['synced'], 8,
                     '%s in step again after Redis came back' % n.name)
        ctx.note('Redis down %.1fs; all nodes in step %.1fs after it came back'
                 % (t_back - t_kill, time.monotonic() - t_back))
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    codes = {}
    for x in seen:
        codes[x] = codes.get(x, 0) + 1
    ctx.note('statuses under load: %r (%d while Redis was down)' % (codes, n_during))
    eq(list(codes), [200], 'every request under load succeeded')
    for n in (a, b, c):
        check(n.proc.poll() is None, '%s is running' % n.name)
    # what was admitted locally meanwhile is reconciled: the ledgers equal Redis again
    rows = ledgers_total([a, b, c], k['id'])
    want = (len(rows), sum(r['cost_micros'] for r in rows))
    wait_for(lambda: cluster_spend(b, k['id']) == want, 8,
             'Redis\'s spend to equal the ledgers %r (it says %r)' % (want, cluster_spend(b, k['id'])))
    check(sum(cluster_status(n)['reconciled'] for n in (a, b, c)) > 0, 'nothing was reconciled')
    # and the cluster enforces again: an RPM cap across the nodes
    wait_minute_room(redis, 6)
    kr = create_key(b, '--pools', 'p', '--rpm', '4', name='after')
    wait_for(lambda: all(ctl_json(n, 'keys', 'show', kr['id'])['id'] for n in (a, c)), 1,
             'the new key on every node')
    res = [chat(lb.port, kr, max_tokens=1).status for _ in range(12)]
    eq(res.count(200), 4, 'admitted under a cluster-wide RPM cap of 4 after Redis came back (%r)'
       % res)


def test_deny_and_timeout(ctx):
    redis = Redis(ctx, aof=False)
    m, (a,) = start_nodes(ctx, redis, names=('a',), on_error='deny', timeout_ms=50)
    k = create_key(a, '--pools', 'p', name='deny')
    eq(chat(a.port, k, max_tokens=1).status, 200, 'with Redis up')
    # a Redis that stops answering: the request waits cluster.timeout_ms, then deny: 503
    redis.pause()
    try:
        t0 = time.monotonic()
        r = chat(a.port, k, max_tokens=1)
        dt = time.monotonic() - t0
        ctx.note('answer with Redis stopped: %d after %.0f ms' % (r.status, dt * 1000))
        check_dialect_error(r, 'openai', 503, 'deny with Redis stopped', openai_type='server_error',
                            openai_code='cluster_store_unavailable')
        check(dt < 0.05 + scaled(0.25), 'a stopped Redis held a request %.0f ms' % (dt * 1000))
        eq(r.headers.get('retry-after'), '1', 'Retry-After of the 503')
        body = {'model': 'p', 'max_tokens': 1,
                'messages': [{'role': 'user', 'content': 'hello'}]}
        r = request(a.port, 'POST', '/v1/messages', body,
                    headers={'x-api-key': k['secret'], 'anthropic-version': '2023-06-01'})
        check_dialect_error(r, 'anthropic', 503, 'deny in the Anthropic dialect',
                            anthropic_type='overloaded_error')
        st = cluster_status(a)
        check(st['timeouts'] >= 1 and st['denied'] >= 2, 'counters: %r' % st)
        a.wait_log(r'redis worker 0: .*no answer for', 5, 'the stalled connection dropped')
        t0 = time.monotonic()
        eq(chat(a.port, k, max_tokens=1).status, 503, 'with the connection dropped')
        check(time.monotonic() - t0 < scaled(0.2), 'a dropped connection must not wait')
    finally:
        redis.resume()
    wait_for(lambda: chat(a.port, k, max_tokens=1).status == 200, 8, 'Redis answering again')
    # gone altogether: 503 at once
    redis.kill()
    t0 = time.monotonic()
    wait_for(lambda: chat(a.port, k, max_tokens=1).status == 503, 2, 'deny with Redis dead')
    ctx.note('503 %.0f ms after Redis died' % ((time.monotonic() - t0) * 1000))
    eq(a.request('GET', '/healthz').status, 200, 'the node itself keeps running')
    # a reload to on_redis_error: local serves again (new workers, the master reconnects)
    a.conf['cluster']['on_redis_error'] = 'local'
    a.write_config(a.conf)
    a.reload()
    a.wait_log(r'cluster: configuration changed: reconnecting', 10, 'the master reconnecting')
    wait_for(lambda: chat(a.port, k, max_tokens=1).status == 200, 5,
             'local admissions after the reload')
    redis.start()
    wait_for(lambda: cluster_status(a)['synced'], 8, 'in step with Redis after its return')


def test_lease_dead_node(ctx):
    redis = Redis(ctx, aof=False)
    m, (a, b) = start_nodes(ctx, redis, names=('a', 'b'), lease_secs=2)
    body = {'model': 's', 'max_tokens': 10, 'messages': [{'role': 'user', 'content': 'hi'}]}
    worst = worst_micros(PRICE_A, body_len(body), 10)
    k = create_key(a, '--pools', 's,p', '--budget', usd(worst + worst // 2), name='lease')
    wait_for(lambda: ctl_json(b, 'keys', 'show', k['id'])['id'], 1, 'the key on B')
    # a request on A holds the only reservation the budget allows (its answer takes 30 s)
    def hold():
        try:
            request(a.port, 'POST', '/v1/chat/completions', body, headers=bearer(k), timeout=40)
        except OSError:
            pass   # node A is killed under it
    slow = threading.Thread(target=hold, daemon=True)
    slow.start()
    m.wait_attempts(lambda at: any(x['model'].startswith('m-slow') for x in at), 5,
                    'the slow request upstream')
    quick = dict(body, model='p')   # the same worst case, answered at once
    check_quota(request(b.port, 'POST', '/v1/chat/completions', quick, headers=bearer(k)),
                'openai', 'B while A holds the reservation')
    time.sleep(3)   # longer than the lease: A renews it
    check_quota(request(b.port, 'POST', '/v1/chat/completions', quick, headers=bearer(k)),
                'openai', 'B after a lease period, A alive and renewing')
    # node A dies (master and workers at once): its reservation is released after the lease
    a.expect_exit = None
    os.killpg(a.proc.pid, signal.SIGKILL)
    a.proc.wait(timeout=5)
    t0 = time.monotonic()
    wait_for(lambda: request(b.port, 'POST', '/v1/chat/completions', quick,
                             headers=bearer(k)).status == 200, 6,
             'B admitting the key once A\'s lease ran out')
    dt = time.monotonic() - t0
    ctx.note('reservation of the dead node released after %.1fs (lease 2 s)' % dt)
    check(dt >= 1.0, 'released %.1fs after the kill, before the lease could run out' % dt)


def test_tls_auth(ctx):
    certs = make_certs(ctx.path('certs'))
    redis = Redis(ctx, tls_certs=certs, user='busbar', password='s3cret-pw-for-test', aof=False)
    m, (a, b) = start_nodes(ctx, redis, names=('a', 'b'))
    wait_minute_room(redis, 10)  # the RPM window must not turn over inside this test
    k = create_key(a, '--pools', 'p', '--rpm', '3', name='tls')
    wait_for(lambda: chat(b.port, k, max_tokens=1).status == 200, 1, 'the key on B over TLS')
    res = [chat(n.port, k, max_tokens=1).status for n in (a, b, a, b)]
    eq(sorted(res), [200, 200, 429, 429], 'RPM 3 across two nodes over TLS (1 used above)')
    eq(redis.cmd('ACL', 'WHOAMI'), 'busbar', 'the test talks to Redis as the ACL user')
    check(int(redis.cmd('EXISTS', 'bbtest:keys')) == 1, 'the catalogue is in the TLS Redis')
    # a node with the wrong password is refused by Redis: it says so and falls back
    m2, (c,) = start_nodes(ctx, redis, names=('c',), password='wrong-password')
    c.wait_log(r'redis master: .*connection set-up refused: WRONGPASS', 5, 'AUTH refused')
    st = cluster_status(c)
    eq((st['connected'], st['synced']), (False, False), 'C with a wrong password')
    check('s3cret' not in c.log() and 'wrong-password' not in c.log(),
          'a Redis password in the log')
    # without the password variable the node does not start and says why
    p = subprocess.run([os.environ.get('BUSBAR_BIN') or 'build/master/busbar', '-t', '-c',
                        c.config_path, '-p', c.providers_path], capture_output=True, text=True,
                       timeout=scaled(15), env={k2: v for k2, v in os.environ.items()
                                                if k2 != REDIS_PASSWORD_ENV})
    check(p.returncode != 0 and 'cluster.password_env: the environment variable %s is not set'
          % REDIS_PASSWORD_ENV in p.stderr, 'busbar -t without the password: %r' % p.stderr)


if __name__ == '__main__':
    run([test_keys_budget_rpm_revoke, test_breaker_shared, test_redis_down_local,
         test_deny_and_timeout, test_lease_dead_node, test_tls_auth])
