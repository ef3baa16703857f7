"""Saturation, measured: W1 turns back to back from a load client spread over several
processes, against one server process pinned to one core, until that core is full.

One asyncio client process tops out near the server's own rate, so a single-process client
measures the client. Here ``--clients`` processes (pinned to the other cores) each run
``--sessions`` sessions of back-to-back turns (zero profile, no token frames, unpaced audio,
as the Pipecat anchor's W1); they start their measured window together, and the server's CPU
is read over the same window.

    python -m benchmarks.saturation --clients 3 --sessions 20 --duration 20 \\
        --out benchmarks/results/saturation-DATE.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

from voicewire.bench.loadgen import LevelConfig, proc_cpu_s, run_level
from voicewire.bench.runner import server
from voicewire.bench.stats import summary


def _client(url: str, sessions: int, duration: float, start: Any, out: Any) -> None:
    """One load process: waits for the common start, then runs its level."""
    if hasattr(os, "sched_setaffinity") and os.environ.get("CLIENT_CPUS"):
        os.sched_setaffinity(0, {int(c) for c in os.environ["CLIENT_CPUS"].split(",")})
    cfg = LevelConfig(url=url, concurrency=sessions, duration_s=duration)
    start.wait()
    stats = asyncio.run(run_level(cfg))
    out.put(
        {
            "turns": stats.turns,
            "errors": sum(stats.errors.values()),
            "window_s": stats.window_s,
            "ttfa_ms": [s.ttfa_ms for s in stats.samples if s.ttfa_ms is not None],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=3, help="load processes")
    parser.add_argument("--sessions", type=int, default=20, help="sessions per load process")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--server-cpu", default="0", help="the core the server is pinned to")
    parser.add_argument("--client-cpus", default="1", help="the cores the clients run on")
    parser.add_argument("--env", action="append", default=[], help="VAR=VALUE for the server")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    env = {"VOICEWIRE_PROFILE": "zero", "VOICEWIRE_AUDIO_LEAD_MS": "0"}
    env.update(item.split("=", 1) for item in args.env)
    os.environ["CLIENT_CPUS"] = args.client_cpus
    ctx = multiprocessing.get_context("spawn")
    with server(env, args.server_cpu) as (url, pid):
        start = ctx.Barrier(args.clients + 1)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_client, args=(url, args.sessions, args.duration, start, results))
            for _ in range(args.clients)
        ]
        for p in procs:
            p.start()
        start.wait()  # each client now warms up its sessions, then measures
        time.sleep(2.0)  # let the warm-up turns pass before reading the server's CPU
        cpu0, t0 = proc_cpu_s(pid), time.monotonic()
        time.sleep(args.duration - 4.0)  # the middle of every client's window
        cpu1, t1 = proc_cpu_s(pid), time.monotonic()
        rows = [results.get() for _ in procs]
        for p in procs:
            p.join()
    turns_per_s = sum(r["turns"] / r["window_s"] for r in rows)
    cores = (cpu1 - cpu0) / (t1 - t0)
    ttfa = [t for r in rows for t in r["ttfa_ms"]]
    result = {
        "benchmark": "saturation",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "settings": vars(args) | {"out": str(args.out), "server_env": env},
        "turns_per_s": round(turns_per_s, 1),
        "server_cores": round(cores, 3),
        "turns_per_s_per_server_core": round(turns_per_s / cores, 1) if cores else None,
        "server_cpu_ms_per_turn": round(cores * 1000 / turns_per_s, 3) if turns_per_s else None,
        "errors": sum(r["errors"] for r in rows),
        "ttfa_ms": summary(ttfa),
        "per_client": [{k: v for k, v in r.items() if k != "ttfa_ms"} for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "per_client"}, indent=2))


if __name__ == "__main__":
    main()
