#!/usr/bin/env python3
"""The SDK matrix: the official npm SDKs as real clients of busbar. If the SDK parses it, the
wire format is right.

ONE bb-mock (speaking all seven provider protocols) and ONE busbar with seven lanes, one per
egress protocol, all on the mock: e_openai, e_responses, e_anthropic, e_gemini, e_bedrock,
e_cohere, e_bedrock_invoke. tests/sdk/matrix.mjs then drives every client SDK (openai chat,
openai responses, anthropic, genai, bedrock-runtime Converse, cohere v2, bedrock-runtime
InvokeModel) against every lane, three modes per cell (non-stream,
stream, tool-call round trip), asserting the mock's deterministic answer and its attempt log.

TAP: one test per client SDK (its seven cells x three modes), then openai_chat.mjs (models list,
errors, stream helper through the openai SDK), then continuation.mjs (each SDK streams from a
pool with `stream.on_cut: continue` whose first lane cuts the stream after 3 words: one whole
answer, a normal end; on a busbar of its own), then the clean shutdown of both busbars. The 7x7 table goes
to the TAP diagnostics. A failing cell fails its row with the SDK's error, what the mock saw
and busbar's log lines; no cell is ever skipped.

node_modules must exist in tests/sdk (tests/run.sh runs `npm ci` there); if it does not, the
test FAILS and says so. BB_TEST_FILTER=substr runs only the rows whose name contains it."""

import json
import os
import shutil
import subprocess
import sys
import time
import traceback

from harness import (AWS_KEY, AWS_KEY_ENV, SOURCE_ROOT, Ctx, TestFailure, _diag, check, fail,
                     kill_all, lane, mock_answer, pool, provider, scaled, tail)

SDK_DIR = os.path.join(SOURCE_ROOT, 'tests', 'sdk')

# matrix rows: (row key in matrix.mjs, npm package the client module needs)
ROWS = [
    ('openai', 'openai'),
    ('responses', 'openai'),
    ('anthropic', '@anthropic-ai/sdk'),
    ('gemini', '@google/genai'),
    ('bedrock', '@aws-sdk/client-bedrock-runtime'),
    ('cohere', 'cohere-ai'),
    ('bedrock_invoke', '@aws-sdk/client-bedrock-runtime'),
]
# matrix columns: busbar provider protocol of each lane
EGRESS = [('openai', 'openai'), ('responses', 'openai-responses'), ('anthropic', 'anthropic'),
          ('gemini', 'gemini'), ('bedrock', 'bedrock'), ('cohere', 'cohere'),
          ('bedrock_invoke', 'bedrock-invoke')]
MODE_NAMES = {'n': 'non-stream', 's': 'stream', 't': 'tool round trip'}


def node_bin():
    node = shutil.which('node')
    if not node:
        fail('node is not installed: run `bash tests/run.sh` (it installs nodejs and npm)')
    for _, pkg in ROWS:
        if not os.path.isdir(os.path.join(SDK_DIR, 'node_modules', pkg)):
            fail('%s/node_modules/%s is missing: run `bash tests/run.sh` (it runs `npm ci` in '
                 'tests/sdk), or `npm ci --prefix tests/sdk`' % (SDK_DIR, pkg))
    return node


def lanes():
    return {col: {'lane': 'e_' + col, 'upstream': 'up-' + col} for col, _ in EGRESS}


def providers_of(m):
    """One provider per egress protocol, p_<column>, all on the mock."""
    providers = {}
    for col, proto in EGRESS:
        p = dict(provider(m), protocol=proto)
        if proto.startswith('bedrock'):
            p['api_key_env'] = AWS_KEY_ENV   # busbar signs with SigV4
        providers['p_' + col] = p
    return providers


