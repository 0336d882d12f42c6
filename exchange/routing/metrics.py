"""Router metrics. Labels stay bounded: entry, consumer, grant, reason; never a key or offset."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from exchange.metrics.compact import LabelledCounter, LabelledHistogram

# Series per entry and per grant are compact (metrics/compact.py): a worker may hold 10,000
# grants over 1,000 entries.
RECORDS_IN = LabelledCounter(
    "exchange_router_records_in_total", "Source records read by the router.", ("entry",)
)
DELIVERED = LabelledCounter(
    "exchange_records_delivered_total",
    "Records delivered to a consumer's delivery topic and acknowledged by Kafka.",
    ("entry", "consumer", "grant"),
)
DENIED = LabelledCounter(
    "exchange_records_denied_total",
    "Valid records a grant's consumer did not receive (e.g. outside its row filter).",
    ("entry", "consumer", "grant", "reason"),
)
REJECTED = Counter(
    "exchange_router_dlq_records_total",
    "Source records the router rejected to the DLQ, by reason.",
    ("entry", "reason"),
)
ROUTING_LATENCY = LabelledHistogram(
    "exchange_routing_latency_seconds",
    "From a change being read at its source to its delivery being acknowledged.",
    ("entry",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
ACTIVE_GRANTS = Gauge(
    "exchange_active_grants", "Grants the router currently delivers under.", ("entry",)
)
TOPICS_DELETED = Counter(
    "exchange_router_delivery_topics_deleted_total",
    "Delivery topics of grant generations that ended or changed, deleted by this worker.",
)
BACKFILLS = Gauge(
    "exchange_router_backfills_running", "Backfills of newly active grants in progress."
)
BATCH_PHASE = Histogram(
    "exchange_router_batch_phase_seconds",
    "Time a live batch spent in each phase: grants (re-reading grants that changed, preparing "
    "new ones), route (validate, transform, encode: no I/O), stage (waiting for a checkpoint "
    "in progress, then handing the batch's records to the open transaction).",
    ("phase",),
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_RECORDS = Histogram(
    "exchange_router_batch_records",
    "Source records per live batch (router.batch_size at most).",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
GRANT_BOOK_AGE = Gauge(
    "exchange_router_grant_book_age_seconds",
    "Seconds since the router's copy of the grants was last known current (about 0.5 while it "
    "follows exchange.grants; growing while its reader recovers from a failure). At "
    "router.grant_book_stale_s the router stops rather than route under stale grants.",
)
GRANT_BOOK_FAILURES = Gauge(
    "exchange_router_grant_book_failures",
    "Times the router's grant-book reader failed and started again, since the worker started.",
)
GRANTS_WAITING = Gauge(
    "exchange_router_grants_waiting",
    "Active grants the router cannot deliver under yet: their delivery topic or schema could not "
    "be made (registry or broker away); retried every few seconds.",
)
CHECKPOINTS = Counter(
    "exchange_router_checkpoints_total",
    "Router checkpoints (Kafka transactions) by outcome: committed, retried (a retriable commit "
    "failure), aborted (everything since the last commit is routed again), reloaded (the "
    "producer was lost; state re-read from Kafka).",
    ("outcome",),
)
CHECKPOINT_SECONDS = Histogram(
    "exchange_router_checkpoint_seconds",
    "Time to seal and commit one checkpoint.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CHECKPOINT_RECORDS = Histogram(
    "exchange_router_checkpoint_records",
    "Source records (live and backfill) committed by one checkpoint.",
    buckets=(1, 10, 100, 500, 1000, 5000, 10000, 50000, 100000),
)
