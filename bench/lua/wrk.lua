-- wrk script for ./scripts/bench. Configured by the environment:
--   BENCH_OUT          file the summary JSON is written to (required)
--   BENCH_METHOD       request method (default GET)
--   BENCH_BODY         request body
--   BENCH_ORIGIN       Origin header (unsafe requests to Rampart need it)
--   BENCH_DELAY_MS     pause before each request on a connection (a light, paced probe)
--   BENCH_COUNT_STATUS "1": count responses per status code (costs a Lua call per response)
-- Latency figures are in microseconds, as wrk measures them.

local out = os.getenv("BENCH_OUT")
local method = os.getenv("BENCH_METHOD")
local body = os.getenv("BENCH_BODY")
local origin = os.getenv("BENCH_ORIGIN")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
local count_status = os.getenv("BENCH_COUNT_STATUS") == "1"

if method then wrk.method = method end
if body then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
if origin then wrk.headers["Origin"] = origin end

if delay_ms then
  delay = function() return delay_ms end
end

local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

if count_status then
  init = function(args)
    statuses = {}
  end
  response = function(status, headers, resp_body)
    statuses[status] = (statuses[status] or 0) + 1
  end
end

done = function(summary, latency, requests)
  local counts = {}
  if count_status then
    for _, t in ipairs(threads) do
      local s = t:get("statuses")
      if s then
        for code, n in pairs(s) do
          counts[code] = (counts[code] or 0) + n
        end
      end
    end
  end
  local parts = {}
  for code, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', code, n))
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  local json = string.format(
    '{"requests":%d,"duration_s":%.3f,"rps":%.2f,"bytes":%d,' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"min":%d,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"statuses":{%s}}\n',
    summary.requests, secs, summary.requests / secs, summary.bytes,
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ","))
  if out then
    local f = assert(io.open(out, "w"))
    f:write(json)
    f:close()
  else
    io.write(json)
  end
end
