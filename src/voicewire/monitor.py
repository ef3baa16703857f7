"""Resource monitor: cheap periodic samples of this process, and a capacity estimate.

One task samples every ``interval`` seconds with psutil (CPU, RSS, threads, file descriptors,
disk and network I/O) and measures event-loop lag as the sleep's overshoot. It times itself, so
its own overhead is a reported figure, not a guess. Open connections are counted from the
server's own registry: psutil's per-process socket scan grows with the number of sockets.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import psutil


@dataclass(slots=True)
class Sample:
    t: float
    cpu_s: float  # process user+system CPU, cumulative
    rss_kb: int
    threads: int
    fds: int
    read_bytes: int
    write_bytes: int
    net_sent: int
    net_recv: int
    loop_lag_ms: float


class ResourceMonitor:
    def __init__(self, interval_s: float = 2.0, window: int = 300) -> None:
        self.interval_s = interval_s
        self.samples: deque[Sample] = deque(maxlen=window)
        self.baseline_rss_kb: int | None = None  # before any session: the empty server
        self._proc = psutil.Process()
        self._own_cpu_s = 0.0
        self._started = time.monotonic()

    def sample(self, lag_ms: float = 0.0) -> Sample:
        start = time.thread_time()
        p = self._proc
        with p.oneshot():
            cpu = p.cpu_times()
            try:
                io = p.io_counters()
                read, write = io.read_bytes, io.write_bytes
            except (psutil.AccessDenied, AttributeError):
                read = write = 0
            s = Sample(
                time.monotonic(), cpu.user + cpu.system, p.memory_info().rss // 1024,
                p.num_threads(), p.num_fds(), read, write, 0, 0, lag_ms,
            )  # fmt: skip
        net = psutil.net_io_counters()
        s.net_sent, s.net_recv = net.bytes_sent, net.bytes_recv
        self.samples.append(s)
        if self.baseline_rss_kb is None:
            self.baseline_rss_kb = s.rss_kb
        self._own_cpu_s += time.thread_time() - start
        return s

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, (loop.time() - before - self.interval_s) * 1000)
            self.sample(lag)

    def snapshot(self) -> dict[str, Any]:
        if not self.samples:
            self.sample()
        ss = list(self.samples)
        last, first = ss[-1], ss[0]
        span = max(last.t - first.t, 1e-9)
        cpu_pct = [(b.cpu_s - a.cpu_s) / max(b.t - a.t, 1e-9) * 100 for a, b in pairwise(ss)]
        rss_growth = (last.rss_kb - first.rss_kb) / span * 60 if len(ss) > 1 else 0.0
        lags = [s.loop_lag_ms for s in ss[1:]] or [0.0]
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return {
            "window_s": round(span, 1),
            "samples": len(ss),
            "cpu_percent": {
                "now": _r(cpu_pct[-1] if cpu_pct else 0),
                "avg": _r(_avg(cpu_pct)),
                "peak": _r(max(cpu_pct, default=0)),
            },
            "rss_mb": {
                "now": _r(last.rss_kb / 1024),
                "peak": _r(max(s.rss_kb for s in ss) / 1024),
                "growth_mb_per_min": _r(rss_growth / 1024),
            },
            "threads": last.threads,
            "open_fds": last.fds,
            "disk_io_mb": {
                "read": _r(last.read_bytes / 2**20),
                "written": _r(last.write_bytes / 2**20),
            },
            "host_net_mb": {
                "sent": _r(last.net_sent / 2**20),
                "received": _r(last.net_recv / 2**20),
            },
            "loop_lag_ms": {"avg": _r(_avg(lags)), "peak": _r(max(lags))},
            "cpu_cores": psutil.cpu_count() or 1,
            "monitor_overhead_core_fraction": round(self._own_cpu_s / elapsed, 6),
        }

    def recent_loop_lag_ms(self) -> float:
        """The event loop's lateness at the last sample (0 before the first)."""
        return self.samples[-1].loop_lag_ms if self.samples else 0.0

    def capacity(
        self, sessions: int, turns: int, cpu_s_since_start: float, avg_turn_s: float | None
    ) -> dict[str, Any]:
        """How many sessions this host could hold: measured CPU per turn and RSS per session."""
        cores = psutil.cpu_count() or 1
        think_s = 5.0
        cpu_per_turn = cpu_s_since_start / turns if turns else None
        rss_kb = self.samples[-1].rss_kb if self.samples else 0
        per_session_kb = (
            (rss_kb - (self.baseline_rss_kb or rss_kb)) / sessions if sessions else None
        )
        available_kb = psutil.virtual_memory().available / 1024
        by_cpu = by_mem = None
        if cpu_per_turn and avg_turn_s is not None:
            turns_per_session_s = 1 / (avg_turn_s + think_s)
            by_cpu = int(cores * 0.8 / (cpu_per_turn * turns_per_session_s))
        if per_session_kb and per_session_kb > 0:
            by_mem = int(available_kb * 0.8 / per_session_kb)
        limits = [x for x in (by_cpu, by_mem) if x is not None]
        return {
            "sessions": min(limits) if limits else None,
            "by_cpu": by_cpu,
            "by_memory": by_mem,
            "cpu_s_per_turn": None if cpu_per_turn is None else round(cpu_per_turn, 5),
            "rss_kb_per_session": None if per_session_kb is None else round(per_session_kb, 1),
            "assumptions": (
                f"each session takes a turn every {think_s:g} s plus the measured average turn "
                f"time; 80% of {cores} cores and 80% of available memory are usable; CPU per turn "
                "is process CPU since start divided by turns, so it includes idle overhead"
            ),
        }


def _avg(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _r(value: float) -> float:
    return round(value, 2)
