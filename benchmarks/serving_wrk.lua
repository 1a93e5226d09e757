-- wrk script of benchmarks/serving_bench.py: POSTs JSON bodies read from a file.
--
--   wrk -t1 -c64 -d6s -s benchmarks/serving_wrk.lua URL -- BODIES START PACE_MS
--
-- BODIES  one JSON body per line, sent in turn. In a line holding @N@ that token becomes a
--         request counter (from START), so every request is new: a cache miss by design.
-- PACE_MS each connection waits a random time, PACE_MS on average (uniform in 0..2 PACE_MS,
--         so connections do not fire in step), before each request; 0: back to back. With C
--         connections and latency L that is about C / (PACE_MS + L) requests/s: a paced
--         closed loop, not wrk2's constant-rate schedule (no correction for coordinated
--         omission: a stalled connection sends nothing while it waits).
-- done() prints one JSON line: requests, seconds, socket errors, non-2xx/3xx, latency (ms).

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local bodies, templates = {}, {}
local sent, counter = 0, 0

function init(args)
   for line in io.lines(args[1]) do
      local head, tail = line:match("^(.-)@N@(.*)$")
      bodies[#bodies + 1] = line
      templates[#templates + 1] = head and { head, tail } or false
   end
   counter = tonumber(args[2] or "0")
   local pace = tonumber(args[3] or "0")
   if pace > 0 then
      math.randomseed(counter)
      delay = function() return math.random() * 2 * pace end
   end
end

function request()
   local i = sent % #bodies + 1
   sent = sent + 1
   local t = templates[i]
   if t then
      counter = counter + 1
      return wrk.format(nil, nil, nil, t[1] .. counter .. t[2])
   end
   return wrk.format(nil, nil, nil, bodies[i])
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      '{"requests": %d, "seconds": %.4f, "socket_errors": %d, "non2xx": %d, ' ..
      '"p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
      summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout,
      e.status, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
