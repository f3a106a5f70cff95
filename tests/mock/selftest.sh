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
check "plain: attempt protocol, headers, tools, body" has "$TMP/att" '"protocol":"openai","headers":{"authorization":"Bearer sk-self","content-type":"application/json"},"tools":[],"tool_results":[],"body":"{\"model\":\"gpt-x\",'

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
check "noresponse: end_ms null" has "$TMP/att" '"end_ms":null,"protocol":"openai"'
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

# --- ratelimit: the provider's rate-limit headers, remaining counting down per attempt
rems=
for _ in 1 2 3 4; do
    post rl 'rl;ratelimit=2/10/90' false
    rems="$rems $(grep -i '^x-ratelimit-remaining-requests:' "$TMP/rl.out" | tr -dc 0-9)"
done
check "ratelimit=2/10: remaining 2 1 0 0 (got$rems)" [ "$rems" = " 2 1 0 0" ]
check "ratelimit: limit" has "$TMP/rl.out" 'x-ratelimit-limit-requests: 10'
check "ratelimit: tokens, same ratio" has "$TMP/rl.out" 'x-ratelimit-limit-tokens: 10000'
check "ratelimit: reset as a duration" has "$TMP/rl.out" 'x-ratelimit-reset-requests: 1m30s'
post rlerr 'rle;ratelimit=5/50;status=429;retry_after=3' true
check "ratelimit on an error: both headers" \
    eval 'has "$TMP/rlerr.out" "x-ratelimit-remaining-requests: 5" && has "$TMP/rlerr.out" "Retry-After: 3"'
check "ratelimit: default reset 60 s" has "$TMP/rlerr.out" 'x-ratelimit-reset-tokens: 1m0s'
post rls 'rls;ratelimit=7/10' true
check "ratelimit on a stream head" has "$TMP/rls.out" 'x-ratelimit-remaining-tokens: 7000'
post rlbad 'rlb;ratelimit=1/0' false
check "ratelimit with limit 0: ignored" hasnt "$TMP/rlbad.out" 'x-ratelimit'

# --- keep-alive: two requests on one connection
curl -sS -v --http1.1 "$URL" "$URL" -d "$(body ka false)" -o /dev/null -o /dev/null 2>"$TMP/ka.err"
SEQ=$((SEQ + 2))
check "keep-alive: connection reused" grep -q 'Re-using existing connection' "$TMP/ka.err"

# --- unknown route, wrong method
check "unknown route: 404" [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/nope")" = 404 ]
check "GET on provider route: 405" [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL")" = 405 ]

# --- errcode / errmsg, the think directive, body truncation in the log (OpenAI)
post ctx 'm;status=400;errcode=context_length_exceeded;errmsg=prompt_is_too_long' false
check "errcode: OpenAI code" has "$TMP/ctx.out" '"message":"prompt is too long","type":"invalid_request_error","param":null,"code":"context_length_exceeded"}'
post thinkd 'm;think;words=2' false
check "think directive: reasoning_content" has "$TMP/thinkd.out" '"content":"Hello w2","reasoning_content":"Let me think."'
check "think directive: reasoning tokens" has "$TMP/thinkd.out" '"completion_tokens":5,'
SEQ=$((SEQ + 1))
big=$(head -c 20000 /dev/zero | tr '\0' 'x')
printf '{"model":"m","messages":[{"role":"user","content":"%s"}]}' "$big" >"$TMP/big.json"
curl -sS "$URL" -o /dev/null --data-binary @"$TMP/big.json"
attempt
check "log body truncated to 16 KiB" [ "$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["attempts"][0]; print(len(a["body"]), a["body_bytes"])' "$TMP/att")" = "16384 $(wc -c <"$TMP/big.json")" ]

# ================================================================ every protocol
# Each route x (json, stream[, array]) x case. Cases: plain, tools (tools=2: two parallel calls),
# result (the last message is a tool result), think (asked for in the request), cached
# (cached=5;cache_write=2), inband (inband=0), nodone, s429 (status=429), malformed
# (malformed=1). All models carry words=3, so the text is "Hello w2 w3" and the prompt is the
# 3 words "one two three".

U='{"role":"user","content":"one two three"}'
TOOLS_OA='[{"type":"function","function":{"name":"get_weather","parameters":{}}},{"type":"function","function":{"name":"get_time"}}]'
body_openai() { # MODEL STREAM CASE
    local x=',"stream_options":{"include_usage":true}' m="[$U]"
    case $3 in
    tools) x="$x,\"tools\":$TOOLS_OA" ;;
    result) x="$x,\"tools\":$TOOLS_OA"
        m="[$U,{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_x1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_x1\",\"content\":\"sunny\"}]" ;;
    think) x="$x,\"reasoning_effort\":\"low\"" ;;
    esac
    printf '{"model":"%s","stream":%s,"messages":%s%s}' "$1" "$2" "$m" "$x"
}
body_responses() {
    local x='' i='"one two three"'
    case $3 in
    tools) x=',"tools":[{"type":"function","name":"get_weather"},{"type":"function","name":"get_time"}]' ;;
    result) x=',"tools":[{"type":"function","name":"get_weather"},{"type":"function","name":"get_time"}]'
        i="[$U,{\"type\":\"function_call\",\"call_id\":\"call_x1\",\"name\":\"get_weather\",\"arguments\":\"{}\"},{\"type\":\"function_call_output\",\"call_id\":\"call_x1\",\"output\":\"sunny\"}]" ;;
    think) x=',"reasoning":{"effort":"low"}' ;;
    esac
    printf '{"model":"%s","stream":%s,"input":%s%s}' "$1" "$2" "$i" "$x"
}
body_anthropic() {
    local x='' m="[$U]" t='[{"name":"get_weather","input_schema":{}},{"name":"get_time","input_schema":{}}]'
    case $3 in
    tools) x=",\"tools\":$t" ;;
    result) x=",\"tools\":$t"
        m="[$U,{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_x1\",\"name\":\"get_weather\",\"input\":{}}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_x1\",\"content\":[{\"type\":\"text\",\"text\":\"sunny\"}]}]}]" ;;
    think) x=',"thinking":{"type":"enabled","budget_tokens":1024}' ;;
    esac
    printf '{"model":"%s","max_tokens":100,"stream":%s,"messages":%s%s}' "$1" "$2" "$m" "$x"
}
body_gemini() {
    local x='' c='[{"role":"user","parts":[{"text":"one two three"}]}]'
    local t='[{"functionDeclarations":[{"name":"get_weather"},{"name":"get_time"}]}]'
    case $3 in
    tools) x=",\"tools\":$t" ;;
    result) x=",\"tools\":$t"
        c='[{"role":"user","parts":[{"text":"one two three"}]},{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{}}}]},{"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"result":"sunny"}}}]}]' ;;
    think) x=',"generationConfig":{"thinkingConfig":{"includeThoughts":true}}' ;;
    esac
    printf '{"contents":%s%s}' "$c" "$x"
}
body_bedrock() {
    local x='' m='[{"role":"user","content":[{"text":"one two three"}]}]'
    local t='{"tools":[{"toolSpec":{"name":"get_weather","inputSchema":{"json":{}}}},{"toolSpec":{"name":"get_time","inputSchema":{"json":{}}}}]}'
    case $3 in
    tools) x=",\"toolConfig\":$t" ;;
    result) x=",\"toolConfig\":$t"
        m='[{"role":"user","content":[{"text":"one two three"}]},{"role":"assistant","content":[{"toolUse":{"toolUseId":"tooluse_x1","name":"get_weather","input":{}}}]},{"role":"user","content":[{"toolResult":{"toolUseId":"tooluse_x1","content":[{"text":"sunny"}]}}]}]' ;;
    think) x=',"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":1024}}' ;;
    esac
    printf '{"messages":%s%s}' "$m" "$x"
}
body_bedrock_invoke() { # the Messages body without model and stream (the path says)
    body_anthropic "$1" "$2" "$3" | python3 -c 'import json,sys; b=json.load(sys.stdin); b.pop("model"); b.pop("stream"); b["anthropic_version"]="bedrock-2023-05-31"; print(json.dumps(b,separators=(",",":")))'
}
body_cohere() {
    local x='' m="[$U]" t='[{"type":"function","function":{"name":"get_weather"}},{"type":"function","function":{"name":"get_time"}}]'
    case $3 in
    tools) x=",\"tools\":$t" ;;
    result) x=",\"tools\":$t"
        m="[$U,{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"call_x1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_x1\",\"content\":\"sunny\"}]" ;;
    think) x=',"thinking":{"type":"enabled"}' ;;
    esac
    printf '{"model":"%s","stream":%s,"messages":%s%s}' "$1" "$2" "$m" "$x"
}
url_of() { # PROTO MODEL MODE
    case $1 in
    openai) echo "$BASE/v1/chat/completions" ;;
    responses) echo "$BASE/v1/responses" ;;
    anthropic) echo "$BASE/v1/messages" ;;
    cohere) echo "$BASE/v2/chat" ;;
    gemini) case $3 in
        json) echo "$BASE/v1beta/models/$2:generateContent" ;;
        stream) echo "$BASE/v1beta/models/$2:streamGenerateContent?alt=sse" ;;
        array) echo "$BASE/v1/models/$2:streamGenerateContent" ;;
        esac ;;
    bedrock) if [ "$3" = json ]; then echo "$BASE/model/$2/converse"; else echo "$BASE/model/$2/converse-stream"; fi ;;
    bedrock_invoke) if [ "$3" = json ]; then echo "$BASE/model/$2/invoke"; else echo "$BASE/model/$2/invoke-with-response-stream"; fi ;;
    esac
}
directive_of() {
    case $1 in
    tools) echo ';tools=2' ;; cached) echo ';cached=5;cache_write=2' ;; inband) echo ';inband=0' ;;
    nodone) echo ';nodone' ;; s429) echo ';status=429;retry_after=3' ;; malformed) echo ';malformed=1' ;;
    *) echo '' ;;
    esac
}

