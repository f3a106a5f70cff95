#!/usr/bin/env python3
"""governance on the request path (SPEC §6): virtual keys on every auth carrier (and the
token / passthrough / none auth modes), admission in order with its errors in each dialect,
budgets never overshot under a concurrent burst on two workers, RPM / TPM / max_parallel,
reservations (the worst case over every lane a request may reach, each dialect's output cap),
the ledger equal to usage × price across the six protocols (streams, cache tiers, failover,
failed requests, clients that leave), revocation under traffic on two workers, a graceful
restart, a worker SIGKILLed mid-stream, the store locked (on_store_error deny / allow), SigV4
with a key's AWS pair (stdlib signer; and the AWS SDK via tests/sdk/sigv4_key.mjs, which
needs node and tests/sdk/node_modules: their absence is a failure).

Every expected number is derived: token counts from the mock's documented usage rules
(tests/mock/README.md "Token accounting": W prompt words, A answer words, C cached=, K
cache_write=), reservations from the worst-case formula (body bytes + 64 input tokens at the
dearest input-side tier + the output cap at the output price), costs from the lanes' `price:`
(USD per 1M tokens → micro-USD per 1M, rounded to nearest; a cost is rounded up once to the
micro-dollar)."""

import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.parse

from harness import (AWS_KEY, AWS_KEY_ENV, PROVIDER_PROTOCOL, SOURCE_ROOT, TEST_KEY, RawConn,
                     chat_body, check, check_error_shape, dialect_answer, dialect_request, eq,
                     eventstream, fail, invoke_chunks, is_content_event, lane, mock_answer, pool, provider,
                     providers_all, request, run, scaled, skip, sse_events, wait_for)

DENIED = 'invalid or missing API key'

# busbar protocol name of each egress, by the short name used here
PROTOS = PROVIDER_PROTOCOL

PROMPT = 'please count these five words'
W_PROMPT = len(PROMPT.split())
W_HELLO = len(chat_body('x')['messages'][0]['content'].split())   # harness.chat_body's prompt
MOCK_WORDS = 8    # the mock's default answer length (words)

# USD per 1M tokens; odd values so that costs have fractions of a micro-dollar (rounding up)
PRICE_A = {'input': 2.5, 'output': 10, 'cache_read': 1.25, 'cache_write': 3.75}
PRICE_B = {'input': 1, 'output': 2, 'cache_read': 0.5, 'cache_write': 1.25}


# --------------------------------------------------------------------------------------------
# money

def pm(usd):
    """USD per 1M tokens → integer micro-USD per 1M tokens (config price, rounded to nearest)."""
    return int(round(usd * 1e6))


def div_up(a, b):
    return -(-a // b)


def cost_micros(price, t):
    """Cost of tokens t ({input, output, cache_read, cache_write}) at price, rounded up once."""
    s = sum(t.get(k, 0) * pm(price[k]) for k in ('input', 'output', 'cache_read', 'cache_write'))
    return div_up(s, 10**6)


def worst_micros(price, body_bytes, max_out):
    """The reservation: (body bytes + 64) input tokens at the dearest input-side tier plus
    max_out at the output price, rounded up."""
    dear_in = max(pm(price[k]) for k in ('input', 'cache_read', 'cache_write'))
    return div_up((body_bytes + 64) * dear_in + max_out * pm(price['output']), 10**6)


def usd(micros):
    return '%d.%06d' % divmod(micros, 10**6)


def body_len(body):
    return len(json.dumps(body).encode())   # what harness.request() sends


# --------------------------------------------------------------------------------------------
# setup

def providers(m):
    return providers_all(m, AWS_KEY_ENV)


def start(ctx, models=None, pools=None, workers=1, auth=None, governance=None, **kw):
    """One mock (all six protocols) and one busbar in keys mode. Default models: alpha (OpenAI
    egress, PRICE_A) in pool p, beta (OpenAI egress, PRICE_B) in pool q."""
    m = ctx.mock()
    if models is None:
        models = {'alpha': lane('p_openai', 'gpt-4o', price=PRICE_A),
                  'beta': lane('p_openai', 'm-beta', price=PRICE_B)}
    if pools is None:
        pools = {'p': pool(('alpha', 1)), 'q': pool(('beta', 1))}
    conf = {'auth': auth or {'mode': 'keys'}, 'providers': providers(m), 'models': models,
            'pools': pools}
    if governance:
        conf['governance'] = governance
    conf.update(kw)
    bb = ctx.busbar(conf, workers=workers, env={AWS_KEY_ENV: AWS_KEY})
    return m, bb


def ctl_json(bb, *args, timeout=15):
    p = bb.ctl('--json', *args, timeout=timeout)
    eq(p.returncode, 0, 'busbarctl --json %s exit code (stdout %r, stderr %r)'
       % (' '.join(args), p.stdout[-300:], p.stderr[-300:]))
    j = json.loads(p.stdout)
    eq(j.get('ok'), True, 'ok in the reply to %s' % ' '.join(args))
    return j


def create_key(bb, *args, name='t'):
    return ctl_json(bb, 'keys', 'create', '--name', name, *args)


def live(bb, kid):
    return ctl_json(bb, 'keys', 'show', kid)['live']


def bearer(k):
    return {'Authorization': 'Bearer ' + (k['secret'] if isinstance(k, dict) else k)}


def db_path(bb):
    return os.path.join(bb.state_dir, 'busbar.db')


def ledger(bb, drain=True):
    """Every ledger row (dicts), read with python's sqlite3, read-only. drain: `busbarctl
    spend` first, which drains the usage ring into the store."""
    if drain:
        ctl_json(bb, 'spend')
    con = sqlite3.connect('file:%s?mode=ro' % db_path(bb), uri=True, timeout=5)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute('SELECT * FROM ledger ORDER BY id')]
    finally:
        con.close()


def status(bb):
    return ctl_json(bb, 'status')


def worker_of(rid):
    """Request ids are bb-<random per worker start>-<n>: the worker part."""
    return rid.rsplit('-', 1)[0]


def burst(n, fn, timeout=60):
    """fn(i) in n threads released together by a barrier; returns the results in order (an
    exception raised by fn is its result)."""
    barrier = threading.Barrier(n)
    out = [None] * n

    def one(i):
        try:
            barrier.wait(timeout=scaled(30))
            out[i] = fn(i)
        except Exception as e:  # reported by the caller
            out[i] = e
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + scaled(timeout)
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    check(not any(t.is_alive() for t in threads), 'burst threads still running after %ds'
          % timeout)
    return out


# --------------------------------------------------------------------------------------------
# requests in each ingress dialect

def build(ingress, model, stream=False, max_out=None, prompt=PROMPT, **extra):
    """(path, body) of one request in the ingress dialect."""
    return dialect_request(ingress, model, stream, max_out, prompt, **extra)


def send(bb, ingress, model, headers=None, stream=False, max_out=None, timeout=10,
         gemini_array=False, **extra):
    """One request; gemini_array: a Gemini stream without ?alt=sse (one JSON array)."""
    path, b = build(ingress, model, stream, max_out, **extra)
    if gemini_array:
        path = path.replace('?alt=sse', '')
    return bb.request('POST', path, b, headers=headers, timeout=timeout)


def norm_usage(ingress, u):
    """A dialect's usage object → (every prompt token incl. cache tiers, cache reads, output):
    the three numbers every protocol conveys."""
    g = lambda o, k: (o or {}).get(k) or 0  # noqa: E731
    if ingress == 'openai':
        return (u['prompt_tokens'], g(u.get('prompt_tokens_details'), 'cached_tokens'),
                u['completion_tokens'])
    if ingress == 'responses':
        return (u['input_tokens'], g(u.get('input_tokens_details'), 'cached_tokens'),
                u['output_tokens'])
    if ingress in ('anthropic', 'bedrock_invoke'):
        return (g(u, 'input_tokens') + g(u, 'cache_read_input_tokens') +
                g(u, 'cache_creation_input_tokens'), g(u, 'cache_read_input_tokens'),
                g(u, 'output_tokens'))
    if ingress == 'gemini':
        return (g(u, 'promptTokenCount'), g(u, 'cachedContentTokenCount'),
                g(u, 'candidatesTokenCount') + g(u, 'thoughtsTokenCount'))
    if ingress == 'bedrock':
        return (g(u, 'inputTokens') + g(u, 'cacheReadInputTokens') + g(u, 'cacheWriteInputTokens'),
                g(u, 'cacheReadInputTokens'), g(u, 'outputTokens'))
    if ingress == 'cohere':
        return (g(u.get('tokens'), 'input_tokens'), g(u, 'cached_tokens'),
                g(u.get('tokens'), 'output_tokens'))
    fail('unknown ingress %r' % ingress)


def client_usage(ingress, stream, r):
    """The usage the client saw, normalised (norm_usage); None when the answer carried none."""
    if not stream:
        j = r.json()
        u = j.get('usageMetadata') if ingress == 'gemini' else j.get('usage')
        return norm_usage(ingress, u) if u else None
    if ingress == 'bedrock':
        us = [p['usage'] for ev, p in eventstream(r.body) if ev == 'metadata' and 'usage' in p]
        return norm_usage(ingress, us[-1]) if us else None
    if ingress == 'bedrock_invoke':
        merged = {}
        for ev, j in invoke_chunks(r.body):
            u = (j.get('message') or {}).get('usage') if j.get('type') == 'message_start' else \
                j.get('usage') if j.get('type') == 'message_delta' else None
            for k, v in (u or {}).items():
                if isinstance(v, int):
                    merged[k] = max(merged.get(k, 0), v)
        return norm_usage(ingress, merged) if merged else None
    if ingress == 'gemini' and r.body.lstrip().startswith(b'['):   # array mode
        us = [j['usageMetadata'] for j in json.loads(r.body) if j.get('usageMetadata')]
        return norm_usage(ingress, us[-1]) if us else None
    evs = [(e, json.loads(d)) for e, d in sse_events(r.body) if d and d != '[DONE]']
    if ingress == 'openai':
        us = [j['usage'] for _, j in evs if j.get('usage')]
    elif ingress == 'responses':
        us = [j['response']['usage'] for e, j in evs if e == 'response.completed']
    elif ingress == 'anthropic':
        merged = {}
        for e, j in evs:
            u = (j.get('message') or {}).get('usage') if e == 'message_start' else \
                j.get('usage') if e == 'message_delta' else None
            for k, v in (u or {}).items():
                if isinstance(v, int):
                    merged[k] = max(merged.get(k, 0), v)
        us = [merged] if merged else []
    elif ingress == 'gemini':
        us = [j['usageMetadata'] for _, j in evs if j.get('usageMetadata')]
    elif ingress == 'cohere':
        us = [j['delta']['usage'] for e, j in evs if e == 'message-end']
    else:
        fail('unknown ingress %r' % ingress)
    return norm_usage(ingress, us[-1]) if us else None


