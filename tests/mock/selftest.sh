#!/usr/bin/env bash
# Self-test of bb-mock: starts it on an ephemeral port, drives every endpoint and directive of
# tests/mock/README.md with curl, and checks both what the client sees and what the attempt
# log records. Usage: selftest.sh path/to/bb-mock. Needs bash, curl, grep.
set -u
MOCK=${1:?usage: selftest.sh path/to/bb-mock}
TMP=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

FAILS=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; FAILS=$((FAILS + 1)); }
check() { # check NAME COMMAND...: passes when COMMAND succeeds
    local name=$1; shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}
has() { grep -qF -- "$2" "$1"; }          # has FILE STRING
hasnt() { ! grep -qF -- "$2" "$1"; }
count() { grep -cF -- "$2" "$1"; }        # occurrences (lines) of STRING in FILE
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

"$MOCK" --listen 127.0.0.1:0 --name selftest --log "$TMP/log" >"$TMP/stdout" 2>"$TMP/stderr" &
PID=$!
for _ in $(seq 100); do grep -qs '^ready ' "$TMP/stdout" && break; sleep 0.05; done
PORT=$(awk '/^ready /{print $2}' "$TMP/stdout")
[ -n "$PORT" ] || { echo "FAIL - bb-mock did not print 'ready PORT'"; cat "$TMP/stderr"; exit 1; }
BASE=http://127.0.0.1:$PORT
URL=$BASE/v1/chat/completions
SEQ=0 # seq of the last provider attempt sent

