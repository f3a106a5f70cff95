#!/usr/bin/env python3
"""The official SDKs (npm) as real clients of busbar: if the SDK parses it, the wire format
is right. A matrix of (SDK script, ingress dialect, egress provider protocol); each cell starts
bb-mock + busbar and runs the SDK script with node. Today: openai chat → openai. Later issues
add the other SDKs and egress protocols as rows of MATRIX.

node_modules must exist in tests/sdk (tests/run.sh runs `npm ci` there); if it does not, the
test FAILS and says so — it never skips silently."""

import os
import shutil
import subprocess

from harness import (SOURCE_ROOT, check, fail, lane, mock_answer, pool, provider, run, scaled)

SDK_DIR = os.path.join(SOURCE_ROOT, 'tests', 'sdk')

# (script, npm package it needs, ingress dialect, egress protocol of the mock provider)
MATRIX = [
    ('openai_chat.mjs', 'openai', 'openai', 'openai'),
]


def node_ready(package):
    node = shutil.which('node')
    if not node:
        fail('node is not installed: run `bash tests/run.sh` (it installs nodejs and npm)')
    if not os.path.isdir(os.path.join(SDK_DIR, 'node_modules', package)):
        fail('%s/node_modules/%s is missing: run `bash tests/run.sh` (it runs `npm ci` in '
             'tests/sdk), or `npm ci --prefix tests/sdk`' % (SDK_DIR, package))
    return node


def make_cell(script, package, ingress, egress):
    def cell(ctx):
        node = node_ready(package)
        m = ctx.mock()
        conf = {
            'providers': {'mock': dict(provider(m), protocol=egress)},
            'models': {'lane-a': lane('mock', 'sdk-upstream')},
            'pools': {'sdk-pool': pool(('lane-a', 1))},
        }
        bb = ctx.busbar(conf, workers=1)
        env = dict(os.environ, BASE_URL='http://127.0.0.1:%d/v1' % bb.port, MODEL='sdk-pool',
                   EXPECT_TEXT=mock_answer(), NODE_NO_WARNINGS='1')
        try:
            p = subprocess.run([node, os.path.join(SDK_DIR, script)], cwd=SDK_DIR, env=env,
                               capture_output=True, text=True, timeout=scaled(60),
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            fail('node %s did not finish within %.0fs' % (script, scaled(60)))
        for ln in (p.stdout + p.stderr).splitlines():
            ctx.note(ln)
        check(p.returncode == 0, 'node %s exited %d' % (script, p.returncode))
        check('not ok' not in p.stdout, 'a check failed in %s' % script)
        check(len(m.attempts()) > 0, 'the SDK requests never reached the mock')
    cell.__name__ = 'test_%s_%s_to_%s' % (script.split('.')[0], ingress, egress)
    return cell


if __name__ == '__main__':
    run([make_cell(*row) for row in MATRIX])
