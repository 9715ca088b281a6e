-- wrk script for the permissions set (bench/scenarios/permissions.py): authenticated GETs, as
-- one caller, of a list (one fixed URL) or of records picked at random from an id file. The
-- harness sets everything through environment variables (the token stays out of the process
-- list):
--
--   BENCH_TOKEN  the caller's access token (sent as `Authorization: Bearer ...`)
--   BENCH_PATH   list: the full path with query; get: the entity route, e.g. /api/benchperm/doc
--   BENCH_IDS    get only: a file with one record id per line
--
-- wrk reports non-2xx answers as "Non-2xx or 3xx responses"; the harness counts them as errors.

local token = os.getenv("BENCH_TOKEN")
local path = os.getenv("BENCH_PATH")
if token == nil or path == nil then
  error("BENCH_TOKEN and BENCH_PATH must be set")
end
wrk.headers["Authorization"] = "Bearer " .. token

local ids = {}

function init(args)
  math.randomseed(os.time())
  local file = os.getenv("BENCH_IDS")
  if file ~= nil and file ~= "" then
    for line in io.lines(file) do
      if line ~= "" then
        ids[#ids + 1] = line
      end
    end
  end
end

function request()
  if #ids > 0 then
    return wrk.format("GET", path .. "/" .. ids[math.random(#ids)])
  end
  return wrk.format("GET", path)
end
