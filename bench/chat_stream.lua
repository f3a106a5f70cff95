-- wrk script: POST /v1/chat/completions with "stream":true (SSE; wrk counts a request when
-- the chunked response ends, i.e. after data: [DONE]).
local model = os.getenv("BENCH_MODEL") or "bench"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- BENCH_KEY: a virtual key (the governed targets: keys, cluster)
if os.getenv("BENCH_KEY") then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
end
wrk.body = '{"model":"' .. model .. '","stream":true,'
  .. '"messages":[{"role":"user","content":"hello benchmark"}]}'