inband_body() { # PROTO: the non-stream in-band error body (the attempt's seq is $SEQ)
    case $1 in
    openai|responses) echo '{"error":{"message":"bb-mock: scripted in-band error","type":"server_error","param":null,"code":null}}' ;;
    anthropic|bedrock_invoke) echo "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"},\"request_id\":\"req_mock$SEQ\"}" ;;
    gemini) echo '{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}' ;;
    bedrock) echo '{"message":"Too many tokens, please wait before trying again.","__type":"ThrottlingException"}' ;;
    cohere) echo '{"message":"bb-mock: scripted in-band error"}' ;;
    esac
}

O= # the current output file; D: the decoded Bedrock stream (else the same as O)
want() { check "$CTX: $1" has "$D" "$2"; }
wantnot() { check "$CTX: $1" hasnt "$D" "$2"; }

# Bedrock event-stream decoder: one line per message: message-type, event or exception type,
# crc-ok / CRC-BAD (prelude and message CRC32 both checked), the payload.
decode_es() {
    python3 - "$1" <<'PY'
import base64, json, struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
i = data.find(b'\r\n\r\n')
body = data[i + 4:]
p = 0
while p < len(body):
    if len(body) - p < 12:
        print('TRUNCATED'); break
    total, hl, pcrc = struct.unpack('>III', body[p:p + 12])
    msg = body[p:p + total]
    if len(msg) < total or total < 16:
        print('TRUNCATED'); break
    ok = zlib.crc32(msg[:8]) == pcrc and zlib.crc32(msg[:-4]) == struct.unpack('>I', msg[-4:])[0]
    h, q = {}, 12
    while q < 12 + hl:
        nl = msg[q]; name = msg[q + 1:q + 1 + nl].decode()
        vl = struct.unpack('>H', msg[q + 2 + nl:q + 4 + nl])[0]
        h[name] = msg[q + 4 + nl:q + 4 + nl + vl].decode(); q += 4 + nl + vl
    kind = h.get(':event-type') or h.get(':exception-type')
    payload = msg[12 + hl:-4].decode(errors='replace')
    if kind == 'chunk' and ok:  # InvokeModel: the Messages event in base64
        try:
            payload = base64.b64decode(json.loads(payload)['bytes']).decode()
        except (ValueError, KeyError):
            payload = 'BAD-CHUNK ' + payload
    print(h.get(':message-type'), kind, h.get(':content-type'), 'crc-ok' if ok else 'CRC-BAD',
          payload)
    p += total
PY
}

