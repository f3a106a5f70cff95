#!/usr/bin/env python3
"""The harness itself against bb-mock alone (no busbar): readiness, the attempt log, the
raw HTTP/SSE reader, the deterministic content and the fault directives the other tests rely
on. If this fails, fix the harness or the mock before reading other failures."""

import time

from harness import (RawConn, chat_body, check, delta_text, eq, is_content_event, mock_answer,
                     mock_prompt_tokens, request, run, swrr_sequence, to_yaml)


def test_swrr_reference(ctx):
    eq(''.join('abc'[i] for i in swrr_sequence([5, 1, 1], 7)), 'aabacaa', 'nginx 5,1,1')
    eq(swrr_sequence([1, 1], 4), [0, 1, 0, 1], 'equal weights alternate')


def test_yaml_writer(ctx):
    y = to_yaml({'a': 1, 'b': {'c': 'x;y', 'd': [1, 2]}, 'e': [{'f': 1, 'g': 'h'}], 'k': {}})
    eq(y, 'a: 1\nb:\n  c: "x;y"\n  d: [1, 2]\ne:\n  - f: 1\n    g: "h"\nk: {}', 'yaml')


def test_mock_non_stream(ctx):
    m = ctx.mock()
    msgs = [{'role': 'user', 'content': 'one two three'}]
    r = request(m.port, 'POST', '/v1/chat/completions', chat_body('up-model', messages=msgs),
                headers={'authorization': 'Bearer abc'})
    eq(r.status, 200, 'status')
    j = r.json()
    eq(j['choices'][0]['message']['content'], mock_answer(), 'answer')
    eq(j['usage']['prompt_tokens'], mock_prompt_tokens(msgs), 'prompt tokens')
    a = m.attempts()
    eq(len(a), 1, 'attempts')
    eq((a[0]['model'], a[0]['authorization'], a[0]['outcome'], a[0]['status']),
       ('up-model', 'Bearer abc', 'ok', 200), 'attempt record')
    m.reset()
    eq(m.attempts(), [], 'attempts after reset')


def test_mock_stream_reader(ctx):
    m = ctx.mock()
    c = RawConn(m.port)
    ctx.on_close(c.close)
    c.send_request('POST', '/v1/chat/completions',
                   chat_body('m;delay=50;words=4', stream=True,
                             stream_options={'include_usage': True}))
    r = c.response()
    eq(r.status, 200, 'status')
    evs = list(r.events())
    check(r.end in ('complete',), 'end %s' % r.end)
    eq(evs[-1].data, '[DONE]', 'last event')
    eq(delta_text(evs), mock_answer(4), 'text')
    content = [e for e in evs if is_content_event(e)]
    eq(len(content), 4, 'content events')
    check(content[-1].t - content[0].t >= 0.1, 'events were not spread out in time')


def test_mock_faults(ctx):
    m = ctx.mock()
    r = request(m.port, 'POST', '/v1/chat/completions', chat_body('m;status=429;retry_after=3'))
    eq(r.status, 429, 'status= directive')
    eq(r.headers.get('retry-after'), '3', 'retry_after directive')
    # cut=2: two word chunks then a reset, no [DONE].
    c = RawConn(m.port)
    ctx.on_close(c.close)
    c.send_request('POST', '/v1/chat/completions', chat_body('m;cut=2', stream=True))
    r = c.response()
    evs = list(r.events())
    check(not any(e.data == '[DONE]' for e in evs), '[DONE] after cut')
    eq(delta_text(evs), 'Hello w2', 'text before the cut')
    check(r.end in ('eof', 'reset'), 'end after cut: %s' % r.end)
    # noresponse + client close → aborted.
    m.reset()
    c = RawConn(m.port)
    c.send_request('POST', '/v1/chat/completions', chat_body('m;noresponse'))
    m.wait_attempts(lambda a: len(a) == 1 and a[0]['outcome'] == 'pending', 3, 'pending')
    t0 = time.monotonic()
    c.close()
    m.wait_attempts(lambda a: a[0]['outcome'] == 'aborted', 3, 'aborted')
    check(time.monotonic() - t0 < 1.0, 'abort not seen promptly')
    # fail_first=1 flaps: first attempt fails, then normal.
    m.reset()
    body = chat_body('m;status=503;fail_first=1')
    eq(request(m.port, 'POST', '/v1/chat/completions', body).status, 503, 'fail_first 1st')
    eq(request(m.port, 'POST', '/v1/chat/completions', body).status, 200, 'fail_first 2nd')


if __name__ == '__main__':
    run([test_swrr_reference, test_yaml_writer, test_mock_non_stream, test_mock_stream_reader,
         test_mock_faults])
