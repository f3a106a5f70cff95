#!/usr/bin/env python3
"""TLS termination (TLS 1.2+, ALPN http/1.1) and mTLS (client_ca_file): a client without a
certificate signed by that CA fails at the handshake, before any HTTP. Certificates are made
at test time with the openssl CLI."""

import json
import socket
import ssl
import subprocess

from harness import (RawConn, check, delta_text, eq, fail, lane, make_certs, mock_answer, pool,
                     provider, run, scaled)


def client_ctx(certs, cert=None, max_version=None, alpn=None):
    c = ssl.create_default_context(cafile=certs['ca'])
    if cert:
        c.load_cert_chain(certs[cert], certs[cert + '_key'])
    if max_version:
        c.maximum_version = max_version
    if alpn:
        c.set_alpn_protocols(alpn)
    return c


def start(ctx, mtls):
    certs = make_certs(ctx.path('pki'))
    m = ctx.mock()
    tls = {'cert_file': certs['server'], 'key_file': certs['server_key']}
    if mtls:
        tls['client_ca_file'] = certs['ca']
    conf = {
        'providers': {'mock': provider(m)},
        'models': {'good': lane('mock', 'm')},
        'pools': {'p': pool(('good', 1))},
        'tls': tls,
    }
    bb = ctx.busbar(conf, workers=1,
                    client_tls=client_ctx(certs, cert='client' if mtls else None))
    return certs, m, bb


def curl(bb, certs, cert=None):
    argv = ['curl', '-sS', '--max-time', str(int(scaled(10))), '--cacert', certs['ca'],
            '-o', '-', '-w', '\n%{http_code}', '-H', 'content-type: application/json',
            '-d', json.dumps({'model': 'p', 'messages': [{'role': 'user', 'content': 'hi'}]}),
            'https://127.0.0.1:%d/v1/chat/completions' % bb.port]
    if cert:
        argv[1:1] = ['--cert', certs[cert], '--key', certs[cert + '_key']]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=scaled(20),
                       stdin=subprocess.DEVNULL)
    return p


def s_client(bb, certs, *args):
    p = subprocess.run(['openssl', 's_client', '-connect', '127.0.0.1:%d' % bb.port,
                        '-CAfile', certs['ca'], '-verify_return_error'] + list(args),
                       capture_output=True, text=True, timeout=scaled(20),
                       stdin=subprocess.DEVNULL)
    return p


def refused_before_http(bb, cctx, what):
    """The handshake, or at the latest the first read (TLS 1.3 sends the server's verdict on
    the client certificate after the client's Finished), fails; no HTTP byte comes back."""
    raw = socket.create_connection(('127.0.0.1', bb.port), timeout=scaled(5))
    try:
        s = cctx.wrap_socket(raw, server_hostname='127.0.0.1')
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return 'handshake: %s' % e
    try:
        s.sendall(b'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n')
        data = s.recv(4096)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return 'first read: %s' % e
    finally:
        s.close()
    if data:
        fail('%s: got HTTP bytes back: %r' % (what, data[:120]))
    return 'closed without data'


def test_tls_accept(ctx):
    certs, m, bb = start(ctx, mtls=False)
    r = bb.request('GET', '/healthz')
    eq(r.status, 200, 'GET /healthz over TLS')
    r = bb.chat('p')
    eq(r.status, 200, 'chat over TLS')
    eq(r.json()['choices'][0]['message']['content'], mock_answer(), 'answer over TLS')
    c, s = bb.stream('p')
    evs = list(s.events())
    check(evs and evs[-1].data == '[DONE]', 'TLS stream did not end with [DONE]')
    eq(delta_text(evs), mock_answer(), 'streamed answer over TLS')
    # ALPN: offered http/1.1 → http/1.1 (h2 when offered: test_http2.py).
    rc = RawConn(bb.port, tls=client_ctx(certs, alpn=['http/1.1']))
    ctx.on_close(rc.close)
    eq(rc.sock.selected_alpn_protocol(), 'http/1.1', 'ALPN protocol')
    check(rc.sock.version() in ('TLSv1.2', 'TLSv1.3'), 'TLS version %s' % rc.sock.version())
    # TLS 1.2 is enough; TLS 1.1 is refused by the server (client allowed to go low).
    p = s_client(bb, certs, '-tls1_2')
    check(p.returncode == 0 and 'TLSv1.2' in p.stdout,
          'openssl s_client -tls1_2 failed: %s' % (p.stdout[-400:] + p.stderr[-400:]))
    p = s_client(bb, certs, '-tls1_1', '-cipher', 'DEFAULT:@SECLEVEL=0')
    check(p.returncode != 0, 'TLS 1.1 handshake accepted: %s' % p.stdout[-400:])
    # curl agrees.
    p = curl(bb, certs)
    check(p.returncode == 0 and p.stdout.endswith('\n200'),
          'curl over TLS: rc %d %r %r' % (p.returncode, p.stdout[-200:], p.stderr[-300:]))
    # Plain HTTP on the TLS port: no answer in clear, no crash.
    plain = RawConn(bb.port, timeout=5)
    ctx.on_close(plain.close)
    plain.send(b'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n')
    plain.settimeout(5)
    try:
        got = plain.read_all()
    except socket.timeout:
        got = b'(timeout)'
    check(not got.startswith(b'HTTP/1.1 200'), 'plain HTTP served on the TLS port: %r' % got[:80])
    eq(bb.request('GET', '/healthz').status, 200, 'healthz after a plain-HTTP client')


