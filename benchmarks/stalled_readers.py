"""Clients that stop reading while a long reply streams: how much server memory they hold.

A child process serves scripted providers whose reply is long (~290 words, minutes of audio,
made as fast as a streaming TTS hands it over, in 100 ms pieces: no pacing), with
``VOICEWIRE_SEND_TIMEOUT_S=30`` so the server holds each stalled client for 30 s before giving
it up. The parent opens ``--clients``
WebSockets, asks each for the reply and then reads nothing (``max_queue=1``, so the client
library stops taking bytes off its socket), sampling the server's RSS every second. The
bound a deployment can rely on: the baseline plus, per stalled client, the socket buffers
and the one frame being written; nothing grows with the length of the reply.

    python -m benchmarks.stalled_readers --clients 20 --out benchmarks/results/stalled-DATE.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from benchmarks.latency_embedded import free_port
from voicewire.bench.loadgen import proc_rss_kb
from voicewire.providers.base import TTSEvent, Usage, UsageReport

WORDS = "word " * 290
STALL_S = 30.0


class StreamingTTS:
    """A streaming TTS without a model: 220 ms of tone per character, in 100 ms pieces, as
    fast as they are asked for (the test fake makes a sentence's audio in one array, which
    would measure the fake rather than the server)."""

    name = "bench:tts"
    sample_rate = 16_000
    _piece = b"\x10\x27\xf0\xd8" * 800  # 100 ms at 16 kHz, a square tone

    async def synthesize(self, text: str) -> AsyncIterator[TTSEvent]:
        pieces = round(len(text) * 0.220 / 0.100)
        for _ in range(pieces):
            yield self._piece
        yield UsageReport(Usage(characters=len(text)))


def serve(port: int) -> None:
    import uvicorn

    from voicewire.config import Settings
    from voicewire.providers import Providers
    from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT
    from voicewire.server.app import create_app
    from voicewire.server.serving import uvicorn_config

    settings = Settings(
        port=port,
        warmup=False,
        send_timeout_s=STALL_S,
        audio_lead_ms=0,
        max_reply_audio_s=600,
        log_level="warning",
    )
    providers = Providers(FakeSTT(), FakeLLM([FakeLLMStep(WORDS)]), StreamingTTS())
    uvicorn.Server(uvicorn_config(create_app(settings, providers=providers), settings)).run()


async def stall(url: str, n: int, pid: int) -> dict[str, object]:
    samples: list[tuple[float, int]] = []
    baseline = proc_rss_kb(pid) or 0
    clients = []
    for _ in range(n):
        ws = await connect(url, max_queue=1)
        await ws.recv()  # init
        await ws.send(json.dumps({"type": "user_text", "text": "talk to me"}))
        clients.append(ws)
    started = time.monotonic()
    while time.monotonic() - started < STALL_S + 10:
        rss = proc_rss_kb(pid)
        if rss is not None:
            samples.append((round(time.monotonic() - started, 1), rss))
        await asyncio.sleep(1.0)
    async with httpx.AsyncClient() as http:
        health = (
            await http.get(url.replace("ws", "http", 1).replace("/ws/multimodal", "/health"))
        ).json()
    for ws in clients:
        await ws.close()
    during = [rss for t, rss in samples if t <= STALL_S]
    peak = max(rss for _, rss in samples)
    return {
        "clients": n,
        "stall_s": STALL_S,
        "reply_audio_mb_per_client": round(len(WORDS) * 0.220 * 32_000 / 2**20, 1),
        "rss_mb_before_clients": round(baseline / 1024, 1),
        "rss_mb_stall_first_last": [round(during[0] / 1024, 1), round(during[-1] / 1024, 1)],
        "rss_mb_peak": round(peak / 1024, 1),
        "held_per_client_kb_at_peak": round((peak - baseline) / n),
        "sessions_connected_after_give_up": health["sessions"]["connected"],
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.stalled_readers", "--serve", str(port), "--out", "-"]
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        url = f"ws://127.0.0.1:{port}/ws/multimodal"
        result = asyncio.run(stall(url, args.clients, proc.pid))
    finally:
        proc.terminate()
        proc.wait(30)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
