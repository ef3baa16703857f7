"""Scale-out: one worker with sessions in memory against two workers with Redis and PostgreSQL,
on the same machine, at conversational pace (simulated providers, realistic profile).

For each set-up and each level of concurrent sessions, ``voicewire bench run`` (5 s think time)
measures success, TTFA and the server's CPU per turn (the supervisor and its workers summed);
for the two-worker set-up, the CPU Redis and PostgreSQL spent per turn and the Redis write time
the workers measured.

    python -m benchmarks.scale_out --levels 200,400 --duration 60 \\
        --out benchmarks/results/scale-out-DATE.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from tests.engines import PostgresServer, RedisServer, Worker

from voicewire.bench.loadgen import proc_cpu_s


def engines_cpu_s(redis: RedisServer, pg: PostgresServer) -> dict[str, float]:
    """CPU seconds so far of Redis and of PostgreSQL (its postmaster and backends)."""
    return {"redis": proc_cpu_s(redis.proc.pid), "postgres": proc_cpu_s(pg.proc.pid)}


def redis_commands(redis: RedisServer) -> dict[str, dict[str, float]]:
    """Redis's own count of each command and its time per call (INFO commandstats)."""
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    stats = client.info("commandstats")
    client.close()
    return {
        name.removeprefix("cmdstat_"): {"calls": v["calls"], "usec_per_call": v["usec_per_call"]}
        for name, v in stats.items()
    }


def bench(service: Worker, levels: str, duration: float, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "voicewire.cli", "bench", "run", "--url", service.ws_url,
           "--server-pid", str(service.proc.pid), "--levels", levels,
           "--duration", str(duration), "--think-time", "5", "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, env={**os.environ, "COLUMNS": "120"})
    return json.loads(out.read_text())


def beside(out: Path, tag: str) -> Path:
    return out.with_name(f"{out.stem}-{tag}.json")


def summary(level: dict[str, Any]) -> dict[str, Any]:
    return {
        "sessions": level["concurrency"],
        "turns": level["turns"],
        "success_rate": level["success_rate"],
        "ttfa_p50_ms": level["ttfa_ms"].get("p50"),
        "ttfa_p95_ms": level["ttfa_ms"].get("p95"),
        "server_cpu_ms_per_turn": level["server_cpu_ms_per_turn"],
        "server_cores_used": level["server_cores_used"],
        "server_rss_peak_mb": round(level["server_rss_peak_kb"] / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="200,400")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results: dict[str, Any] = {"levels": args.levels, "duration_s": args.duration}

    one = Worker.start({"VOICEWIRE_PROFILE": "realistic"})
    try:
        raw = bench(
            one, args.levels, args.duration, args.out.with_name(args.out.stem + "-one.json")
        )
        results["one_worker_memory"] = [summary(level) for level in raw["levels"]]
    finally:
        one.stop()

    redis, pg = RedisServer.start(), PostgresServer.start()
    env = {
        "VOICEWIRE_PROFILE": "realistic",
        "VOICEWIRE_REDIS_URL": redis.url,
        "VOICEWIRE_LEDGER_URL": pg.url,
        "VOICEWIRE_DATA_DIR": tempfile.mkdtemp(prefix="vw-scale-"),
    }
    two = Worker.start(env, ("--workers", "2"), ready=2)
    try:
        before = engines_cpu_s(redis, pg)
        raw = bench(
            two, args.levels, args.duration, args.out.with_name(args.out.stem + "-two.json")
        )
        after = engines_cpu_s(redis, pg)
        turns = sum(level["turns"] for level in raw["levels"])
        results["two_workers_redis_postgres"] = [summary(level) for level in raw["levels"]]
        results["engines_cpu_ms_per_turn"] = {
            k: round((after[k] - before[k]) * 1000 / turns, 3) for k in after
        }
        commands = redis_commands(redis)
        results["redis_calls_per_turn"] = {
            name: {"per_turn": round(c["calls"] / turns, 2), "usec_per_call": c["usec_per_call"]}
            for name, c in commands.items()
            if c["calls"] >= turns / 10
        }
        with httpx.Client(base_url=two.base) as http:  # one worker's view of its writes
            results["a_workers_store"] = http.get("/metrics").json()["store"]
    finally:
        two.stop()
        redis.stop()
        pg.stop()
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
