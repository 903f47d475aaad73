"""Every Redis key QuantPulse writes starts with ``NAMESPACE``, so one Redis can host other data
and ``SCAN qp:v1:*`` shows all of ours (the key map is in docs/operations.md)."""

NAMESPACE = "qp:v1"
STATS_KEY = f"{NAMESPACE}:stats"
LAST_ERRORS_KEY = f"{NAMESPACE}:stats:last_error"
