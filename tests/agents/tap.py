#!/usr/bin/env python3
"""tap: a small recording HTTP/1.1 proxy between a coding-agent CLI and busbar (or bb-mock).

    tap.py --listen PORT --upstream http://127.0.0.1:UPORT --out FILE.jsonl

Every request is forwarded as it came (method, path, headers less hop-by-hop ones, body) and
the answer streamed back as it arrives (chunked when the upstream streams), so an agent's
streams stay streams. Each exchange is appended to FILE.jsonl as one JSON object:
{"seq", "method", "path", "req_headers", "req_body", "status", "resp_headers", "resp_body",
"resp_body_b64"}: bodies as text when they are UTF-8 (else base64 in the *_b64 member; AWS
event streams are binary). Prints "ready PORT" once listening. Standard library only.
"""
import argparse
import base64
import http.client
import http.server
import json
import socketserver
import sys
import threading
import urllib.parse

HOP = {'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer',
       'upgrade', 'host', 'content-length', 'accept-encoding'}


def body_fields(prefix, data):
    try:
        return {prefix: data.decode('utf-8')}
    except UnicodeDecodeError:
        return {prefix + '_b64': base64.b64encode(data).decode('ascii')}


class Tap(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    seq = 0
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def _handle(self):
        n = int(self.headers.get('content-length') or 0)
        body = self.rfile.read(n) if n else b''
        if self.headers.get('transfer-encoding', '').lower() == 'chunked':
            body = self._read_chunked()
        up = urllib.parse.urlsplit(self.server.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=120)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        hdrs['Host'] = self.headers.get('host', up.netloc)
        hdrs['Content-Length'] = str(len(body))
        hdrs['Accept-Encoding'] = 'identity'
        rec = {'method': self.command, 'path': self.path,
               'req_headers': dict(self.headers.items())}
        rec.update(body_fields('req_body', body))
        try:
            conn.request(self.command, up.path.rstrip('/') + self.path, body=body, headers=hdrs)
            resp = conn.getresponse()
        except OSError as e:
            self.send_error(502, 'tap: upstream: %s' % e)
            return
        self.send_response(resp.status, resp.reason)
        out = b''
        chunked = resp.getheader('content-length') is None
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        if chunked:
            self.send_header('Transfer-Encoding', 'chunked')
        else:
            self.send_header('Content-Length', resp.getheader('content-length'))
        self.end_headers()
        while True:
            piece = resp.read1(65536) if chunked else resp.read()
            if not piece:
                break
            out += piece
            if chunked:
                self.wfile.write(b'%x\r\n%s\r\n' % (len(piece), piece))
            else:
                self.wfile.write(piece)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b'0\r\n\r\n')
        conn.close()
        rec.update({'status': resp.status, 'resp_headers': dict(resp.getheaders())})
        rec.update(body_fields('resp_body', out))
        with Tap.lock:
            Tap.seq += 1
            rec = dict([('seq', Tap.seq)] + list(rec.items()))
            with open(self.server.out, 'a', encoding='utf-8') as f:
                f.write(json.dumps(rec) + '\n')

    def _read_chunked(self):
        data = b''
        while True:
            size = int(self.rfile.readline().split(b';')[0], 16)
            if not size:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--listen', type=int, default=0)
    ap.add_argument('--upstream', required=True)
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    srv = Server(('127.0.0.1', a.listen), Tap)
    srv.upstream, srv.out = a.upstream, a.out
    print('ready %d' % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
