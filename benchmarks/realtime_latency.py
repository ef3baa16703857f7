"""Time to first audio through ``/v1/realtime`` against ``/ws/multimodal``, embedded models, C=1.

Starts ``voicewire serve`` (embedded defaults), synthesizes the 20 questions of
``latency_embedded.py`` with Piper and, for each question, asks it through both protocols in
turn (the order alternates), streamed in real time like a microphone:

- ``commit``: push-to-talk. ``/ws/multimodal``: ``audio_commit`` at the end of speech.
  ``/v1/realtime`` (``turn_detection: null``): ``input_audio_buffer.commit`` and
  ``response.create`` at the end of speech.
- ``vad``: an open microphone: silence keeps streaming and the server's end of turn decides
  (``/ws/multimodal``'s server VAD and ``/v1/realtime``'s ``semantic_vad`` are the same
  endpointer: 300 ms of silence, up to 1.2 s when the words sound unfinished).

Measured at the client: end of user speech -> first reply audio (a binary frame; a
``response.output_audio.delta``). The realtime client sends 24 kHz PCM as base64 JSON, as
OpenAI clients do; the multimodal one sends 16 kHz binary frames.

    python -m benchmarks.realtime_latency --out benchmarks/results/realtime-latency-DATE.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from benchmarks.latency_embedded import (
    QUESTIONS,
    one_turn,
    save_report,
    start_server,
    synthesize_questions,
)
from voicewire.audio import resample_pcm16
from voicewire.client import Client
from voicewire.metrics import percentile

CHUNK_MS = 20
RATE = 24_000
STEP = RATE * CHUNK_MS // 1000 * 2


def _append(pcm: bytes) -> str:
    audio = base64.b64encode(pcm).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


async def realtime_session(url: str, mode: str) -> ClientConnection:
    ws = await connect(url, max_size=None, compression=None)
    json.loads(await ws.recv())  # session.created
    detection: dict[str, Any] | None = (
        None if mode == "commit" else {"type": "semantic_vad", "interrupt_response": False}
    )
    update = {"type": "realtime", "audio": {"input": {"turn_detection": detection}}}
    await ws.send(json.dumps({"type": "session.update", "session": update}))
    while json.loads(await ws.recv())["type"] != "session.updated":
        pass
    return ws


async def realtime_turn(ws: ClientConnection, pcm16k: bytes, mode: str) -> dict[str, Any]:
    pcm = resample_pcm16(pcm16k, 16_000, RATE)
    start = time.perf_counter()
    for i in range(0, len(pcm), STEP):  # paced like a microphone
        delay = start + i / 2 / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await ws.send(_append(pcm[i : i + STEP]))
    end_of_speech = time.perf_counter()
    if mode == "commit":
        await ws.send('{"type":"input_audio_buffer.commit"}')
        await ws.send('{"type":"response.create"}')
    stop = asyncio.Event()

    async def open_microphone() -> None:
        silence = _append(b"\x00" * STEP)
        sent = 0
        while not stop.is_set() and sent < 10_000:
            await ws.send(silence)
            sent += CHUNK_MS
            await asyncio.sleep(max(0.0, end_of_speech + sent / 1000 - time.perf_counter()))

    mic = asyncio.create_task(open_microphone()) if mode == "vad" else None
    first: float | None = None
    transcript = ""
    timings: dict[str, Any] = {}
    try:
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 60))
            kind = event["type"]
            if kind == "response.output_audio.delta" and first is None:
                first = (time.perf_counter() - end_of_speech) * 1000
            elif kind == "conversation.item.input_audio_transcription.completed":
                transcript = event["transcript"]
            elif kind == "response.done":
                timings = event["response"].get("voicewire", {}).get("timings", {})
                status = event["response"]["status"]
                break
            elif kind == "error":
                raise RuntimeError(event["error"])
    finally:
        stop.set()
        if mic is not None:
            await mic
    return {
        "status": status,
        "transcript": transcript,
        "ttfa_client_ms": round(first, 2) if first is not None else None,
        "timings": timings,
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ttfa = [r["ttfa_client_ms"] for r in rows if r["ttfa_client_ms"] is not None]
    if not ttfa:
        return {"turns": len(rows), "with_audio": 0}
    return {
        "turns": len(rows),
        "with_audio": len(ttfa),
        "ttfa_p50_ms": round(percentile(ttfa, 50), 1),
        "ttfa_p95_ms": round(percentile(ttfa, 95), 1),
    }


async def run(base: str, modes: list[str], clips: list[bytes]) -> list[dict[str, Any]]:
    ws_url = base.replace("http", "ws", 1)
    rows: list[dict[str, Any]] = []
    for mode in modes:
        multimodal = await Client.connect(ws_url + "/ws/multimodal")
        detection = "manual" if mode == "commit" else "server_vad"
        update = {"type": "session_update", "turn_detection": detection, "barge_in": False}
        await multimodal.send_json(update)
        await multimodal.expect("ack")
        realtime = await realtime_session(ws_url + "/v1/realtime", mode)
        for i, pcm in enumerate(clips):
            order = ["multimodal", "realtime"] if i % 2 == 0 else ["realtime", "multimodal"]
            for protocol in order:
                if protocol == "multimodal":
                    row = await one_turn(multimodal, pcm, mode)
                else:
                    row = await realtime_turn(realtime, pcm, mode)
                row.update(protocol=protocol, mode=mode, question=QUESTIONS[i])
                rows.append(row)
                print(f"{mode:6} {protocol:10} {row['ttfa_client_ms']!s:>8} ms", flush=True)
        await multimodal.close()
        await realtime.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", default="commit,vad")
    parser.add_argument("--env", action="append", default=[], help="VAR=VALUE for the server")
    parser.add_argument("--server-cpus", help="taskset CPU list for the server")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    env.setdefault("VOICEWIRE_TURN_DETECTION", "server_vad")
    clips = asyncio.run(synthesize_questions())
    proc, base = start_server(env, args.server_cpus)
    try:
        rows = asyncio.run(run(base, args.modes.split(","), clips))
    finally:
        proc.terminate()
        proc.wait(10)
    summary = {
        f"{mode}/{protocol}": summarize(
            [r for r in rows if r["mode"] == mode and r["protocol"] == protocol]
        )
        for mode in args.modes.split(",")
        for protocol in ("multimodal", "realtime")
    }
    print(json.dumps(summary, indent=2))
    save_report("realtime_latency", env, summary, rows, args.out)


if __name__ == "__main__":
    main()
