"""`make soak`: a long run of clean mixed traffic against the catalog with 2 workers and a real Prometheus, then a
report (docs/soak.md) of memory, file descriptors, latency per time slice, errors, the log's completeness, alerts."""