def test_mtls_good_cert_accepted(ctx):
    certs, m, bb = start(ctx, mtls=True)
    r = bb.chat('p')
    eq(r.status, 200, 'chat with a client certificate')
    p = curl(bb, certs, cert='client')
    check(p.returncode == 0 and p.stdout.endswith('\n200'),
          'curl --cert: rc %d %r %r' % (p.returncode, p.stdout[-200:], p.stderr[-300:]))
    eq(json.loads(p.stdout.rsplit('\n', 1)[0])['choices'][0]['message']['content'],
       mock_answer(), 'answer via curl --cert')
    p = s_client(bb, certs, '-cert', certs['client'], '-key', certs['client_key'], '-tls1_2')
    eq(p.returncode, 0, 'openssl s_client with the client cert (TLS 1.2) exit code (%s)'
       % p.stderr[-300:])


def test_mtls_refuses_without_cert(ctx):
    certs, m, bb = start(ctx, mtls=True)
    # TLS 1.2: the handshake itself fails.
    p = s_client(bb, certs, '-tls1_2')
    check(p.returncode != 0, 'openssl s_client without a client cert completed a TLS 1.2 '
          'handshake: %s' % p.stdout[-500:])
    try:
        cctx = client_ctx(certs, max_version=ssl.TLSVersion.TLSv1_2)
        s = cctx.wrap_socket(socket.create_connection(('127.0.0.1', bb.port),
                                                      timeout=scaled(5)),
                             server_hostname='127.0.0.1')
        s.close()
        fail('TLS 1.2 handshake without a client certificate succeeded')
    except (ssl.SSLError, ConnectionResetError) as e:
        ctx.note('TLS 1.2 without cert: %s' % e)
    # TLS 1.3 (default).
    ctx.note('TLS 1.3 without cert: ' + refused_before_http(bb, client_ctx(certs),
                                                             'no client cert'))
    p = curl(bb, certs)
    check(p.returncode != 0, 'curl without a client certificate got through: %r' % p.stdout)
    eq(bb.chat('p').status, 200, 'a good client still works afterwards')


def test_mtls_refuses_foreign_ca(ctx):
    certs, m, bb = start(ctx, mtls=True)
    p = s_client(bb, certs, '-cert', certs['foreign'], '-key', certs['foreign_key'], '-tls1_2')
    check(p.returncode != 0, 'openssl s_client with a foreign-CA cert completed a TLS 1.2 '
          'handshake: %s' % p.stdout[-500:])
    ctx.note('TLS 1.3 foreign cert: ' + refused_before_http(
        bb, client_ctx(certs, cert='foreign'), 'foreign client cert'))
    p = curl(bb, certs, cert='foreign')
    check(p.returncode != 0, 'curl with a foreign-CA certificate got through: %r' % p.stdout)
    eq(len(m.attempts()), 0, 'no request reached the mock from refused clients')
    eq(bb.chat('p').status, 200, 'a good client still works afterwards')


if __name__ == '__main__':
    run([test_tls_accept, test_mtls_good_cert_accepted, test_mtls_refuses_without_cert,
         test_mtls_refuses_foreign_ca])