def mock_ir(egress, W, A, C=0, K=0, T=0):
    """The IR tokens busbar must bill for the mock's answer on an egress protocol (mock README
    "Token accounting"; IR input excludes cache tiers). OpenAI chat, Gemini and Cohere report
    cache reads only: a cache write there is indistinguishable from input."""
    if egress in ('openai', 'gemini', 'cohere'):
        return {'input': W + K, 'cache_read': C, 'cache_write': 0, 'output': A + T,
                'reasoning': T}
    return {'input': W, 'cache_read': C, 'cache_write': K, 'output': A + T, 'reasoning': T}


# --------------------------------------------------------------------------------------------
# error shapes of the ingress dialects

def check_dialect_error(r, ingress, status, what, openai_type=None, openai_code=None,
                        anthropic_type=None, gemini_status=None, bedrock_type=None,
                        message=None):
    eq(r.status, status, '%s: status (body %r)' % (what, r.body[:300]))
    j = r.json()
    if ingress in ('openai', 'responses'):
        e = check_error_shape(r, status, openai_type, openai_code, what)
        msg = e['message']
    elif ingress == 'anthropic':
        eq(j.get('type'), 'error', '%s: Anthropic body type' % what)
        eq(j['error'].get('type'), anthropic_type, '%s: Anthropic error.type' % what)
        msg = j['error']['message']
    elif ingress == 'gemini':
        eq(j['error'].get('code'), status, '%s: Gemini error.code' % what)
        eq(j['error'].get('status'), gemini_status, '%s: Gemini error.status' % what)
        msg = j['error']['message']
    elif ingress in ('bedrock', 'cohere', 'bedrock_invoke'):
        eq(sorted(j), ['message'], '%s: %s body members' % (what, ingress))
        msg = j['message']
        if ingress.startswith('bedrock'):
            eq(r.headers.get('x-amzn-errortype', '').split(':')[0], bedrock_type,
               '%s: x-amzn-ErrorType' % what)
    check(isinstance(msg, str) and msg, '%s: empty message' % what)
    if message is not None:
        eq(msg, message, '%s: message' % what)
    return j


def check_401(r, ingress, what):
    check_dialect_error(r, ingress, 401, what, openai_type='authentication_error',
                        openai_code='invalid_api_key', anthropic_type='authentication_error',
                        gemini_status='UNAUTHENTICATED', bedrock_type='UnrecognizedClientException',
                        message=DENIED)


def check_quota(r, ingress, what):
    check_dialect_error(r, ingress, 400 if ingress.startswith('bedrock') else 429, what,
                        openai_type='insufficient_quota', openai_code='insufficient_quota',
                        anthropic_type='billing_error', gemini_status='RESOURCE_EXHAUSTED',
                        bedrock_type='ServiceQuotaExceededException')


# --------------------------------------------------------------------------------------------
# 1. carriers, the one opaque 401, /healthz, /v1/models filtered

def test_carriers(ctx):
    models = {'alpha': lane('p_openai', 'gpt-4o', price=PRICE_A),
              'beta': lane('p_openai', 'm-beta', price=PRICE_B),
              'gem': lane('p_gemini', 'gemini-x', price=PRICE_B),
              'anth': lane('p_anthropic', 'claude-x', price=PRICE_B)}
    pools = {'p': pool(('alpha', 1)), 'q': pool(('beta', 1)), 'pg': pool(('gem', 1)),
             'pa': pool(('anth', 1))}
    m, bb = start(ctx, models=models, pools=pools)
    k = create_key(bb, '--pools', 'p,pg,pa')
    everything = create_key(bb, name='all')
    s = k['secret']
    ok_cases = [
        ('openai', {'Authorization': 'Bearer ' + s}, ''),
        ('responses', {'Authorization': 'Bearer ' + s}, ''),
        ('anthropic', {'x-api-key': s, 'anthropic-version': '2023-06-01'}, ''),
        ('gemini', {'x-goog-api-key': s}, ''),
        ('gemini', {}, 'key=' + urllib.parse.quote(s)),
        ('cohere', {'Authorization': 'Bearer ' + s}, ''),
        ('bedrock', {'Authorization': 'Bearer ' + s}, ''),   # a Bedrock API key
        ('bedrock_invoke', {'Authorization': 'Bearer ' + s}, ''),
    ]
    ok_cases += [
        # the first carrier wins: a right Bearer beats a wrong x-api-key; an Authorization
        # that is not Bearer is no carrier, so x-api-key is used
        ('openai', {'Authorization': 'Bearer ' + s, 'x-api-key': 'sk-bb-' + '2' * 32}, ''),
        ('anthropic', {'Authorization': 'Basic Zm9vOmJhcg==', 'x-api-key': s}, ''),
        ('gemini', {'x-goog-api-key': s}, 'stream'),
        ('gemini', {}, 'alt=sse&key=' + s),    # ?key= among other parameters
    ]
    # same-protocol hops, where the client's request goes upstream nearly as is: the
    # client's credential must still not (?key= in a Gemini URL, x-api-key to Anthropic)
    same = [('gemini', {}, 'key=' + s, 'pg'), ('gemini', {}, 'alt=sse&key=' + s, 'pg'),
            ('anthropic', {'x-api-key': s, 'anthropic-version': '2023-06-01'}, '', 'pa'),
            ('anthropic', {'Authorization': 'Bearer ' + s}, 'stream', 'pa')]
    rids = []
    for ingress, h, q, target in [c + ('p',) for c in ok_cases] + same:
        path, b = build(ingress, target, stream=q == 'stream' or q.startswith('alt=sse'))
        if q.startswith('alt=sse'):
            path = path.replace('?alt=sse', '?' + q)
        elif q and q != 'stream':
            path += '?' + q
        r = bb.request('POST', path, b, headers=h)
        eq(r.status, 200, '%s with %s%s (body %r)' % (ingress, sorted(h), q and ' ?key=',
                                                      r.body[:300]))
        rids.append(r.headers['x-request-id'])
    # The provider saw busbar's own credential, never the client's secret.
    att = m.attempts()
    eq(len(att), len(rids), 'attempts reaching the mock')
    for a in att:
        check(s not in json.dumps(a), 'the virtual key secret reached the provider: %r' % a)
        if a['protocol'] == 'anthropic':
            eq(a['headers'].get('x-api-key'), TEST_KEY, 'upstream credential (Anthropic)')
        elif a['protocol'] == 'gemini':
            eq(a['headers'].get('x-goog-api-key') or a['headers'].get('authorization'),
               TEST_KEY if 'x-goog-api-key' in a['headers'] else 'Bearer ' + TEST_KEY,
               'upstream credential (Gemini)')
        else:
            eq(a['headers'].get('authorization'), 'Bearer ' + TEST_KEY, 'upstream credential')

    # A wrong Bearer is not rescued by a right x-api-key (the first carrier is the credential).
    check_401(send(bb, 'anthropic', 'p', headers={'Authorization': 'Bearer sk-bb-' + '3' * 32,
                                                  'x-api-key': s}),
              'anthropic', 'wrong Bearer, right x-api-key')
    # Anthropic's /{pool}/v1/messages: the URL's pool is the one admitted.
    r = bb.request('POST', '/p/v1/messages', build('anthropic', 'q')[1], headers={'x-api-key': s})
    eq(r.status, 200, '/p/v1/messages with body model q (the URL wins): %r' % r.body[:300])
    rids.append(r.headers['x-request-id'])
    r = bb.request('POST', '/q/v1/messages', build('anthropic', 'p')[1], headers={'x-api-key': s})
    check_dialect_error(r, 'anthropic', 403, '/q/v1/messages with body model p',
                        anthropic_type='permission_error')

    # Missing, wrong, and almost-right credentials: the one 401 in each dialect.
    bad = [{}, {'Authorization': 'Bearer sk-bb-' + '0' * 32}, {'Authorization': 'Bearer ' + s[:-1]},
           {'Authorization': 'Bearer ' + s + 'x'}, {'x-api-key': s.upper()},
           {'Authorization': 'Basic ' + s}, {'Authorization': 'Bearer '}]
    for ingress in PROTOS:
        for h in bad:
            r = send(bb, ingress, 'p', headers=h)
            check_401(r, ingress, '%s with %r' % (ingress, h))
    # ?key= is a Gemini carrier only.
    r = bb.request('POST', '/v1/chat/completions?key=' + s, chat_body('p'))
    check_401(r, 'openai', 'OpenAI route with ?key=')

    # /healthz is open; /stats and /v1/models need a key.
    eq(bb.request('GET', '/healthz').status, 200, '/healthz without a key')
    check_401(bb.request('GET', '/stats'), 'openai', '/stats without a key')
    eq(bb.request('GET', '/stats', headers=bearer(k)).status, 200, '/stats with the key')
    check_401(bb.request('GET', '/v1/models'), 'openai', '/v1/models without a key')
    check_401(bb.request('GET', '/v1beta/models'), 'gemini', '/v1beta/models without a key')
    r = bb.request('GET', '/v1/models', headers=bearer(k))
    eq(r.status, 200, '/v1/models with the key')
    mine = ['p', 'pa', 'pg']
    eq([x['id'] for x in r.json()['data']], mine, '/v1/models for a key limited to p,pg,pa')
    r = bb.request('GET', '/v1/models', headers={'x-api-key': s,
                                                 'anthropic-version': '2023-06-01'})
    eq([x['id'] for x in r.json()['data']], mine, '/v1/models (Anthropic shape)')
    r = bb.request('GET', '/v1beta/models', headers={'x-goog-api-key': s})
    eq([x['name'] for x in r.json()['models']], ['models/' + x for x in mine], '/v1beta/models')
    # Bedrock's control-plane lists (what Claude Code asks for in Bedrock mode)
    r = bb.request('GET', '/inference-profiles?type=SYSTEM_DEFINED', headers=bearer(k))
    eq([x['inferenceProfileId'] for x in r.json()['inferenceProfileSummaries']], mine,
       '/inference-profiles for a key limited to p,pg,pa')
    r = bb.request('GET', '/foundation-models', headers=bearer(k))
    eq([x['modelId'] for x in r.json()['modelSummaries']], mine, '/foundation-models')
    check_401(bb.request('GET', '/inference-profiles'), 'bedrock_invoke',
              '/inference-profiles without a key')
    r = bb.request('GET', '/v1/models', headers=bearer(everything))
    eq([x['id'] for x in r.json()['data']], ['p', 'pa', 'pg', 'q', 'alpha', 'anth', 'beta', 'gem'],
       '/v1/models for a key without a pool list (pools, then lanes)')
    one = create_key(bb, '--pools', 'q,gem', name='one')
    r = bb.request('GET', '/v1/models', headers=bearer(one))
    eq([x['id'] for x in r.json()['data']], ['q', 'gem'], '/v1/models for a key of q and gem')

    # Admission order: a pool the key may not use is 403 in each dialect.
    for ingress in PROTOS:
        r = send(bb, ingress, 'q', headers=bearer(k))
        check_dialect_error(r, ingress, 403, '%s to a forbidden pool' % ingress,
                            openai_type='permission_error', openai_code='permission_denied',
                            anthropic_type='permission_error', gemini_status='PERMISSION_DENIED',
                            bedrock_type='AccessDeniedException')
    # A disabled key is 401 even for a forbidden pool (key state comes first), and back on
    # enable; an expired key is 401.
    ctl_json(bb, 'keys', 'update', k['id'], '--disable')
    check_401(send(bb, 'openai', 'p', headers=bearer(k)), 'openai', 'disabled key')
    check_401(send(bb, 'anthropic', 'q', headers={'x-api-key': s}), 'anthropic',
              'disabled key, forbidden pool')
    ctl_json(bb, 'keys', 'update', k['id'], '--enable')
    r = send(bb, 'openai', 'p', headers=bearer(k))
    eq(r.status, 200, 're-enabled key')
    rids.append(r.headers['x-request-id'])
    old = create_key(bb, '--expires', '2020-01-01', name='old')
    eq(old['status'], 'expired', 'status of a key that expired in 2020')
    check_401(send(bb, 'gemini', 'p', headers={'x-goog-api-key': old['secret']}), 'gemini',
              'expired key')

    # Refused requests are not ledger rows; each admitted one is exactly one.
    rows = ledger(bb)
    eq(sorted(r_['request_id'] for r_ in rows), sorted(rids), 'ledger rows = the 200s')
    check(all(r_['key_id'] == k['id'] and r_['status'] == 200 for r_ in rows),
          'ledger rows: %r' % rows)
    eq(len(m.attempts()), len(rids), 'refused requests never reached the provider')
    lv = live(bb, k['id'])
    eq((lv['spent_micros'], lv['reserved_micros'], lv['inflight']),
       (sum(r_['cost_micros'] for r_ in rows), 0, 0), 'keys show after the carriers')


