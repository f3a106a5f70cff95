#!/usr/bin/env python3
"""A busbar routing policy in Python's standard library (docs/routing.md).

As a webhook (pools.NAME.policy.url, route: webhook):
    python3 etc/policies/webhook.py --listen 127.0.0.1:9000
    policy: { url: "http://127.0.0.1:9000/route", timeout_ms: 20 }
Over a Unix socket (pools.NAME.policy.socket, route: webhook), one JSON line per call:
    python3 etc/policies/webhook.py --socket /run/busbar-policy.sock
    policy: { socket: /run/busbar-policy.sock, timeout_ms: 20 }

busbar sends {request, candidates, context} once per request, before failover walks the
order; this policy answers with one of the three shapes busbar accepts:
  {"reject": {"status": 451, "message": ...}}  requests from a region given with --block-region
                                               (header x-busbar-region), in the client's dialect
  {"abstain": true}                            no latency measured yet: the pool's weights decide
  {"order": [names]}                           usable members (breaker not open, a free slot)
                                               fastest first (latency EWMA), ties by price;
                                               members left out would follow, never dropped
Whatever this server does — answer slowly, answer garbage, crash — busbar goes on within
timeout_ms per policy.on_error, and skips a policy that keeps failing for a cooldown.
"""

import argparse
import json
import os
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOCKED_REGIONS = set()


def decide(call):
    """The routing decision: a dict of one of the three answer shapes."""
    request, candidates = call['request'], call['candidates']
    region = request['headers'].get('x-busbar-region', '')
    if region in BLOCKED_REGIONS:
        return {'reject': {'status': 451,
                           'message': 'requests from region %s are not served' % region}}
    if all(c['latency_ms'] is None for c in candidates):
        return {'abstain': True}

    def key(c):
        usable = c['breaker'] != 'open' and c['free_slots'] != 0
        latency = c['latency_ms'] if c['latency_ms'] is not None else 0.0  # unknown: try it
        price = (c['price']['input'] + c['price']['output']) if c['price'] else float('inf')
        return (not usable, latency, price)
    return {'order': [c['name'] for c in sorted(candidates, key=key)]}


class Webhook(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'  # keep-alive: busbar reuses its connection per worker

    def do_POST(self):
        try:
            call = json.loads(self.rfile.read(int(self.headers.get('content-length', '0'))))
            body = json.dumps(decide(call)).encode()
            status = 200
        except (ValueError, KeyError, TypeError) as e:
            body, status = json.dumps({'error': str(e)}).encode(), 400  # busbar: on_error
        self.send_response(status)
        self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Line(socketserver.StreamRequestHandler):
    """One connection per busbar worker: a JSON line in, a JSON line out, in order."""

    def handle(self):
        for line in self.rfile:
            try:
                answer = decide(json.loads(line))
            except (ValueError, KeyError, TypeError):
                answer = {'abstain': True}
            self.wfile.write(json.dumps(answer).encode() + b'\n')
            self.wfile.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument('--listen', help='HOST:PORT for the HTTP webhook')
    g.add_argument('--socket', help='Unix socket path for the line protocol')
    ap.add_argument('--block-region', action='append', default=[],
                    help='answer 451 to requests whose x-busbar-region is this (repeatable)')
    a = ap.parse_args()
    BLOCKED_REGIONS.update(a.block_region)
    if a.listen:
        host, port = a.listen.rsplit(':', 1)
        srv = ThreadingHTTPServer((host, int(port)), Webhook)
        where = 'http://%s:%d/' % srv.server_address[:2]
    else:
        if os.path.exists(a.socket):
            os.unlink(a.socket)
        srv = socketserver.ThreadingUnixStreamServer(a.socket, Line)
        where = a.socket
    srv.daemon_threads = True
    print('ready %s' % where, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
