"""Process-wide turn metrics: per-stage latency windows, counters, and Prometheus histograms.

Cheap to update per turn; the Prometheus side observes real histograms (buckets counted as turns
end) and reads everything else from live state at scrape time.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from voicewire.protocol import StageTimings

LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.65,
    0.8,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class StageStats:
    """A bounded window of recent values: memory stays flat however long the server runs."""

    def __init__(self, window: int = 2048) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self.count = 0

    def add(self, value: float) -> None:
        self.values.append(value)
        self.count += 1

    def summary(self) -> dict[str, float | int]:
        if not self.values:
            return {"count": 0}
        vals = list(self.values)
        return {
            "count": self.count,
            "avg": round(sum(vals) / len(vals), 2),
            "min": round(min(vals), 2),
            "max": round(max(vals), 2),
            "p50": round(percentile(vals, 50), 2),
            "p95": round(percentile(vals, 95), 2),
            "p99": round(percentile(vals, 99), 2),
        }


class TurnMetrics:
    def __init__(self) -> None:
        self.stages = {name: StageStats() for name in StageTimings.STAGES}
        self.turns: Counter[str] = Counter()  # by final status
        self.errors: Counter[str] = Counter()  # by error code
        self.fallbacks: Counter[tuple[str, str]] = Counter()  # by (stage, provider that failed)
        self.interruptions: Counter[str] = Counter()  # barge-ins, by what interrupted
        self.turn_waits: Counter[str] = Counter()  # turns given more silence, by why
        self.connections_total = 0
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "voicewire_stage_latency_seconds",
            "Per-stage latency of utterances (stt, llm_ttft, llm, tools, tts_ttfb, ttfa, total)",
            ["stage"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )

    def count(self, kind: str, *key: str) -> None:
        """Count an event of a conversation: ``errors`` by code, ``fallbacks`` by (stage,
        failed provider), ``interruptions`` by reason, ``turn_waits`` by why the words
        sounded unfinished."""
        counter: Counter[Any] = getattr(self, kind)
        counter[key if len(key) > 1 else key[0]] += 1

    def record_turn(self, status: str, timings: StageTimings) -> None:
        self.turns[status] += 1
        for name, stats in self.stages.items():
            value = getattr(timings, name)
            if value is not None:
                stats.add(value)
                self.latency.labels(name.removesuffix("_ms")).observe(value / 1000)

    def snapshot(self) -> dict[str, Any]:
        return {
            "turns": dict(self.turns),
            "errors": dict(self.errors),
            "interruptions": dict(self.interruptions),
            "turn_waits": dict(self.turn_waits),
            "fallbacks": [
                {"stage": stage, "failed": provider, "count": n}
                for (stage, provider), n in sorted(self.fallbacks.items())
            ],
            "connections_total": self.connections_total,
            "latency_ms": {name: s.summary() for name, s in self.stages.items()},
        }
