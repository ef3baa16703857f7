"""Time to first audio with the embedded models: 20 spoken questions, one session, two modes.

Starts ``voicewire serve`` (or uses ``--url``), synthesizes each question with Piper, trims
its trailing silence so the clip ends where the speech ends, and streams it in real time like
a microphone. Measured at the client: end of user speech -> first reply audio byte.

- ``commit``: push-to-talk; ``audio_commit`` is sent the moment the speech ends.
- ``vad``: the client keeps streaming silence, as an open microphone does, and the server's
  VAD ends the turn (300 ms of silence by default, which is inside the figure).

    python benchmarks/latency_embedded.py                 # default settings
    python benchmarks/latency_embedded.py --env VOICEWIRE_STT_WINDOW_S=10
    python benchmarks/latency_embedded.py --burst         # each clip sent as fast as possible
    python -m benchmarks.latency_embedded --questions open --env VOICEWIRE_LLM=local:smollm2-135m
        # the 12 open questions of llm_set.py, which only a language model answers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.llm_set import OPEN
from voicewire.audio import resample_pcm16
from voicewire.client import Client
from voicewire.metrics import percentile
from voicewire.protocol import INPUT_SAMPLE_RATE, StageTimings
from voicewire.providers.local.piper import PiperTTS
from voicewire.providers.runner import ModelRunner

QUESTIONS = [
    "Hello there!",
    "What time is it?",
    "How are you doing today?",
    "Who are you?",
    "What can you do for me?",
    "Tell me a joke.",
    "What is the date today?",
    "Thank you very much.",
    "Good morning!",
    "Please show me the weather in Paris.",
    "What is the current CPU usage on this server?",
    "Show me a bar chart of sales for January, February and March.",
    "How does this sentence sound to you?",
    "Can you make that a pie chart instead?",
    "What's the stock price of Apple right now?",
    "Are you a robot?",
    "Plot the temperature over the last week.",
    "What is the memory usage?",
    "Book a table for two in London tomorrow.",
    "Goodbye, see you later.",
]
CHUNK_MS = 20
SPEECH_FLOOR = 300  # |sample| below this at the end of a clip is trailing silence


def trim_trailing_silence(pcm: bytes) -> bytes:
    samples = np.frombuffer(pcm, dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples) >= SPEECH_FLOOR)
    end = int(loud[-1]) + 1 if loud.size else len(samples)
    return samples[:end].tobytes()


async def synthesize_questions(questions: list[str] = QUESTIONS) -> list[bytes]:
    runner = ModelRunner(1)
    tts = PiperTTS(runner)  # natural (non-deterministic) prosody, as people vary
    clips = []
    for text in questions:
        pcm = b"".join([c async for c in tts.synthesize(text) if isinstance(c, bytes)])
        clips.append(trim_trailing_silence(resample_pcm16(pcm, tts.sample_rate, INPUT_SAMPLE_RATE)))
    runner.shutdown()
    return clips


async def one_turn(client: Client, pcm: bytes, mode: str, burst: bool = False) -> dict[str, Any]:
    step = INPUT_SAMPLE_RATE * CHUNK_MS // 1000 * 2
    end_of_speech = await client.stream_audio(pcm, chunk_ms=CHUNK_MS, realtime=not burst)
    if mode == "commit":
        end_of_speech = time.perf_counter()
        await client.send_json({"type": "audio_commit"})
    client.mark(end_of_speech)  # arrival times count from the end of speech
    first_audio: float | None = None
    stop_silence = asyncio.Event()

    async def open_microphone() -> None:  # real-time silence until the reply starts
        start = time.perf_counter()
        sent = 0
        while not stop_silence.is_set() and sent < 10 * INPUT_SAMPLE_RATE * 2:
            await client.ws.send(b"\x00" * step)
            sent += step
            await asyncio.sleep(
                max(0.0, start + sent / 2 / INPUT_SAMPLE_RATE - time.perf_counter())
            )

    mic = asyncio.create_task(open_microphone()) if mode == "vad" else None
    timings: StageTimings | None = None
    transcripts: list[str] = []
    replies: list[str] = []
    statuses: list[str] = []
    open_turns: set[str] = set()
    try:
        # A real microphone stays open: wait until every turn this clip started has ended.
        while not statuses or open_turns:
            received = await client.next_frame(60)
            frame = received.frame
            if frame.utterance_id and frame.type != "utterance_complete":
                open_turns.add(frame.utterance_id)
            if frame.type == "tts_chunk" and first_audio is None:
                first_audio = received.at_ms
            elif frame.type == "stt_complete":
                transcripts.append(frame.text)  # type: ignore[attr-defined]
            elif frame.type == "llm_complete":
                replies.append(frame.text)  # type: ignore[attr-defined]
            elif frame.type == "metrics_update" and timings is None:
                timings = frame.timings  # type: ignore[attr-defined]
            elif frame.type == "utterance_complete":
                statuses.append(frame.status)  # type: ignore[attr-defined]
                open_turns.discard(frame.utterance_id or "")
    finally:
        stop_silence.set()
        if mic is not None:
            await mic
    return {
        "mode": mode,
        "status": statuses[0],
        "turns": len(statuses),  # more than 1: the endpointer split the question
        "transcript": " | ".join(transcripts),
        "reply": " | ".join(replies),
        "speech_ms": round(len(pcm) / 2 / INPUT_SAMPLE_RATE * 1000),
        "ttfa_client_ms": round(first_audio, 2) if first_audio is not None else None,
        "timings": timings.model_dump(exclude_none=True) if timings else {},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    env_overrides: dict[str, str], cpus: str | None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        **env_overrides,
        "VOICEWIRE_PORT": str(port),
        "VOICEWIRE_LOG_LEVEL": "warning",
    }
    cmd = [sys.executable, "-m", "voicewire.cli", "serve"]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["ttfa_client_ms"] is not None]
    out: dict[str, Any] = {
        "questions": len(rows),
        "with_audio": len(ok),
        "split_questions": sum(1 for r in rows if r["turns"] > 1),
    }
    if not ok:
        return out
    ttfa = [r["ttfa_client_ms"] for r in ok]
    out["ttfa_p50_ms"] = round(percentile(ttfa, 50), 1)
    out["ttfa_p95_ms"] = round(percentile(ttfa, 95), 1)
    for stage in ("stt_ms", "llm_ttft_ms", "tts_ttfb_ms", "ttfa_ms"):
        values = [r["timings"][stage] for r in ok if stage in r["timings"]]
        if values:
            out[f"server_{stage}_p50"] = round(percentile(values, 50), 1)
    return out


async def run(
    url: str, modes: list[str], questions: list[str], clips: list[bytes], burst: bool = False
) -> list[dict[str, Any]]:
    rows = []
    for mode in modes:
        client = await Client.connect(url)
        turn_detection = "manual" if mode == "commit" else "server_vad"
        # this client measures first audio and plays nothing: it never talks over a reply
        update = {"type": "session_update", "turn_detection": turn_detection, "barge_in": False}
        await client.send_json(update)
        await client.expect("ack")
        for i, pcm in enumerate(clips):
            row = await one_turn(client, pcm, mode, burst)
            row["question"] = questions[i]
            rows.append(row)
            ttfa = row["ttfa_client_ms"]
            print(
                f"{mode:6} {ttfa!s:>8} ms  turns={row['turns']}  {row['transcript']!r}", flush=True
            )
        await client.close()
    return rows


def save_report(
    name: str, env: dict[str, str], summary: Any, rows: list[dict[str, Any]], out: Path | None
) -> None:
    """A benchmark's results as JSON: what, when, on what machine, the summary and every row."""
    if out is None:
        return
    report = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "server_env": env,
        "summary": summary,
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="use a running server instead of starting one")
    parser.add_argument("--env", action="append", default=[], help="VAR=VALUE for the server")
    parser.add_argument("--modes", default="commit,vad")
    parser.add_argument(
        "--burst", action="store_true", help="send each clip as fast as the socket takes it"
    )
    parser.add_argument("--server-cpus", help="taskset CPU list for the server, e.g. 0-1")
    parser.add_argument(
        "--questions", choices=["default", "open"], default="default", help="which questions"
    )
    parser.add_argument("--out", type=Path, help="write the raw results as JSON")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    questions = QUESTIONS if args.questions == "default" else [c.text for c in OPEN]
    clips = asyncio.run(synthesize_questions(questions))
    proc = None
    url = args.url
    if url is None:
        proc, base = start_server(env, args.server_cpus)
        url = base.replace("http", "ws", 1) + "/ws/multimodal"
    try:
        rows = asyncio.run(run(url, args.modes.split(","), questions, clips, args.burst))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    summary = {
        mode: summarize([r for r in rows if r["mode"] == mode]) for mode in args.modes.split(",")
    }
    save_report("latency_embedded", env, summary, rows, args.out)
    print(json.dumps({"server_env": env, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
