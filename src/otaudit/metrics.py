"""Prometheus metrics of one otaudit process (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The counters and gauges otaudit exports, on a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "otaudit_records_received", "Spans and log records received.", ["signal"], registry=r
        )
        self.sealed = Counter(
            "otaudit_records_sealed",
            "Audit records committed to the ledger.",
            ["signal"],
            registry=r,
        )
        self.duplicates = Counter(
            "otaudit_records_duplicate",
            "Audit records already in the ledger (retried exports), acknowledged, not re-added.",
            ["signal"],
            registry=r,
        )
        self.dropped = Counter(
            "otaudit_records_dropped",
            "Records not kept because the policy does not select them.",
            ["signal", "reason"],
            registry=r,
        )
        self.rejected = Counter(
            "otaudit_records_rejected",
            "Audit records refused and reported to the client through partial_success.",
            ["signal"],
            registry=r,
        )
        self.nonconforming = Counter(
            "otaudit_records_nonconforming",
            "Audit records sealed without a required field (actor, result); missing names them.",
            ["service", "missing"],
            registry=r,
        )
        self.failed_requests = Counter(
            "otaudit_requests_failed",
            "Export requests answered with an error status.",
            ["transport", "reason"],
            registry=r,
        )
        self.queue_records = Gauge(
            "otaudit_sequencer_queue_records", "Records waiting for the sequencer.", registry=r
        )
        self.lag = Gauge(
            "otaudit_sequencer_lag_seconds",
            "Age of the oldest export waiting for the sequencer (0 when idle).",
            registry=r,
        )
        self.tree_size = Gauge("otaudit_tree_size", "Records in the ledger.", registry=r)
        self.checkpoint_size = Gauge(
            "otaudit_checkpoint_tree_size", "Tree size of the latest signed checkpoint.", registry=r
        )
        self.commit_seconds = Histogram(
            "otaudit_commit_seconds",
            "Duration of one durable append transaction.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )

        self.alerts = Counter(
            "otaudit_alerts",
            "New alerts sealed by the detection rules of this process.",
            ["rule", "severity"],
            registry=r,
        )
        self.detect_position = Gauge(
            "otaudit_detect_position",
            "The sequence number the detection rules judge next (tree size when caught up).",
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
