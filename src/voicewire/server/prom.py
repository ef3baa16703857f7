"""Prometheus view of the runtime: counters and gauges read from live state at scrape time.

Stage-latency histograms are observed as turns end (``metrics.TurnMetrics``); everything else is
derived here when Prometheus scrapes, so the hot path pays nothing for it. Every series carries
a ``worker`` label (host:pid): behind one port (``--workers N``) a scrape reaches one worker,
so the ``voicewire_cluster_*`` gauges (from Redis, as of the last sweep) give the totals.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

if TYPE_CHECKING:
    from voicewire.server.runtime import Runtime


class RuntimeCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        rt = self.rt
        m = rt.metrics
        yield _counts("voicewire_turns", "Utterances by final status", ["status"], m.turns)
        yield _counts("voicewire_errors", "Error frames sent, by code", ["code"], m.errors)
        yield _counts(
            "voicewire_provider_fallbacks",
            "Calls a provider failed (or was skipped) and the next in its chain took",
            ["stage", "provider"],
            m.fallbacks,
        )
        yield _counts(
            "voicewire_interruptions",
            "Replies the user talked over (barge-in), by what interrupted",
            ["reason"],
            m.interruptions,
        )
        yield _counts(
            "voicewire_turn_waits",
            "Pauses not taken as the end of a turn: the words sounded unfinished, by why",
            ["reason"],
            m.turn_waits,
        )
        cost = CounterMetricFamily(
            "voicewire_cost_usd", "Accumulated cost in USD", labels=["component"]
        )
        for component, usd in rt.accountant.totals.items():
            cost.add_metric([component], float(usd))
        yield cost
        yield CounterMetricFamily(
            "voicewire_connections",
            "WebSocket connections accepted",
            value=rt.metrics.connections_total,
        )
        yield GaugeMetricFamily(
            "voicewire_sessions_connected", "Connected sessions", value=rt.store.connected()
        )
        yield GaugeMetricFamily(
            "voicewire_model_queue", "Model calls waiting or running", value=rt.runner.pending
        )
        if rt.cluster is not None:
            yield GaugeMetricFamily(
                "voicewire_cluster_workers",
                "Workers sharing this Redis",
                value=rt.cluster["workers"],
            )
            yield GaugeMetricFamily(
                "voicewire_cluster_sessions_connected",
                "Connected sessions over every worker",
                value=rt.cluster["sessions_connected"],
            )
        if rt.monitor.samples:
            s = rt.monitor.samples[-1]
            yield CounterMetricFamily(
                "voicewire_process_cpu_seconds", "Process CPU time", value=s.cpu_s
            )
            yield GaugeMetricFamily(
                "voicewire_process_rss_bytes", "Resident memory", value=s.rss_kb * 1024
            )
            yield GaugeMetricFamily(
                "voicewire_process_open_fds", "Open file descriptors", value=s.fds
            )
            yield GaugeMetricFamily(
                "voicewire_event_loop_lag_seconds",
                "Event-loop lag, last sample",
                value=s.loop_lag_ms / 1000,
            )


def _counts(name: str, doc: str, labels: list[str], counter: Mapping[Any, int]) -> Metric:
    """A counter family from a Counter keyed by one label value or a tuple of them."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, n in counter.items():
        family.add_metric(list(key) if isinstance(key, tuple) else [key], n)
    return family


class WorkerLabelled(Collector):
    """``registry``'s series with a ``worker`` label added to each sample."""

    def __init__(self, registry: CollectorRegistry, worker: str) -> None:
        self.registry = registry
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                Sample(
                    s.name, {**s.labels, "worker": self.worker}, s.value, s.timestamp, s.exemplar
                )
                for s in family.samples
            ]
            yield labelled


def exposition_registry(registry: CollectorRegistry, worker: str) -> CollectorRegistry:
    out = CollectorRegistry(auto_describe=False)
    out.register(WorkerLabelled(registry, worker))
    return out
