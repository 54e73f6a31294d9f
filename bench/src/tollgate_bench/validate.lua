-- wrk script for `make bench-keys`, flat out: POST /v1/keys/validate {"units": 1, "consume": true}
-- for a random key from $KEYS_FILE on every request. An answer other than 200 with
-- "isValid":true counts as an error. Prints one JSON line, the shape loadgen.py prints.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local bodies = {}
for key in io.lines(os.getenv("KEYS_FILE")) do
  bodies[#bodies + 1] = '{"apiKey":"' .. key .. '","units":1,"consume":true}'
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
invalid = 0

function request()
  return wrk.format(nil, "/v1/keys/validate", nil, bodies[math.random(#bodies)])
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"isValid":true', 1, true) then
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
