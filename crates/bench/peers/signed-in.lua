-- wrk: one signed-in GraphQL read, the query and bearer token from the environment.
wrk.method = "POST"
wrk.body = '{"query":"' .. os.getenv("QUERY") .. '"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")

done = function(summary, latency, requests)
  io.write(string.format("RESULT req/s %.0f, p50 %.2f ms, p99 %.2f ms, %d requests, %d non-2xx, %d socket errors\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