expect_openai() { # MODE CASE (N = the attempt's seq)
    local N=$SEQ
    case $1:$2 in
    json:plain|json:nodone)
        want "text" '"content":"Hello w2 w3"'
        want "usage" '"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}' ;;
    json:tools)
        want "2 calls" "\"tool_calls\":[{\"id\":\"call_mock${N}_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"q\\\":\\\"w1\\\"}\"}},{\"id\":\"call_mock${N}_2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{\\\"q\\\":\\\"w2\\\"}\"}}]"
        want "finish" '"finish_reason":"tool_calls"'
        want "usage" '"completion_tokens":6,' ;;
    json:result) want "text" '"content":"Hello w2 w3"' ;;
    json:think)
        want "reasoning" '"reasoning_content":"Let me think."'
        want "usage" '"completion_tokens":6,"total_tokens":9,'
        want "reasoning tokens" '"reasoning_tokens":3,' ;;
    json:cached) want "usage" '"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":5,' ;;
    *:s429) want "error" '"type":"rate_limit_exceeded","param":null,"code":"rate_limit_exceeded"' ;;
    stream:plain|stream:result)
        want "role" '"delta":{"role":"assistant","content":"","refusal":null}'
        want "words" '"delta":{"content":" w3"}'
        want "usage" '"usage":{"prompt_tokens":3,"completion_tokens":3,'
        want "[DONE]" 'data: [DONE]' ;;
    stream:tools)
        want "call 2 start" "\"tool_calls\":[{\"index\":1,\"id\":\"call_mock${N}_2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}]"
        want "args piece 1" '"tool_calls":[{"index":1,"function":{"arguments":"{\"q\":"}}]'
        want "args piece 2" '"tool_calls":[{"index":1,"function":{"arguments":"\"w2\"}"}}]'
        want "finish" '"finish_reason":"tool_calls"' ;;
    stream:think) want "reasoning" '"delta":{"reasoning_content":"Let me think."}' ;;
    stream:cached) want "usage" '"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":5,' ;;
    stream:inband)
        want "error frame" 'data: {"error":{"message":"bb-mock: scripted in-band error","type":"server_error","param":null,"code":null}}'
        wantnot "no content" 'Hello'
        wantnot "no [DONE]" '[DONE]' ;;
    stream:nodone) want "finish" '"finish_reason":"stop"'; wantnot "no [DONE]" '[DONE]' ;;
    stream:malformed) want "bad frame" 'data: {not json'; wantnot "no [DONE]" '[DONE]' ;;
    esac
}
expect_responses() {
    local N=$SEQ
    case $1:$2 in
    json:plain|json:result|json:nodone)
        want "message" "{\"id\":\"msg_mock${N}\",\"type\":\"message\",\"status\":\"completed\",\"content\":[{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":\"Hello w2 w3\"}],\"role\":\"assistant\"}"
        want "usage" '"usage":{"input_tokens":3,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":3,' ;;
    json:tools)
        want "call 2" "{\"id\":\"fc_mock${N}_2\",\"type\":\"function_call\",\"status\":\"completed\",\"arguments\":\"{\\\"q\\\":\\\"w2\\\"}\",\"call_id\":\"call_mock${N}_2\",\"name\":\"get_time\"}" ;;
    json:think)
        want "reasoning item" "{\"id\":\"rs_mock${N}\",\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"Let me think.\"}],\"encrypted_content\":\"mocksig${N}\"}"
        want "reasoning tokens" '"output_tokens":6,"output_tokens_details":{"reasoning_tokens":3}' ;;
    json:cached) want "usage" '"input_tokens":10,"input_tokens_details":{"cached_tokens":5,"cache_write_tokens":2}' ;;
    *:s429) want "error" '"type":"rate_limit_exceeded"' ;;
    stream:plain|stream:result)
        want "created" '"type":"response.created","response":{"id":"resp_mock'
        want "seq 0" '"sequence_number":0}'
        want "delta" "\"type\":\"response.output_text.delta\",\"item_id\":\"msg_mock${N}\",\"output_index\":0,\"content_index\":0,\"delta\":\" w3\""
        want "completed" 'event: response.completed' ;;
    stream:tools)
        want "call 2 added" "\"type\":\"response.output_item.added\",\"output_index\":1,\"item\":{\"id\":\"fc_mock${N}_2\",\"type\":\"function_call\",\"status\":\"in_progress\",\"arguments\":\"\""
        want "args delta" '"output_index":1,"delta":"{\"q\":"'
        want "args done" 'event: response.function_call_arguments.done' ;;
    stream:think) want "summary delta" '"type":"response.reasoning_summary_text.delta","item_id":"rs_mock' ;;
    stream:cached) want "usage" '"input_tokens_details":{"cached_tokens":5,"cache_write_tokens":2}' ;;
    stream:inband)
        want "failed" '"type":"response.failed","response":{"id":"resp_mock'
        want "error" '"error":{"code":"server_error","message":"bb-mock: scripted in-band error"}'
        wantnot "no content" 'response.output_item.added'
        wantnot "no completed" 'response.completed' ;;
    stream:nodone) want "text done" 'event: response.output_text.done'; wantnot "no completed" 'response.completed' ;;
    stream:malformed) want "bad frame" 'data: {not json'; wantnot "no completed" 'response.completed' ;;
    esac
}
expect_anthropic() {
    local N=$SEQ
    case $1:$2 in
    json:plain|json:nodone)
        want "text" '"content":[{"type":"text","text":"Hello w2 w3"}],"stop_reason":"end_turn"'
        want "usage" '"usage":{"input_tokens":3,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,' ;;
    json:result) want "text" '"text":"Hello w2 w3"' ;;
    json:tools)
        want "2 calls" "{\"type\":\"tool_use\",\"id\":\"toolu_mock${N}_1\",\"name\":\"get_weather\",\"input\":{\"q\":\"w1\"}},{\"type\":\"tool_use\",\"id\":\"toolu_mock${N}_2\",\"name\":\"get_time\",\"input\":{\"q\":\"w2\"}}]"
        want "stop" '"stop_reason":"tool_use"'
        want "usage" '"output_tokens":6,' ;;
    json:think)
        want "thinking" "{\"type\":\"thinking\",\"thinking\":\"Let me think.\",\"signature\":\"mocksig${N}\"}"
        want "usage" '"output_tokens":6,"output_tokens_details":{"thinking_tokens":3}' ;;
    json:cached) want "usage" '"input_tokens":3,"cache_creation_input_tokens":2,"cache_read_input_tokens":5,' ;;
    *:s429) want "error" '{"type":"error","error":{"type":"rate_limit_error","message":"bb-mock: scripted status 429"}' ;;
    stream:plain|stream:result)
        want "message_start" 'event: message_start'
        want "ping" 'event: ping'
        want "delta" '"delta":{"type":"text_delta","text":" w3"}'
        want "usage" '"output_tokens":3}}'
        want "message_stop" 'event: message_stop' ;;
    stream:tools)
        want "call 2 start" "\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_mock${N}_2\",\"name\":\"get_time\",\"input\":{}}"
        want "args piece" '"index":1,"delta":{"type":"input_json_delta","partial_json":"\"w2\"}"}'
        want "stop" '"stop_reason":"tool_use"' ;;
    stream:think) want "signature" "\"delta\":{\"type\":\"signature_delta\",\"signature\":\"mocksig${N}\"}" ;;
    stream:cached) want "usage" '"usage":{"input_tokens":3,"cache_creation_input_tokens":2,"cache_read_input_tokens":5,"output_tokens":3}' ;;
    stream:inband)
        want "error event" 'event: error'
        want "error data" "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"},\"request_id\":\"req_mock${N}\"}"
        wantnot "no content" 'content_block_start'
        wantnot "no message_stop" 'message_stop' ;;
    stream:nodone) want "message_delta" 'event: message_delta'; wantnot "no message_stop" 'message_stop' ;;
    stream:malformed) want "bad frame" 'data: {not json'; wantnot "no message_stop" 'message_stop' ;;
    esac
}
expect_gemini() {
    local N=$SEQ
    case $1:$2 in
    json:plain|json:result|json:nodone)
        want "text" '"parts":[{"text":"Hello w2 w3"}],"role":"model"},"finishReason":"STOP"'
        want "usage" '"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":3,"totalTokenCount":6,' ;;
    json:tools) want "call 2" "{\"functionCall\":{\"id\":\"call_mock${N}_2\",\"name\":\"get_time\",\"args\":{\"q\":\"w2\"}}}" ;;
    json:think)
        want "thought" "{\"text\":\"Let me think.\",\"thought\":true,\"thoughtSignature\":\"mocksig${N}\"}"
        want "usage" '"thoughtsTokenCount":3}' ;;
    json:cached) want "usage" '"promptTokenCount":10,"candidatesTokenCount":3,"totalTokenCount":13,"cachedContentTokenCount":5,' ;;
    *:s429) want "error" '{"error":{"code":429,"message":"bb-mock: scripted status 429","status":"RESOURCE_EXHAUSTED"}}' ;;
    esac
    case $1:$2 in
    stream:plain|stream:result|array:plain|array:result)
        want "word" '{"candidates":[{"content":{"parts":[{"text":" w3"}],"role":"model"},"index":0}]'
        want "finish" '"parts":[{"text":""}],"role":"model"},"finishReason":"STOP"' ;;
    stream:tools|array:tools) want "call 2" "{\"functionCall\":{\"id\":\"call_mock${N}_2\",\"name\":\"get_time\",\"args\":{\"q\":\"w2\"}}}" ;;
    stream:think|array:think) want "thought" '"thought":true' ;;
    stream:cached|array:cached) want "usage" '"cachedContentTokenCount":5,' ;;
    stream:inband|array:inband)
        want "error" '{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}'
        wantnot "no content" 'candidates' ;;
    stream:nodone|array:nodone) want "words" '" w3"'; wantnot "no finish" 'finishReason' ;;
    stream:malformed|array:malformed) want "bad element" '{not json'; wantnot "no finish" 'finishReason' ;;
    esac
    if [ "$1" = stream ] && [ "$2" != s429 ]; then
        check "$CTX: SSE data lines" grep -q '^data: {' "$D"
        check "$CTX: SSE frames end in CRLF CRLF" grep -q $'}\r$' "$D"
    fi
    if [ "$1" = array ] && [ "$2" != s429 ] && [ "$2" != inband ]; then
        check "$CTX: elements separated by ,CRLF" grep -q $'},\r$' "$O"
    fi
    if [ "$1" = array ] && [ "$2" != s429 ]; then
        check "$CTX: array opens with [" [ "$(sed -n '/^\r$/{n;p;q}' "$O" | head -c 2)" = '[{' ]
        case $2 in
        nodone|malformed) check "$CTX: no closing ]" [ "$(tail -c 1 "$O")" != ']' ] ;;
        *) check "$CTX: closing ]" [ "$(tail -c 1 "$O")" = ']' ] ;;
        esac
    fi
}
expect_bedrock() {
    local N=$SEQ
    case $1:$2 in
    json:plain|json:result|json:nodone)
        want "text" '"content":[{"text":"Hello w2 w3"}],"role":"assistant"}},"stopReason":"end_turn"'
        want "usage" '"usage":{"inputTokens":3,"outputTokens":3,"totalTokens":6}' ;;
    json:tools)
        want "call 2" "{\"toolUse\":{\"toolUseId\":\"tooluse_mock${N}_2\",\"name\":\"get_time\",\"input\":{\"q\":\"w2\"}}}"
        want "stop" '"stopReason":"tool_use"' ;;
    json:think) want "reasoning" "{\"reasoningContent\":{\"reasoningText\":{\"text\":\"Let me think.\",\"signature\":\"mocksig${N}\"}}}" ;;
    json:cached) want "usage" '"usage":{"inputTokens":3,"outputTokens":3,"totalTokens":13,"cacheReadInputTokens":5,"cacheWriteInputTokens":2}' ;;
    *:s429)
        want "error type header" 'x-amzn-ErrorType: ThrottlingException:'
        want "error body" '{"message":"bb-mock: scripted status 429"}' ;;
    stream:plain|stream:result)
        want "messageStart" 'event messageStart application/json crc-ok {"role":"assistant","p":"'
        want "delta" 'event contentBlockDelta application/json crc-ok {"contentBlockIndex":0,"delta":{"text":" w3"}'
        want "messageStop" 'event messageStop application/json crc-ok {"stopReason":"end_turn"'
        want "metadata" 'event metadata application/json crc-ok {"metrics":{"latencyMs":42},"usage":{"inputTokens":3,"outputTokens":3,"totalTokens":6}' ;;
    stream:tools)
        want "call 2 start" "event contentBlockStart application/json crc-ok {\"contentBlockIndex\":1,\"start\":{\"toolUse\":{\"toolUseId\":\"tooluse_mock${N}_2\",\"name\":\"get_time\"}}"
        want "args piece" '{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"w2\"}"}}'
        want "stop" '{"stopReason":"tool_use"' ;;
    stream:think) want "signature" "\"delta\":{\"reasoningContent\":{\"signature\":\"mocksig${N}\"}}" ;;
    stream:cached) want "usage" '"cacheReadInputTokens":5,"cacheWriteInputTokens":2}' ;;
    stream:inband)
        want "exception" 'exception throttlingException application/json crc-ok {"message":"Too many tokens, please wait before trying again."}'
        wantnot "no content" 'contentBlock' ;;
    stream:nodone) want "last stop" 'contentBlockStop'; wantnot "no messageStop" 'messageStop'; wantnot "no metadata" 'metadata' ;;
    stream:malformed) want "bad CRC frame" 'event contentBlockDelta application/json CRC-BAD {not json'; wantnot "no messageStop" 'messageStop' ;;
    esac
    case $1:$2 in
    stream:malformed|*:s429) ;;
    stream:*) check "$CTX: every CRC good" hasnt "$D" 'CRC-BAD'; check "$CTX: no truncation" hasnt "$D" 'TRUNCATED' ;;
    esac
}
expect_bedrock_invoke() {
    local N=$SEQ
    case $1:$2 in
    *:s429) expect_bedrock "$1" "$2" ;;
    json:*) expect_anthropic "$1" "$2" ;;
    stream:plain|stream:result)
        want "message_start" 'event chunk application/json crc-ok {"type":"message_start","message":{"id":"msg_mock'
        want "delta" 'event chunk application/json crc-ok {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" w3"}}'
        want "message_delta" '{"type":"message_delta","delta":{"stop_reason":"end_turn"'
        want "metrics" 'event chunk application/json crc-ok {"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":3,"outputTokenCount":3,"invocationLatency":42,"firstByteLatency":7}}'
        wantnot "no ping" 'ping' ;;
    stream:tools)
        want "call 2 start" "{\"type\":\"tool_use\",\"id\":\"toolu_mock${N}_2\",\"name\":\"get_time\",\"input\":{}}"
        want "args piece" '"delta":{"type":"input_json_delta","partial_json":"\"w2\"}"}'
        want "stop" '"stop_reason":"tool_use"' ;;
    stream:think) want "signature" "\"delta\":{\"type\":\"signature_delta\",\"signature\":\"mocksig${N}\"}" ;;
    stream:cached) want "metrics" '"cacheReadInputTokenCount":5,"cacheWriteInputTokenCount":2}}' ;;
    stream:inband)
        want "exception" 'exception throttlingException application/json crc-ok {"message":"Too many tokens, please wait before trying again."}'
        wantnot "no content" 'content_block' ;;
    stream:nodone) want "message_delta" 'message_delta'; wantnot "no message_stop" 'message_stop' ;;
    stream:malformed) want "bad CRC frame" 'event contentBlockDelta application/json CRC-BAD {not json'; wantnot "no message_stop" 'message_stop' ;;
    esac
    case $1:$2 in
    stream:malformed|*:s429|json:*) ;;
    stream:*) check "$CTX: every CRC good" hasnt "$D" 'CRC-BAD'; check "$CTX: every chunk base64 JSON" hasnt "$D" 'BAD-CHUNK'
        check "$CTX: no truncation" hasnt "$D" 'TRUNCATED' ;;
    esac
}
expect_cohere() {
    local N=$SEQ
    case $1:$2 in
    json:plain|json:result|json:nodone)
        want "text" '"content":[{"type":"text","text":"Hello w2 w3"}]},"finish_reason":"COMPLETE"'
        want "usage" '"usage":{"billed_units":{"input_tokens":3,"output_tokens":3},"tokens":{"input_tokens":3,"output_tokens":3},"cached_tokens":0}' ;;
    json:tools)
        want "call 2" "{\"id\":\"call_mock${N}_2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{\\\"q\\\":\\\"w2\\\"}\"}}"
        want "plan" '"tool_plan":"I will call the tools."'
        want "finish" '"finish_reason":"TOOL_CALL"' ;;
    json:think) want "thinking" '{"type":"thinking","thinking":"Let me think."}' ;;
    json:cached) want "usage" '"tokens":{"input_tokens":10,"output_tokens":3},"cached_tokens":5}' ;;
    *:s429) want "error" '{"message":"bb-mock: scripted status 429"}' ;;
    stream:plain|stream:result)
        want "message-start" 'event: message-start'
        want "delta" '"type":"content-delta","index":0,"delta":{"message":{"content":{"text":" w3"}}}'
        want "message-end" 'data: {"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":' ;;
    stream:tools)
        want "plan" 'event: tool-plan-delta'
        want "call 2 start" "\"type\":\"tool-call-start\",\"index\":1,\"delta\":{\"message\":{\"tool_calls\":{\"id\":\"call_mock${N}_2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}}}"
        want "args piece" '"type":"tool-call-delta","index":1,"delta":{"message":{"tool_calls":{"function":{"arguments":"\"w2\"}"}}}}'
        want "finish" '"finish_reason":"TOOL_CALL"' ;;
    stream:think) want "thinking" '"content":{"thinking":"Let me think."}' ;;
    stream:cached) want "usage" '"cached_tokens":5}' ;;
    stream:inband)
        want "error end" '"type":"message-end","delta":{"error":"bb-mock: scripted in-band error","finish_reason":"ERROR"}'
        wantnot "no content" 'content-start' ;;
    stream:nodone) want "content-end" 'event: content-end'; wantnot "no message-end" 'message-end' ;;
    stream:malformed) want "bad frame" 'data: {not json'; wantnot "no message-end" 'message-end' ;;
    esac
}