# --------------------------------------------------------------------------------------------
# 2. auth modes token and passthrough

def test_token_mode(ctx):
    toks = ['bb-client-token-one-0123456789', 'bb-client-token-two-9876543210']
    m, bb = start(ctx, auth={'mode': 'token', 'client_tokens': toks})
    cases = [('openai', {'Authorization': 'Bearer ' + toks[0]}, ''),
             ('anthropic', {'x-api-key': toks[1]}, ''),
             ('gemini', {}, 'key=' + toks[1]),
             ('cohere', {'Authorization': 'Bearer ' + toks[1]}, '')]
    got = {}
    for ingress, h, q in cases:
        path, b = build(ingress, 'p')
        path += ('?' + q) if q else ''
        r = bb.request('POST', path, b, headers=h)
        eq(r.status, 200, 'token mode, %s (body %r)' % (ingress, r.body[:300]))
        got[r.headers['x-request-id']] = norm_usage(
            ingress, r.json().get('usageMetadata') if ingress == 'gemini' else r.json()['usage'])
    for h in ({}, {'Authorization': 'Bearer ' + toks[0] + 'x'},
              {'Authorization': 'Bearer ' + toks[0][:-1]}, {'x-api-key': 'sk-bb-' + '1' * 32}):
        check_401(send(bb, 'openai', 'p', headers=h), 'openai', 'token mode with %r' % h)
        check_401(send(bb, 'anthropic', 'p', headers=h), 'anthropic', 'token mode with %r' % h)
    # Requests without a key are still ledger rows (key ""), priced.
    rows = ledger(bb)
    eq(sorted(r['request_id'] for r in rows), sorted(got), 'ledger rows in token mode')
    want_cost = cost_micros(PRICE_A, mock_ir('openai', W_PROMPT, MOCK_WORDS))
    for r in rows:
        eq((r['key_id'], r['pool'], r['lane'], r['status']), ('', 'p', 'alpha', 200),
           'token-mode ledger row')
        eq((r['input_tokens'] + r['cache_read_tokens'] + r['cache_write_tokens'],
            r['cache_read_tokens'], r['output_tokens']), got[r['request_id']],
           'ledger tokens = the usage the client saw')
        eq(r['cost_micros'], want_cost, 'token-mode ledger cost')
    sp = ctl_json(bb, 'spend', '--by', 'model')
    eq([(x['group'], x['requests'], x['cost_micros']) for x in sp['rows']],
       [('alpha', len(cases), want_cost * len(cases))], 'spend by model in token mode')


def test_auth_none_ledger(ctx):
    """auth none: every request passes and is still metered: a ledger row with key "", usage
    asked for on OpenAI streams and hidden from the client."""
    m, bb = start(ctx, auth={'mode': 'none'})
    rs = [send(bb, 'openai', 'p'), send(bb, 'openai', 'p', stream=True),
          send(bb, 'cohere', 'q', headers={'Authorization': 'Bearer anything'})]
    eq([r.status for r in rs], [200] * 3, 'auth none statuses')
    check(b'"choices":[]' not in rs[1].body, 'a usage chunk the client did not ask for')
    check('"include_usage":true' in m.attempts()[1]['body'], 'busbar did not ask the provider '
          'for the stream\'s usage: %r' % m.attempts()[1]['body'])
    rows = ledger(bb)
    want = {rs[0].headers['x-request-id']: ('p', cost_micros(PRICE_A, mock_ir('openai', W_PROMPT,
                                                                            MOCK_WORDS))),
            rs[1].headers['x-request-id']: ('p', cost_micros(PRICE_A, mock_ir('openai', W_PROMPT,
                                                                            MOCK_WORDS))),
            rs[2].headers['x-request-id']: ('q', cost_micros(PRICE_B, mock_ir('openai', W_PROMPT,
                                                                            MOCK_WORDS)))}
    eq({r['request_id']: (r['pool'], r['cost_micros']) for r in rows}, want,
       'auth none ledger rows (pool, cost)')
    check(all(r['key_id'] == '' for r in rows), 'key ids: %r' % [r['key_id'] for r in rows])


def test_passthrough_mode(ctx):
    models = {'alpha': lane('p_openai', 'gpt-4o', price=PRICE_A),
              'anth': lane('p_anthropic', 'claude-x', price=PRICE_B)}
    m, bb = start(ctx, models=models, pools={'p': pool(('alpha', 1)), 'q': pool(('anth', 1))},
                  auth={'mode': 'passthrough'})
    cases = [('openai', 'p', {'Authorization': 'Bearer sk-caller-one-111'},
              ('authorization', 'Bearer sk-caller-one-111')),
             ('anthropic', 'q', {'x-api-key': 'sk-ant-caller-222'},
              ('x-api-key', 'sk-ant-caller-222')),
             ('openai', 'q', {'Authorization': 'Bearer sk-caller-333'},   # cross-protocol hop
              ('x-api-key', 'sk-caller-333')),
             ('gemini', 'p', {'x-goog-api-key': 'goog-caller-444'},
              ('authorization', 'Bearer goog-caller-444'))]
    for ingress, model, h, (hname, hval) in cases:
        m.reset()
        r = send(bb, ingress, model, headers=h)
        eq(r.status, 200, 'passthrough %s → %s (body %r)' % (ingress, model, r.body[:300]))
        a = m.attempts()
        eq(len(a), 1, 'attempts')
        eq(a[0]['headers'].get(hname), hval, 'the provider saw the caller\'s credential')
        check(TEST_KEY not in json.dumps(a[0]), 'busbar\'s own key was sent in passthrough')
    m.reset()
    for ingress in PROTOS:
        check_401(send(bb, ingress, 'p'), ingress, 'passthrough without a credential')
    # A SigV4 signature covers busbar's host, it cannot be forwarded: refused.
    path, b = build('bedrock', 'p')
    body = json.dumps(b).encode()
    h = sigv4_headers('AKIDCALLER', 'callersecret', '127.0.0.1:%d' % bb.port, path, body)
    check_401(bb.request('POST', path, body, headers=h), 'bedrock', 'SigV4 in passthrough')
    eq(m.attempts(), [], 'refused passthrough requests reached the provider')
    eq(len(ledger(bb)), len(cases), 'ledger rows in passthrough mode')


# --------------------------------------------------------------------------------------------
# 3. budgets: a concurrent burst never overshoots; the quota error in each dialect

BURST_WORDS = 40


