#!/usr/bin/env python3
"""What coding agents send, through the real busbar against bb-mock (the recorded requests of
tests/fixtures/agents/, replayed; the real CLIs are tests/agents, not part of this run):

- Codex on its default model: its tools arrive in an additional_tools item, in namespaces,
  `exec` a freeform (custom) tool. On an Anthropic lane the mock sees them (flattened), calls
  `exec`, and Codex's client gets a custom_tool_call with its namespace and raw input back —
  as a JSON answer and as a stream; the tool result it then sends reaches the mock.
- x-busbar-strict: a request whose web search tool a lane cannot carry is refused (400
  untranslatable_fields, in the client's dialect) instead of silently losing it; the same
  request goes through on a lane that has a web search.
- Claude Code: a system message among the turns stays in place on an OpenAI lane; with no
  max_tokens from the client an Anthropic lane asks for the model's own maximum output.
"""
import json
import os

from harness import (SOURCE_ROOT, check, eq, invoke_chunks, lane, pool, providers_all, run,
                     sse_events)
from harness import AWS_KEY, AWS_KEY_ENV

FIX = os.path.join(SOURCE_ROOT, 'tests', 'fixtures', 'agents')


def fixture(name):
    with open(os.path.join(FIX, name + '.json')) as f:
        return json.load(f)['exchanges']


def start(ctx, models, pools):
    m = ctx.mock()
    conf = {'providers': providers_all(m, AWS_KEY_ENV), 'models': models, 'pools': pools}
    return m, ctx.busbar(conf, workers=1, env={AWS_KEY_ENV: AWS_KEY})


def test_codex_default_tools(ctx):
    up = 'cx;call=exec;args={"input":"text(\'agent-ok\')"}'
    m, bb = start(ctx, {'l_anth': lane('p_anthropic', up)},
                  {'codex-pool': pool(('l_anth', 1))})
    first, second = [e['req_body'] for e in fixture('codex-default-tool')]
    for stream in (False, True):
        body = dict(first, model='codex-pool', stream=stream)
        r = bb.request('POST', '/v1/responses', body, timeout=10)
        eq(r.status, 200, 'Codex request (stream=%s) (body %r)' % (stream, r.body[:300]))
        att = m.attempts()[-1]
        check('exec' in att['tools'] and 'clock__sleep' in att['tools'],
              'the namespaced tools reached the Anthropic lane: %r' % att['tools'])
        check('tools' not in r.headers.get('x-busbar-dropped-fields', ''),
              'no tool named dropped: %r' % r.headers.get('x-busbar-dropped-fields'))
        if stream:
            evs = [json.loads(d) for _, d in sse_events(r.body) if d]
            done = [e['item'] for e in evs if e.get('type') == 'response.output_item.done']
            check(any(e.get('type') == 'response.custom_tool_call_input.done' and
                      e.get('input') == "text('agent-ok')" for e in evs),
                  'custom_tool_call_input.done with the input: %r' % evs[-4:])
        else:
            done = r.json()['output']
        calls = [i for i in done if i['type'] == 'custom_tool_call']
        eq(len(calls), 1, 'one custom_tool_call in %r' % done)
        c = calls[0]
        eq((c['name'], c['namespace'], c['input']), ('exec', 'functions', "text('agent-ok')"),
           'the call in Codex\'s shape')
        check(c['call_id'].startswith('call_'), 'a Responses call id: %r' % c['call_id'])
    # the second request carries the tool's output for that call: it reaches the provider
    r = bb.request('POST', '/v1/responses', dict(second, model='codex-pool', stream=False))
    eq(r.status, 200, 'the tool result turn (body %r)' % r.body[:300])
    res = m.attempts()[-1]['tool_results']
    check(res and 'busbar-agent-tool-ok' in res[0]['content'],
          'the custom tool output reached the mock: %r' % res)


