-- wrk script: POST /enqueue with a unique task id per request, round-robin over queues.
--
--   BENCH_QUEUES="8080=q0,q1,q2,q3;8081=default" wrk -t2 -c16 -d10s -s bench/queue_ids.lua \
--       http://127.0.0.1:8080 -- RUN_TAG
--
-- As bench/unique_ids.lua (ids RUN_TAG-<thread>-<counter>, one "WRK_JSON {...}" line at the
-- end), with each body naming the next queue BENCH_QUEUES lists for the server's port (none
-- listed: no queue field at all). By port, so that one environment serves two servers loaded in
-- turn (bench/paired.py).

local thread_count = 0

function setup(thread)
   thread:set("thread_number", thread_count)
   thread_count = thread_count + 1
end

function init(args)
   prefix = (args[1] or "run") .. "-" .. thread_number .. "-"
   counter = 0
   headers = { ["Content-Type"] = "application/json" }
   queues = {}
   for port, names in string.gmatch(os.getenv("BENCH_QUEUES") or "", "(%d+)=([^;]+)") do
      if port == tostring(wrk.port) then
         for name in string.gmatch(names, "[^,]+") do
            queues[#queues + 1] = name
         end
      end
   end
end

function request()
   counter = counter + 1
   local queue = ""
   if #queues > 0 then
      queue = ',"queue":"' .. queues[counter % #queues + 1] .. '"'
   end
   local body = '{"id":"' .. prefix .. counter .. '","payload":"some data","max_retries":3' .. queue .. '}'
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
