"""ScaledApp's demo service: a FastAPI app with a Redis read-through cache, Postgres primary + replicas,
a Redis job queue and its worker, and an open-loop load generator."""
