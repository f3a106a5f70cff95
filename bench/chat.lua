-- wrk script: POST /v1/chat/completions, small body, non-streaming.
-- BENCH_MODEL picks the model (the pool name for a gateway, anything for the mock).
local model = os.getenv("BENCH_MODEL") or "bench"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- BENCH_KEY: a virtual key (the governed targets: keys, cluster)
if os.getenv("BENCH_KEY") then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
end
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"hello benchmark"}]}'
