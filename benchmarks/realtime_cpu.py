"""Server CPU per turn: ``/v1/realtime`` against ``/ws/multimodal``, same server, same run.

One ``voicewire serve`` on simulated providers (``zero`` profile: no provider delay, so the
figure is the server's own work; audio unpaced), pinned to one core. Windows of C sessions
taking W1 text turns alternate between the two protocols (multimodal, realtime, multimodal,
...), so both see the same machine; each window's CPU per turn comes from the server's /proc.
The ratio is taken per adjacent pair, and the median and spread of the ratios are reported
(this VM's run-to-run spread is 10-20 %, a ratio within one run is steadier).

    taskset -c 1 python -m benchmarks.realtime_cpu --rate 24000 --out benchmarks/results/X.json

``--rate``: the simulated TTS's sample rate. 24000 is the Realtime protocol's own rate (and
OpenAI's and ElevenLabs' PCM): nothing to resample. 16000 is the Pipecat anchor's W1: the
Realtime adapter resamples every chunk to 24 kHz.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.latency_embedded import save_report
from voicewire.bench.loadgen import LevelConfig, run_level
from voicewire.bench.runner import raise_fd_limit, server


async def window(
    url: str, protocol: str, sessions: int, seconds: float, pid: int
) -> dict[str, Any]:
    path = "/v1/realtime" if protocol == "realtime" else "/ws/multimodal"
    cfg = LevelConfig(
        url=url.replace("/ws/multimodal", path),
        concurrency=sessions,
        duration_s=seconds,
        protocol=protocol,
        server_pid=pid,
    )
    stats = (await run_level(cfg)).to_json()
    return {
        "protocol": protocol,
        **{k: stats[k] for k in ("turns", "errors", "server_cpu_ms_per_turn", "turns_per_s")},
    }


async def run(
    url: str, pid: int, pairs: int, sessions: int, seconds: float
) -> list[dict[str, Any]]:
    rows = []
    for i in range(pairs):
        order = ("multimodal", "realtime") if i % 2 == 0 else ("realtime", "multimodal")
        for protocol in order:
            row = await window(url, protocol, sessions, seconds, pid)
            row["pair"] = i
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_pair: dict[int, dict[str, float]] = {}
    for r in rows:
        by_pair.setdefault(r["pair"], {})[r["protocol"]] = r["server_cpu_ms_per_turn"]
    ratios = [p["realtime"] / p["multimodal"] for p in by_pair.values()]
    cpu = {
        protocol: statistics.median(
            r["server_cpu_ms_per_turn"] for r in rows if r["protocol"] == protocol
        )
        for protocol in ("multimodal", "realtime")
    }
    return {
        "median_cpu_ms_per_turn": cpu,
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "errors": sum(r["errors"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=24000, help="the simulated TTS's sample rate")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0, help="per window")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    raise_fd_limit()
    env = {
        "VOICEWIRE_PROFILE": "zero",
        "VOICEWIRE_AUDIO_LEAD_MS": "0",
        "VOICEWIRE_SIM_TTS_RATE": str(args.rate),
    }
    with server(env, args.server_cpus) as (url, pid):
        rows = asyncio.run(run(url, pid, args.pairs, args.sessions, args.seconds))
    summary = summarize(rows)
    print(json.dumps(summary, indent=2))
    save_report("realtime_cpu", env, summary, rows, args.out)


if __name__ == "__main__":
    main()
