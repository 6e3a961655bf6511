"""Prometheus figures of the hold queue, per queue and tier (served at ``/metrics``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Answer-time buckets in seconds: service levels are usually set at 20-60 s.
WAIT_BUCKETS = (1, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


@dataclass(frozen=True)
class QueueMetrics:
    enqueued: Counter
    offers: Counter
    ended: Counter
    answer_wait: Histogram
    waiting: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> QueueMetrics:
        return cls(
            enqueued=Counter(
                "callcenter_calls_enqueued",
                "Calls handed in and queued",
                ["queue", "tier"],
                registry=registry,
            ),
            offers=Counter(
                "callcenter_offers",
                "Offers to agents by how they ended (made counts every offer)",
                ["result"],
                registry=registry,
            ),
            ended=Counter(
                "callcenter_calls_ended",
                "Calls ended, by outcome",
                ["queue", "outcome"],
                registry=registry,
            ),
            answer_wait=Histogram(
                "callcenter_answer_wait_seconds",
                "Time from enqueue to an agent's accept",
                ["queue", "tier"],
                buckets=WAIT_BUCKETS,
                registry=registry,
            ),
            waiting=Gauge(
                "callcenter_calls_waiting",
                "Calls waiting, counted when scraped",
                ["queue", "tier"],
                registry=registry,
            ),
        )

    def set_waiting(self, counts: Iterable[tuple[str, str, int]]) -> None:
        """Replace the waiting gauge with a fresh reading, so emptied queues read 0."""
        self.waiting.clear()
        for queue, tier, n in counts:
            self.waiting.labels(queue, tier).set(n)