for P in openai responses anthropic gemini bedrock bedrock_invoke cohere; do
    MODES="json stream"
    [ $P = gemini ] && MODES="json stream array"
    for MODE in $MODES; do
        for CASE in plain tools result think cached inband nodone s429 malformed; do
            CTX="$P $MODE $CASE"
            model="m;words=3$(directive_of $CASE)"
            stream=false
            [ "$MODE" != json ] && stream=true
            name="$P-$MODE-$CASE"
            O="$TMP/$name.out"
            D="$O"
            SEQ=$((SEQ + 1))
            curl -sS -N -i --http1.1 -o "$O" -H 'Content-Type: application/json' \
                -H "x-api-key: key-$P" -H 'anthropic-version: 2023-06-01' \
                "$(url_of $P "$model" $MODE)" -d "$(body_$P "$model" $stream $CASE)" 2>/dev/null
            RC=$?
            attempt 0.02
            if [ $CASE = s429 ]; then
                check "$CTX: 429 + Retry-After" grep -q $'^HTTP/1.1 429 Too Many Requests\r$' "$O"
                check "$CTX: Retry-After" has "$O" 'Retry-After: 3'
            else
                check "$CTX: 200" grep -q $'^HTTP/1.1 200 OK\r$' "$O"
            fi
            if [ ${P%_invoke} = bedrock ] && [ $MODE = stream ] && [ $CASE != s429 ]; then
                check "$CTX: eventstream type" has "$O" 'Content-Type: application/vnd.amazon.eventstream'
                D="$TMP/$name.dec"
                decode_es "$O" >"$D"
            elif [ $MODE = array ] && [ $CASE != s429 ]; then
                check "$CTX: application/json" has "$O" 'Content-Type: application/json'
            elif [ $MODE = stream ] && [ $CASE != s429 ]; then
                check "$CTX: event-stream" has "$O" 'Content-Type: text/event-stream'
            fi
            case $MODE:$CASE in
            json:inband|json:malformed) want_outcome='"outcome":"fault"' ;;
            json:*|*:s429|*:plain|*:tools|*:result|*:think|*:cached) want_outcome='"outcome":"ok"' ;;
            *) want_outcome='"outcome":"fault"' ;;
            esac
            if [ $MODE = json ] && [ $CASE = inband ]; then # the error object, whole, in a 200
                check "$CTX: in-band error body" [ "$(sed '1,/^\r$/d' "$O")" = "$(inband_body $P)" ]
            fi
            if [ $MODE = json ] && [ $CASE = malformed ]; then # cut after word 1, then junk
                check "$CTX: malformed body" [ "$(tail -c 15 "$O")" = '"Hello{not json' ]
                check "$CTX: malformed: Connection: close" has "$O" 'Connection: close'
                check "$CTX: malformed: framed" [ "$(sed '1,/^\r$/d' "$O" | wc -c)" = \
                    "$(grep -i '^content-length:' "$O" | tr -dc 0-9)" ]
            fi
            [ $CASE = s429 ] && want_outcome='"outcome":"fault"'
            check "$CTX: clean end" [ "$RC" = 0 ]
            check "$CTX: attempt outcome" has "$TMP/att" "$want_outcome"
            check "$CTX: attempt protocol" has "$TMP/att" "\"protocol\":\"$P\""
            check "$CTX: attempt model" has "$TMP/att" "\"model\":\"$model\",\"stream\":$stream"
            case $CASE in
            tools|result) check "$CTX: attempt tools" has "$TMP/att" '"tools":["get_weather","get_time"]' ;;
            *) check "$CTX: attempt without tools" has "$TMP/att" '"tools":[],"tool_results":[]' ;;
            esac
            if [ $CASE = result ]; then
                case $P in
                openai|cohere|responses) rid='"id":"call_x1"' ;;
                anthropic) rid='"id":"toolu_x1"' ;;
                bedrock) rid='"id":"tooluse_x1"' ;;
                bedrock_invoke) rid='"id":"toolu_x1"' ;;
                gemini) rid='"name":"get_weather"' ;;
                esac
                check "$CTX: attempt tool_results" has "$TMP/att" "\"tool_results\":[{$rid,\"content\":\"sunny\"}]"
                check "$CTX: answered with text, not a call" hasnt "$D" 'mock'"$SEQ"'_1'
            fi
            expect_$P $MODE $CASE
        done
    done