def start(ctx):
    """One mock, one busbar with the six lanes (plus pool sdk-pool for openai_chat.mjs)."""
    m = ctx.mock()
    providers, models = providers_of(m), {}
    for col, proto in EGRESS:
        models['e_' + col] = lane('p_' + col, 'up-' + col)
    # par-pool: an OpenAI lane answering with two parallel tool calls (parallel_tools.mjs)
    models['par_openai'] = lane('p_openai', 'up-openai;tools=2;interleave')
    conf = {'providers': providers, 'models': models,
            'pools': {'sdk-pool': pool(('e_openai', 1)), 'par-pool': pool(('par_openai', 1))},
            'auth': {'mode': 'keys'}}
    bb = ctx.busbar(conf, workers=1, env={AWS_KEY_ENV: AWS_KEY})
    # every SDK authenticates with one virtual key: its secret as the SDK's API key, and its
    # AWS pair for the Bedrock client's SigV4 signature
    p = bb.ctl('--json', 'keys', 'create', '--name', 'sdk-matrix', '--aws')
    if p.returncode != 0:
        fail('busbarctl keys create failed: %s' % p.stderr[-500:])
    key = json.loads(p.stdout)
    bb.sdk_key_id = key['id']
    bb.sdk_env = {'BB_SDK_KEY': key['secret'],
                  'BB_SDK_AWS_ID': key.get('aws_access_key_id') or '',
                  'BB_SDK_AWS_SECRET': key.get('aws_secret_access_key') or ''}
    if not bb.sdk_env['BB_SDK_AWS_ID'] or not bb.sdk_env['BB_SDK_AWS_SECRET']:
        fail('keys create --aws returned no AWS pair: %s' % p.stdout[:500])
    return m, bb


def run_node(ctx, node, script, env, timeout):
    try:
        return subprocess.run([node, os.path.join(SDK_DIR, script)], cwd=SDK_DIR, env=env,
                              capture_output=True, text=True, timeout=scaled(timeout),
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'')
        out = out.decode('utf-8', 'replace') if isinstance(out, bytes) else out
        fail('node %s did not finish within %.0fs; its output so far:\n%s'
             % (script, scaled(timeout), out[-3000:]))


