-- wrk script: POST /enqueue with a unique task id per request.
--
--   wrk -t2 -c16 -d10s -s bench/unique_ids.lua http://127.0.0.1:8080 -- RUN_TAG
--
-- Ids are RUN_TAG-<thread>-<counter>: each wrk thread has its own Lua state, so a per-thread
-- prefix plus a per-thread counter never repeats, and a fresh RUN_TAG per run keeps a warmup and
-- the measured run apart on the same server. At the end one line "WRK_JSON {...}" carries the
-- figures for bench/wrkrun.py (latencies in microseconds).

local thread_count = 0

function setup(thread)
   thread:set("thread_number", thread_count)
   thread_count = thread_count + 1
end

function init(args)
   prefix = (args[1] or "run") .. "-" .. thread_number .. "-"
   counter = 0
   headers = { ["Content-Type"] = "application/json" }
end

function request()
   counter = counter + 1
   local body = '{"id":"' .. prefix .. counter .. '","payload":"some data","max_retries":3}'
   return wrk.format("POST", "/enqueue", headers, body)
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"non_2xx":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes,
      errors.connect, errors.read, errors.write, errors.timeout, errors.status,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean))
end
