-- bench/http paced load for wrk: every connection waits 1 ms after each
-- response before it sends its next request, so all targets see about the
-- same request rate and their tail latencies compare at equal load.
function delay()
   return 1
end
