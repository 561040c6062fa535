"""What operators see: Prometheus metrics (and, with issue 12, traces and error reports)."""
