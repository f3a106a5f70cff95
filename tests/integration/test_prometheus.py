#!/usr/bin/env python3
"""Prometheus, for real: `promtool check rules` on etc/prometheus-alerts.yaml; every metric the
shipped alerts and Grafana dashboard name exists in a live scrape; a real Prometheus server
scrapes busbar (with the alert rules loaded) and its query API returns the failover and breaker
trip counters after traffic that tripped a breaker and failed over."""

import json
import os
import re
import shutil
import subprocess
import urllib.parse

from harness import (SOURCE_ROOT, check, eq, free_port, lane, pool, provider, request, run, scaled,
                     spawn, tail, wait_for)

ALERTS = os.path.join(SOURCE_ROOT, 'etc', 'prometheus-alerts.yaml')
DASHBOARD = os.path.join(SOURCE_ROOT, 'etc', 'grafana-dashboard.json')


def tool(name):
    p = shutil.which(name)
    check(p, '%s is missing (Debian package prometheus; tests/run.sh installs it)' % name)
    return p


def start_busbar(ctx):
    m = ctx.mock()
    conf = {
        'providers': {'mock': provider(m)},
        'models': {'bad': lane('mock', 'm;status=503'), 'good': lane('mock', 'm')},
        'pools': {'p': pool(('bad', 5), ('good', 1),
                            breaker={'trip': {'mode': 'consecutive', 'consecutive_n': 2},
                                     'base_cooldown_secs': 60, 'max_cooldown_secs': 120})},
    }
    return m, ctx.busbar(conf, workers=2)


def metric_names(text):
    return set(re.findall(r'\b(busbar_[a-z_]+?)(?:_bucket|_sum|_count)?\b', text))


def test_rules_and_names(ctx):
    p = subprocess.run([tool('promtool'), 'check', 'rules', ALERTS], capture_output=True,
                       text=True, timeout=scaled(30))
    eq(p.returncode, 0, 'promtool check rules (%s)' % (p.stdout + p.stderr))
    check('SUCCESS' in p.stdout, 'promtool output %r' % p.stdout)
    m, bb = start_busbar(ctx)
    for _ in range(4):
        eq(bb.chat('p').status, 200, 'chat')
    r = bb.request('GET', '/metrics')
    eq(r.status, 200, '/metrics')
    live = set(re.findall(r'^# TYPE (busbar_\w+) ', r.text, re.M))
    with open(ALERTS) as f:
        used = metric_names(f.read())
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = [t['expr'] for p in dash['panels'] for t in p['targets']]
    used |= metric_names(' '.join(exprs))
    missing = sorted(n for n in used if n not in live)
    eq(missing, [], 'metrics named by the alerts and the dashboard but not exported')


def test_prometheus_scrapes_busbar(ctx):
    m, bb = start_busbar(ctx)
    for _ in range(6):  # the first requests try bad (weight 5) and fail over; then it trips
        eq(bb.chat('p').status, 200, 'chat')
    port = free_port()
    cfg = ctx.path('prometheus.yml')
    with open(cfg, 'w') as f:
        f.write('global: { scrape_interval: 1s, evaluation_interval: 1s }\n'
                'rule_files: [ "%s" ]\n'
                'scrape_configs:\n'
                '  - job_name: busbar\n'
                '    static_configs: [ { targets: [ "127.0.0.1:%d" ] } ]\n' % (ALERTS, bb.port))
    log = ctx.path('prometheus.log')
    errf = open(log, 'wb')
    ctx.on_close(errf.close)
    prom = spawn([tool('prometheus'), '--config.file=' + cfg,
                  '--storage.tsdb.path=' + ctx.path('tsdb'),
                  '--web.listen-address=127.0.0.1:%d' % port], stdout=errf, stderr=errf)
    ctx.on_close(lambda: (prom.terminate(), prom.wait(timeout=10)))

    def query(q):
        r = request(port, 'GET', '/api/v1/query?query=' + urllib.parse.quote(q), timeout=5)
        if r.status != 200:
            return None
        res = r.json()['data']['result']
        return float(res[0]['value'][1]) if res else None

    def ready():
        if prom.poll() is not None:
            raise AssertionError('prometheus exited: %s' % tail(log))
        return query('up{job="busbar"}') == 1
    wait_for(ready, 30, 'Prometheus to scrape busbar (log: %s)' % log, interval=0.2)
    fo = wait_for(lambda: query('sum(busbar_failovers_total{pool="p"})'), 15,
                  'busbar_failovers_total through the Prometheus query API')
    check(fo >= 2, 'failovers seen by Prometheus: %r' % fo)
    trips = wait_for(lambda: query('busbar_breaker_trips_total{pool="p",lane="bad"}'), 15,
                     'busbar_breaker_trips_total through Prometheus')
    eq(trips, 1, 'breaker trips of pool p lane bad')
    eq(wait_for(lambda: query('busbar_lane_state{pool="p",lane="bad"}'), 15, 'lane state'), 2,
       'lane state open as Prometheus sees it')
    ok = query('sum(busbar_requests_total{pool="p",outcome="ok"})')
    eq(ok, 6, 'requests_total through Prometheus')
    r = request(port, 'GET', '/api/v1/rules', timeout=5)
    names = [x['name'] for g in r.json()['data']['groups'] for x in g['rules']]
    check('BusbarLaneOpen' in names, 'alert rules loaded by Prometheus: %r' % names)


if __name__ == '__main__':
    run([test_rules_and_names, test_prometheus_scrapes_busbar])
