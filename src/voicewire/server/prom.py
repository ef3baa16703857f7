"""Prometheus view of the runtime: counters and gauges read from live state at scrape time.

Stage-latency histograms are observed as turns end (``metrics.TurnMetrics``); everything else is
derived here when Prometheus scrapes, so the hot path pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from voicewire.server.runtime import Runtime


class RuntimeCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        rt = self.rt
        turns = CounterMetricFamily(
            "voicewire_turns", "Utterances by final status", labels=["status"]
        )
        for status, n in rt.metrics.turns.items():
            turns.add_metric([status], n)
        yield turns
        errors = CounterMetricFamily(
            "voicewire_errors", "Error frames sent, by code", labels=["code"]
        )
        for code, n in rt.metrics.errors.items():
            errors.add_metric([code], n)
        yield errors
        fallbacks = CounterMetricFamily(
            "voicewire_provider_fallbacks",
            "Calls a provider failed (or was skipped) and the next in its chain took",
            labels=["stage", "provider"],
        )
        for (stage, provider), n in rt.metrics.fallbacks.items():
            fallbacks.add_metric([stage, provider], n)
        yield fallbacks
        interruptions = CounterMetricFamily(
            "voicewire_interruptions",
            "Replies the user talked over (barge-in), by what interrupted",
            labels=["reason"],
        )
        for reason, n in rt.metrics.interruptions.items():
            interruptions.add_metric([reason], n)
        yield interruptions
        waits = CounterMetricFamily(
            "voicewire_turn_waits",
            "Pauses not taken as the end of a turn: the words sounded unfinished, by why",
            labels=["reason"],
        )
        for reason, n in rt.metrics.turn_waits.items():
            waits.add_metric([reason], n)
        yield waits
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