done
# headers captured per route
check "headers: x-api-key and anthropic-version logged" has "$TMP/att" '"headers":{"x-api-key":"key-cohere","anthropic-version":"2023-06-01","content-type":"application/json"}'

# --- Gemini and Bedrock: percent-encoded model in the path, tools=N beyond the declared tools,
# tools=0, in-band error with errcode/errmsg, Bedrock errcode as the ErrorType
SEQ=$((SEQ + 1))
curl -sS -i "$BASE/v1beta/models/gem%3Bwords%3D2%3Btools%3D3:generateContent" -o "$TMP/genc.out" \
    -d "$(body_gemini x false tools)"
attempt
check "gemini: URL-decoded model" has "$TMP/att" '"model":"gem;words=2;tools=3"'
check "tools=3 with 2 tools: the first tool 3 times" \
    [ "$(grep -o '"name":"get_weather","args"' "$TMP/genc.out" | wc -l)" = 3 ]
# call=NAME;args=JSON: the call goes to that declared tool with those arguments ('_' = space),
# whole (openai) and in two streamed pieces (anthropic); an undeclared call= name: the first
SEQ=$((SEQ + 1))
curl -sS "$BASE/v1/chat/completions" -o "$TMP/ca.out" \
    -d "$(body_openai 'm;call=get_time;args={\"city\":\"Paris_France\"}' false tools)"
check "call=/args=: the named tool" has "$TMP/ca.out" '"function":{"name":"get_time","arguments":"{\"city\":\"Paris France\"}"}'
SEQ=$((SEQ + 1))
curl -sS -N "$BASE/v1/messages" -o "$TMP/cs.out" \
    -d "$(body_anthropic 'm;call=nope;args={\"x\":1}' true tools)"
check "call=/args= streamed: first piece" has "$TMP/cs.out" '"partial_json":"{\"x"}'
check "call=/args= streamed: second piece" has "$TMP/cs.out" '"partial_json":"\":1}"}'
check "call= undeclared: the first tool" has "$TMP/cs.out" '"name":"get_weather"'
SEQ=$((SEQ + 1))
curl -sS -i "$BASE/model/anthropic.claude-v2%3A1;tools=0;words=2/converse" -o "$TMP/bt0.out" \
    -d "$(body_bedrock x false tools)"
attempt
check "bedrock: modelId with %3A decoded" has "$TMP/att" '"model":"anthropic.claude-v2:1;tools=0;words=2"'
check "tools=0: text even with tools declared" has "$TMP/bt0.out" '"text":"Hello w2"'
SEQ=$((SEQ + 1))
curl -sS -N -i "$BASE/model/m;inband=1;errcode=internalServerException;errmsg=boom_now/converse-stream" \
    -o "$TMP/bie.out" -d "$(body_bedrock x true plain)"
