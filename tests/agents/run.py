#!/usr/bin/env python3
"""tests/agents: the real coding-agent CLIs through busbar against bb-mock, on every lane
protocol (see README.md). Optional: not part of `bash tests/run.sh` (the CLIs are ~900 MB).

    cd tests/agents && npm ci          # once: @anthropic-ai/claude-code, @openai/codex,
                                       # @google/gemini-cli (versions pinned in package.json)
    python3 tests/agents/run.py [--agents a,b] [--lanes p,q] [--kinds hello,tool]
                                [--record DIR] [--keep]

One line per cell: agent, lane protocol, kind (hello: a text answer; tool: the agent runs one
of its own tools and sends the result back), verdict, seconds. A cell passes when the CLI
exits 0 and prints the mock's answer, and, for a tool cell, when the mock saw the tool result
the agent sent back (its id and content) after the call it issued; toolerr: the mock calls the
tool with arguments it does not take, and the agent must send its error back (Claude Code as
tool_result.is_error, Gemini CLI as a functionResponse error, Codex as the output text).
--record DIR puts tap.py between the CLI and busbar on the same-protocol lane's cells and
writes what the CLI sent and got, scrubbed by scrub.py, to DIR/<agent>-<kind>.json (the
fixtures in tests/fixtures/agents/ are made so). Exit status 1 when a cell failed.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
os.environ.setdefault('BUSBAR_BIN', os.path.join(ROOT, 'build', 'master', 'busbar'))
os.environ.setdefault('BUSBARCTL_BIN', os.path.join(ROOT, 'build', 'ctl', 'busbarctl'))
os.environ.setdefault('BB_MOCK_BIN', os.path.join(ROOT, 'build', 'tests', 'mock', 'bb-mock'))
os.environ.setdefault('BB_SOURCE_ROOT', ROOT)

from harness import (AWS_KEY, AWS_KEY_ENV, PROVIDER_PROTOCOL, Ctx, TestFailure, kill_all,  # noqa
                     lane, mock_answer, pool, providers_all, spawn)

BIN = os.path.join(HERE, 'node_modules', '.bin')
ANSWER = mock_answer()
TOOL_MARK = 'busbar-agent-tool-ok'

# The agents: the model name each sends (a busbar pool), the tool the mock makes it call (a
# tool of its own, with arguments it accepts) and how its CLI is run.
AGENTS = {
    'claude-anthropic': {'model': 'claude-agent', 'call': 'Bash',
                         'args': '{"command":"echo_%s","description":"print_a_word"}' % TOOL_MARK},
    'claude-bedrock': {'model': 'claude-agent', 'call': 'Bash',
                       'args': '{"command":"echo_%s","description":"print_a_word"}' % TOOL_MARK},
    'codex-default': {'model': None, 'call': 'exec', 'args': '{"input":"text(\'%s\')"}' % TOOL_MARK},
    'codex-gpt-5.5': {'model': 'gpt-5.5', 'call': 'exec_command',
                      'args': '{"cmd":"echo_%s"}' % TOOL_MARK},
    'gemini': {'model': 'gemini-agent', 'call': 'run_shell_command',
               'args': '{"command":"echo_%s"}' % TOOL_MARK},
}
LANES = ['anthropic', 'bedrock_invoke', 'openai', 'responses', 'gemini', 'bedrock', 'cohere']
SAME = {'claude-anthropic': 'anthropic', 'claude-bedrock': 'bedrock_invoke',
        'codex-default': 'responses', 'codex-gpt-5.5': 'responses', 'gemini': 'gemini'}
PROMPT = {'hello': 'Say hello.', 'tool': 'Run the command that prints a word, then say done.',
          'toolerr': 'Run the command that prints a word, then say done.'}
KINDS = ('hello', 'tool', 'toolerr')
TIMEOUT = 120


def codex_default_model():
    """The model Codex uses when none is configured (its `exec` banner names it)."""
    return os.environ.get('BB_CODEX_DEFAULT_MODEL', 'gpt-6.2-sol')


def model_of(agent):
    return AGENTS[agent]['model'] or codex_default_model()


def start_busbar(ctx, m, proto, kind, key_env):
    """One busbar whose pools (every agent's model name) have one lane each on `proto`."""
    models, pools = {}, {}
    for agent, a in AGENTS.items():
        name = model_of(agent)
        if name in pools:
            continue
        # toolerr: the call's arguments do not fit the tool: the agent answers with an error
        args = a['args'] if kind == 'tool' else '{"q":"w1"}'
        direc = 'tools=0' if kind == 'hello' else 'call=%s;args=%s' % (a['call'], args)
        up = '%s-%s;%s' % (name, kind, direc)
        models['l_' + name] = lane('p_' + proto, up)
        pools[name] = pool(('l_' + name, 1))
    conf = {'providers': providers_all(m, AWS_KEY_ENV), 'models': models, 'pools': pools,
            'auth': {'mode': 'keys'}}
    bb = ctx.busbar(conf, name='busbar-%s-%s' % (proto, kind), env={AWS_KEY_ENV: AWS_KEY})
    p = bb.ctl('--json', 'keys', 'create', '--name', 'agents', '--aws')
    if p.returncode != 0:
        raise TestFailure('busbarctl keys create: %s' % p.stderr[-300:])
    key = json.loads(p.stdout)
    key_env.update(KEY=key['secret'], AWS_ID=key['aws_access_key_id'],
                   AWS_SECRET=key['aws_secret_access_key'])
    return bb


def agent_argv(agent, kind, base, home, key):
    """(argv, env) of one CLI run against base (busbar or the tap in front of it)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('ANTHROPIC_', 'OPENAI_', 'GEMINI_', 'GOOGLE_', 'AWS_', 'CLAUDE_'))}
    env.update(HOME=home, NO_COLOR='1', CI='1', DISABLE_AUTOUPDATER='1', DISABLE_TELEMETRY='1',
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC='1', IS_SANDBOX='1')
    prompt = PROMPT[kind]
    model = model_of(agent)
    if agent.startswith('claude'):
        env.update(ANTHROPIC_MODEL=model, ANTHROPIC_SMALL_FAST_MODEL=model,
                   ANTHROPIC_DEFAULT_HAIKU_MODEL=model, ANTHROPIC_DEFAULT_SONNET_MODEL=model,
                   ANTHROPIC_DEFAULT_OPUS_MODEL=model)
        if agent == 'claude-bedrock':
            env.update(CLAUDE_CODE_USE_BEDROCK='1', ANTHROPIC_BEDROCK_BASE_URL=base,
                       AWS_REGION='us-east-1', AWS_ACCESS_KEY_ID=key['AWS_ID'],
                       AWS_SECRET_ACCESS_KEY=key['AWS_SECRET'])
        else:
            env.update(ANTHROPIC_BASE_URL=base, ANTHROPIC_API_KEY=key['KEY'])
        argv = [os.path.join(BIN, 'claude'), '-p', prompt, '--dangerously-skip-permissions']
    elif agent.startswith('codex'):
        os.makedirs(os.path.join(home, '.codex'), exist_ok=True)
        with open(os.path.join(home, '.codex', 'config.toml'), 'w') as f:
            f.write('model = "%s"\nmodel_provider = "busbar"\n\n[model_providers.busbar]\n'
                    'name = "busbar"\nbase_url = "%s/v1"\nenv_key = "BUSBAR_KEY"\n'
                    'wire_api = "responses"\n' % (model, base))
        env.update(BUSBAR_KEY=key['KEY'])
        argv = [os.path.join(BIN, 'codex'), 'exec', '--skip-git-repo-check',
                '--dangerously-bypass-approvals-and-sandbox', prompt]
    else:
        os.makedirs(os.path.join(home, '.gemini'), exist_ok=True)
        with open(os.path.join(home, '.gemini', 'settings.json'), 'w') as f:
            json.dump({'security': {'auth': {'selectedType': 'gemini-api-key'}},
                       'privacy': {'usageStatisticsEnabled': False}}, f)
        env.update(GEMINI_API_KEY=key['KEY'], GOOGLE_GEMINI_BASE_URL=base,
                   GEMINI_DEFAULT_AUTH_TYPE='gemini-api-key', GEMINI_CLI_TRUST_WORKSPACE='true')
        argv = [os.path.join(BIN, 'gemini'), '-m', model, '-p', prompt, '--yolo']
    return argv, env


def start_tap(ctx, bb, out):
    p = spawn([sys.executable, os.path.join(HERE, 'tap.py'), '--upstream',
               'http://127.0.0.1:%d' % bb.port, '--out', out], stdout=subprocess.PIPE)
    line = p.stdout.readline().decode()
    if not line.startswith('ready '):
        raise TestFailure('tap.py did not start: %r' % line)
    ctx.on_close(lambda: (p.terminate(), p.wait(5)) and None)
    return 'http://127.0.0.1:%s' % line.split()[1]


def run_cell(ctx, m, bb, key, agent, proto, kind, record):
    home = ctx.path('home-%s-%s-%s' % (agent, proto, kind))
    work = os.path.join(home, 'work')
    os.makedirs(work, exist_ok=True)
    base = 'http://127.0.0.1:%d' % bb.port
    tap_out = None
    if record and SAME[agent] == proto:
        tap_out = ctx.path('%s-%s.jsonl' % (agent, kind))
        base = start_tap(ctx, bb, tap_out)
    argv, env = agent_argv(agent, kind, base, home, key)
    since = m.attempts()[-1]['seq'] if m.attempts() else 0
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                           timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'').decode('utf-8', 'replace') if isinstance(e.stdout, bytes) \
            else (e.stdout or '')
        rc = 'timeout'
    secs = time.monotonic() - t0
    atts = [a for a in m.attempts() if a['seq'] > since]
    mine = [a for a in atts if (a.get('model') or '').startswith('%s-%s;' % (model_of(agent), kind))]
    problems = []
    if rc != 0:
        problems.append('exit %s' % rc)
    if kind == 'hello':
        if ANSWER not in out:
            problems.append('the answer is not in its output')
    else:
        called = [a for a in mine if a['tools']]
        results = [r for a in mine for r in a['tool_results']]
        if not called:
            problems.append('no request declared tools')
        if not results:
            problems.append('no tool result came back')
        elif kind == 'toolerr' and not any(r.get('content') for r in results):
            problems.append('the error result is empty')
        elif kind == 'tool' and not any(TOOL_MARK in (r.get('content') or '') for r in results):
            problems.append('no tool result carries what the tool printed (%s): %s'
                            % (TOOL_MARK, json.dumps(results)[:300]))
        if ANSWER not in out:
            problems.append('the final answer is not in its output')
    if tap_out and os.path.exists(tap_out):
        subprocess.run([sys.executable, os.path.join(HERE, 'scrub.py'), tap_out,
                        os.path.join(record, '%s-%s.json' % (agent, kind))], check=True)
    return problems, secs, out, mine


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--agents', default=','.join(AGENTS))
    ap.add_argument('--lanes', default=','.join(LANES))
    ap.add_argument('--kinds', default=','.join(KINDS))
    ap.add_argument('--record')
    ap.add_argument('--keep', action='store_true')
    ap.add_argument('--verbose', action='store_true')
    a = ap.parse_args()
    for b in ('claude', 'codex', 'gemini'):
        if not os.access(os.path.join(BIN, b), os.X_OK):
            print('FAILED: %s is not installed: run `npm ci` in tests/agents' % b)
            return 1
    if a.record:
        os.makedirs(a.record, exist_ok=True)
        for f in os.listdir(a.record):
            if f.endswith('.json'):
                os.unlink(os.path.join(a.record, f))
    ctx = Ctx('agents')
    failed = total = 0
    try:
        m = ctx.mock()
        for proto in a.lanes.split(','):
            for kind in a.kinds.split(','):
                key = {}
                bb = start_busbar(ctx, m, proto, kind, key)
                for agent in a.agents.split(','):
                    total += 1
                    problems, secs, out, mine = run_cell(ctx, m, bb, key, agent, proto, kind,
                                                         a.record)
                    print('%-17s %-15s %-6s %-4s %5.1fs%s' % (
                        agent, proto, kind, 'ok' if not problems else 'FAIL', secs,
                        '  ' + '; '.join(problems) if problems else ''), flush=True)
                    if problems:
                        failed += 1
                    if problems or a.verbose:
                        for ln in out.strip().splitlines()[-12:]:
                            print('    | ' + ln[:300])
                        for at in mine[-4:]:
                            print('    mock: %s %s %s tools=%d results=%s' % (
                                at['path'][:60], at['status'], at['outcome'], len(at['tools']),
                                json.dumps(at['tool_results'])[:200]))
                bb.stop()
    finally:
        problems = ctx.close()
        kill_all()
        if a.keep or failed:
            print('temp dir kept: %s' % ctx.tmp)
        else:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    print('%d passed, %d failed' % (total - failed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
