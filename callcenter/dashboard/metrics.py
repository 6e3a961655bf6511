"""What an operator's Grafana needs from the dashboard's figures, at ``/metrics``.

Set from one board when scraped (a scrape every 15-60 s costs one reading,
shared with any open dashboard): agents by state per queue, calls waiting
per queue and tier with a zero series for every tier that is not waiting
(so a panel shows 0, not "no data"), and the window's service level per
queue and tier.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from callcenter.dashboard.models import Board
from callcenter.queue.models import AgentState


@dataclass(frozen=True)
class DashboardMetrics:
    agents: Gauge
    waiting: Gauge
    service_level: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry, waiting: Gauge) -> DashboardMetrics:
        """``waiting`` is the queue room's ``callcenter_calls_waiting``, filled in full here."""
        return cls(
            agents=Gauge(
                "callcenter_agents",
                "Agents serving the queue, by state (an agent counts in each queue it serves)",
                ["queue", "state"],
                registry=registry,
            ),
            waiting=waiting,
            service_level=Gauge(
                "callcenter_service_level_ratio",
                "Share of the stats window's answered calls answered within the queue's "
                "service level (absent before any answer)",
                ["queue", "tier"],
                registry=registry,
            ),
        )

    def update(self, board: Board) -> None:
        self.agents.clear()
        self.waiting.clear()
        self.service_level.clear()
        for q in board.stats.queues:
            for state in AgentState:
                self.agents.labels(q.name, state.value).set(q.agents.get(state, 0))
            tiers = {t.tier: t for t in q.tiers}
            for name in sorted({*tiers, "unknown"}):
                t = tiers.get(name)
                self.waiting.labels(q.name, name).set(t.waiting if t else 0)
                if t is not None and t.window.service_level is not None:
                    self.service_level.labels(q.name, name).set(t.window.service_level)
            if q.window.service_level is not None:
                self.service_level.labels(q.name, "all").set(q.window.service_level)
