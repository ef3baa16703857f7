"""What the cloud adapters add: time to first audio over the provider's own latency, and CPU.

Runs the fake OpenAI API (``tests/fakecloud.py``) as its own process with scripted latency
(time to first token, time per token, speech time to first byte), and ``voicewire serve`` as
another, its LLM and TTS on ``openai`` pointed at the fake. Text turns from ``--sessions``
concurrent sessions; measured at the client: question sent -> first reply audio byte. The
ideal is what the providers alone impose on a streaming pipeline: first token + the tokens of
the first clause + speech first byte. Server CPU per turn comes from the server process's own
counters, and is compared with the same turns on the simulated providers (``zero`` profile:
no network, no adapters) in the same run.

    python benchmarks/cloud_overhead.py                      # 200 turns, 20 sessions
    python benchmarks/cloud_overhead.py --turns 400 --sessions 50 --out results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakecloud import OPENAI_KEY, REPLY

from benchmarks.latency_embedded import free_port, start_server
from voicewire.client import Client
from voicewire.metrics import percentile

FIRST_CLAUSE_TOKENS = 0  # "Sure." is the first token and a whole sentence: spoken at once


def start_fake(ttft: float, token: float, tts_first: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "tests.fakecloud", "--port", str(port), "--ttft", str(ttft),
           "--token", str(token), "--tts-first", str(tts_first)]  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(cmd, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(base + "/docs", timeout=1)
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the fake API did not start")


async def session(url: str, turns: int, ttfa: list[float], failures: list[str]) -> None:
    client = await Client.connect(url)
    try:
        for _ in range(turns):
            result = await client.ask("What is the weather in Paris?")
            if result.status != "completed" or result.first_audio_ms is None:
                failures.append(str(result.status))
            else:
                ttfa.append(result.first_audio_ms)
    finally:
        await client.close()


def measure(env: dict[str, str], turns: int, sessions: int) -> dict[str, Any]:
    proc, base = start_server(env, None)
    try:
        server = psutil.Process(proc.pid)
        url = base.replace("http", "ws", 1) + "/ws/multimodal"
        asyncio.run(session(url, 2, [], []))  # warm the connection pools
        cpu0 = sum(server.cpu_times()[:2])
        ttfa: list[float] = []
        failures: list[str] = []
        start = time.perf_counter()

        async def all_sessions() -> None:
            per = turns // sessions
            await asyncio.gather(*(session(url, per, ttfa, failures) for _ in range(sessions)))

        asyncio.run(all_sessions())
        wall = time.perf_counter() - start
        cpu = sum(server.cpu_times()[:2]) - cpu0
    finally:
        proc.terminate()
        proc.wait(10)
    done = len(ttfa)
    return {
        "turns": done,
        "failures": len(failures),
        "ttfa_p50_ms": round(percentile(ttfa, 50), 1) if ttfa else None,
        "ttfa_p95_ms": round(percentile(ttfa, 95), 1) if ttfa else None,
        "server_cpu_ms_per_turn": round(cpu / max(done, 1) * 1000, 2),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--ttft", type=float, default=0.30, help="chat time to first token, s")
    parser.add_argument("--token", type=float, default=0.02, help="chat time per token, s")
    parser.add_argument("--tts-first", type=float, default=0.15, help="speech first byte, s")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    ideal_ms = (args.ttft + FIRST_CLAUSE_TOKENS * args.token + args.tts_first) * 1000
    common = {"VOICEWIRE_LEDGER": "true", "VOICEWIRE_WARMUP": "false"}
    fake, base = start_fake(args.ttft, args.token, args.tts_first)
    try:
        cloud_env = {
            **common,
            "VOICEWIRE_STT": "simulated:zero",
            "VOICEWIRE_LLM": "openai:gpt-4o-mini",
            "VOICEWIRE_TTS": "openai:tts-1",
            "OPENAI_BASE_URL": f"{base}/v1",
            "OPENAI_API_KEY": OPENAI_KEY,
        }
        cloud = measure(cloud_env, args.turns, args.sessions)
        cloud["ideal_ttfa_ms"] = round(ideal_ms, 1)
        cloud["overhead_p50_ms"] = round(cloud["ttfa_p50_ms"] - ideal_ms, 1)
        print("openai adapters:", json.dumps(cloud), flush=True)
    finally:
        fake.terminate()
        fake.wait(10)
    simulated = measure({**common, "VOICEWIRE_PROFILE": "zero"}, args.turns, args.sessions)
    print("simulated zero: ", json.dumps(simulated), flush=True)
    result = {
        "reply_words": len(REPLY.split()),
        "sessions": args.sessions,
        "pace": {"ttft_s": args.ttft, "token_s": args.token, "tts_first_s": args.tts_first},
        "openai_adapters": cloud,
        "simulated_zero": simulated,
        "adapter_cpu_ms_per_turn": round(
            cloud["server_cpu_ms_per_turn"] - simulated["server_cpu_ms_per_turn"], 2
        ),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
