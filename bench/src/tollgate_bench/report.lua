-- What every wrk script of the benchmarks shares, loaded by each with
-- dofile(os.getenv("WRK_REPORT")): each thread numbered (`id`, for ids unique across
-- threads), answers the script's response() finds wrong counted in `invalid`, and at the
-- end one JSON line, the shape loadgen.py prints.
local threads = {}
invalid = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
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
