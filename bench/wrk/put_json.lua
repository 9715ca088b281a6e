-- wrk script for the rules set (bench/scenarios/rules.py): authenticated PUTs of one JSON body
-- to records picked at random from an id file. The harness sets everything through environment
-- variables (the token stays out of the process list):
--
--   BENCH_TOKEN  the caller's access token (sent as `Authorization: Bearer ...`)
--   BENCH_PATH   the entity route, e.g. /api/benchrules/plain
--   BENCH_IDS    a file with one record id per line
--   BENCH_BODY   the JSON body of every PUT, e.g. {"title": "updated"}
--
-- wrk reports non-2xx answers as "Non-2xx or 3xx responses"; the harness counts them as errors.

local token = os.getenv("BENCH_TOKEN")
local path = os.getenv("BENCH_PATH")
local body = os.getenv("BENCH_BODY")
if token == nil or path == nil or body == nil or body == "" then
  error("BENCH_TOKEN, BENCH_PATH and BENCH_BODY must be set")
end
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"

local ids = {}

function init(args)
  math.randomseed(os.time())
  for line in io.lines(os.getenv("BENCH_IDS")) do
    if line ~= "" then
      ids[#ids + 1] = line
    end
  end
  if #ids == 0 then
    error("BENCH_IDS has no ids")
  end
end

function request()
  return wrk.format("PUT", path .. "/" .. ids[math.random(#ids)], nil, body)
end
