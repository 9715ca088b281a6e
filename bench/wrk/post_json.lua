-- wrk script: send every request as a POST with a JSON body.
-- The body is read from the BENCH_BODY environment variable (bench/loadgen.py sets it), so one
-- script serves every POST scenario. wrk reports non-2xx answers as "Non-2xx or 3xx responses".
local body = os.getenv("BENCH_BODY")
if body == nil or body == "" then
  error("BENCH_BODY is not set")
end
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