decode_es "$TMP/bie.out" >"$TMP/bie.dec"
check "bedrock inband errcode: exception type" has "$TMP/bie.dec" 'exception internalServerException application/json crc-ok {"message":"boom now"}'
check "bedrock inband=1: one word first" has "$TMP/bie.dec" '"delta":{"text":"Hello"}'
SEQ=$((SEQ + 1))
curl -sS -i "$BASE/model/m;status=400;errcode=ValidationException;errmsg=Input_is_too_long/converse" \
    -o "$TMP/bctx.out" -d "$(body_bedrock x false plain)"
check "bedrock errcode: ErrorType header" has "$TMP/bctx.out" 'x-amzn-ErrorType: ValidationException:'
check "bedrock errmsg" has "$TMP/bctx.out" '{"message":"Input is too long"}'
SEQ=$((SEQ + 1))
curl -sS -i "$BASE/v1beta/models/m;status=400;errcode=API_KEY_INVALID:generateContent" \
    -o "$TMP/gec.out" -d "$(body_gemini x false plain)"
check "gemini errcode: details[].reason" has "$TMP/gec.out" '"status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]'
SEQ=$((SEQ + 1))
curl -sS -i "$BASE/v1/messages" -o "$TMP/a529.out" -d "$(body_anthropic 'm;status=529' false plain)"
check "anthropic 529: overloaded_error" has "$TMP/a529.out" '"error":{"type":"overloaded_error"'
check "anthropic 529: status line" grep -q '^HTTP/1.1 529 ' "$TMP/a529.out"
SEQ=$((SEQ + 1))
curl -sS -i "$BASE/v1/messages" -o "$TMP/arl.out" -d "$(body_anthropic 'm;ratelimit=3/4/120' false plain)"
check "anthropic ratelimit: requests" \
    eval 'has "$TMP/arl.out" "anthropic-ratelimit-requests-remaining: 3" && has "$TMP/arl.out" "anthropic-ratelimit-requests-limit: 4"'
check "anthropic ratelimit: tokens" has "$TMP/arl.out" 'anthropic-ratelimit-tokens-remaining: 3000'
check "anthropic ratelimit: reset is an RFC 3339 time" \
    grep -Eq '^anthropic-ratelimit-requests-reset: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z' "$TMP/arl.out"
check "anthropic ratelimit: no OpenAI names" hasnt "$TMP/arl.out" 'x-ratelimit'
SEQ=$((SEQ + 1))
curl -sS -i "$BASE/v1/messages" -o "$TMP/anomax.out" \
    -d '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
check "anthropic: max_tokens required" has "$TMP/anomax.out" '"error":{"type":"invalid_request_error","message":"max_tokens: Field required"}'
SEQ=$((SEQ + 1))
curl -sS -N -i "$BASE/v1/messages" -o "$TMP/acut.out" -d "$(body_anthropic 'm;think;cut=1' true plain)" 2>/dev/null
check "cut counts the thinking block as a content unit" \
    [ "$(grep -c signature_delta "$TMP/acut.out")" = 1 -a "$(grep -c text_delta "$TMP/acut.out")" = 0 ]
SEQ=$((SEQ + 1))
curl -sS -N -i "$BASE/v2/chat" -o "$TMP/cstall.out" -m 1 -d "$(body_cohere 'm;stall=2;words=5' true plain)" 2>/dev/null
check "stall on cohere: 2 words then silence" \
    [ "$(grep -c '"type":"content-delta"' "$TMP/cstall.out")" = 2 ]
SEQ=$((SEQ + 1))
curl -sS -N -i "$BASE/v1/responses" -o "$TMP/rdelay.out" -w '%{time_total}' \
    -d "$(body_responses 'm;delay=50;words=2' true plain)" >"$TMP/rdelay.t"
check "delay on responses: 5 frames, 4 gaps" ge "$(cat "$TMP/rdelay.t")" 0.19
for r in /v1/responses /v1/messages /v2/chat /v1beta/models/x:generateContent /model/x/converse; do
    check "GET $r: 405" [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE$r")" = 405 ]
done