def test_strict(ctx):
    m, bb = start(ctx, {'l_oai': lane('p_openai', 'o;tools=0'),
                        'l_anth': lane('p_anthropic', 'a;tools=0')},
                  {'to-openai': pool(('l_oai', 1)), 'to-anthropic': pool(('l_anth', 1))})
    body = {'input': 'find the news', 'tools': [{'type': 'web_search'}]}
    strict = {'x-busbar-strict': 'true'}
    r = bb.request('POST', '/v1/responses', dict(body, model='to-openai'), headers=strict)
    eq(r.status, 400, 'strict: the OpenAI lane cannot carry a web search (body %r)' % r.body)
    e = r.json()['error']
    eq(e['code'], 'untranslatable_fields', 'error code')
    check('tools.web_search' in e['message'] and 'openai' in e['message'],
          'the message names the field and the lane protocol: %r' % e['message'])
    n = len(m.attempts())
    eq(n, 0, 'nothing was sent upstream')
    # not strict: it goes, and the header names what was dropped
    r = bb.request('POST', '/v1/responses', dict(body, model='to-openai'))
    eq(r.status, 200, 'not strict: served')
    eq(r.headers.get('x-busbar-dropped-fields'), 'tools.web_search', 'named dropped')
    # a lane with a web search carries it, strict or not
    r = bb.request('POST', '/v1/responses', dict(body, model='to-anthropic'), headers=strict)
    eq(r.status, 200, 'strict on the Anthropic lane (body %r)' % r.body[:300])
    sent = json.loads(m.attempts()[-1]['body'])
    check({'type': 'web_search_20250305', 'name': 'web_search'} in sent['tools'],
          'Anthropic\'s web search tool: %r' % sent['tools'])


def test_claude_code_system_and_max_tokens(ctx):
    m, bb = start(ctx, {'l_oai': lane('p_openai', 'o;tools=0'),
                        'l_claude': lane('p_anthropic', 'claude-sonnet-4-5-20250929;tools=0')},
                  {'claude-agent': pool(('l_oai', 1)), 'sonnet': pool(('l_claude', 1))})
    # Claude Code's request shape, shrunk (the mock logs the first 16 KiB of a body): a
    # system turn after the user's, as the recording has it
    rec = fixture('claude-anthropic-hello')[0]['req_body']
    turn = next(x for x in rec['messages'] if x['role'] == 'system')
    req = {'model': 'claude-agent', 'max_tokens': 256, 'system': rec['system'][:2],
           'messages': [{'role': 'user', 'content': 'say hello'},
                        {'role': 'system', 'content': turn['content']},
                        {'role': 'assistant', 'content': 'hello'},
                        {'role': 'user', 'content': 'again'}]}
    r = bb.request('POST', '/v1/messages', req)
    eq(r.status, 200, 'Claude Code\'s request on an OpenAI lane (body %r)' % r.body[:300])
    sent = json.loads(m.attempts()[-1]['body'])
    roles = [x['role'] for x in sent['messages']]
    eq(roles, ['system', 'user', 'system', 'assistant', 'user'],
       'the system turn kept its place after the user\'s')
    # no max_tokens from the client: the model's own maximum, not 4096
    r = bb.request('POST', '/v1/chat/completions',
                   {'model': 'sonnet', 'messages': [{'role': 'user', 'content': 'hi'}]})
    eq(r.status, 200, 'chat to an Anthropic lane')
    eq(json.loads(m.attempts()[-1]['body'])['max_tokens'], 64000,
       'max_tokens of claude-sonnet-4-5 (its max_output in etc/prices.yaml)')


def test_claude_bedrock_stream(ctx):
    """Claude Code in Bedrock mode's tool turn, replayed on a Gemini lane: the answer is
    InvokeModel's chunked stream with the tool call, and message_stop's metrics."""
    m, bb = start(ctx, {'l_gem': lane('p_gemini', 'g;call=Bash;args={"command":"true"}')},
                  {'claude-agent': pool(('l_gem', 1))})
    ex = fixture('claude-bedrock-tool')
    eq(ex[0]['path'].split('?')[0], '/inference-profiles', 'the recording starts with the list')
    r = bb.request('GET', '/inference-profiles?type=SYSTEM_DEFINED')
    eq([p['inferenceProfileId'] for p in r.json()['inferenceProfileSummaries']],
       ['claude-agent', 'l_gem'], 'the profiles: the pool, then the lane')
    r = bb.request('POST', ex[1]['path'], ex[1]['req_body'])
    eq(r.status, 200, 'invoke-with-response-stream on a Gemini lane (body %r)' % r.body[:200])
    evs = [j for ev, j in invoke_chunks(r.body) if ev == 'chunk']
    starts = [e['content_block'] for e in evs if e.get('type') == 'content_block_start']
    check(any(b['type'] == 'tool_use' and b['name'] == 'Bash' for b in starts),
          'a Bash tool_use block: %r' % starts)
    stop = evs[-1]
    eq(stop.get('type'), 'message_stop', 'the stream ends with message_stop')
    check('amazon-bedrock-invocationMetrics' in stop, 'with Bedrock\'s metrics: %r' % stop)


if __name__ == '__main__':
    run([test_codex_default_tools, test_strict, test_claude_code_system_and_max_tokens,
         test_claude_bedrock_stream])
