"""``get_realtime_data``: real figures this server has, and clearly labelled simulated feeds.

Real: this host's CPU, memory, disk and network (psutil), and the server's own sessions, turns
and latencies. Simulated: a stock price or a temperature as a seeded random walk, reproducible
for the same arguments, and marked ``"simulated": true`` so no one mistakes it for data.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable
from typing import Any

import psutil
from pydantic import BaseModel, Field

from voicewire.tools.registry import Tool, ToolError, ToolOutput

REAL_METRICS = ("cpu", "memory", "disk", "network", "sessions", "latency")
SIMULATED_METRICS = ("stock", "temperature")
METRICS = REAL_METRICS + SIMULATED_METRICS


class RealtimeArgs(BaseModel):
    metric: str = Field(description=f"One of: {', '.join(METRICS)}")
    symbol: str | None = Field(default=None, description="Stock symbol or company (stock)")
    location: str | None = Field(default=None, description="Place (temperature)")
    points: int = Field(default=24, ge=2, le=500, description="Length of a simulated series")


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(str(p).lower() for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def random_walk(seed: int, points: int, start: float, step: float) -> list[float]:
    rng = random.Random(seed)
    value, out = start, []
    for _ in range(points):
        out.append(round(value, 2))
        value = max(0.01, value + rng.gauss(0, step))
    return out


def _simulated(
    metric: str, unit: str, values: list[float], step: str, **names: str
) -> dict[str, Any]:
    """A simulated feed's result: marked simulated, the last value, and a chartable series."""
    n = len(values)
    labels = [f"{step}-{n - 1 - i}" for i in range(n)]
    return {"metric": metric, **names, "simulated": True, "unit": unit, "value": values[-1],
            "series": {"labels": labels, "values": values}}  # fmt: skip


def simulated_stock(symbol: str, points: int) -> dict[str, Any]:
    seed = _seed("stock", symbol)
    start = 20 + (seed % 48000) / 100  # a stable price level per symbol, 20..500
    prices = random_walk(seed, points, start, start * 0.01)
    return _simulated("stock", "USD", prices, "t", symbol=symbol.upper())


def simulated_temperature(location: str, points: int) -> dict[str, Any]:
    seed = _seed("temperature", location)
    rng = random.Random(seed)
    base = 5 + (seed % 2000) / 100  # 5..25 C
    values = [
        round(base + 4 * math.sin(2 * math.pi * i / 24) + rng.gauss(0, 0.6), 1)
        for i in range(points)
    ]
    return _simulated("temperature", "C", values, "h", location=location.title())


def host_metric(metric: str) -> dict[str, Any]:
    if metric == "cpu":
        per_core = psutil.cpu_percent(interval=None, percpu=True)
        value = round(sum(per_core) / len(per_core), 1)
        return {"metric": "cpu", "unit": "percent", "value": value, "per_core": per_core}
    if metric == "memory":
        vm = psutil.virtual_memory()
        return {
            "metric": "memory",
            "unit": "percent",
            "value": vm.percent,
            "used_mb": round(vm.used / 2**20),
            "total_mb": round(vm.total / 2**20),
        }
    if metric == "disk":
        usage = psutil.disk_usage("/")
        return {
            "metric": "disk",
            "unit": "percent",
            "value": usage.percent,
            "used_gb": round(usage.used / 2**30, 1),
            "total_gb": round(usage.total / 2**30, 1),
        }
    net = psutil.net_io_counters()
    return {
        "metric": "network",
        "unit": "MB",
        "value": round((net.bytes_sent + net.bytes_recv) / 2**20, 1),
        "sent_mb": round(net.bytes_sent / 2**20, 1),
        "received_mb": round(net.bytes_recv / 2**20, 1),
    }


def make_realtime_tool(server_stats: Callable[[], dict[str, Any]]) -> Tool[RealtimeArgs]:
    """``server_stats`` returns the server's own figures (sessions, turns, latency)."""
    psutil.cpu_percent(interval=None, percpu=True)  # prime: the first reading is meaningless

    async def get_realtime_data(args: RealtimeArgs) -> ToolOutput:
        metric = args.metric.strip().lower()
        if metric not in METRICS:
            raise ToolError(f"unknown metric {args.metric!r}; use one of {', '.join(METRICS)}")
        if metric == "stock":
            result = simulated_stock(args.symbol or "ACME", args.points)
        elif metric == "temperature":
            result = simulated_temperature(args.location or "here", args.points)
        elif metric in ("sessions", "latency"):
            result = {"metric": metric, **server_stats()[metric]}
        else:
            result = host_metric(metric)
        result["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        result.setdefault("simulated", False)
        return ToolOutput(result=result)

    return Tool(
        name="get_realtime_data",
        description=(
            "Live figures: this host's cpu, memory, disk or network; the server's sessions or "
            "latency; or a SIMULATED stock price (symbol) or temperature (location) with a series."
        ),
        args=RealtimeArgs,
        run=get_realtime_data,
    )
