-- wrk script: POST the JSON body held in the file named by BENCH_BODY_FILE, the same body every request.
local path = os.getenv("BENCH_BODY_FILE")
assert(path, "BENCH_BODY_FILE is not set")
local file = assert(io.open(path, "rb"))
wrk.body = file:read("*a")
file:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
