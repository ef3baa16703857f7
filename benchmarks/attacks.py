"""What one hostile client does to everyone else: the before/after figures of docs/security.md.

Two attacks from issue 20, each against a fresh ``voicewire serve`` on the embedded models:

- ``flood``: one client sends 59 s of Piper speech cut by 160 ms gaps, all at once (as fast as
  the socket takes it), then disconnects. Every gap is a pause that may start a speculative
  Whisper job. Another session then asks three typed questions; we measure its time to first
  audio, and ``POST /stt-test`` with a 2 s clip, against the same requests with no attacker.
- ``bomb``: one client sends a ``user_audio`` WAV whose header claims 1 Hz (100 KB of samples,
  which a naive resample to 16 kHz multiplies by 16,000). Another session pings every 50 ms;
  we report the ping round trips (event-loop lag as a client sees it) and the server's peak RSS.

    python benchmarks/attacks.py                    # this tree
    python benchmarks/attacks.py --src /tmp/before/src --out before.json   # another checkout

``--src`` puts another checkout's ``src`` first on the server's ``PYTHONPATH``, so the same
client measures the code before a fix. Each request is bounded (300 s), so a "before" run that
stalls still ends.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.latency_embedded import start_server, synthesize_questions
from voicewire.audio import encode_wav
from voicewire.client import Client
from voicewire.metrics import percentile
from voicewire.protocol import INPUT_SAMPLE_RATE

VICTIM_QUESTIONS = ["Hello there!", "What time is it?", "Thank you very much."]
TIMEOUT_S = 300.0


def pause_riddled(speech: list[bytes], seconds: float = 59.0, piece_ms: int = 400) -> bytes:
    """Speech cut into ``piece_ms`` pieces with 160 ms of silence between them."""
    piece = INPUT_SAMPLE_RATE * piece_ms // 1000 * 2
    gap = b"\x00\x00" * (INPUT_SAMPLE_RATE * 160 // 1000)
    joined = b"".join(speech)
    out = bytearray()
    i = 0
    while len(out) < seconds * INPUT_SAMPLE_RATE * 2:
        out += joined[i : i + piece] + gap
        i = (i + piece) % max(piece, len(joined) - piece)
    return bytes(out[: int(seconds * INPUT_SAMPLE_RATE * 2)])


def wav_claiming(rate: int, sample_bytes: int) -> bytes:
    return encode_wav(b"\x01\x00" * (sample_bytes // 2), rate)


class PeakRss:
    """Samples a process's RSS every 50 ms in a thread (the loop under test may be frozen)."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                rss = self._proc.memory_info().rss / 2**20
            except psutil.Error:
                return
            self.peak_mb = max(self.peak_mb, rss)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak_mb, 1)


async def victim_turns(url: str) -> list[float | None]:
    client = await Client.connect(url)
    out: list[float | None] = []
    for text in VICTIM_QUESTIONS:
        try:
            turn = await client.ask(text, timeout=TIMEOUT_S)
            out.append(round(turn.first_audio_ms, 1) if turn.first_audio_ms else None)
        except TimeoutError:
            out.append(None)
    await client.close()
    return out


async def stt_test(base: str, clip: bytes) -> float:
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        wav = encode_wav(clip, INPUT_SAMPLE_RATE)
        r = await http.post(f"{base}/stt-test", files={"file": ("q.wav", wav)})
        r.raise_for_status()
    return round((time.perf_counter() - start) * 1000, 1)


async def flood(url: str, base: str, speech: list[bytes], attack: bool) -> dict[str, Any]:
    attacker_s = 0.0
    if attack:
        client = await Client.connect(url)
        audio = pause_riddled(speech)
        start = time.perf_counter()
        await client.stream_audio(audio, chunk_ms=20, realtime=False)
        attacker_s = time.perf_counter() - start
        await client.close()  # the attacker leaves; its work should leave with it
    turns_task = asyncio.create_task(victim_turns(url))
    stt_ms = await stt_test(base, speech[1][: INPUT_SAMPLE_RATE * 4])
    ttfa = await turns_task
    return {
        "attack": attack,
        "attacker_send_s": round(attacker_s, 2),
        "victim_ttfa_ms": ttfa,
        "stt_test_ms": stt_ms,
    }


async def bomb(url: str, pid: int, attack: bool) -> dict[str, Any]:
    victim = await Client.connect(url)
    attacker = await Client.connect(url)
    rss = PeakRss(pid)
    rtts: list[float] = []
    answer: dict[str, Any] = {}

    async def send_bomb() -> None:
        if not attack:
            return
        payload = base64.b64encode(wav_claiming(1, 100_000)).decode()
        start = time.perf_counter()
        await attacker.send_json({"type": "user_audio", "audio": payload, "ref": "bomb"})
        while True:
            frame = (await attacker.next_frame(TIMEOUT_S)).frame
            if getattr(frame, "ref", None) == "bomb":
                answer["frame"] = frame.type
                answer["code"] = getattr(frame, "code", None)
                answer["answered_ms"] = round((time.perf_counter() - start) * 1000, 1)
                return

    async def pings(duration_s: float) -> None:
        end = time.perf_counter() + duration_s
        n = 0
        while time.perf_counter() < end:
            n += 1
            start = time.perf_counter()
            await victim.send_json({"type": "ping", "ref": f"p{n}"})
            while (await victim.next_frame(TIMEOUT_S)).frame.type != "pong":
                pass
            rtts.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.05)

    await asyncio.gather(pings(0.5), asyncio.sleep(0))  # warm the path
    rtts.clear()
    await asyncio.gather(send_bomb(), pings(5.0))
    peak = rss.stop()
    await victim.close()
    await attacker.close()
    return {
        "attack": attack,
        "bomb_answer": answer,
        "pings": len(rtts),
        "ping_rtt_ms": {
            "p50": round(percentile(rtts, 50), 1),
            "p99": round(percentile(rtts, 99), 1),
            "max": round(max(rtts), 1),
        },
        "server_peak_rss_mb": peak,
    }


def with_server(env: dict[str, str], src: str | None, body: Any) -> dict[str, Any]:
    if src:
        env = {**env, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc, base = start_server(env, None)
    try:
        url = base.replace("http", "ws", 1) + "/ws/multimodal"
        return asyncio.run(body(url, base, proc.pid))
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", help="serve this checkout's src instead of the installed one")
    parser.add_argument("--attacks", default="flood,bomb")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    speech = asyncio.run(synthesize_questions())
    env = {"VOICEWIRE_LEDGER": "false"}
    results: dict[str, Any] = {}
    for name in args.attacks.split(","):
        for attack in (False, True):
            if name == "flood":
                row = with_server(
                    env, args.src, lambda url, base, pid, a=attack: flood(url, base, speech, a)
                )
            else:
                row = with_server(env, args.src, lambda url, base, pid, a=attack: bomb(url, pid, a))
            results[f"{name}-{'attack' if attack else 'baseline'}"] = row
            print(name, json.dumps(row), flush=True)
    report = {
        "benchmark": "attacks",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "src": args.src or "installed",
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
