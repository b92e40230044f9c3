-- wrk script of bench/serving/run.py: POST one JSON body, print the results as one JSON line.
--
-- The body is read from the file named by BENCH_BODY (the same bytes for every request); the
-- path comes from the URL on wrk's command line. done() prints a line starting with
-- "BENCH_JSON " that run.py parses: request count, duration, error counts and latency
-- percentiles in microseconds, straight from wrk's own histogram.

local name = os.getenv("BENCH_BODY")
assert(name, "set BENCH_BODY to the file holding the request body")
local file = assert(io.open(name, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
wrk.headers["Content-Type"] = "application/json"
file:close()

function done(summary, latency, requests)
   local e = summary.errors
   local fields = {
      string.format('"requests": %d', summary.requests),
      string.format('"duration_us": %d', summary.duration),
      string.format('"bytes": %d', summary.bytes),
      string.format('"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}',
                    e.connect, e.read, e.write, e.status, e.timeout),
      string.format('"mean_us": %.1f', latency.mean),
      string.format('"max_us": %d', latency.max),
   }
   for _, p in ipairs({50, 90, 99, 99.9}) do
      fields[#fields + 1] = string.format('"p%s_us": %d', tostring(p), latency:percentile(p))
   end
   io.write("BENCH_JSON {" .. table.concat(fields, ", ") .. "}\n")
end