def test_budget_burst(ctx):
    # Each answer is BURST_WORDS words and the client caps output at that, so an answer costs
    # a good share of its reservation: the budget refuses requests however the burst is timed.
    models = {'alpha': lane('p_openai', 'gpt-4o;slowfirst=300;words=%d' % BURST_WORDS,
                            price=PRICE_A),
              'beta': lane('p_openai', 'm-beta', price=PRICE_B)}
    m, bb = start(ctx, models=models, workers=2)
    body = chat_body('p', max_tokens=BURST_WORDS)
    worst = worst_micros(PRICE_A, body_len(body), BURST_WORDS)
    actual = cost_micros(PRICE_A, mock_ir('openai', len(body['messages'][0]['content'].split()),
                                          BURST_WORDS))
    budget = 50 * worst + worst // 2
    k = create_key(bb, '--pools', 'p', '--budget', usd(budget))
    eq(k['budget_micros'], budget, 'budget in micro-dollars')
    ctx.note('worst case %d µ$, actual %d µ$, budget %d µ$ (%d worst cases; %d actual)'
             % (worst, actual, budget, budget // worst, budget // actual))
    check(200 * actual > budget, 'the burst must be able to exhaust the budget')

    res = burst(200, lambda i: bb.request('POST', '/v1/chat/completions', body,
                                          headers=bearer(k), timeout=30))
    errs = [x for x in res if isinstance(x, Exception)]
    check(not errs, 'burst requests failed: %r' % errs[:3])
    codes = {}
    for r in res:
        codes[r.status] = codes.get(r.status, 0) + 1
    ctx.note('burst statuses: %r' % codes)
    eq(len({worker_of(r.headers['x-request-id']) for r in res}), 2,
       'workers that answered the burst (both must compete for the one budget)')
    ok = [r for r in res if r.status == 200]
    refused = [r for r in res if r.status != 200]
    for r in refused:
        check_quota(r, 'openai', 'burst refusal')
    check(refused, 'no request was refused')
    check(len(ok) >= budget // worst, '%d admitted, fewer than the %d worst cases the budget '
          'holds' % (len(ok), budget // worst))
    for r in ok:
        eq(norm_usage('openai', r.json()['usage']),
           (len(body['messages'][0]['content'].split()), 0, BURST_WORDS), 'usage of an answer')

    rows = [r for r in ledger(bb) if r['key_id'] == k['id']]
    eq(sorted(r['request_id'] for r in rows), sorted(r.headers['x-request-id'] for r in ok),
       'ledger rows = the admitted requests (refusals write none)')
    total = sum(r['cost_micros'] for r in rows)
    check(total <= budget, 'ledger total %d µ$ overshoots the budget %d µ$' % (total, budget))
    check(all(r['cost_micros'] == actual for r in rows), 'a ledger cost is not %d' % actual)
    eq(total, len(ok) * actual, 'ledger total = successes × actual cost')
    sp = ctl_json(bb, 'spend', '--by', 'key', '--key', k['id'])
    eq((sp['total']['requests'], sp['total']['cost_micros']), (len(ok), total), 'spend --key')
    lv = live(bb, k['id'])
    eq((lv['spent_micros'], lv['reserved_micros'], lv['inflight']), (total, 0, 0),
       'keys show after the burst')
    eq(len(m.attempts()), len(ok), 'refused requests never reached the provider')

    # The quota error in the other dialects: a key whose budget is one micro-dollar.
    poor = create_key(bb, '--pools', 'p', '--budget', '0.000001', name='poor')
    for ingress in PROTOS:
        check_quota(send(bb, ingress, 'p', headers=bearer(poor)), ingress,
                    '%s over budget' % ingress)
    lv = live(bb, poor['id'])
    eq((lv['spent_micros'], lv['reserved_micros'], lv['inflight'], lv['admitted']),
       (0, 0, 0, 0), 'keys show of the over-budget key')
    eq([r for r in ledger(bb) if r['key_id'] == poor['id']], [], 'ledger rows of refusals')


# --------------------------------------------------------------------------------------------
# 4. RPM across two workers

def test_rpm(ctx):
    m, bb = start(ctx, workers=2)

    def attempt():
        k = create_key(bb, '--pools', 'p', '--rpm', '10')
        t0 = time.time()
        res = burst(30, lambda i: bb.request('POST', '/v1/chat/completions', chat_body('p'),
                                             headers=bearer(k)))
        t1 = time.time()
        return k, res, t0, t1
    k, res, t0, t1 = attempt()
    if int(t0 // 60) != int(t1 // 60):
        ctx.note('the burst straddled a UTC minute: retried once')
        k, res, t0, t1 = attempt()
        check(int(t0 // 60) == int(t1 // 60), 'two bursts in a row straddled a minute')
    errs = [x for x in res if isinstance(x, Exception)]
    check(not errs, 'burst requests failed: %r' % errs[:3])
    ok = [r for r in res if r.status == 200]
    limited = [r for r in res if r.status != 200]
    eq(len(ok), 10, 'requests admitted under --rpm 10 (statuses %r)'
       % sorted(r.status for r in res))
    for r in limited:
        check_error_shape(r, 429, 'rate_limit_error', 'rate_limit_exceeded', 'RPM refusal')
        ra = r.headers.get('retry-after')
        check(ra and ra.isdigit() and 1 <= int(ra) <= 60, 'Retry-After %r' % ra)
        to_next = 60 - (t1 % 60)
        check(abs(int(ra) - to_next) <= 2 + (t1 - t0), 'Retry-After %s, but the next minute is '
              '%.1fs away' % (ra, to_next))
    lv = live(bb, k['id'])
    if int(time.time() // 60) == int(t0 // 60):
        eq(lv['rpm_used'], 10, 'rpm_used this minute')
    eq((lv['inflight'], lv['reserved_micros']), (0, 0), 'keys show after the burst')
    rows = [r for r in ledger(bb) if r['key_id'] == k['id']]
    eq(sorted(r['request_id'] for r in rows), sorted(r.headers['x-request-id'] for r in ok),
       'ledger rows = the admitted requests')

    # A refusal after the RPM window was charged gives it back: budget refusals never use up
    # the RPM allowance (and forbidden-pool refusals never reach it).
    k2 = create_key(bb, '--pools', 'p', '--rpm', '2', '--budget', '0.000001', name='rpm-poor')
    for i in range(5):
        check_quota(send(bb, 'openai', 'p', headers=bearer(k2)), 'openai',
                    'over-budget request %d under --rpm 2' % i)
        r = send(bb, 'openai', 'q', headers=bearer(k2))
        eq(r.status, 403, 'forbidden pool %d under --rpm 2' % i)
    eq(live(bb, k2['id'])['rpm_used'], 0, 'rpm_used after refusals only')

    # The rate-limit refusal in every dialect (Retry-After on each).
    def rpm_round():
        k = create_key(bb, '--pools', 'p', '--rpm', '1', name='rpm-1')
        t0 = time.time()
        first = send(bb, 'openai', 'p', headers=bearer(k))
        out = [(ingress, send(bb, ingress, 'p', headers=bearer(k))) for ingress in PROTOS]
        forbidden = send(bb, 'openai', 'q', headers=bearer(k))
        return first, out, forbidden, t0, time.time()
    first, out, forbidden, t0, t1 = rpm_round()
    if int(t0 // 60) != int(t1 // 60):
        ctx.note('the RPM dialect round straddled a UTC minute: retried once')
        first, out, forbidden, t0, t1 = rpm_round()
    eq(first.status, 200, 'the one request --rpm 1 allows')
    check_error_shape(forbidden, 403, 'permission_error', 'permission_denied',
                      'a forbidden pool once the RPM is used up (the pool is checked first)')
    for ingress, r in out:
        check_dialect_error(r, ingress, 429, '%s over --rpm 1' % ingress,
                            openai_type='rate_limit_error', openai_code='rate_limit_exceeded',
                            anthropic_type='rate_limit_error', gemini_status='RESOURCE_EXHAUSTED',
                            bedrock_type='ThrottlingException')
        ra = r.headers.get('retry-after', '')
        check(ra.isdigit() and 1 <= int(ra) <= 60, '%s Retry-After %r' % (ingress, ra))

    # TPM: admission charges the window a typical estimate (body bytes / 4 + the output cap),
    # settlement corrects it to the actual tokens. Sequential requests therefore fit while
    # (admitted so far) × actual + estimate <= tpm.
    body = chat_body('p', max_tokens=100)
    est = body_len(body) // 4 + 100
    actual = W_HELLO + MOCK_WORDS
    fits = 6
    tpm = est + (fits - 1) * actual + actual // 2

    def tpm_round():
        k = create_key(bb, '--pools', 'p', '--tpm', str(tpm), name='tpm')
        t0, out = time.time(), []
        for _ in range(fits + 2):
            out.append(bb.request('POST', '/v1/chat/completions', body, headers=bearer(k)))
        return k, out, t0, time.time()
    k3, out, t0, t1 = tpm_round()
    if int(t0 // 60) != int(t1 // 60):
        ctx.note('the TPM round straddled a UTC minute: retried once')
        k3, out, t0, t1 = tpm_round()
    eq([r.status for r in out], [200] * fits + [429, 429],
       'statuses under --tpm %d (estimate %d, actual %d tokens)' % (tpm, est, actual))
    for r in out[fits:]:
        check_error_shape(r, 429, 'rate_limit_error', 'rate_limit_exceeded', 'TPM refusal')
        ra = r.headers.get('retry-after', '')
        check(ra.isdigit() and 1 <= int(ra) <= 60, 'TPM Retry-After %r' % ra)
    lv = live(bb, k3['id'])
    if int(time.time() // 60) == int(t0 // 60):
        eq((lv['tpm_used'], lv['rpm_used']), (fits * actual, fits),
           'tpm_used / rpm_used: the settled actual tokens of the admitted requests')


# --------------------------------------------------------------------------------------------
# 5. the ledger equals usage × price, across protocols

CACHED, CACHE_WRITE, LEDGER_WORDS, THINK_WORDS = 4, 3, 6, 4
LEDGER_PRICES = {
    'openai': {'input': 2.5, 'output': 10, 'cache_read': 1.25, 'cache_write': 3.125},
    'responses': {'input': 1.1, 'output': 4.4, 'cache_read': 0.275, 'cache_write': 1.375},
    'anthropic': {'input': 3, 'output': 15, 'cache_read': 0.3, 'cache_write': 3.75},
    'gemini': {'input': 1.25, 'output': 10, 'cache_read': 0.31, 'cache_write': 4.5},
    'bedrock': {'input': 0.8, 'output': 4, 'cache_read': 0.08, 'cache_write': 1},
    'cohere': {'input': 2.5, 'output': 10, 'cache_read': 0.625, 'cache_write': 2.5},
    'bedrock_invoke': {'input': 3.3, 'output': 16.5, 'cache_read': 0.33, 'cache_write': 4.125},
}


def test_ledger_prices(ctx):
    models, pools = {}, {}
    for e in PROTOS:
        models['l_' + e] = lane('p_' + e, 'up-%s;cached=%d;cache_write=%d;words=%d'
                                % (e, CACHED, CACHE_WRITE, LEDGER_WORDS),
                                price=LEDGER_PRICES[e])
        pools['g_' + e] = pool(('l_' + e, 1))
    models['l_think'] = lane('p_openai', 'up-think;think;words=%d' % THINK_WORDS,
                             price=LEDGER_PRICES['openai'])
    models['l_fail5'] = lane('p_openai', 'up-f5;status=500', price=LEDGER_PRICES['openai'])
    models['l_fail4'] = lane('p_anthropic', 'up-f4;status=400', price=LEDGER_PRICES['anthropic'])
    pools['g_fo'] = pool(('l_fail5', 5), ('l_bedrock', 1))
    m, bb = start(ctx, models=models, pools=pools)
    k = create_key(bb, '--budget', '10')
    H = bearer(k)
    # (ingress, pool or lane, stream, extra body members)
    cases = [
        ('openai', 'g_openai', False, {}),
        ('openai', 'g_openai', True, {}),          # busbar asks for usage, hides the chunk
        ('openai', 'g_openai', True, {'stream_options': {'include_usage': True}}),
        ('openai', 'g_openai', True, {'stream_options': {'include_usage': False}}),
        ('responses', 'g_responses', False, {}), ('responses', 'g_responses', True, {}),
        ('anthropic', 'g_anthropic', False, {}), ('anthropic', 'g_anthropic', True, {}),
        ('gemini', 'g_gemini', False, {}), ('gemini', 'g_gemini', True, {}),
        ('gemini', 'g_gemini', True, {'gemini_array': True}),
        ('bedrock', 'g_bedrock', False, {}), ('bedrock', 'g_bedrock', True, {}),
        ('cohere', 'g_cohere', False, {}), ('cohere', 'g_cohere', True, {}),
        ('bedrock_invoke', 'g_bedrock_invoke', False, {}),
        ('bedrock_invoke', 'g_bedrock_invoke', True, {}),
        ('bedrock_invoke', 'g_gemini', True, {}), ('openai', 'g_bedrock_invoke', True, {}),
        # across protocols (pools, and lanes named directly: pool "")
        ('openai', 'g_anthropic', True, {}), ('anthropic', 'g_openai', False, {}),
        ('gemini', 'l_bedrock', True, {}), ('cohere', 'l_responses', False, {}),
        ('responses', 'g_gemini', True, {}), ('bedrock', 'g_cohere', False, {}),
        ('anthropic', 'l_cohere', True, {}), ('openai', 'l_think', False, {}),
        # OpenAI egress under other dialects' streams: busbar must ask for the usage
        ('anthropic', 'g_openai', True, {}), ('gemini', 'g_openai', True, {}),
        ('bedrock', 'l_openai', True, {}), ('responses', 'g_openai', True, {}),
        ('cohere', 'g_openai', True, {}),
        # failover: the first member fails, the answer (and the bill) comes from the second
        ('openai', 'g_fo', False, {}), ('anthropic', 'g_fo', True, {}),
    ]
    expect = {}   # request id → (ledger row fields we expect)
    t_first = int(time.time() * 1000)
    for ingress, target, stream, extra in cases:
        what = '%s → %s%s%s' % (ingress, target, ' (stream)' if stream else '',
                                ' %r' % extra if extra else '')
        r = send(bb, ingress, target, headers=H, stream=stream, **extra)
        eq(r.status, 200, '%s status (body %r)' % (what, r.body[:300]))
        lane_name = target if target.startswith('l_') else 'l_' + target[2:]
        if target == 'g_fo':
            eq((r.headers.get('x-busbar-lane'), r.headers.get('x-busbar-attempts')),
               ('l_bedrock', '2'), '%s: answering lane and attempts' % what)
            lane_name = 'l_bedrock'
        egress = 'openai' if lane_name == 'l_think' else lane_name[2:]
        if lane_name == 'l_think':
            ir = mock_ir(egress, W_PROMPT, THINK_WORDS, T=3)
        else:
            ir = mock_ir(egress, W_PROMPT, LEDGER_WORDS, CACHED, CACHE_WRITE)
        seen = client_usage(ingress, stream, r)
        asked = not stream or ingress != 'openai' or \
            extra.get('stream_options', {}).get('include_usage')
        if asked:
            eq(seen, (ir['input'] + ir['cache_read'] + ir['cache_write'], ir['cache_read'],
                      ir['output']), '%s: usage the client saw' % what)
        else:
            eq(seen, None, '%s: a usage chunk the client did not ask for' % what)
            check(b'"choices":[]' not in r.body, '%s: a choices:[] chunk reached the client'
                  % what)
        if stream and ingress == 'openai' and asked:
            check(b'"choices":[]' in r.body, '%s: the usage chunk it asked for is missing'
                  % what)
        expect[r.headers['x-request-id']] = dict(
            lane=lane_name, pool='' if target.startswith('l_') else target,
            ingress=PROTOS[ingress],
            status=200, input_tokens=ir['input'], output_tokens=ir['output'],
            cache_read_tokens=ir['cache_read'], cache_write_tokens=ir['cache_write'],
            reasoning_tokens=ir['reasoning'],
            cost_micros=cost_micros(LEDGER_PRICES[egress], ir), what=what)
    # Failed requests: released, not billed, but a ledger row with cost 0 and the status.
    for ingress, target in (('openai', 'l_fail5'), ('anthropic', 'l_fail4')):
        r = send(bb, ingress, target, headers=H)
        check(r.status >= 400, '%s → %s: status %d' % (ingress, target, r.status))
        expect[r.headers['x-request-id']] = dict(
            lane=target, pool='', ingress=PROTOS[ingress], status=r.status, cost_micros=0,
            what='%s → %s (failed)' % (ingress, target))

    t_last = int(time.time() * 1000)
    rows = ledger(bb)
    eq(sorted(r['request_id'] for r in rows), sorted(expect), 'one ledger row per request')
    check(all(t_first <= r['ts'] <= t_last for r in rows), 'ledger ts outside [%d, %d]: %r'
          % (t_first, t_last, [r['ts'] for r in rows]))
    for row in rows:
        want = dict(expect[row['request_id']])
        what = want.pop('what')
        got = {f: row[f] for f in want}
        eq(got, want, 'ledger row of %s' % what)
        eq(row['key_id'], k['id'], 'key of %s' % what)
    total = sum(r['cost_micros'] for r in rows)
    lv = live(bb, k['id'])
    eq((lv['spent_micros'], lv['reserved_micros'], lv['inflight']), (total, 0, 0),
       'keys show = the ledger')

    # spend --by model / pool / day / key = the ledger table read directly.
    con = sqlite3.connect('file:%s?mode=ro' % db_path(bb), uri=True, timeout=5)
    try:
        fields = ('requests', 'input_tokens', 'output_tokens', 'cache_read_tokens',
                  'cache_write_tokens', 'reasoning_tokens', 'cost_micros')
        agg = ', '.join(['COUNT(*)'] + ['SUM(%s)' % f for f in fields[1:]])
        for by, col in (('model', 'lane'), ('pool', 'pool'),
                        ('day', "strftime('%Y-%m-%d', ts / 1000, 'unixepoch')"),
                        ('key', 'key_id')):
            want = {row[0]: dict(zip(fields, row[1:]))
                    for row in con.execute('SELECT %s, %s FROM ledger GROUP BY 1' % (col, agg))}
            sp = ctl_json(bb, 'spend', '--by', by)
            got = {x['group']: {f: x[f] for f in fields} for x in sp['rows']}
            eq(got, want, 'spend --by %s vs the ledger table' % by)
            eq(sp['total']['cost_micros'], total, 'spend --by %s total' % by)
        # and the rollups equal the ledger they sum
        ru = con.execute('SELECT SUM(requests), SUM(cost_micros), SUM(input_tokens), '
                         'SUM(cache_read_tokens) FROM rollup_daily').fetchone()
        lg = con.execute('SELECT COUNT(*), SUM(cost_micros), SUM(input_tokens), '
                         'SUM(cache_read_tokens) FROM ledger').fetchone()
        eq(ru, lg, 'rollup_daily sums vs the ledger')
    finally:
        con.close()


# --------------------------------------------------------------------------------------------
# 5b. the reservation: the worst case over every lane a request may reach, per dialect's cap

PRICE_DEAR = {'input': 30, 'output': 60, 'cache_read': 15, 'cache_write': 37.5}
DEFAULT_EST = 500


def test_reservations(ctx):
    slow = 'gpt-4o;slowfirst=1500'
    models = {'cheap': lane('p_openai', slow, price=PRICE_B),
              'dear': lane('p_openai', slow, price=PRICE_A),
              'dearest': lane('p_openai', slow, price=PRICE_DEAR)}
    pools = {'mix': pool(('cheap', 1), ('dear', 1)),
             'chain': pool(('cheap', 1), on_exhausted={'action': 'fallback_pool:top'}),
             'top': pool(('dearest', 1))}
    m, bb = start(ctx, models=models, pools=pools, workers=2,
                  governance={'default_estimate_output_tokens': DEFAULT_EST})
    mix = [PRICE_A, PRICE_B]
    # (ingress, target, extra body members, output cap the reservation must use, prices)
    cases = [
        ('openai', 'mix', {'max_tokens': 50}, 50, mix),
        ('openai', 'mix', {'max_completion_tokens': 70, 'n': 3}, 210, mix),
        ('openai', 'mix', {}, DEFAULT_EST, mix),
        ('responses', 'mix', {'max_output_tokens': 40}, 40, mix),
        ('anthropic', 'mix', {'max_tokens': 60}, 60, mix),
        ('gemini', 'mix', {'generationConfig': {'maxOutputTokens': 30, 'candidateCount': 2}},
         60, mix),
        ('bedrock', 'mix', {'inferenceConfig': {'maxTokens': 45}}, 45, mix),
        ('cohere', 'mix', {'max_tokens': 35}, 35, mix),
        ('openai', 'chain', {'max_tokens': 20}, 20, [PRICE_B, PRICE_DEAR]),  # + fallback pool
        ('openai', 'cheap', {'max_tokens': 20}, 20, [PRICE_B]),             # a lane by name
    ]
    keys, want = [], []
    for ingress, target, extra, cap, prices in cases:
        keys.append(create_key(bb, '--budget', '5', name='%s-%s' % (ingress, target)))
        path, b = build(ingress, target, **extra)
        want.append(max(worst_micros(p, body_len(b), cap) for p in prices))
    results = [None] * len(cases)

    def one(i):
        ingress, target, extra, _, _ = cases[i]
        results[i] = send(bb, ingress, target, headers=bearer(keys[i]), timeout=15, **extra)
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(cases))]
    for t in threads:
        t.start()
    m.wait_attempts(lambda a: sum(1 for x in a if x['outcome'] == 'pending') == len(cases), 10,
                    'every request upstream')
    listed = {x['id']: x['live'] for x in ctl_json(bb, 'keys', 'list')['keys']}
    got = [(listed[k['id']]['reserved_micros'], listed[k['id']]['inflight']) for k in keys]
    for t in threads:
        t.join(timeout=scaled(15))
    for i, (ingress, target, extra, cap, _) in enumerate(cases):
        eq(got[i], (want[i], 1), 'reservation of %s → %s %r (output cap %d)'
           % (ingress, target, extra, cap))
        eq(results[i].status, 200, '%s → %s status' % (ingress, target))
    rows = {r['key_id']: r for r in ledger(bb)}
    for i, k in enumerate(keys):
        lv = live(bb, k['id'])
        eq((lv['reserved_micros'], lv['inflight'], lv['spent_micros']),
           (0, 0, rows[k['id']]['cost_micros']), 'key of %s → %s settled' % cases[i][:2])

    # max_parallel: with 2 allowed, 2 of 5 concurrent requests run, 3 get the rate-limit 429
    k = create_key(bb, '--parallel', '2', name='parallel')
    res = burst(5, lambda i: send(bb, 'openai', 'mix', headers=bearer(k), timeout=15))
    eq(sorted(r.status for r in res), [200, 200, 429, 429, 429], '--parallel 2, 5 at once')
    for r in res:
        if r.status == 429:
            check_error_shape(r, 429, 'rate_limit_error', 'rate_limit_exceeded',
                              'max_parallel refusal')
            check(1 <= int(r.headers.get('retry-after', '0')) <= 60, 'Retry-After %r'
                  % r.headers.get('retry-after'))
    eq(live(bb, k['id'])['inflight'], 0, 'inflight after the parallel burst')


# --------------------------------------------------------------------------------------------
# 5c. a client that leaves: before the answer (released, 499), mid-stream (worst case billed)

def test_client_leaves(ctx):
    models = {'slowhead': lane('p_openai', 'gpt-4o;slowfirst=2000', price=PRICE_A),
              'slowstream': lane('p_openai', 'gpt-4o;delay=300', price=PRICE_A),
              'dearstream': lane('p_openai', 'gpt-4o;delay=300', price=PRICE_DEAR)}
    # pool b reserves at its dearest member, but smooth WRR sends the first request to the
    # weight-5 member: the bill is that lane's worst case, not the pool's
    m, bb = start(ctx, models=models, pools={'a': pool(('slowhead', 1)),
                                             'b': pool(('slowstream', 5), ('dearstream', 1))})
    k = create_key(bb, '--budget', '1')
    # before any answer: nothing reached the client, released, a 499 row with cost 0
    c = RawConn(bb.port)
    c.send_request('POST', '/v1/chat/completions', chat_body('a', max_tokens=50),
                   headers=bearer(k))
    m.wait_attempts(lambda a: len(a) == 1 and a[0]['outcome'] == 'pending', 5, 'upstream')
    eq(live(bb, k['id'])['inflight'], 1, 'inflight while waiting for the answer')
    c.close()
    m.wait_attempts(lambda a: a[0]['outcome'] == 'aborted', 5, 'the upstream attempt aborted')
    rows = wait_for(lambda: ledger(bb), 5, 'the ledger row of the abandoned request')
    eq([(r['status'], r['cost_micros']) for r in rows], [(499, 0)],
       'ledger row of a client that left before the answer')
    lv = live(bb, k['id'])
    eq((lv['spent_micros'], lv['reserved_micros'], lv['inflight']), (0, 0, 0),
       'keys show after a client left before the answer')

    # mid-stream: the answer reached the client but its usage never came: the answering
    # lane's worst case is billed (the provider bills the generation too)
    max_out = 50
    c, r = bb.stream('b', headers=bearer(k), max_tokens=max_out)
    eq(r.status, 200, 'stream status')
    rid = r.headers['x-request-id']
    eq(r.headers.get('x-busbar-lane'), 'slowstream', 'the answering lane')
    first_content(r.events(), 'the stream')
    blen = body_len(chat_body('b', True, max_tokens=max_out))
    eq(live(bb, k['id'])['reserved_micros'], worst_micros(PRICE_DEAR, blen, max_out),
       'the reservation (at the pool\'s dearest member)')
    c.close()
    worst = worst_micros(PRICE_A, blen, max_out)
    row = wait_for(lambda: [x for x in ledger(bb) if x['request_id'] == rid], 5,
                   'the ledger row of the stream the client left')[0]
    eq((row['status'], row['cost_micros']), (200, worst),
       'ledger row of a stream the client left (status sent, billed at the worst case)')
    lv = live(bb, k['id'])
    eq((lv['spent_micros'], lv['reserved_micros'], lv['inflight']), (worst, 0, 0),
       'keys show after a client left mid-stream')


# --------------------------------------------------------------------------------------------
# 6. revocation while traffic flows on two workers

def test_revoke_under_traffic(ctx):
    m, bb = start(ctx, workers=2)
    k = create_key(bb, '--pools', 'p')
    log, lock, stop = [], threading.Lock(), threading.Event()

    def client():
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = bb.chat('p', headers=bearer(k), timeout=5)   # a new connection each time
                st, rid = r.status, r.headers.get('x-request-id', '')
            except OSError as e:
                st, rid = repr(e), ''
            with lock:
                log.append((t0, time.monotonic(), st, rid))

    def workers_with(pred):
        with lock:
            return {worker_of(x[3]) for x in log if pred(x) and x[3]}
    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    keep = http.client.HTTPConnection('127.0.0.1', bb.port, timeout=scaled(5))
    ctx.on_close(keep.close)
    try:
        wait_for(lambda: len(workers_with(lambda x: x[2] == 200)) >= 2 and len(log) >= 30, 10,
                 'both workers admitting the key')
        r = bb.chat('p', headers=bearer(k), conn=keep)
        eq(r.status, 200, 'on a kept-alive connection')
        keep_rid = r.headers['x-request-id']
        t_call = time.monotonic()
        r = ctl_json(bb, 'keys', 'revoke', k['id'])
        t_ret = time.monotonic()
        eq(r['status'], 'revoked', 'revoke reply')
        wait_for(lambda: len(workers_with(lambda x: x[0] >= t_ret and x[2] == 401)) >= 2 and
                 sum(1 for x in list(log) if x[0] >= t_ret) >= 40, 10,
                 'rejections from both workers after the revoke')
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=scaled(10))
    # a connection opened before the revoke is no way around it
    check_401(bb.chat('p', headers=bearer(k), conn=keep), 'openai',
              'the revoked key on a connection kept alive from before')
    after = [x for x in log if x[0] >= t_ret]
    bad = [x for x in after if x[2] != 401]
    check(not bad, '%d of %d requests sent after `keys revoke` returned were not 401: %r'
          % (len(bad), len(after), bad[:5]))
    before = [x for x in log if x[1] <= t_call]
    check(before and all(x[2] == 200 for x in before),
          'requests before the revoke: %r' % sorted({x[2] for x in before}))
    first = min(x[1] for x in log if x[2] == 401)
    ctx.note('first 401 %.0f ms after the revoke was sent (%.0f ms after it returned); %d '
             'requests before, %d after' % ((first - t_call) * 1000, (first - t_ret) * 1000,
                                            len(before), len(after)))
    check(first - t_call < 1.0, 'first rejection %.3fs after the revoke' % (first - t_call))
    eq(len(workers_with(lambda x: x[0] >= t_ret and x[2] == 401)), 2,
       'workers refusing the revoked key')
    ok = [x[3] for x in log if x[2] == 200] + [keep_rid]
    rows = [r['request_id'] for r in ledger(bb) if r['key_id'] == k['id']]
    eq(sorted(rows), sorted(ok), 'ledger rows = the 200s')


# --------------------------------------------------------------------------------------------
# 7. graceful stop and restart on the same state_dir

def test_stop_restart(ctx):
    models = {'alpha': lane('p_openai', 'gpt-4o', price=PRICE_A),
              'slow': lane('p_openai', 'gpt-4o;slowfirst=700', price=PRICE_A)}
    m, bb = start(ctx, models=models, pools={'p': pool(('alpha', 1)), 's': pool(('slow', 1))},
                  workers=2)
    k = create_key(bb, '--budget', '10', '--period', 'daily')
    oks = []

    # clients may send their own x-request-id: busbar's ids are its own, so even identical
    # client ids never collapse ledger rows
    hdrs = dict(bearer(k), **{'x-request-id': 'client-chosen-id'})

    def traffic(n):
        for i in range(n):
            ingress = ('openai', 'anthropic', 'gemini', 'cohere')[i % 4]
            r = send(bb, ingress, 'p', headers=hdrs, stream=bool(i % 2))
            eq(r.status, 200, 'request %d (%s)' % (i, ingress))
            oks.append(r.headers['x-request-id'])
    traffic(12)
    # requests in flight when SIGTERM arrives: drained, answered, billed
    slow = []

    def slow_one(i):
        r = bb.request('POST', '/v1/chat/completions', chat_body('s'), headers=bearer(k),
                       timeout=15)
        slow.append(r)
    threads = [threading.Thread(target=slow_one, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    m.wait_attempts(lambda a: sum(1 for x in a if x['outcome'] == 'pending') == 4, 10,
                    'the slow requests upstream')
    eq(bb.stop(), 0, 'exit code of the graceful stop')
    for t in threads:
        t.join(timeout=scaled(15))
    eq(sorted(r.status for r in slow), [200] * 4, 'requests in flight at SIGTERM')
    oks += [r.headers['x-request-id'] for r in slow]
    first_gen = {worker_of(x) for x in oks}

    bb.start()
    traffic(12)
    second_gen = {worker_of(x) for x in oks} - first_gen
    check(second_gen, 'the restarted workers reused request id prefixes: %r' % first_gen)
    rows = ledger(bb)
    ids = [r['request_id'] for r in rows]
    eq(len(ids), len(set(ids)), 'ledger request ids unique')
    eq(len(oks), len(set(oks)), 'x-request-id unique across workers and restarts')
    eq(sorted(ids), sorted(oks), 'one ledger row per completed request, across the restart')
    check(all(r['status'] == 200 and r['cost_micros'] > 0 for r in rows), 'rows: %r' % rows[:3])
    slow_ids = {r.headers['x-request-id'] for r in slow}
    for r in rows:
        if r['request_id'] in slow_ids:
            # (10 ms of slack: timers and coarse clocks on either side)
            check(r['latency_ms'] >= 690, 'latency_ms %d of a request the mock held 700 ms'
                  % r['latency_ms'])
    lv = live(bb, k['id'])
    eq((lv['spent_micros'], lv['reserved_micros'], lv['inflight']),
       (sum(r['cost_micros'] for r in rows), 0, 0), 'keys show after the restart (the '
       'period\'s spend comes from the rollups)')


# --------------------------------------------------------------------------------------------
# 8. a worker SIGKILLed mid-stream: its reservation is given back, nothing billed

def first_content(events, what):
    for ev in events:
        if is_content_event(ev):
            return ev
    fail('%s ended before any content' % what)


def test_worker_killed_mid_stream(ctx):
    """Two workers, one metered stream on each; one worker is SIGKILLed: its stream breaks,
    its reservation (only its) is given back, nothing is billed for it; the other stream and
    the next request are billed normally."""
    models = {'alpha': lane('p_openai', 'gpt-4o', price=PRICE_A),
              'slow': lane('p_openai', 'gpt-4o;delay=300', price=PRICE_A)}
    m, bb = start(ctx, models=models, pools={'p': pool(('alpha', 1)), 's': pool(('slow', 1))},
                  workers=2)
    probe = create_key(bb, name='probe')     # finds each connection's worker; not the key tested
    k = create_key(bb, '--budget', '1')
    max_out = 50
    stream_body = chat_body('s', True, max_tokens=max_out)
    worst = worst_micros(PRICE_A, body_len(stream_body), max_out)
    actual = cost_micros(PRICE_A, mock_ir('openai', W_HELLO, MOCK_WORDS))
    # one kept-alive connection to each worker (a probe request tells whose it is)
    conns = {}
    for _ in range(60):
        c = RawConn(bb.port)
        ctx.on_close(c.close)
        c.send_request('POST', '/v1/chat/completions', chat_body('p'), headers=bearer(probe))
        pr = c.response()
        pr.read()
        w = worker_of(pr.headers['x-request-id'])
        if w in conns:
            c.close()
            continue
        conns[w] = c
        if len(conns) == 2:
            break
    eq(len(conns), 2, 'connections to distinct workers')
    streams = {}
    t_admit = time.time()  # the rpm/tpm window the streams are counted in
    for w, c in conns.items():
        c.send_request('POST', '/v1/chat/completions', stream_body, headers=bearer(k))
        r = c.response()
        eq(r.status, 200, 'stream status')
        eq(worker_of(r.headers['x-request-id']), w, 'the stream\'s worker')
        ev = r.events()
        first_content(ev, 'the stream on worker %s' % w)
        streams[w] = (r, ev)
    lv = live(bb, k['id'])
    eq((lv['inflight'], lv['reserved_micros'], lv['spent_micros']), (2, 2 * worst, 0),
       'keys show with two streams in flight (each reserves the worst case)')
    tpm_est = body_len(stream_body) // 4 + max_out
    # only when admission and the read fell in one minute (a run that crossed one read the
    # new window: 0, 0)
    if int(time.time() // 60) == int(t_admit // 60):
        eq((lv['rpm_used'], lv['tpm_used']), (2, 2 * tpm_est), 'rpm/tpm used mid-stream')

    victim = bb.workers()[0]
    bb.allow_log(r'\b%d\b' % victim)   # the exit of a killed worker may be logged loudly
    os.kill(victim, signal.SIGKILL)
    bb.wait_workers(2, exclude=[victim])
    lv = wait_for(lambda: (lambda v: v if v['inflight'] == 1 else None)(live(bb, k['id'])), 5,
                  'the killed worker\'s request given back')
    eq((lv['reserved_micros'], lv['spent_micros']), (worst, 0),
       'keys show after the kill, the other stream still running: only its reservation left')
    if int(time.time() // 60) == int(t_admit // 60):
        eq((lv['rpm_used'], lv['tpm_used']), (2, tpm_est), 'rpm/tpm used after the kill (a '
           'request counts against RPM even if it fails; its TPM estimate is given back)')
    ends = {}
    for w, (r, ev) in streams.items():
        rest = list(ev)
        ends[w] = (r.end, bool(rest) and rest[-1].data == '[DONE]', r.headers['x-request-id'])
    killed = [w for w, e in ends.items() if e[:2] != ('complete', True)]
    eq(len(killed), 1, 'streams broken by the kill (ends %r)' % ends)
    check(ends[killed[0]][0] in ('eof', 'reset'), 'the killed stream ended %r' % ends)
    killed_rid = ends[killed[0]][2]
    survivor_rid = [e[2] for w, e in ends.items() if w != killed[0]][0]
    lv = wait_for(lambda: (lambda v: v if v['inflight'] == 0 else None)(live(bb, k['id'])), 5,
                  'the surviving stream settled')
    eq((lv['reserved_micros'], lv['spent_micros']), (0, actual),
       'keys show once the surviving stream completed')
    rows = [x for x in ledger(bb) if x['key_id'] == k['id']]
    eq([(x['request_id'], x['cost_micros']) for x in rows if x['cost_micros'] > 0],
       [(survivor_rid, actual)], 'billed ledger rows (the killed request is not billed)')
    check(killed_rid not in [x['request_id'] for x in rows if x['cost_micros']],
          'the killed request was billed')
    outcomes = sorted(a['outcome'] for a in m.attempts() if a['model'] == 'gpt-4o;delay=300')
    eq(outcomes, ['aborted', 'ok'], 'upstream attempts of the two streams')

    r = send(bb, 'openai', 'p', headers=bearer(k), max_out=max_out)
    eq(r.status, 200, 'the next request after the respawn')
    want = cost_micros(PRICE_A, mock_ir('openai', W_PROMPT, MOCK_WORDS))
    row = [x for x in ledger(bb) if x['request_id'] == r.headers['x-request-id']]
    eq([x['cost_micros'] for x in row], [want], 'the next request\'s ledger row')
    lv = live(bb, k['id'])
    eq((lv['spent_micros'], lv['reserved_micros'], lv['inflight']), (actual + want, 0, 0),
       'keys show after the next request')


# --------------------------------------------------------------------------------------------
# 9. the store locked: on_store_error deny and allow

def lock_store(bb):
    """Hold the database's write lock (BEGIN EXCLUSIVE; WAL mode lets readers through)."""
    con = sqlite3.connect(db_path(bb), timeout=5, isolation_level=None)
    con.execute('BEGIN EXCLUSIVE')
    return con


def store_test(ctx, mode):
    m, bb = start(ctx, governance={'on_store_error': mode}, workers=2)
    bb.allow_log(r'usage ledger')
    k = create_key(bb, '--pools', 'p')
    oks = []

    def req(ingress='openai'):
        r = send(bb, ingress, 'p', headers=bearer(k))
        if r.status == 200:
            oks.append(r.headers['x-request-id'])
        return r
    for _ in range(3):
        eq(req().status, 200, 'before the lock')
    base = status(bb)['governance']
    con = lock_store(bb)
    try:
        eq(req().status, 200, 'the first request after the lock (the store is not known to '
           'fail yet)')
        wait_for(lambda: status(bb)['governance']['store_errors'] > base['store_errors'], 5,
                 'the master failing to write the ledger')
        g = status(bb)['governance']
        check(g['usage_pending'] >= 1, 'usage_pending while locked: %r' % g)
        if mode == 'deny':
            for ingress in ('openai', 'anthropic', 'openai'):
                r = req(ingress)
                check_dialect_error(r, ingress, 503, 'deny while the store fails',
                                    openai_type='server_error',
                                    openai_code='spend_store_unavailable',
                                    anthropic_type='overloaded_error')
                eq(r.headers.get('retry-after'), '1', 'Retry-After of the 503')
        else:
            for i in range(10):
                eq(req(('openai', 'anthropic', 'gemini')[i % 3]).status, 200,
                   'allow while the store fails')
            g = status(bb)['governance']
            check(g['usage_pending'] >= 11, 'usage_pending while locked: %r' % g)
    finally:
        con.execute('COMMIT')
        con.close()
    wait_for(lambda: req().status == 200, 5, 'requests admitted once the store is writable')
    wait_for(lambda: status(bb)['governance']['usage_pending'] == 0, 5, 'the ring drained')
    rows = ledger(bb)
    eq(sorted(r['request_id'] for r in rows), sorted(oks), 'every completed request landed '
       'in the ledger, none lost, none twice')
    g = status(bb)['governance']
    eq(g['ledger_rows_written'], len(oks), 'ledger_rows_written')
    lv = live(bb, k['id'])
    eq((lv['spent_micros'], lv['reserved_micros'], lv['inflight']),
       (sum(r['cost_micros'] for r in rows), 0, 0), 'keys show after the recovery')


def test_store_locked_deny(ctx):
    store_test(ctx, 'deny')


def test_store_locked_allow(ctx):
    store_test(ctx, 'allow')


# --------------------------------------------------------------------------------------------
# 10. SigV4 with a key's AWS pair

def sigv4_headers(akid, secret, host, path, body, when=None, region='us-east-1',
                  service='bedrock', content_sha=True, method='POST', query=''):
    """AWS SigV4 header signing (stdlib), as the AWS SDKs sign a Bedrock runtime request.
    content_sha: also send (and sign) x-amz-content-sha256."""
    amz_date = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(when if when is not None
                                                            else time.time()))
    day = amz_date[:8]
    payload = hashlib.sha256(body).hexdigest()
    hdrs = {'content-type': 'application/json', 'host': host, 'x-amz-date': amz_date}
    if content_sha:
        hdrs['x-amz-content-sha256'] = payload
    signed = ';'.join(sorted(hdrs))
    canon_path = '/'.join(urllib.parse.quote(seg, safe='-_.~') for seg in path.split('/'))
    canon = '\n'.join([method, canon_path, query, ''.join('%s:%s\n' % (h, hdrs[h])
                                                       for h in sorted(hdrs)),
                       signed, payload])
    scope = '%s/%s/%s/aws4_request' % (day, region, service)
    sts = '\n'.join(['AWS4-HMAC-SHA256', amz_date, scope,
                     hashlib.sha256(canon.encode()).hexdigest()])
    key = ('AWS4' + secret).encode()
    for part in (day, region, service, 'aws4_request'):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    # lower-case names: harness.request() sets 'content-type' itself; one header each
    hdrs['authorization'] = ('AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s'
                             % (akid, scope, signed, sig))
    return hdrs


def test_sigv4(ctx):
    prof = 'us.anthropic.claude-x-v1:0'   # a profile-like pool name, ':' and all
    m, bb = start(ctx, pools={'p': pool(('alpha', 1)), 'q': pool(('beta', 1)),
                              prof: pool(('alpha', 1))})
    k = create_key(bb, '--pools', 'p,' + prof, '--aws')
    akid, secret = k['aws_access_key_id'], k['aws_secret_access_key']
    host = '127.0.0.1:%d' % bb.port
    oks = []

    def signed(path, body, **kw):
        raw = json.dumps(body).encode()
        return bb.request('POST', path, raw, headers=sigv4_headers(
            kw.pop('akid', akid), kw.pop('secret', secret), host, path, raw, **kw))
    for stream in (False, True):
        path, b = build('bedrock', 'p', stream=stream)
        r = signed(path, b)
        eq(r.status, 200, 'SigV4-signed Converse%s (body %r)' % (' stream' if stream else '',
                                                                r.body[:300]))
        oks.append(r.headers['x-request-id'])
    path, b = build('bedrock', 'p')
    now = time.time()
    r = signed(path, b, when=now - 200)
    eq(r.status, 200, 'signed 200 s ago (inside the ±300 s skew)')
    oks.append(r.headers['x-request-id'])
    r = signed(path, b, content_sha=False)
    eq(r.status, 200, 'signed without x-amz-content-sha256 (body %r)' % r.body[:300])
    oks.append(r.headers['x-request-id'])
    for what, kw in (('wrong secret', {'secret': secret[:-1] + ('A' if secret[-1] != 'A'
                                                                else 'B')}),
                     ('unknown access key id', {'akid': 'AKIA' + 'Z' * 16}),
                     ('signed 400 s ago', {'when': now - 400}),
                     ('signed 400 s ahead', {'when': now + 400}),
                     ('service name not bedrock', {'service': 's3'})):
        check_401(signed(path, b, **kw), 'bedrock', 'SigV4 %s' % what)
    # the body must be the one signed
    raw = json.dumps(b).encode()
    h = sigv4_headers(akid, secret, host, path, raw)
    check_401(bb.request('POST', path, raw.replace(b'five', b'six!'), headers=h), 'bedrock',
              'SigV4 over another body')
    h = sigv4_headers(akid, secret, host, path, raw, content_sha=False)
    check_401(bb.request('POST', path, raw.replace(b'five', b'six!'), headers=h), 'bedrock',
              'SigV4 (no x-amz-content-sha256) over another body')
    # the signature covers the path: replayed on another model's route it fails
    check_401(bb.request('POST', path.replace('/p/', '/q/'), raw, headers=sigv4_headers(
        akid, secret, host, path, raw)), 'bedrock', 'SigV4 replayed on another path')
    # InvokeModel (the model id with ':' URL-encoded, as the AWS SDKs send it, and so signed
    # over its encoded form) and the inference-profile list Claude Code signs as a GET
    for stream in (False, True):
        ipath, ib = build('bedrock_invoke', 'p', stream=stream)
        r = signed(ipath, ib)
        eq(r.status, 200, 'SigV4-signed InvokeModel%s (body %r)' % (' stream' if stream else '',
                                                                    r.body[:300]))
        oks.append(r.headers['x-request-id'])
    # a model id with ':' as the AWS SDKs send it (encoded, and signed over the encoded form)
    # and raw, as Claude Code sends it
    for mid in (urllib.parse.quote(prof, safe=''), prof):
        ipath, ib = build('bedrock_invoke', mid)
        r = signed(ipath, ib)
        eq(r.status, 200, 'SigV4-signed InvokeModel on %s (body %r)' % (ipath, r.body[:300]))
        oks.append(r.headers['x-request-id'])
    lpath = '/inference-profiles'
    r = bb.request('GET', lpath + '?type=SYSTEM_DEFINED', headers=sigv4_headers(
        akid, secret, host, lpath, b'', method='GET', query='type=SYSTEM_DEFINED'))
    eq(r.status, 200, 'SigV4-signed GET /inference-profiles (body %r)' % r.body[:300])
    eq([x['inferenceProfileId'] for x in r.json()['inferenceProfileSummaries']], ['p', prof],
       'the profiles of a key limited to p and the profile')
    r = bb.request('GET', lpath, headers=sigv4_headers(
        akid, secret, host, lpath, b'', method='POST'))
    check_401(r, 'bedrock_invoke', 'SigV4 signed for another method')
    # SigV4 is a Bedrock-route credential only
    opath, ob = build('openai', 'p')
    oraw = json.dumps(ob).encode()
    check_401(bb.request('POST', opath, oraw, headers=sigv4_headers(akid, secret, host, opath,
                                                                     oraw)),
              'openai', 'SigV4 on an OpenAI route')
    rows = [r for r in ledger(bb) if r['key_id'] == k['id']]
    eq(sorted(r['request_id'] for r in rows), sorted(oks), 'ledger rows of the SigV4 key')
    check(all(r['ingress'].startswith('bedrock') and r['cost_micros'] > 0 for r in rows),
          'rows: %r' % rows)
    # revoked: the AWS pair stops working too
    ctl_json(bb, 'keys', 'revoke', k['id'])
    check_401(signed(path, b), 'bedrock', 'SigV4 with a revoked key\'s pair')


SDK_DIR = os.path.join(SOURCE_ROOT, 'tests', 'sdk')


def test_sigv4_sdk(ctx):
    """The official Bedrock runtime SDK signing with a key's AWS pair (tests/sdk/sigv4_key.mjs):
    Converse 200 and billed to the key; with a wrong secret 401. Without node or the SDK the
    test fails: a missing test dependency is a failure (`cd tests/sdk && npm ci`)."""
    node = shutil.which('node')
    mods = [os.path.join(SDK_DIR, 'node_modules', p)
            for p in ('@aws-sdk/client-bedrock-runtime', '@smithy/node-http-handler')]
    missing = [p for p in mods if not os.path.isdir(p)]
    if not node or missing:
        fail('test dependency missing: %s (install with: cd tests/sdk && npm ci)'
             % ('node' if not node else ', '.join(missing)))
    m, bb = start(ctx)
    k = create_key(bb, '--pools', 'p', '--aws')
    wrong = k['aws_secret_access_key'][::-1]
    env = dict(os.environ, BB_URL='http://127.0.0.1:%d' % bb.port, BB_MODEL='p', BB_PROMPT=PROMPT,
               BB_CALLS=json.dumps([
                   {'id': k['aws_access_key_id'], 'secret': k['aws_secret_access_key']},
                   {'id': k['aws_access_key_id'], 'secret': wrong}]),
               NODE_NO_WARNINGS='1')
    try:
        p = subprocess.run([node, os.path.join(SDK_DIR, 'sigv4_key.mjs')], cwd=SDK_DIR, env=env,
                           capture_output=True, text=True, timeout=scaled(30),
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail('node sigv4_key.mjs did not finish')
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        fail('sigv4_key.mjs printed no result (exit %d): %s %s' % (p.returncode, p.stdout[-800:],
                                                                   p.stderr[-800:]))
    ctx.note('SDK: %s' % json.dumps(res))
    good, bad = res
    check(good.get('ok'), 'the SDK\'s Converse signed with the key\'s pair: %r' % good)
    eq(good['text'], ' '.join(['Hello'] + ['w%d' % i for i in range(2, MOCK_WORDS + 1)]),
       'SDK answer text')
    check(not bad.get('ok') and bad.get('status') == 401, 'the SDK with a wrong secret: %r'
          % bad)
    eq(bad.get('name'), 'UnrecognizedClientException', 'SDK error name for a wrong secret')
    rows = ledger(bb)
    eq([(r['request_id'], r['key_id'], r['ingress'], r['status']) for r in rows],
       [(good['requestId'], k['id'], 'bedrock', 200)], 'the SDK call\'s ledger row')
    eq(rows[0]['cost_micros'], cost_micros(PRICE_A, mock_ir('openai', W_PROMPT, MOCK_WORDS)),
       'the SDK call\'s cost')


def test_continuation_billing(ctx):
    """stream.on_cut: continue bills each lane for its part: the cut part as its own ledger row
    (<id>~1, the cut lane, at its price, output at least its text), the rest under the request
    id on the lane that finished; the key's spend is their sum, within the reservation."""
    models = {'cut': lane('p_anthropic', 'up-cut;fail_first=1;cut=3', price=PRICE_A),
              'good': lane('p_openai', 'up-good', price=PRICE_B)}
    pools = {'c': dict(pool(('cut', 10), ('good', 1)), stream={'on_cut': 'continue'})}
    m, bb = start(ctx, models=models, pools=pools)
    k = create_key(bb, '--budget', '10')
    r = send(bb, 'openai', 'c', headers=bearer(k), stream=True,
             stream_options={'include_usage': True})
    eq(r.status, 200, 'status (body %r)' % r.body[:300])
    ans = dialect_answer('openai', True, r.body)
    check(ans.clean and not ans.error, 'a clean end: %r' % ans)
    eq(ans.text, mock_answer(), 'one whole answer across the two lanes')
    rid = r.headers['x-request-id']
    rows = {x['request_id']: x for x in ledger(bb)}
    eq(sorted(rows), sorted([rid, rid + '~1']), 'ledger rows: the cut part and the rest')
    cut, rest = rows[rid + '~1'], rows[rid]
    eq((cut['lane'], rest['lane']), ('cut', 'good'), 'each part billed to its lane')
    # the cut part: Anthropic reported the input at message_start and a start-of-message
    # output count; its text "Hello w2 w3" (11 bytes) is at least 3 output tokens
    eq((cut['input_tokens'], cut['output_tokens']), (W_PROMPT, 3), 'the cut part\'s tokens')
    eq(cut['cost_micros'], cost_micros(PRICE_A, {'input': W_PROMPT, 'output': 3}),
       'the cut part at the cut lane\'s price')
    # the rest: the prefill's words count as prompt; the five remaining words are the output
    eq((rest['input_tokens'], rest['output_tokens']), (W_PROMPT + 3, MOCK_WORDS - 3),
       'the continuation\'s tokens')
    eq(rest['cost_micros'], cost_micros(PRICE_B, {'input': W_PROMPT + 3,
                                                  'output': MOCK_WORDS - 3}),
       'the continuation at the good lane\'s price')
    lv = live(bb, k['id'])
    eq((lv['spent_micros'], lv['reserved_micros'], lv['inflight']),
       (cut['cost_micros'] + rest['cost_micros'], 0, 0), 'the key\'s spend is the sum')
    # the client's final usage is the sum of the parts
    eq(client_usage('openai', True, r), (W_PROMPT + W_PROMPT + 3, 0, MOCK_WORDS),
       'the usage the client saw: both parts')
    st = json.loads(request(bb.port, 'GET', '/stats', headers=bearer(k)).body)
    good = [x for x in st['pools']['c']['members'] if 'good' in x.values()]
    eq([x.get('continuations') for x in good], [1], '/stats continuations of the good member')


if __name__ == '__main__':
    run([test_carriers, test_token_mode, test_auth_none_ledger, test_passthrough_mode,
         test_budget_burst, test_rpm, test_ledger_prices, test_reservations, test_client_leaves,
         test_revoke_under_traffic, test_stop_restart, test_worker_killed_mid_stream,
         test_store_locked_deny, test_store_locked_allow, test_sigv4, test_sigv4_sdk,
         test_continuation_billing])
