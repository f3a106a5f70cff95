#!/bin/sh
# Record the seed corpus of fuzz_request from the integration suite: every connection a test
# opens to busbar (harness.py, BB_RECORD_SEEDS) becomes one input, its credentials rewritten to
# the keys fuzz_request.c configures, then libFuzzer's merge keeps the inputs that add
# coverage to tests/fuzz/corpus/request. Needs build/ (the suites) and clang (build-fuzz/).
#
#   tests/fuzz/record_seeds.sh [suite ...]     default: the suites listed below
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
suites=${*:-"basic bad_input failover stream_faults fault_matrix policies governance governance_ctl hostile reliability swrr health"}
raw=$(mktemp -d /tmp/bb-seeds-raw.XXXXXX)
norm=$(mktemp -d /tmp/bb-seeds-norm.XXXXXX)
trap 'rm -rf "$raw" "$norm"' EXIT

ninja -C build >/dev/null
for s in $suites; do
    printf 'recording %s ... ' "$s"
    if BB_RECORD_SEEDS="$raw" BUSBAR_BIN=build/master/busbar BUSBARCTL_BIN=build/ctl/busbarctl \
        BB_MOCK_BIN=build/tests/mock/bb-mock BB_SOURCE_ROOT="$root" \
        python3 "tests/integration/test_$s.py" >/dev/null 2>&1; then
        echo ok
    else
        echo "failed (seeds kept)"
    fi
done

python3 - "$raw" "$norm" <<'EOF'
import os, re, sys, hashlib
raw, norm = sys.argv[1], sys.argv[2]
KEY = b'sk-fuzz-all-0123456789'      # fuzz_request.c KEY_ALL
AWS = b'AKIDFUZZ0123456789'          # fuzz_request.c AWS_ID
MAX = 65536                          # fuzz_request's request_body_max_bytes scale
n = 0
for name in os.listdir(raw):
    d = open(os.path.join(raw, name), 'rb').read()
    if not d or len(d) > MAX:
        continue
    d = re.sub(rb'(?im)^(authorization:[ \t]*bearer[ \t]+)[^\r\n]*', rb'\g<1>' + KEY, d)
    d = re.sub(rb'(?im)^((?:x-api-key|x-goog-api-key):[ \t]*)[^\r\n]*', rb'\g<1>' + KEY, d)
    d = re.sub(rb'(?im)(Credential=)[A-Z0-9]+', rb'\g<1>' + AWS, d)
    d = re.sub(rb'([?&]key=)[^&\s]*', rb'\g<1>' + KEY, d)
    h = hashlib.sha1(d).hexdigest()
    with open(os.path.join(norm, h), 'wb') as f:
        f.write(d)
    n += 1
print('%d recorded connections normalised' % n)
EOF

if [ ! -d build-fuzz ]; then
    CC=clang meson setup build-fuzz -Dfuzz=true >/dev/null
fi
ninja -C build-fuzz tests/fuzz/fuzz_request >/dev/null
mkdir -p tests/fuzz/corpus/request
build-fuzz/tests/fuzz/fuzz_request -merge=1 -max_len=65536 tests/fuzz/corpus/request "$norm" \
    2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new files' || true
echo "tests/fuzz/corpus/request: $(ls tests/fuzz/corpus/request | wc -l) files"
