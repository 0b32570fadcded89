-- wrk script: POST the JSON body held in the file named by BENCH_BODY_FILE, the same body every request.
local path = os.getenv("BENCH_BODY_FILE")
assert(path, "BENCH_BODY_FILE is not set")
local file = assert(io.open(path, "rb"))
wrk.body = file:read("*a")
file:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

-- wrk prints 50/75/90/99 % with --latency; the tail past that, in microseconds, for bench/wrk.py
function done(summary, latency, requests)
   io.write(string.format("p99.9 latency: %dus\n", latency:percentile(99.9)))
end