# ================================================================ new faults, every protocol
# Non-stream faults (slowbody, cut, stall, malformed, chunkcut), hostile answers (html,
# redirect, rawstatus), bigbody, ctype and prefill continuation on every route, read with
# curl --raw so the HTTP framing itself is checked. `answer` decodes a raw response in any
# protocol (chunked or not, SSE, Gemini arrays, Bedrock event-stream) and prints
#   end=complete|truncated  text="..."  tokens=N  (output tokens of the answer's usage)
answer() { # FILE PROTO MODE [FILE PROTO MODE ...]: writes FILE.ans for each
    python3 - "$@" <<'PY'
import json, struct, sys


def parts(c):
    return ''.join(p.get('text', '') for p in (c or {}).get('parts', []) if not p.get('thought'))


def decode(path, proto, mode):
    raw = open(path, 'rb').read()
    i = raw.find(b'\r\n\r\n')
    head, body = raw[:i].decode('latin-1'), raw[i + 4:]
    h = {k.strip().lower(): v.strip() for k, _, v in (l.partition(':') for l in head.split('\r\n')[1:])}
    end = 'complete'
    if 'chunked' in h.get('transfer-encoding', '').lower():
        out, p = b'', 0
        end = 'truncated'
        while True:
            e = body.find(b'\r\n', p)
            if e < 0:
                break
            n = int(body[p:e].split(b';')[0] or b'0', 16)
            if n == 0:
                end = 'complete' if body[e:e + 4] == b'\r\n\r\n' else 'truncated'
                break
            if len(body) < e + 2 + n + 2:
                out += body[e + 2:]
                break
            out += body[e + 2:e + 2 + n]
            p = e + 2 + n + 2
        body = out
    elif 'content-length' in h and len(body) < int(h['content-length']):
        end = 'truncated'
    text, tokens = '', None
    try:
        if mode == 'json':
            j = json.loads(body)
            if proto == 'openai':
                text, tokens = j['choices'][0]['message']['content'], j['usage']['completion_tokens']
            elif proto == 'responses':
                text = ''.join(c['text'] for o in j['output'] if o['type'] == 'message' for c in o['content'])
                tokens = j['usage']['output_tokens']
            elif proto == 'anthropic':
                text = ''.join(c['text'] for c in j['content'] if c['type'] == 'text')
                tokens = j['usage']['output_tokens']
            elif proto == 'gemini':
                text, tokens = parts(j['candidates'][0]['content']), j['usageMetadata'].get('candidatesTokenCount', 0)
            elif proto == 'bedrock':
                text = ''.join(c.get('text', '') for c in j['output']['message']['content'])
                tokens = j['usage']['outputTokens']
            elif proto == 'cohere':
                text = ''.join(c['text'] for c in j['message'].get('content', []) if c['type'] == 'text')
                tokens = j['usage']['tokens']['output_tokens']
        elif proto == 'bedrock':
            p = 0
            while p + 12 <= len(body):
                total, hl = struct.unpack('>II', body[p:p + 8])
                msg = body[p:p + total]
                q, et = 12, None
                while q < 12 + hl:
                    nl = msg[q]; name = msg[q + 1:q + 1 + nl].decode()
                    vl = struct.unpack('>H', msg[q + 2 + nl:q + 4 + nl])[0]
                    if name == ':event-type':
                        et = msg[q + 4 + nl:q + 4 + nl + vl].decode()
                    q += 4 + nl + vl
                j = json.loads(msg[12 + hl:-4])
                if et == 'contentBlockDelta':
                    text += j['delta'].get('text', '')
                elif et == 'metadata':
                    tokens = j['usage']['outputTokens']
                p += total
        elif mode == 'array':
            for j in json.loads(body):
                text += parts(j['candidates'][0].get('content'))
                tokens = j['usageMetadata'].get('candidatesTokenCount', 0)
        else:
            for block in body.decode().replace('\r\n', '\n').split('\n\n'):
                data = [l[6:] for l in block.split('\n') if l.startswith('data: ')]
                if not data or data[0] == '[DONE]':
                    continue
                j = json.loads(data[0])
                t = j.get('type')
                if proto == 'openai':
                    for c in j.get('choices', []):
                        text += c['delta'].get('content') or ''
                    if j.get('usage'):
                        tokens = j['usage']['completion_tokens']
                elif proto == 'responses':
                    if t == 'response.output_text.delta':
                        text += j['delta']
                    elif t == 'response.completed':
                        tokens = j['response']['usage']['output_tokens']
                elif proto == 'anthropic':
                    if t == 'content_block_delta' and j['delta']['type'] == 'text_delta':
                        text += j['delta']['text']
                    elif t == 'message_delta':
                        tokens = j['usage']['output_tokens']
                elif proto == 'gemini':
                    text += parts(j['candidates'][0].get('content'))
                    tokens = j['usageMetadata'].get('candidatesTokenCount', 0)
                elif proto == 'cohere':
                    if t == 'content-delta':
                        text += j['delta']['message']['content'].get('text', '')
                    elif t == 'message-end':
                        tokens = j['delta']['usage']['tokens']['output_tokens']
    except Exception as e:  # noqa: anything unparsable shows in the text
        text = 'UNPARSABLE: %r' % e
    return ['end=%s' % end,
            'text=%s' % json.dumps(text),
            'tokens=%s' % tokens,
            'textlen=%d' % len(text)]

a = sys.argv[1:]
for k in range(0, len(a), 3):
    with open(a[k] + '.ans', 'w') as f:
        f.write('\n'.join(decode(*a[k:k + 3])) + '\n')
PY
}
# body_*'s cases for a prefill: the conversation ends with an assistant turn "Hello w2"
prefill_body() { # PROTO MODEL STREAM
    local a='"Hello w2 "' # trailing whitespace is ignored
    case $1 in
    openai) printf '{"model":"%s","stream":%s,"stream_options":{"include_usage":true},"messages":[%s,{"role":"assistant","content":%s}]}' "$2" "$3" "$U" "$a" ;;
    responses) printf '{"model":"%s","stream":%s,"input":[%s,{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hello w2"}]}]}' "$2" "$3" "$U" ;;
    anthropic) printf '{"model":"%s","max_tokens":100,"stream":%s,"messages":[%s,{"role":"assistant","content":[{"type":"text","text":"Hello w2"}]}]}' "$2" "$3" "$U" ;;
    gemini) printf '{"contents":[{"role":"user","parts":[{"text":"one two three"}]},{"role":"model","parts":[{"text":"Hello"},{"text":" w2"}]}]}' ;;
    bedrock) printf '{"messages":[{"role":"user","content":[{"text":"one two three"}]},{"role":"assistant","content":[{"text":"Hello w2"}]}]}' ;;
    cohere) printf '{"model":"%s","stream":%s,"messages":[%s,{"role":"assistant","content":[{"type":"text","text":"Hello w2"}]}]}' "$2" "$3" "$U" ;;
    esac
}
rawstatus_shape() { # PROTO: how the protocol's error body for status 600 looks
    case $1 in
    openai|responses) echo '"type":"server_error"' ;; anthropic) echo '"type":"api_error"' ;;
    gemini) echo '"code":600,"message":"bb-mock: scripted status 600","status":"INTERNAL"' ;;
    bedrock) echo 'x-amzn-ErrorType: InternalServerException:' ;; cohere) echo '{"message":"bb-mock: scripted status 600"}' ;;
    esac
}
each_case() { # run "$@" for every protocol x mode x case, with P MODE CASE CTX O A set
    local cases
    for P in openai responses anthropic gemini bedrock cohere; do
        MODES="json stream"
        [ $P = gemini ] && MODES="json stream array"
        for MODE in $MODES; do
            cases="chunkcut html redirect rawstatus bigbody ctype prefill"
            [ $MODE = json ] && cases="slowbody cut stall $cases"
            for CASE in $cases; do
                CTX="$P $MODE $CASE"
                O="$TMP/$P-$MODE-$CASE.raw"
                A="$O.ans"
                "$@"
            done
        done
    done
}
send_case() { # the request; its curl status and timings in $O.meta, its attempt in $O.att
    local d model stream=false b w
    case $CASE in
    slowbody) d=';slowbody=300' ;; cut) d=';cut=2' ;; stall) d=';stall=2' ;;
    chunkcut) d=';chunkcut' ;; html) d=';html' ;; redirect) d=';redirect=307' ;;
    rawstatus) d=';rawstatus=600' ;; bigbody) d=';bigbody=200000' ;;
    ctype) d=';ctype=text/plain' ;; prefill) d='' ;;
    esac
    model="m;words=3$d"
    [ "$MODE" != json ] && stream=true
    if [ $CASE = prefill ]; then b=$(prefill_body $P "$model" $stream); else b=$(body_$P "$model" $stream plain); fi
    SEQ=$((SEQ + 1))
    w=$(curl -sS -N -i --raw --http1.1 -m 0.6 -o "$O" -w '%{time_starttransfer} %{time_total}' \
        -H 'Content-Type: application/json' "$(url_of $P "$model" $MODE)" -d "$b" 2>/dev/null)
    echo "$? $w" >"$O.meta"
    attempt 0.02
    mv "$TMP/att" "$O.att"
    DECODE+=("$O" $P $MODE)
}
check_case() {
    local RC TTFB TOTAL st want_rc want_outcome
    read -r RC TTFB TOTAL <"$O.meta"
    st=$(head -1 "$O" | cut -d' ' -f2)
    case $CASE in
    slowbody)
        check "$CTX: 200 and the head at once" eval '[ "$st" = 200 ] && lt "$TTFB" 0.25'
        check "$CTX: the body 300 ms later" ge "$TOTAL" 0.29
        check "$CTX: complete" has "$A" 'text="Hello w2 w3"'
        check "$CTX: attempt ok" has "$O.att" '"outcome":"ok"' ;;
    cut|stall)
        [ $CASE = cut ] && want_rc=56 || want_rc=28
        check "$CTX: curl rc $want_rc (got $RC)" [ "$RC" = $want_rc ]
        check "$CTX: full Content-Length, body short" has "$A" 'end=truncated'
        check "$CTX: body ends after word 2" [ "$(tail -c 9 "$O")" = '"Hello w2' ]
        [ $CASE = cut ] && want_outcome=fault || want_outcome=aborted
        check "$CTX: attempt $want_outcome" has "$O.att" "\"status\":200,\"outcome\":\"$want_outcome\"" ;;
    chunkcut)
        check "$CTX: 200 chunked" eval '[ "$st" = 200 ] && has "$O" "Transfer-Encoding: chunked"'
        check "$CTX: reset (rc $RC)" [ "$RC" = 56 ]
        check "$CTX: no last chunk" has "$A" 'end=truncated'
        check "$CTX: the whole answer in the chunks" has "$A" 'text="Hello w2 w3"'
        check "$CTX: attempt fault" has "$O.att" '"outcome":"fault"'
        [ $MODE = stream ] && check "$CTX: usage in the chunks (terminator sent)" has "$A" 'tokens=3'
        [ $MODE = json ] && check "$CTX: several chunks" [ "$(grep -c $'^[0-9a-f]*\r$' "$O")" -ge 2 ] ;;
    html)
        check "$CTX: 200 text/html" eval '[ "$st" = 200 ] && has "$O" "Content-Type: text/html"'
        check "$CTX: an HTML page" has "$O" '<html><head><title>'
        check "$CTX: attempt fault" has "$O.att" '"status":200,"outcome":"fault"' ;;
    redirect)
        check "$CTX: 307" grep -q $'^HTTP/1.1 307 Temporary Redirect\r$' "$O"
        check "$CTX: Location: metadata service" has "$O" 'Location: http://169.254.169.254/latest/meta-data/'
        check "$CTX: empty body" has "$O" 'Content-Length: 0'
        check "$CTX: attempt fault" has "$O.att" '"status":307,"outcome":"fault"' ;;
    rawstatus)
        check "$CTX: status 600" grep -q '^HTTP/1.1 600 ' "$O"
        check "$CTX: the protocol's error body" has "$O" "$(rawstatus_shape $P)"
        check "$CTX: attempt fault" has "$O.att" '"status":600,"outcome":"fault"' ;;
    bigbody)
        check "$CTX: complete" eval '[ "$RC" = 0 ] && has "$A" end=complete'
        check "$CTX: text padded to ~200000 bytes" \
            eval 'ge "$(awk -F= "/^textlen/{print \$2}" "$A")" 200000 && lt "$(awk -F= "/^textlen/{print \$2}" "$A")" 200100'
        check "$CTX: the words first" has "$A" 'text="Hello w2 w3 xxxxxxxx'
        check "$CTX: a padding unit is one token (4 units)" has "$A" 'tokens=7'
        check "$CTX: attempt ok" has "$O.att" '"outcome":"ok"' ;;
    ctype)
        check "$CTX: Content-Type overridden" grep -q $'^Content-Type: text/plain\r$' "$O"
        check "$CTX: the answer itself" eval 'has "$A" "text=\"Hello w2 w3\"" && has "$A" end=complete' ;;
    prefill)
        check "$CTX: the rest of the answer" has "$A" 'text=" w3"'
        check "$CTX: output tokens of the rest" has "$A" 'tokens=1'
        check "$CTX: complete" has "$A" 'end=complete'
        check "$CTX: attempt prefill" eval 'has "$O.att" "\"prefill\":\"Hello w2\"" || has "$O.att" "\"prefill\":\"Hello w2 \""' ;;
    esac
    [ "$MODE" = array ] && [ $CASE = bigbody ] && check "$CTX: padding across elements" \
        [ "$(grep -c '"text":" xxx' "$O")" = 4 ]
}
DECODE=()
each_case send_case
answer "${DECODE[@]}"
each_case check_case