def run_matrix(ctx, node, m, bb, rows):
    results_path = ctx.path('matrix.json')
    env = dict(os.environ, BB_URL='http://127.0.0.1:%d' % bb.port, MOCK_URL=m.base_url,
               BB_LANES=json.dumps(lanes()), BB_LOG=bb.stderr_path, EXPECT_TEXT=mock_answer(),
               SDK_ROWS=','.join(rows), RESULTS_JSON=results_path, NODE_NO_WARNINGS='1',
               MATRIX_DEADLINE_MS=str(int(scaled(75) * 1000)), **bb.sdk_env)
    p = run_node(ctx, node, 'matrix.mjs', env, 100)
    if not os.path.exists(results_path):
        fail('matrix.mjs exited %d without results:\n%s%s'
             % (p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
    with open(results_path) as f:
        res = json.load(f)
    if p.stderr.strip():
        ctx.note('matrix.mjs stderr:\n' + p.stderr[-2000:])
    return res


def row_report(res, row):
    """(failed?, diagnostic lines) for one client row."""
    cells = [c for c in res['cells'] if c['row'] == row]
    lines, bad = [], 0
    if len(cells) != len(EGRESS):
        return True, ['matrix.mjs reported %d cells for row %s, want %d'
                      % (len(cells), row, len(EGRESS))]
    for c in cells:
        for letter in 'nst':
            md = c['modes'][letter]
            if md['ok']:
                continue
            bad += 1
            lines.append('FAIL %s -> %s (lane %s) %s: %s'
                         % (row, c['col'], c['lane'], MODE_NAMES[letter], md.get('error')))
            if md.get('observed') is not None:
                lines.append('  observed: %s' % json.dumps(md['observed'])[:800])
            if md.get('attempts') is not None:
                lines.append('  mock attempts: %s' % json.dumps(md['attempts'])[:800])
            for ln in md.get('log') or []:
                lines.append('  busbar| ' + ln)
    ok = 3 * len(EGRESS) - bad
    lines.insert(0, '%s: %d/%d modes passed (%s)' % (
        row, ok, 3 * len(EGRESS), ' '.join('%s:%s' % (c['col'], ''.join('✓' if c['modes'][x]['ok'] else x
                                                         for x in 'nst')) for c in cells)))
    return bad > 0, lines


def openai_chat(ctx, node, bb):
    env = dict(os.environ, BASE_URL='http://127.0.0.1:%d/v1' % bb.port, MODEL='sdk-pool',
               EXPECT_TEXT=mock_answer(), NODE_NO_WARNINGS='1',
               API_KEY=bb.sdk_env['BB_SDK_KEY'])
    p = run_node(ctx, node, 'openai_chat.mjs', env, 30)
    lines = (p.stdout + p.stderr).splitlines()
    if p.returncode != 0 or 'not ok' in p.stdout:
        raise TestFailure('node openai_chat.mjs exited %d:\n%s' % (p.returncode, '\n'.join(lines)))
    # every SDK request was admitted on the virtual key (none slipped past authentication)
    show = bb.ctl('--json', 'keys', 'show', bb.sdk_key_id)
    live = json.loads(show.stdout).get('live') or {}
    if not live.get('admitted') or live.get('rejected'):
        raise TestFailure('key %s: admitted %r, rejected %r after the SDK runs'
                          % (bb.sdk_key_id, live.get('admitted'), live.get('rejected')))
    lines.append('ok - virtual key %s admitted %d SDK requests' % (bb.sdk_key_id, live['admitted']))
    return lines


def parallel_tools(ctx, node, bb):
    env = dict(os.environ, BASE_URL='http://127.0.0.1:%d' % bb.port, MODEL='par-pool',
               NODE_NO_WARNINGS='1', API_KEY=bb.sdk_env['BB_SDK_KEY'])
    p = run_node(ctx, node, 'parallel_tools.mjs', env, 30)
    lines = (p.stdout + p.stderr).splitlines()
    if p.returncode != 0 or 'not ok' in p.stdout:
        raise TestFailure('node parallel_tools.mjs exited %d:\n%s' % (p.returncode, '\n'.join(lines)))
    return lines


def continuation(ctx, node, m, rows):
    """continuation.mjs on a busbar of its own: for each client SDK a pool cont-<row> =
    [cut lane speaking the SDK's protocol (fail_first=1;cut=3, weight 10), healthy lane speaking
    the next protocol of EGRESS (so each egress writes a prefill once)], on_cut: continue."""
    models, pools, spec = {}, {}, {}
    cols = [c for c, _ in EGRESS]
    for row in rows:
        healthy = cols[(cols.index(row) + 1) % len(cols)]
        models['cut_' + row] = lane('p_' + row, 'cut-%s;fail_first=1;cut=3' % row)
        models['cont_' + row] = lane('p_' + healthy, 'cont-' + row)
        pools['cont-' + row] = pool(('cut_' + row, 10), ('cont_' + row, 1),
                                    stream={'on_cut': 'continue'})
        spec[row] = {'pool': 'cont-' + row, 'cut': 'cut-' + row, 'healthy': 'cont-' + row}
    conf = {'providers': providers_of(m), 'models': models, 'pools': pools}
    try:
        bb = ctx.busbar(conf, name='busbar-continue', env={AWS_KEY_ENV: AWS_KEY})
    except TestFailure:
        ctx.busbars[-1].expect_exit = None  # it exited by itself (its config refused)
        raise
    bb.allow_log(r'failed after the response started')
    env = dict(os.environ, BB_URL='http://127.0.0.1:%d' % bb.port, MOCK_URL=m.base_url,
               POOLS=json.dumps(spec), EXPECT_TEXT=mock_answer(), SDK_ROWS=','.join(rows),
               NODE_NO_WARNINGS='1')
    p = run_node(ctx, node, 'continuation.mjs', env, 40)
    lines = (p.stdout + p.stderr).splitlines()
    if p.returncode != 0 or 'not ok' in p.stdout:
        raise TestFailure('node continuation.mjs exited %d:\n%s\n--- busbar-continue log tail:\n%s'
                          % (p.returncode, '\n'.join(lines), tail(bb.stderr_path, 25)))
    return lines


def main():
    flt = os.environ.get('BB_TEST_FILTER')
    rows = [r for r, _ in ROWS if not flt or flt in 'sdk_' + r]
    do_chat = not flt or flt in 'openai_chat'
    do_par = not flt or flt in 'parallel_tools'
    cont_rows = [r for r, _ in ROWS if not flt or flt in 'continuation_' + r]
    print('1..%d' % (len(rows) + (1 if do_chat else 0) + (1 if do_par else 0) +
                     (1 if cont_rows else 0) + 1),
          flush=True)
    n = 0
    failed = 0
    ctx = Ctx('sdk_matrix')
    t0 = time.monotonic()

    def emit(name, err, notes):
        nonlocal n, failed
        n += 1
        if err:
            failed += 1
            print('not ok %d - %s' % (n, name), flush=True)
            _diag(err)
        else:
            print('ok %d - %s' % (n, name), flush=True)
        for x in notes:
            _diag(x)
        sys.stdout.flush()

    setup_err, res, node, bb, m = None, None, None, None, None
    try:
        node = node_bin()
        m, bb = start(ctx)
        if rows:
            res = run_matrix(ctx, node, m, bb, rows)
    except TestFailure as e:
        setup_err = 'FAILED (setup or matrix run): %s' % e
    except Exception:
        setup_err = 'setup crashed:\n' + traceback.format_exc()

    if res:
        _diag('\n'.join(res['table']))  # the 7x7 table, once, as TAP diagnostics on stdout
    for i, row in enumerate(rows):
        name = 'sdk_%s (%s x %d egress x 3 modes)' % (row, dict(ROWS)[row], len(EGRESS))
        if setup_err:
            emit(name, setup_err, [ctx.diagnostics()] if i == 0 else [])
            continue
        bad, lines = row_report(res, row)
        notes = lines
        if bad:
            notes.append('--- busbar log tail:\n' + tail(bb.stderr_path, 25))
        emit(name, 'FAILED: %s row has failing cells' % row if bad else None, notes)

    if do_chat:
        err, notes = None, []
        if setup_err:
            err = setup_err
        else:
            try:
                notes = openai_chat(ctx, node, bb)
            except TestFailure as e:
                err = 'FAILED: %s' % e
                notes = ['--- busbar log tail:\n' + tail(bb.stderr_path, 25)]
        emit('openai_chat.mjs (models list, errors, stream helper)', err, notes)

    if do_par:
        err, notes = setup_err, []
        if not err:
            try:
                notes = parallel_tools(ctx, node, bb)
            except TestFailure as e:
                err = 'FAILED: %s' % e
                notes = ['--- busbar log tail:\n' + tail(bb.stderr_path, 25)]
        emit('parallel_tools.mjs (two streamed calls from an OpenAI lane, three SDKs)', err, notes)

    if cont_rows:
        err, notes = setup_err, []
        if not err:
            try:
                notes = continuation(ctx, node, m, cont_rows)
            except TestFailure as e:
                err = 'FAILED: %s' % e
        emit('continuation.mjs (stream.on_cut: continue, %d SDKs)' % len(cont_rows), err, notes)

    try:
        problems = ctx.close()
    except Exception:
        problems = ['teardown crashed:\n' + traceback.format_exc()]
    emit('clean shutdown of the busbars and bb-mock (%.1fs total)' % (time.monotonic() - t0),
         '\n'.join('teardown: ' + p for p in problems) if problems else None,
         ctx.notes + ([ctx.diagnostics()] if problems else []))
    if failed or os.environ.get('BB_KEEP_TMP'):
        _diag('temp dir kept: %s' % ctx.tmp)
    else:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    kill_all()
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
