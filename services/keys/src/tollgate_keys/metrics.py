"""What the validate path exposes on /metrics, for the people who run it.

A validation's latency is mostly the batch it rides in (one statement and one commit,
batcher.py), so the statement is timed on its own beside the whole answer: when the p99
moves, these two say whether the database or the process moved it.
"""

from prometheus_client import Counter, Histogram

# From a quarter of a millisecond (a fast commit) to a second (something is wrong).
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

VALIDATIONS = Counter(
    "tollgate_keys_validations_total",
    "Validations answered, by outcome (ok or the refusal's reason) and whether they consumed.",
    ["outcome", "consume"],
)
REJECTED = Counter(
    "tollgate_keys_validate_rejected_total",
    "Validate requests refused before any validation: a body too large (413), not a valid request (422), "
    "or too many waiting (503).",
    ["status"],
)
VALIDATE_SECONDS = Histogram(
    "tollgate_keys_validate_seconds",
    "POST /v1/keys/validate, from the request's body to the answer being handed to the server.",
    buckets=LATENCY_BUCKETS,
)
BATCH_SECONDS = Histogram(
    "tollgate_keys_batch_seconds",
    "One consuming batch: the consume_and_record() statement and its commit.",
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "tollgate_keys_batch_size",
    "Validations per consuming batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


def answered(outcome: str, consume: bool) -> None:
    VALIDATIONS.labels(outcome, "true" if consume else "false").inc()


MOVED_TO_CURRENT_SECRET = Counter(
    "tollgate_keys_moved_to_current_hash_secret_total",
    "Keys found under a previous hash secret and moved to the current one, on their first use after a rotation.",
)
