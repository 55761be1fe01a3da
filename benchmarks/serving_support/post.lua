-- wrk script for benchmarks/serving.py: POSTs one JSON body and prints one machine-readable line.
--
-- Usage: wrk ... -s post.lua URL -- BODY_FILE
-- The body is read once per wrk thread in init(), before wrk formats its (static) request.
-- done() runs once with the totals of all threads; latencies are in microseconds. wrk counts a
-- response with status >= 400 as a status error; connect/read/write errors and timeouts are
-- reported separately.

function init(args)
  local path = args[1]
  assert(path, "usage: wrk ... -s post.lua URL -- BODY_FILE")
  local f = assert(io.open(path, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
