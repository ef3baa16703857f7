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
from datetime import datetime, timedelta
from typing import Any, Literal

import psutil
from pydantic import BaseModel, Field

from voicewire.tools.registry import Tool, ToolError, ToolOutput

REAL_METRICS = ("cpu", "memory", "disk", "network", "sessions", "latency")
SIMULATED_METRICS = ("stock", "temperature")
METRICS = REAL_METRICS + SIMULATED_METRICS
VOCABULARY = (
    "CPU usage", "processor", "memory", "RAM", "disk space", "network traffic", "bandwidth",
    "active sessions", "connected users", "latency",
    "stock price", "temperature", "weather",
    "Apple", "Microsoft", "Google", "Amazon", "Tesla", "Nvidia", "Meta", "Netflix",
)  # fmt: skip


class RealtimeArgs(BaseModel):
    metric: str = Field(description="What to read", json_schema_extra={"enum": list(METRICS)})
    symbol: str | None = Field(default=None, description="Stock symbol or company (stock)")
    location: str | None = Field(default=None, description="Place (temperature)")
    period: Literal["day", "week", "month"] | None = Field(
        default=None,
        description="Span of a simulated series: day (hourly), week or month (daily); default day",
    )
    points: int | None = Field(
        default=None, ge=2, le=500, description="Length of a simulated series (default: period's)"
    )


# period -> (points, step between points)
PERIODS = {"day": (24, timedelta(hours=1)), "week": (7, timedelta(days=1)),
           "month": (30, timedelta(days=1))}  # fmt: skip


def time_labels(points: int, step: timedelta, now: datetime | None = None) -> list[str]:
    """Labels a person reads: hours ("14:00") for an hourly series, days ("Mon 30 Nov") else."""
    now = (now or datetime.now()).replace(minute=0, second=0, microsecond=0)
    fmt = "%H:%M" if step < timedelta(days=1) else "%a %-d %b"
    return [(now - step * (points - 1 - i)).strftime(fmt) for i in range(points)]


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
    metric: str, unit: str, values: list[float], step: timedelta, period: str, **names: str
) -> dict[str, Any]:
    """A simulated feed's result: marked simulated, the last value, and a chartable series."""
    labels = time_labels(len(values), step)
    return {"metric": metric, **names, "simulated": True, "unit": unit, "value": values[-1],
            "period": period, "series": {"labels": labels, "values": values}}  # fmt: skip


def _span(period: str | None, points: int | None) -> tuple[str, int, timedelta]:
    period = period or "day"
    default_points, step = PERIODS[period]
    return period, points or default_points, step


def simulated_stock(
    symbol: str, points: int | None = None, period: str | None = None
) -> dict[str, Any]:
    period, n, step = _span(period, points)
    seed = _seed("stock", symbol)
    start = 20 + (seed % 48000) / 100  # a stable price level per symbol, 20..500
    volatility = 0.01 if step < timedelta(days=1) else 0.02
    prices = random_walk(_seed("stock", symbol, period), n, start, start * volatility)
    return _simulated("stock", "USD", prices, step, period, symbol=symbol.upper())


def simulated_temperature(
    location: str, points: int | None = None, period: str | None = None
) -> dict[str, Any]:
    period, n, step = _span(period, points)
    seed = _seed("temperature", location)
    rng = random.Random(_seed("temperature", location, period))
    base = 5 + (seed % 2000) / 100  # 5..25 C
    if step < timedelta(days=1):  # hourly: a daily cycle
        values = [
            round(base + 4 * math.sin(2 * math.pi * i / 24) + rng.gauss(0, 0.6), 1)
            for i in range(n)
        ]
    else:  # daily means drift from day to day
        values = [round(v - 10, 1) for v in random_walk(rng.getrandbits(64), n, base + 10, 1.5)]
    place = location if location.lower() == "here" else location.title()  # "in here", "in Paris"
    return _simulated("temperature", "C", values, step, period, location=place)


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
            result = simulated_stock(args.symbol or "ACME", args.points, args.period)
        elif metric == "temperature":
            result = simulated_temperature(args.location or "here", args.points, args.period)
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
            "latency; or a SIMULATED stock price (symbol) or temperature (location) with a series "
            "over a period (day: hourly, week or month: daily)."
        ),
        args=RealtimeArgs,
        run=get_realtime_data,
        vocabulary=VOCABULARY,
    )
