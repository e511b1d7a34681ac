"""Expose the pager outboxes' counters and queue depths as Prometheus metrics.

A collector reads the counters at scrape time, so the delivery path keeps plain ints and
there is no second set of numbers to keep in step. Series (label `outbox`: alertmanager
or alertmanager@host:port per cluster peer, pagerduty, webhook):
`stationd_pager_items_total{outcome=sent|failed|dropped}`,
`stationd_pager_retries_total`, `stationd_pager_queued`, `stationd_pager_render_errors_total`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alarms.pager.fanout import Pager


class PagerCollector(Collector):
    def __init__(self, pager: Pager) -> None:
        self._pager = pager

    def collect(self) -> Iterator[Metric]:
        items = CounterMetricFamily(
            "stationd_pager_items",
            "Pager items (alerts/events) by outcome: sent (2xx), failed (rejected or "
            "retries exhausted), dropped (queue overflow or unsent at stop)",
            labels=["outbox", "outcome"],
        )
        retries = CounterMetricFamily(
            "stationd_pager_retries", "Pager retry attempts, per item", labels=["outbox"]
        )
        queued = GaugeMetricFamily(
            "stationd_pager_queued", "Pager items waiting in the outbox", labels=["outbox"]
        )
        depth = self._pager.queued()
        for name, c in self._pager.counters().items():
            items.add_metric([name, "sent"], c.sent)
            items.add_metric([name, "failed"], c.failed)
            items.add_metric([name, "dropped"], c.dropped)
            retries.add_metric([name], c.retried)
            queued.add_metric([name], depth[name])
        render = CounterMetricFamily(
            "stationd_pager_render_errors",
            "Pager events an adapter could not turn into a request (a bug; see the log)",
            value=self._pager.render_errors,
        )
        yield from (items, retries, queued, render)


def register_pager_metrics(pager: Pager, registry: CollectorRegistry = REGISTRY) -> PagerCollector:
    """Register the pager's series; `registry.unregister(collector)` undoes it."""
    collector = PagerCollector(pager)
    registry.register(collector)
    return collector
