"""Prometheus metrics of one otaudit process (served at ``/metrics``).

Every label value is either from a fixed set (``signal``, ``reason``,
``transport``, ``missing``), from the operator's configuration (``rule``,
``severity``) or chosen by a client. A client-chosen value (only ``service``,
the ``service.name`` of a non-conforming record) goes through
:class:`BoundedCounter`: the first :data:`MAX_LABEL_VALUES` distinct values keep
a series of their own, later ones are counted under :data:`OTHER_LABEL_VALUE`,
so no client can grow ``/metrics`` without bound.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

MAX_LABEL_VALUES: Final = 100
"""Distinct values one client-chosen label keeps before the rest count as ``other``."""

MAX_LABEL_VALUE_CHARS: Final = 128
"""Characters of a client-chosen label value kept in its series name; longer ones are cut."""

OTHER_LABEL_VALUE: Final = "other"
"""The value that stands for every client-chosen value after the first :data:`MAX_LABEL_VALUES`."""


class BoundedLabel:
    """The values one client-chosen label may take: the first ``limit`` seen, then ``other``.

    A value is cut to :data:`MAX_LABEL_VALUE_CHARS` characters before it is
    counted, so ``limit`` values cannot be large either. A value once admitted
    keeps its series for the life of the process. Thread-safe.
    """

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        if limit < 1:
            raise ValueError(f"a label needs room for at least one value, got limit {limit}")
        self.limit = limit
        self._admitted: set[str] = set()
        self._lock = threading.Lock()

    def value(self, raw: str) -> str:
        """The label value that counts ``raw``: ``raw`` (cut) if admitted, else ``other``."""
        cut = raw[:MAX_LABEL_VALUE_CHARS]
        if cut in self._admitted:  # the common case: no lock
            return cut
        with self._lock:
            if cut in self._admitted:
                return cut
            if len(self._admitted) >= self.limit:
                return OTHER_LABEL_VALUE
            self._admitted.add(cut)
            return cut


class BoundedCounter:
    """A labelled :class:`Counter` whose client-chosen labels are each a :class:`BoundedLabel`.

    ``labels`` takes the values in the counter's label order, as
    ``Counter.labels`` does, and maps the bounded ones first.
    """

    def __init__(self, counter: Counter, labelnames: list[str], bounded: list[str]) -> None:
        unknown = sorted(set(bounded) - set(labelnames))
        if unknown:
            raise ValueError(f"bounded labels {unknown} are not among {labelnames}")
        self.counter = counter
        self._bounds = [BoundedLabel() if name in bounded else None for name in labelnames]

    def labels(self, *values: str) -> Counter:
        """The child counter of ``values``, each bounded label's value mapped by its bound."""
        if len(values) != len(self._bounds):
            raise ValueError(f"expected {len(self._bounds)} label values, got {len(values)}")
        mapped = [v if b is None else b.value(v) for v, b in zip(values, self._bounds, strict=True)]
        return self.counter.labels(*mapped)


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
        self.nonconforming = BoundedCounter(
            Counter(
                "otaudit_records_nonconforming",
                "Audit records sealed without a required field (actor, result); missing names"
                f" them; services after the first {MAX_LABEL_VALUES} count as"
                f" '{OTHER_LABEL_VALUE}'.",
                ["service", "missing"],
                registry=r,
            ),
            ["service", "missing"],
            bounded=["service"],
        )
        self.failed_requests = Counter(
            "otaudit_requests_failed",
            "Export requests answered with an error status.",
            ["transport", "reason"],
            registry=r,
        )
        self.bulk_decodes = Counter(
            "otaudit_requests_decoded_low_priority",
            "Export requests decoded at a lower CPU priority because their source sent more"
            " than its share while others were sending.",
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
        self.detect_evicted = Counter(
            "otaudit_detect_evicted",
            "Groups a detection rule forgot (least recently seen first) to stay within its"
            " bounds on state.",
            ["rule"],
            registry=r,
        )
        self.detect_position = Gauge(
            "otaudit_detect_position",
            "The sequence number the detection rules judge next (tree size when caught up).",
            registry=r,
        )

    def watch_notifications(self, counts: NotificationCounts) -> None:
        """Export the counts of the alert notifier (read when ``/metrics`` is scraped)."""
        self.registry.register(_NotificationCollector(counts))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class NotificationCounts(Protocol):
    """What the alert notifier counts (:class:`otaudit.detect.notify.Notifier`)."""

    delivered: int
    failed: int  # given up after retries, or dropped
    dropped: dict[str, int]  # per severity: refused because its queue was full


class _NotificationCollector(Collector):
    def __init__(self, counts: NotificationCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self._counts
        dropped = dict(counts.dropped)
        yield CounterMetricFamily(
            "otaudit_notifications_delivered", "Alert notifications delivered.", counts.delivered
        )
        family = CounterMetricFamily(
            "otaudit_notifications_dropped",
            "Alert notifications not sent because the queue of their severity was full (the"
            " alerts are in the ledger).",
            labels=["severity"],
        )
        for severity, n in dropped.items():
            family.add_metric([severity], n)
        yield family
        yield CounterMetricFamily(
            "otaudit_notifications_failed",
            "Alert notifications given up after their retries (the alerts are in the ledger).",
            max(0, counts.failed - sum(dropped.values())),
        )