body() { # body MODEL STREAM [EXTRA]
    printf '{"model":"%s","stream":%s%s,"messages":[{"role":"user","content":"one two three"}]}' \
        "$1" "$2" "${3:-}"
}
# post NAME MODEL STREAM [curl args...]: response in $TMP/NAME.out (headers + body), curl's
# exit status in RC, timings in TTFB / TOTAL.
post() {
    local name=$1 model=$2 stream=$3; shift 3
    SEQ=$((SEQ + 1))
    local w
    w=$(curl -sS -N -i --http1.1 "$@" -o "$TMP/$name.out" \
        -w '%{time_starttransfer} %{time_total}' -H 'Content-Type: application/json' \
        -H 'Authorization: Bearer sk-self' "$URL" -d "$(body "$model" "$stream")" 2>/dev/null)
    RC=$?
    TTFB=${w% *}
    TOTAL=${w#* }
}
# attempt: the record of attempt $SEQ in $TMP/att (after a short settle for the server side)
attempt() {
    sleep "${1:-0.05}"
    curl -sS "$BASE/_mock/attempts?since=$((SEQ - 1))" -o "$TMP/att"
}
frames() { count "$TMP/$1.out" 'data: '; }

# --- control endpoints
curl -sS -i "$BASE/_mock/health" -o "$TMP/health"
check "health" has "$TMP/health" '{"ok":true}'

# --- plain answer
post plain gpt-x false
attempt
check "plain: 200" has "$TMP/plain.out" 'HTTP/1.1 200 OK'
check "plain: json type" has "$TMP/plain.out" 'Content-Type: application/json'
check "plain: content-length" has "$TMP/plain.out" 'Content-Length: '
check "plain: object" has "$TMP/plain.out" '"id":"chatcmpl-mock-1","object":"chat.completion","created":1700000000,"model":"gpt-x"'
check "plain: content" has "$TMP/plain.out" '"message":{"role":"assistant","content":"Hello w2 w3 w4 w5 w6 w7 w8","refusal":null},"logprobs":null,"finish_reason":"stop"'
check "plain: usage" has "$TMP/plain.out" '"usage":{"prompt_tokens":3,"completion_tokens":8,"total_tokens":11}'
check "plain: attempt" has "$TMP/att" '"seq":1,"name":"selftest","path":"/v1/chat/completions","model":"gpt-x","stream":false,"authorization":"Bearer sk-self","status":200,"outcome":"ok"'

post words 'm;words=3' false
check "words=3" has "$TMP/words.out" '"content":"Hello w2 w3"'

# --- stream
SEQ=$((SEQ + 1))
curl -sS -N -i "$URL" -o "$TMP/stream.out" \
    -d "$(body 'm;words=3' true ',"stream_options":{"include_usage":true}')"
attempt
check "stream: event-stream" has "$TMP/stream.out" 'Content-Type: text/event-stream'
check "stream: no-cache" has "$TMP/stream.out" 'Cache-Control: no-cache'
check "stream: chunked" has "$TMP/stream.out" 'Transfer-Encoding: chunked'
check "stream: 7 frames" [ "$(frames stream)" = 7 ]
check "stream: role chunk" has "$TMP/stream.out" '"delta":{"role":"assistant","content":"","refusal":null}'
check "stream: words" has "$TMP/stream.out" '"delta":{"content":" w3"}'
check "stream: finish" has "$TMP/stream.out" '"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}'
check "stream: usage chunk" has "$TMP/stream.out" '"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}'
check "stream: [DONE] last" [ "$(grep -F 'data: ' "$TMP/stream.out" | tail -1 | tr -d '\r')" = 'data: [DONE]' ]
check "stream: attempt" has "$TMP/att" '"stream":true,"authorization":null,"status":200,"outcome":"ok"'

post streamnu m true
check "stream without include_usage: 11 frames, no usage" \
    [ "$(frames streamnu)" = 11 -a "$(count "$TMP/streamnu.out" '"usage"')" = 0 ]

# --- malformed request body
SEQ=$((SEQ + 1))
curl -sS -i "$URL" -d '{"model": nope' -o "$TMP/badjson.out"
attempt
check "bad json: 400" has "$TMP/badjson.out" 'HTTP/1.1 400 Bad Request'
check "bad json: openai error" has "$TMP/badjson.out" '"type":"invalid_request_error"'
check "bad json: attempt" has "$TMP/att" '"model":null,"stream":false,"authorization":null,"status":400,"outcome":"fault"'

# --- status / retry_after
post s429 'm;status=429;retry_after=7' false
attempt
check "status=429" has "$TMP/s429.out" 'HTTP/1.1 429 Too Many Requests'
check "retry_after=7" has "$TMP/s429.out" 'Retry-After: 7'
check "429 type" has "$TMP/s429.out" '"type":"rate_limit_exceeded"'
check "429 attempt" has "$TMP/att" '"status":429,"outcome":"fault"'
post s500 'm;status=500' true
check "status=500 on a stream: JSON error" has "$TMP/s500.out" '"type":"server_error"'
check "status=500 without retry_after" hasnt "$TMP/s500.out" 'Retry-After'
post s401 'm;status=401' false
check "status=401" has "$TMP/s401.out" '"type":"authentication_error"'

# --- reset
post reset 'm;reset' false
attempt
check "reset: client sees a reset" [ "$RC" = 56 ]
check "reset: no bytes" [ ! -s "$TMP/reset.out" ]
check "reset: attempt" has "$TMP/att" '"status":0,"outcome":"fault"'

# --- noresponse: pending while the client waits, aborted when it leaves
post nores 'm;noresponse' false -m 1 &
CPID=$!
sleep 0.5
curl -sS "$BASE/_mock/attempts?since=$((SEQ))" -o "$TMP/att"
check "noresponse: pending" has "$TMP/att" '"outcome":"pending","body_bytes":'
check "noresponse: end_ms null" has "$TMP/att" '"end_ms":null}'
wait $CPID
SEQ=$((SEQ + 1))
attempt 0.2
check "noresponse: aborted after client close" has "$TMP/att" '"status":0,"outcome":"aborted"'
check "noresponse: end_ms set" hasnt "$TMP/att" '"end_ms":null'

# --- slowfirst
post sfn 'm;slowfirst=400' false
check "slowfirst non-stream: waits" ge "$TTFB" 0.39
check "slowfirst non-stream: answers" has "$TMP/sfn.out" '"finish_reason":"stop"'
post sfs 'm;slowfirst=400' true
check "slowfirst stream: headers at once" lt "$TTFB" 0.3
check "slowfirst stream: first chunk late" ge "$TOTAL" 0.39
check "slowfirst stream: complete" has "$TMP/sfs.out" 'data: [DONE]'
post sfa 'm;slowfirst=5000' false -m 0.3
attempt 0.2
check "slowfirst: client close noticed promptly" has "$TMP/att" '"outcome":"aborted"'

# --- delay: 5 frames (open, 2 words, finish, [DONE]) = 4 gaps
post delay 'm;delay=100;words=2' true
check "delay: 4 gaps" ge "$TOTAL" 0.39
check "delay: complete" has "$TMP/delay.out" 'data: [DONE]'

# --- cut: RST after the role chunk and 2 word chunks
post cut 'm;cut=2' true
attempt
check "cut: client sees an error" [ "$RC" != 0 ]
check "cut: 3 frames" [ "$(frames cut)" = 3 ]
check "cut: no [DONE]" hasnt "$TMP/cut.out" '[DONE]'
check "cut: attempt" has "$TMP/att" '"status":200,"outcome":"fault"'

# --- stall
post stall 'm;stall=2' true -m 1
attempt 0.2
check "stall: client times out" [ "$RC" = 28 ]
check "stall: 3 frames" [ "$(frames stall)" = 3 ]
check "stall: aborted when the client leaves" has "$TMP/att" '"status":200,"outcome":"aborted"'

# --- malformed
post malformed 'm;malformed=1' true
attempt
check "malformed: bad frame" has "$TMP/malformed.out" 'data: {not json'
check "malformed: 3 frames" [ "$(frames malformed)" = 3 ]
check "malformed: no [DONE]" hasnt "$TMP/malformed.out" '[DONE]'
check "malformed: attempt" has "$TMP/att" '"outcome":"fault"'

# --- nodone
post nodone 'm;nodone' true
attempt
check "nodone: clean HTTP end" [ "$RC" = 0 ]
check "nodone: finish chunk" has "$TMP/nodone.out" '"finish_reason":"stop"'
check "nodone: no [DONE]" hasnt "$TMP/nodone.out" '[DONE]'
check "nodone: attempt" has "$TMP/att" '"outcome":"fault"'

# --- fail_first
codes=
for _ in 1 2 3; do
    post ff 'ff;fail_first=2;status=503' false
    codes="$codes $(head -1 "$TMP/ff.out" | cut -d' ' -f2)"
done
check "fail_first=2: 503 503 200 (got$codes)" [ "$codes" = " 503 503 200" ]

# --- keep-alive: two requests on one connection
curl -sS -v --http1.1 "$URL" "$URL" -d "$(body ka false)" -o /dev/null -o /dev/null 2>"$TMP/ka.err"
SEQ=$((SEQ + 2))
check "keep-alive: connection reused" grep -q 'Re-using existing connection' "$TMP/ka.err"

# --- unknown route, wrong method
check "unknown route: 404" [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/nope")" = 404 ]
check "GET on provider route: 405" [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL")" = 405 ]

# --- reset endpoint and log file
curl -sS "$BASE/_mock/attempts" -o "$TMP/all"
NATT=$(grep -o '"seq":' "$TMP/all" | wc -l)
check "attempt log holds every attempt ($NATT)" [ "$NATT" = "$SEQ" ]
curl -sS -X POST "$BASE/_mock/reset" -o /dev/null
curl -sS "$BASE/_mock/attempts" -o "$TMP/all"
check "reset clears the log" [ "$(cat "$TMP/all")" = '{"attempts":[]}' ]
SEQ=0
post afterreset 'ff;fail_first=2;status=503' false
attempt
check "reset restarts fail_first counters" [ "$(head -1 "$TMP/afterreset.out" | cut -d' ' -f2)" = 503 ]
check "reset restarts seq" has "$TMP/att" '{"attempts":[{"seq":1,'
check "--log has one line per finished attempt" [ "$(wc -l <"$TMP/log")" = $((NATT + 1)) ]

# --- clean shutdown
kill -TERM "$PID"
for _ in $(seq 40); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$PID" 2>/dev/null; then
    fail "SIGTERM stops the mock"
else
    wait "$PID"
    check "SIGTERM: exit 0" [ $? = 0 ]
fi
PID=
check "nothing on stderr" [ ! -s "$TMP/stderr" ]
[ -s "$TMP/stderr" ] && cat "$TMP/stderr"

echo "$FAILS failed"
[ "$FAILS" = 0 ]
