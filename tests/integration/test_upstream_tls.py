#!/usr/bin/env python3
"""Upstream HTTPS: busbar verifies the provider's certificate against the trust store (the
system store, or SSL_CERT_FILE, which OpenSSL's default paths honour), checks the name or IP
in it, and sends SNI. The "provider" is a second busbar terminating TLS in front of the mock,
with a certificate from a CA made at test time."""

from harness import check, eq, lane, make_certs, mock_answer, pool, run


def front_of(ctx, certs, base_url, env, server_cert='server'):
    """A TLS busbar (the provider) in front of the mock, and a busbar whose provider is it."""
    m = ctx.mock()
    provider_bb = ctx.busbar({
        'providers': {'mock': {'protocol': 'openai', 'base_url': m.base_url,
                               'api_key_env': 'BB_TEST_KEY'}},
        'models': {'m': lane('mock', 'm-upstream')},
        'tls': {'cert_file': certs[server_cert], 'key_file': certs[server_cert + '_key']},
    }, name='provider', client_tls=_trusting(certs, verify=server_cert == 'server'))
    url = base_url % provider_bb.port
    bb = ctx.busbar({
        'providers': {'tlsprov': {'protocol': 'openai', 'base_url': url,
                                  'api_key_env': 'BB_TEST_KEY'}},
        'models': {'remote': lane('tlsprov', 'm')},
        'pools': {'p': pool(('remote', 1))},
    }, env=env)
    return m, provider_bb, bb


def _trusting(certs, verify=True):
    import ssl
    c = ssl.create_default_context(cafile=certs['ca'])
    if not verify:  # the harness's readiness probe must reach a deliberately bad provider
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
    return c


def test_https_upstream_verified_by_ip(ctx):
    certs = make_certs(ctx.path('pki'))
    m, _, bb = front_of(ctx, certs, 'https://127.0.0.1:%d', {'SSL_CERT_FILE': certs['ca']})
    r = bb.chat('p')
    eq(r.status, 200, 'status through an https upstream')
    eq(r.json()['choices'][0]['message']['content'], mock_answer(), 'answer')
    eq(r.headers.get('x-busbar-lane'), 'remote', 'lane')
    # keep-alive to the TLS upstream: a second request reuses the pooled connection
    r = bb.chat('p', stream=True)
    eq(r.status, 200, 'stream status through an https upstream')
    check('[DONE]' in r.text, 'stream completes through TLS')


def test_https_upstream_by_name_with_sni(ctx):
    certs = make_certs(ctx.path('pki'))
    m, _, bb = front_of(ctx, certs, 'https://localhost:%d', {'SSL_CERT_FILE': certs['ca']})
    r = bb.chat('p')
    eq(r.status, 200, 'status through https://localhost (name checked against the SAN)')
    eq(r.json()['choices'][0]['message']['content'], mock_answer(), 'answer')


def test_untrusted_certificate_refused(ctx):
    certs = make_certs(ctx.path('pki'))
    # no SSL_CERT_FILE: the system store does not trust the test CA
    m, _, bb = front_of(ctx, certs, 'https://127.0.0.1:%d', {'SSL_CERT_FILE': certs['otherca']})
    r = bb.chat('p')
    eq(r.status, 502, 'an untrusted upstream certificate is a connect failure')
    check('remote' in r.json()['error']['message'], 'the error names the lane')
    bb.wait_log(r'TLS error: .*certificate verify failed', what='the TLS failure in the log')
    eq(len([a for a in m.attempts() if a.get('path') == '/v1/chat/completions']), 0,
       'nothing reached the mock')


def test_certificate_for_another_name_refused(ctx):
    certs = make_certs(ctx.path('pki'))
    # the provider presents a certificate signed by the trusted CA but without 127.0.0.1
    m, _, bb = front_of(ctx, certs, 'https://127.0.0.1:%d', {'SSL_CERT_FILE': certs['ca']},
                        server_cert='client')
    r = bb.chat('p')
    eq(r.status, 502, 'a certificate that does not name the host is refused')
    bb.wait_log(r'TLS error: .*certificate verify failed', what='the TLS failure in the log')


if __name__ == '__main__':
    run([test_https_upstream_verified_by_ip, test_https_upstream_by_name_with_sni,
         test_untrusted_certificate_refused, test_certificate_for_another_name_refused])
