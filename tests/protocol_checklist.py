#!/usr/bin/env python3
"""The "adding a protocol" checklist of docs/protocols.md, checked against the tree.

For every protocol row X(ID, "config", module) of BB_PROTO_LIST (common/config.h):
  1. no source outside the module, the registry, tests/ and bench/ names it in code:
     neither its identifiers (BB_PROTO_<ID>, bb_proto_<module>, proto_<module>) nor, in C, a
     string literal holding its config or module name (comments do not count);
  2. each file the checklist names for it exists (module, docs, tests, fuzz target, mock,
     SDK client) and the lists that must name it do (meson sources, unit tests, fuzz run);
  3. the checklist in docs/protocols.md names each of those places.
Prints TAP. Usage: protocol_checklist.py [source root] (default: this file's ../).
"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), '..'))

# Where a protocol may be named, besides its own module: the registry row and the build's
# source list. tests/ and bench/ exercise protocols by name.
REGISTRY = ['common/config.h', 'worker/meson.build']
EXERCISES = ('tests/', 'bench/')
# String literals naming a vendor that are not about a wire protocol.
NOT_PROTOCOL = {
    'common/price.c': 'model ids carry vendor prefixes ("anthropic.", "openai/") for pricing',
    'worker/aws.c': "the envelope Bedrock's modules share: its hosts are bedrock-runtime.*",
}

# Per protocol (module m): files that must exist, and files that must mention proto_<m> /
# <m>; each place is also one the checklist in docs/protocols.md must name.
MUST_EXIST = [
    'worker/proto_{m}.c',
    'docs/protocols/{m}.md',
    'tests/unit/test_proto_{m}.c',
    'tests/fixtures/proto/{m}',
    'tests/fixtures/pairs/in/req.{m}.json',
    'tests/mock/{m}.c',
    'tests/sdk/client_{m}.mjs',
    'tests/fuzz/corpus/proto_{m}',
]
MUST_NAME = [  # (file, what it must contain)
    ('worker/meson.build', "'proto_{m}.c'"),
    ('tests/unit/meson.build', "'proto_{m}'"),
    ('tests/fuzz/run.sh', 'proto_{m}'),
    ('tests/mock/meson.build', "'{m}.c'"),
    ('tests/sdk/matrix.mjs', "'{m}'"),
    ('docs/protocols.md', 'protocols/{m}.md'),
    ('docs/protocols/{m}.md', '<!-- params:begin -->'),
]
CHECKLIST_NAMES = [
    'worker/proto_<m>.c', 'bb_proto_<m>', 'BB_PROTO_LIST', 'common/config.h',
    'worker/meson.build', 'docs/protocols/<m>.md', 'docs/protocols.md', 'docs/reliability.md',
    'etc/providers.yaml', 'tests/unit/test_proto_<m>.c', 'tests/unit/meson.build',
    'tests/fixtures/proto/<m>/', 'tests/fixtures/pairs/in/', 'tests/unit/test_protokit.c',
    'tests/unit/test_errors.c', 'tests/mock/<m>.c', 'tests/sdk/client_<m>.mjs',
    'tests/sdk/matrix.mjs', 'tests/integration/test_sdk.py', 'tests/fuzz/meson.build',
    'tests/fuzz/run.sh', 'tests/fuzz/corpus/proto_<m>/',
]

n_tests = 0
failed = 0


def ok(cond, what, detail=''):
    global n_tests, failed
    n_tests += 1
    print('%sok %d - %s' % ('' if cond else 'not ', n_tests, what))
    if not cond:
        failed += 1
        for line in detail.splitlines():
            print('#   ' + line)


def read(rel):
    with open(os.path.join(ROOT, rel), encoding='utf-8', errors='replace') as f:
        return f.read()


def tracked():
    try:
        out = subprocess.run(['git', '-C', ROOT, 'ls-files'], check=True, capture_output=True,
                             text=True).stdout.split('\n')
        files = [f for f in out if f]
    except (OSError, subprocess.CalledProcessError):  # a tarball: walk it
        files = []
        for d, dirs, names in os.walk(ROOT):
            dirs[:] = [x for x in dirs if not x.startswith('.') and x != 'node_modules' and
                       not os.path.exists(os.path.join(d, x, 'build.ninja'))]
            files += [os.path.relpath(os.path.join(d, n), ROOT) for n in names]
    return [f for f in files if os.path.isfile(os.path.join(ROOT, f))]


def code_of(text):
    """C text without comments (string literals kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('/*', i):
            j = text.find('*/', i + 2)
            i = n if j < 0 else j + 2
            out.append(' ')
        elif text.startswith('//', i):
            j = text.find('\n', i)
            i = n if j < 0 else j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(text[i:j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return ''.join(out)


rows = re.findall(r'X\((\w+),\s*"([^"]+)",\s*(\w+)\)', read('common/config.h'))
ok(len(rows) >= 1, 'BB_PROTO_LIST has rows (%d)' % len(rows))
modules = ['worker/proto_%s.c' % m for _, _, m in rows]

files = tracked()
sources = [f for f in files if f.endswith(('.c', '.h')) and not f.startswith(EXERCISES)]
builds = [f for f in files if os.path.basename(f) == 'meson.build' and
          not f.startswith(EXERCISES)]
texts = {f: code_of(read(f)) for f in sources}
texts.update({f: re.sub(r'#.*', '', read(f)) for f in builds})

for pid, config, m in rows:
    own = {'worker/proto_%s.c' % m} | set(REGISTRY)
    ident = re.compile(r'\b(BB_PROTO_%s|bb_proto_%s|proto_%s)\b' % (pid, m, m))
    names = {re.escape(config), re.escape(m)}
    literal = re.compile(r'"[^"\n]*\b(%s)\b[^"\n]*"' % '|'.join(sorted(names)))
    hits = []
    for f, t in sorted(texts.items()):
        if f in own:
            continue
        for no, line in enumerate(t.split('\n'), 1):
            if ident.search(line):
                hits.append('%s:%d: %s' % (f, no, line.strip()))
            elif f.endswith(('.c', '.h')) and f not in modules and f not in NOT_PROTOCOL and \
                    literal.search(line):
                hits.append('%s:%d: %s' % (f, no, line.strip()))
    ok(not hits, '%s: named only by its module and the registry' % m,
       'named outside the checklist\'s files:\n' + '\n'.join(hits))

    missing = [p.format(m=m) for p in MUST_EXIST
               if not os.path.exists(os.path.join(ROOT, p.format(m=m)))]
    ok(not missing, '%s: the checklist\'s files exist' % m, 'missing: ' + ', '.join(missing))
    unnamed = ['%s (no %s)' % (f.format(m=m), w.format(m=m)) for f, w in MUST_NAME
               if not os.path.exists(os.path.join(ROOT, f.format(m=m))) or
               w.format(m=m) not in read(f.format(m=m))]
    ok(not unnamed, '%s: the lists name it' % m, 'not named in: ' + ', '.join(unnamed))

doc = read('docs/protocols.md')
sec = doc[doc.find('## Adding a protocol'):]
sec = sec[:sec.find('\n## ', 4)] if '\n## ' in sec[4:] else sec
absent = [x for x in CHECKLIST_NAMES if x not in sec]
ok(doc.find('## Adding a protocol') >= 0 and not absent,
   'docs/protocols.md "Adding a protocol" names every place', 'not named: ' + ', '.join(absent))

print('1..%d' % n_tests)
sys.exit(1 if failed else 0)
