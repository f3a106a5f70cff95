#!/usr/bin/env python3
"""scrub: a tap.py recording (JSONL) → a fixture without anything machine-specific.

    scrub.py IN.jsonl OUT.json

What a CLI sent and got stays byte for byte except: the run's temporary directories (the
agent's home and working directory → /home/agent, /home/agent/work), this machine's host name,
kernel version and the date (→ 2025-01-01), every UUID and 64-hex id (session, device,
installation, turn ids → numbered placeholders, the same value always the same placeholder),
the port of the local endpoint, and credentials (authorization values, x-api-key, AWS
signatures and dates). Request and answer headers keep only the protocol-relevant ones.
Bodies that are JSON are kept as JSON values (strings otherwise; event streams as base64).
The output is one JSON document: {"agent", "exchanges": [{method, path, req_headers,
req_body, status, resp_headers, resp_body | resp_body_b64}]}.
"""
import datetime
import json
import os
import platform
import re
import socket
import sys

KEEP_REQ = ('content-type', 'accept', 'anthropic-version', 'anthropic-beta', 'user-agent',
            'x-app', 'authorization', 'x-api-key', 'x-goog-api-key', 'x-codex-beta-features')
KEEP_RESP = ('content-type', 'x-busbar-dropped-fields', 'x-amzn-errortype')


class Scrubber:
    def __init__(self):
        self.ids = {}
        today = datetime.date.today()
        self.subs = [
            (re.compile(r'/tmp/bbit-agents-[A-Za-z0-9_]+/home-[^/"\\\s]+/work'), '/home/agent/work'),
            (re.compile(r'/tmp/bbit-agents-[A-Za-z0-9_]+/home-[^/"\\\s]+'), '/home/agent'),
            (re.compile(r'/tmp/bbit-agents-[A-Za-z0-9_]+'), '/tmp/agents'),
            # the same directory as Claude Code names its project: '/' → '-'
            (re.compile(r'-tmp-bbit-agents-[A-Za-z0-9_]+-home-[A-Za-z0-9._-]*?-work'),
             '-home-agent-work'),
            (re.compile(re.escape(platform.release())), '6.1.0'),
            (re.compile(r'\b%s\b' % re.escape(socket.gethostname())), 'agent-host'),
            (re.compile(r'127\.0\.0\.1:\d+'), '127.0.0.1:8080'),
        ]
        for d in (today, today - datetime.timedelta(days=1)):
            self.subs.append((re.compile(d.isoformat()), '2025-01-01'))
            self.subs.append((re.compile(d.strftime('%Y%m%d')), '20250101'))

    def _id(self, m, kind):
        v = m.group(0)
        if v not in self.ids:
            n = len(self.ids) + 1
            self.ids[v] = ('00000000-0000-4000-8000-%012d' % n if kind == 'uuid'
                           else '%064x' % n)
        return self.ids[v]

    def text(self, s):
        for rx, rep in self.subs:
            s = rx.sub(rep, s)
        s = re.sub(r'(?<![0-9a-f])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
                   r'(?![0-9a-f])', lambda m: self._id(m, 'uuid'), s)
        s = re.sub(r'(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])', lambda m: self._id(m, 'hex'), s)
        return s

    def value(self, v):
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict):
            return {self.text(k): self.value(x) for k, x in v.items()}
        return v

    def headers(self, h, keep):
        out = {}
        for k, v in h.items():
            lk = k.lower()
            if lk not in keep:
                continue
            if lk in ('authorization', 'x-api-key', 'x-goog-api-key'):
                v = v.split(' ')[0] + ' <redacted>' if ' ' in v else '<redacted>'
            out[lk] = self.text(v)
        return out

    def body(self, rec, key):
        if key + '_b64' in rec:
            return key + '_b64', rec[key + '_b64']
        s = rec.get(key, '')
        try:
            return key, self.value(json.loads(s))
        except ValueError:
            return key, self.text(s)


def scrub(records, agent):
    sc = Scrubber()
    ex = []
    for r in records:
        e = {'method': r['method'], 'path': sc.text(r['path']),
             'req_headers': sc.headers(r['req_headers'], KEEP_REQ)}
        k, v = sc.body(r, 'req_body')
        e[k] = v
        e['status'] = r['status']
        e['resp_headers'] = sc.headers(r.get('resp_headers') or {}, KEEP_RESP)
        k, v = sc.body(r, 'resp_body')
        e[k] = v
        ex.append(e)
    return {'agent': agent, 'exchanges': ex}


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        records = [json.loads(ln) for ln in f if ln.strip()]
    doc = scrub(records, os.path.basename(src).rsplit('.', 1)[0])
    with open(dst, 'w') as f:
        json.dump(doc, f, indent=1, sort_keys=False, ensure_ascii=False)
        f.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
