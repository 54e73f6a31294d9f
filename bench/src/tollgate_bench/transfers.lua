-- wrk script for `make bench-transfers`: POST /v1/transfers of 1 cent between two random
-- wallets of $WALLETS, each request with an id of its own. An answer other than 201
-- counts as an error. Prints one JSON line, the shape loadgen.py prints.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local wallets = tonumber(os.getenv("WALLETS"))
local run = os.getenv("RUN")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
invalid = 0

function request()
  counter = counter + 1
  local a = math.random(wallets)
  local b = a % wallets + 1
  local body = string.format(
    '{"id":"%s-%d-%d","debit_account":"wallet:%d","credit_account":"wallet:%d","amount":1}',
    run, id or 0, counter, a, b)
  return wrk.format(nil, "/v1/transfers", nil, body)
end

function response(status, headers, body)
  if status ~= 201 then
    invalid = invalid + 1
  end
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  for _, thread in ipairs(threads) do
    errors = errors + thread:get("invalid")
  end
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "rate": %.1f, "errors": %d, "p50_ms": %.3f, "p99_ms": %.3f, "p999_ms": %.3f}\n',
    summary.requests, seconds, summary.requests / seconds, errors,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency:percentile(99.9) / 1e3))
end
