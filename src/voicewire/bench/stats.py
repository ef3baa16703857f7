"""Benchmark statistics: per-level records, percentiles and success accounting.

Kept apart from the load generator so they are unit-tested without a server.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from voicewire.metrics import percentile


def summary(values: list[float]) -> dict[str, float | None]:
    """avg/p50/p95/p99/max in ms, rounded; None when there is nothing to summarise."""
    if not values:
        return {"avg": None, "p50": None, "p95": None, "p99": None, "max": None}
    return {
        "avg": round(sum(values) / len(values), 2),
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
    }


@dataclass
class TurnSample:
    ttfa_ms: float | None
    turn_ms: float
    audio_bytes: int
    cost_usd: float | None = None


@dataclass
class LevelStats:
    """What one concurrency level measured; ``to_json`` is the report row."""

    concurrency: int
    samples: list[TurnSample] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    window_s: float = 0.0
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    server_rss_start_kb: int | None = None
    server_rss_peak_kb: int | None = None
    setup_s: float = 0.0

    def add_turn(self, sample: TurnSample) -> None:
        self.samples.append(sample)

    def add_error(self, kind: str) -> None:
        self.errors[kind] += 1

    @property
    def turns(self) -> int:
        return len(self.samples)

    @property
    def attempts(self) -> int:
        return self.turns + sum(self.errors.values())

    @property
    def success_rate(self) -> float:
        return self.turns / self.attempts if self.attempts else 0.0

    def to_json(self) -> dict[str, Any]:
        ttfa = [s.ttfa_ms for s in self.samples if s.ttfa_ms is not None]
        costs = [s.cost_usd for s in self.samples if s.cost_usd is not None]
        per_turn = (
            self.server_cpu_s / self.turns if self.server_cpu_s is not None and self.turns else None
        )
        rss_growth = (
            (self.server_rss_peak_kb - self.server_rss_start_kb)
            if self.server_rss_peak_kb is not None and self.server_rss_start_kb is not None
            else None
        )
        return {
            "concurrency": self.concurrency,
            "turns": self.turns,
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(self.errors),
            "success_rate": round(self.success_rate, 4),
            "ttfa_ms": summary(ttfa),
            "turn_ms": summary([s.turn_ms for s in self.samples]),
            "turns_per_s": round(self.turns / self.window_s, 3) if self.window_s else None,
            "window_s": round(self.window_s, 2),
            "audio_bytes_per_turn": (
                round(sum(s.audio_bytes for s in self.samples) / self.turns) if self.turns else None
            ),
            "server_cpu_s": None if self.server_cpu_s is None else round(self.server_cpu_s, 3),
            "server_cpu_ms_per_turn": None if per_turn is None else round(per_turn * 1000, 3),
            "server_cores_used": (
                round(self.server_cpu_s / self.window_s, 3)
                if self.server_cpu_s is not None and self.window_s
                else None
            ),
            "server_rss_start_kb": self.server_rss_start_kb,
            "server_rss_peak_kb": self.server_rss_peak_kb,
            "server_rss_kb_per_session": (
                round(rss_growth / self.concurrency, 1) if rss_growth is not None else None
            ),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "cost_usd_per_turn": round(sum(costs) / len(costs), 8) if costs else None,
            "setup_s": round(self.setup_s, 2),
        }


def compare(base: list[dict[str, Any]], other: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ratios other/base per concurrency level present in both (below 1: other is lower)."""
    by_level = {row["concurrency"]: row for row in base}
    rows = []
    for row in other:
        ref = by_level.get(row["concurrency"])
        if ref is None:
            continue
        out: dict[str, Any] = {"concurrency": row["concurrency"]}
        for key in ("server_cpu_ms_per_turn", "turns_per_s", "success_rate"):
            out[key] = _ratio(row.get(key), ref.get(key))
        for key in ("ttfa_ms", "turn_ms"):
            out[f"{key}_p95"] = _ratio(
                (row.get(key) or {}).get("p95"), (ref.get(key) or {}).get("p95")
            )
        rows.append(out)
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b in (None, 0):
        return None
    return round(a / b, 3)  # type: ignore[operator]
