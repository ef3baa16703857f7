"""Soak: a steady conversational load for a long time, the server's RSS sampled every minute.

Starts ``voicewire serve`` on simulated providers (realistic profile) with API keys and
per-key limits on, drives it with ``voicewire bench run`` (sessions with think time between
their turns) and samples the server's resident memory once a minute. A leak shows as growth
after warm-up; the target is < 5 MB over 30 minutes (issue 17).

    python -m benchmarks.soak --minutes 30 --sessions 50 --out benchmarks/results/soak-DATE.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.latency_embedded import start_server
from voicewire.bench.loadgen import proc_rss_kb

KEY = "vw-soak-key-0123456789abcdef"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--think-time", type=float, default=5.0)
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    env = {
        "VOICEWIRE_PROFILE": "realistic",
        "VOICEWIRE_API_KEYS": f"soak:{KEY}",
        "VOICEWIRE_KEY_LIMITS": "sessions=1000,turns_per_min=100000",
        "VOICEWIRE_DATA_DIR": tempfile.mkdtemp(prefix="voicewire-soak-"),
    }
    proc, base = start_server(env, None)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            rss = proc_rss_kb(proc.pid)
            if rss is not None:
                samples.append((round((time.monotonic() - started) / 60, 2), rss))
                print(f"{samples[-1][0]:6.1f} min  RSS {rss / 1024:.1f} MB", flush=True)
            stop.wait(60)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    bench_out = args.out.with_name(args.out.stem + "-bench.json")
    cmd = [sys.executable, "-m", "voicewire.cli", "bench", "run", "--url",
           base.replace("http", "ws", 1) + "/ws/multimodal", "--server-pid", str(proc.pid),
           "--levels", str(args.sessions), "--duration", str(args.minutes * 60),
           "--think-time", str(args.think_time), "--api-key", KEY,
           "--out", str(bench_out)]  # fmt: skip
    try:
        subprocess.run(cmd, check=True, env={**os.environ, "COLUMNS": "100"})
    finally:
        stop.set()
        sampler.join(5)
        proc.terminate()
        proc.wait(60)
    after = [rss for minute, rss in samples if minute >= args.warmup_minutes]
    level = json.loads(bench_out.read_text())["levels"][0]
    summary = {
        "minutes": args.minutes,
        "sessions": args.sessions,
        "think_time_s": args.think_time,
        "turns": level["turns"],
        "success_rate": level["success_rate"],
        "rss_mb_after_warmup_first_last": (
            [round(after[0] / 1024, 1), round(after[-1] / 1024, 1)] if after else None
        ),
        "rss_growth_mb_after_warmup": round((after[-1] - after[0]) / 1024, 2) if after else None,
        "rss_mb_min_max_after_warmup": (
            [round(min(after) / 1024, 1), round(max(after) / 1024, 1)] if after else None
        ),
        "samples": samples,
    }
    args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
