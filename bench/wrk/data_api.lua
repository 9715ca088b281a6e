-- wrk script for the data_api set (bench/scenarios/data_api.py): authenticated requests to one
-- entity route, one kind per run. Everything comes from environment variables that the harness
-- sets (the token stays out of the process list):
--
--   BENCH_MODE   list | get | create | nested | update
--   BENCH_TOKEN  the app access token (sent as `Authorization: Bearer ...`)
--   BENCH_PATH   the entity route, e.g. /api/benchdata/order
--   BENCH_QUERY  list only: the query string, e.g. filter[status]=paid&sort=-created_at
--   BENCH_IDS    get/update only: a file with one record id per line; each request picks one at
--                random
--   BENCH_TAG    create/nested only: a tag unique to this wrk run; numbers are
--                W-<tag>-<thread>-<counter>, unique across runs, threads and requests
--
-- wrk reports non-2xx answers as "Non-2xx or 3xx responses"; the harness counts them as errors.

local mode = os.getenv("BENCH_MODE")
local token = os.getenv("BENCH_TOKEN")
local path = os.getenv("BENCH_PATH")
if mode == nil or token == nil or path == nil then
  error("BENCH_MODE, BENCH_TOKEN and BENCH_PATH must be set")
end

wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"

-- setup() runs in the main Lua state once per thread; it numbers the threads.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local ids = {}
local counter = 0
local tag = os.getenv("BENCH_TAG") or "run"
local list_path = path

function init(args)
  thread_number = thread_number or 1
  math.randomseed(os.time() * 1000 + thread_number)
  if mode == "get" or mode == "update" then
    local file = os.getenv("BENCH_IDS")
    if file == nil then
      error("BENCH_IDS must be set for mode " .. mode)
    end
    for line in io.lines(file) do
      if line ~= "" then
        ids[#ids + 1] = line
      end
    end
    if #ids == 0 then
      error("no ids in " .. file)
    end
  elseif mode == "list" then
    local query = os.getenv("BENCH_QUERY")
    if query ~= nil and query ~= "" then
      list_path = path .. "?" .. query
    end
  elseif mode ~= "create" and mode ~= "nested" then
    error("unknown BENCH_MODE " .. mode)
  end
end

local function next_number()
  counter = counter + 1
  return string.format("W-%s-%d-%d", tag, thread_number, counter)
end

local nested_lines = '"order_lines": {"data": ['
  .. '{"description": "line 1", "qty": 1}, {"description": "line 2", "qty": 2}, '
  .. '{"description": "line 3", "qty": 3}, {"description": "line 4", "qty": 4}, '
  .. '{"description": "line 5", "qty": 5}]}'

function request()
  if mode == "list" then
    return wrk.format("GET", list_path)
  elseif mode == "get" then
    return wrk.format("GET", path .. "/" .. ids[math.random(#ids)])
  elseif mode == "update" then
    return wrk.format("PUT", path .. "/" .. ids[math.random(#ids)], nil, '{"status": "sent"}')
  elseif mode == "create" then
    local body = string.format(
      '{"number": "%s", "status": "draft", "total": "12.50"}', next_number())
    return wrk.format("POST", path, nil, body)
  else -- nested
    local body = string.format(
      '{"number": "%s", "status": "draft", "total": "12.50", %s}', next_number(), nested_lines)
    return wrk.format("POST", path, nil, body)
  end
end
