"""Data-plane fixtures: real Redis, Postgres, Prometheus on loopback (filled in by the data-plane harness)."""
