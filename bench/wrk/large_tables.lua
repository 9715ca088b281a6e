-- wrk script for the large-tables set (bench/scenarios/large_tables.py): authenticated list
-- requests or product creates. Everything comes from environment variables the harness sets:
--
--   BENCH_MODE   list | create
--   BENCH_TOKEN  the app access token (sent as `Authorization: Bearer ...`)
--   BENCH_PATH   the entity route, e.g. /api/benchlarge/product
--   BENCH_QUERY  list only: the query string
--   BENCH_TAG    create only: a tag unique to this wrk run (names are W-<tag>-<counter>)

local mode = os.getenv("BENCH_MODE")
local token = os.getenv("BENCH_TOKEN")
local path = os.getenv("BENCH_PATH")
if mode == nil or token == nil or path == nil then
  error("BENCH_MODE, BENCH_TOKEN and BENCH_PATH must be set")
end
if mode ~= "list" and mode ~= "create" then
  error("unknown BENCH_MODE " .. mode)
end

wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"

local query = os.getenv("BENCH_QUERY")
local list_path = path
if query ~= nil and query ~= "" then
  list_path = path .. "?" .. query
end
local tag = os.getenv("BENCH_TAG") or "run"
local counter = 0

function request()
  if mode == "list" then
    return wrk.format("GET", list_path)
  end
  counter = counter + 1
  local body = string.format(
    '{"category": "c%d", "price": "%d.50", "name": "W-%s-%d"}', counter % 100, counter % 997, tag,
    counter)
  return wrk.format("POST", path, nil, body)
end
