"""Where a turn's CPU goes: the server sampled by py-spy (every thread) while ``voicewire
bench`` drives W1 turns on the ``zero`` profile, each sample put in the bucket of the first
(innermost) frame a rule below recognises.

    python -m benchmarks.turn_profile --sessions 10 --seconds 40 \\
        --out benchmarks/results/turn-profile-DATE.json

The buckets are ordered from the innermost concern out: a sample inside the JSON encoder
called by the frame serialiser counts as "frames: encode", not as the turn that asked for the
frame. The ms per turn multiply each share by the server CPU per turn the bench measured in the
same run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tests.engines import Worker

# (bucket, pattern over "file:Class.function" of one frame), innermost concern first
RULES: list[tuple[str, str]] = [
    (
        "idle: waiting for events",
        r"selectors\.py|epoll|run_forever|SimpleQueue\.get|"
        r"threading\.py:.*wait|queue\.py:.*get|^thread \(",
    ),
    ("ledger: SQLite writes (its thread)", r"costs/ledger\.py|sqlite3"),
    ("resource monitor", r"voicewire/monitor\.py|psutil"),
    (
        "frames: encode to JSON/bytes",
        r"protocol\.py:.*(to_json|encode_audio_frame)|"
        r"pydantic.*(dump|serial)|json/encoder",
    ),
    ("frames: build (pydantic models)", r"pydantic/main\.py|pydantic/_internal|protocol\.py"),
    (
        "socket: WebSocket send/receive (uvicorn, websockets, starlette)",
        r"uvicorn/protocols/websockets|websockets/|starlette/|transport",
    ),
    (
        "frames: send path (seq/ts stamp, lock, back-pressure)",
        r"server/connection\.py:.*send|backpressure\.py|realtime/events\.py",
    ),
    (
        "client frames: parse and validate",
        r"server/connection\.py:.*_on_text|"
        r"pydantic.*validate|json/decoder",
    ),
    ("costs: pricing and cost_update", r"costs/(accounting|prices)\.py"),
    ("metrics: stage statistics", r"voicewire/metrics\.py|prometheus_client"),
    ("session store and records", r"voicewire/session\.py|redis_store\.py"),
    ("reply: sentences (chunker)", r"pipeline/chunker\.py"),
    (
        "reply: TTS stage, audio chunking and pacing",
        r"pipeline/turn\.py:.*(_speak|_play)|"
        r"conversation/core\.py:.*send_audio|replies\.py",
    ),
    ("reply: LLM stage (token streaming)", r"pipeline/turn\.py:.*(_think|_step)|simulated\.py"),
    ("conversation core (queue, turn start, report)", r"conversation/|pipeline/turn\.py"),
    ("asyncio machinery (tasks, callbacks, timers)", r"asyncio/|uvloop"),
]
COMPILED = [(name, re.compile(p)) for name, p in RULES]


def bucket(stack: list[str]) -> str:
    for frame in reversed(stack):  # innermost first
        for name, pattern in COMPILED:
            if pattern.search(frame):
                return name
    return "other"


def _frame(text: str) -> str:
    """py-spy's "Class.function (path/file.py:123)" as "path/file.py:Class.function"."""
    function, sep, where = text.rpartition(" (")
    if not sep:
        return text
    return where.rstrip(")").rsplit(":", 1)[0] + ":" + function


def parse_raw(text: str) -> Counter[str]:
    """py-spy's raw (collapsed) output: "thread;frame;frame;... count" per line."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        counts[bucket(frames)] += int(n)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--audio-lead-ms", type=int, default=0)
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw profile here")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    # unpaced audio (as the W1 comparisons with Pipecat ran): pacing adds a timer per chunk
    env = {"VOICEWIRE_PROFILE": "zero", "VOICEWIRE_AUDIO_LEAD_MS": str(args.audio_lead_ms)}
    server = Worker.start(env)
    raw = args.raw or Path(tempfile.mkdtemp()) / "profile.txt"
    bench_out = args.out.with_name(args.out.stem + "-bench.json")
    try:
        record = subprocess.Popen(
            [spy, "record", "--pid", str(server.proc.pid), "--format", "raw", "--rate", "200",
             "--threads", "--nonblocking", "--output", str(raw),
             "--duration", str(int(args.seconds + 8))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "voicewire.cli", "bench", "run", "--url", server.ws_url,
             "--server-pid", str(server.proc.pid), "--levels", str(args.sessions),
             "--duration", str(args.seconds), "--out", str(bench_out)],
            check=True, env={**os.environ, "COLUMNS": "120"},
        )  # fmt: skip
        record.wait(120)
    finally:
        server.stop()
    level = json.loads(bench_out.read_text())["levels"][0]
    counts = parse_raw(raw.read_text())
    busy = {k: v for k, v in counts.items() if not k.startswith("idle")}
    total = sum(busy.values())
    per_turn = level["server_cpu_ms_per_turn"]
    rows = [
        {"bucket": k, "share": round(v / total, 4), "ms_per_turn": round(per_turn * v / total, 3)}
        for k, v in sorted(busy.items(), key=lambda kv: -kv[1])
    ]
    result = {
        "sessions": args.sessions,
        "audio_lead_ms": args.audio_lead_ms,
        "turns": level["turns"],
        "server_cpu_ms_per_turn": per_turn,
        "busy_samples": total,
        "idle_samples": sum(v for k, v in counts.items() if k.startswith("idle")),
        "breakdown": rows,
    }
    args.out.write_text(json.dumps(result, indent=2))
    for row in rows:
        print(f"{row['share'] * 100:5.1f} %  {row['ms_per_turn']:6.3f} ms  {row['bucket']}")
    print(f"server CPU per turn {per_turn} ms over {level['turns']} turns")


if __name__ == "__main__":
    main()