# no assistant turn: prefill null; a turn that is no prefix: the whole answer, prefill logged
post pfnull m false
attempt
check "prefill: null without an assistant turn" has "$TMP/att" '"prefill":null}'
SEQ=$((SEQ + 1))
curl -sS -i "$URL" -o "$TMP/pfno.out" -d "{\"model\":\"m;words=3\",\"messages\":[$U,{\"role\":\"assistant\",\"content\":\"Goodbye\"}]}"
attempt
check "prefill that is no prefix: the whole answer" has "$TMP/pfno.out" '"content":"Hello w2 w3"'
check "prefill that is no prefix: logged" has "$TMP/att" '"prefill":"Goodbye"}'
SEQ=$((SEQ + 1))
curl -sS -N -i --raw "$URL" -o "$TMP/pfmid.out" -d "{\"model\":\"m;words=4\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[$U,{\"role\":\"assistant\",\"content\":\"Hello w2 w\"}]}"
answer "$TMP/pfmid.out" openai stream
check "prefill ending inside a word: the rest of the word first" has "$TMP/pfmid.out.ans" 'text="3 w4"'
check "prefill ending inside a word: one unit per remaining word" [ "$(grep -c '"delta":{"content":"' "$TMP/pfmid.out")" = 2 ]
SEQ=$((SEQ + 1))
curl -sS -i "$BASE/v1/responses" -o "$TMP/pfeasy.out" -d '{"model":"m","input":[{"role":"user","content":"hi"},{"role":"assistant","content":"Hello w2 w3 w4 w5 w6 w7"}]}'
answer "$TMP/pfeasy.out" responses json
check "prefill, responses easy input message" has "$TMP/pfeasy.out.ans" 'text=" w8"'
SEQ=$((SEQ + 1))
curl -sS -i "$URL" -o "$TMP/pftools.out" -d "{\"model\":\"m;think\",\"tools\":$TOOLS_OA,\"messages\":[$U,{\"role\":\"assistant\",\"content\":\"Hello\"}]}"
check "prefill continuation: text, no call, no thinking" \
    eval 'has "$TMP/pftools.out" "\"content\":\" w2 w3 w4 w5 w6 w7 w8\"" && hasnt "$TMP/pftools.out" tool_calls && hasnt "$TMP/pftools.out" reasoning'
# faults apply to the continuation: fail_first=1;cut=3 cuts the first attempt, continues cleanly
SEQ=$((SEQ + 1))
curl -sS -N -i --raw "$URL" -o "$TMP/ffc1.out" -d "$(body 'ffc;fail_first=1;cut=3' true)" 2>/dev/null
SEQ=$((SEQ + 1))
curl -sS -N -i --raw "$URL" -o "$TMP/ffc2.out" -d "{\"model\":\"ffc;fail_first=1;cut=3\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[$U,{\"role\":\"assistant\",\"content\":\"Hello w2 w3\"}]}"
answer "$TMP/ffc1.out" openai stream "$TMP/ffc2.out" openai stream
check "fail_first=1;cut=3: a cut first" eval 'has "$TMP/ffc1.out.ans" "text=\"Hello w2 w3\"" && has "$TMP/ffc1.out.ans" end=truncated'
check "fail_first=1;cut=3: then the clean continuation" \
    eval 'has "$TMP/ffc2.out.ans" "text=\" w4 w5 w6 w7 w8\"" && has "$TMP/ffc2.out.ans" tokens=5 && has "$TMP/ffc2.out.ans" end=complete && has "$TMP/ffc2.out" "[DONE]"'
# a continuation is faulted like any answer: cut=1 on the rest
SEQ=$((SEQ + 1))
curl -sS -N -i --raw "$BASE/v1/messages" -o "$TMP/pfcut.out" -d "$(prefill_body anthropic 'm;words=5;cut=1' true)" 2>/dev/null
answer "$TMP/pfcut.out" anthropic stream
check "cut=1 on a continuation: one unit of the rest" has "$TMP/pfcut.out.ans" 'text=" w3"'
# non-stream faults on a tool-call answer cut in the middle of the body
post cuttools 'm;cut=1;tools=1' false
check "cut on a tool-call answer: cut in the middle" [ "$RC" = 56 ]
# HTTP/1.0 chunkcut: no chunking, the body then a RST
SEQ=$((SEQ + 1))
curl -sS -i --http1.0 "$URL" -o "$TMP/cc10.out" -d "$(body 'm;chunkcut' false)" 2>/dev/null
RC=$?
check "chunkcut over HTTP/1.0: body then RST" eval '[ "$RC" != 0 ] && hasnt "$TMP/cc10.out" chunked && has "$TMP/cc10.out" "\"finish_reason\":\"stop\""'
# precedence: cut beats chunkcut (a Content-Length head, the cut body)
post ccprec 'm;cut=2;chunkcut' false
check "cut > chunkcut" eval '[ "$RC" = 56 ] && has "$TMP/ccprec.out" Content-Length: && hasnt "$TMP/ccprec.out" chunked'
# slowfirst delays hostile answers too
post sfhtml 'm;slowfirst=300;html' true
check "slowfirst delays html" ge "$TTFB" 0.29

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
