"""Barge-in with the embedded models: the user talks over spoken replies at random points.

Starts ``voicewire serve`` (or uses ``--url``) and plays the part of a person with a
loudspeaker and an open microphone: the client streams microphone audio in real time the whole
time (silence, then speech), and plays each reply on a real-time playout clock that starts
120 ms after its first chunk arrives (as the browser client does). For each trial it asks a
question whose spoken reply is long, then starts the user's voice (Piper, another sentence each
time) at a random point of the reply's playout. Measured at the client, from the moment the
first voiced sample of the user's speech was sent:

- (a) the ``utterance_interrupted`` frame;
- (b) the last audio frame of the old reply (and how long after (a) it came);
- wasted audio: reply audio received but never played (the playout position when (a) came,
  against the audio received), plus what the client stops.

    python benchmarks/barge_in.py --trials 24 --out benchmarks/results/barge_in.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.latency_embedded import save_report, start_server
from voicewire.audio import resample_pcm16
from voicewire.client import Client
from voicewire.metrics import percentile
from voicewire.protocol import INPUT_SAMPLE_RATE
from voicewire.providers.local.piper import PiperTTS
from voicewire.providers.runner import ModelRunner

QUESTIONS = [  # each gets a reply of several seconds from the offline agent
    "Tell me about the history of the printing press in Europe.",
    "Show me a bar chart of sales: January 120, February 150, March 90.",
    "What's the CPU and memory usage right now?",
    "Make a pie chart of my budget: rent 1200, food 400, travel 250 and fun 100.",
]
INTERRUPTIONS = [
    "Wait, stop, I have another question.",
    "Hold on please, that is not what I asked.",
    "Sorry to interrupt, can you show me something else?",
    "No no, stop there for a moment.",
]
STEP = INPUT_SAMPLE_RATE * 20 // 1000  # 20 ms of samples
PLAYOUT_DELAY_S = 0.12
FLOOR = 300  # |sample| at or above this is voiced


async def voices() -> list[np.ndarray]:
    runner = ModelRunner(1)
    tts = PiperTTS(runner)
    out = []
    for text in INTERRUPTIONS:
        pcm = b"".join([c async for c in tts.synthesize(text) if isinstance(c, bytes)])
        pcm = resample_pcm16(pcm, tts.sample_rate, INPUT_SAMPLE_RATE)
        samples = np.frombuffer(pcm, dtype=np.int16)
        voiced = np.flatnonzero(np.abs(samples) >= FLOOR)
        out.append(samples[voiced[0] :])  # the onset is the first sample sent
    runner.shutdown()
    return out


class Person:
    """An open microphone streaming in real time, and a loudspeaker with a playout clock."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.speech: np.ndarray | None = None
        self.onset_at: float | None = None  # perf_counter() when the first voiced sample left
        self._stop = asyncio.Event()

    async def microphone(self) -> None:
        start = time.perf_counter()
        sent = 0
        while not self._stop.is_set():
            frame = np.zeros(STEP, dtype=np.int16)
            if self.speech is not None:
                if self.onset_at is None:
                    self.onset_at = time.perf_counter()
                take = self.speech[:STEP]
                frame[: take.size] = take
                self.speech = self.speech[STEP:] if self.speech.size > STEP else None
            await self.client.ws.send(frame.tobytes())
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * 0.02 - time.perf_counter()))

    def stop(self) -> None:
        self._stop.set()


async def trial(
    client: Client, person: Person, question: str, voice: np.ndarray, rng: random.Random
) -> dict[str, Any]:
    await client.send_json({"type": "user_text", "text": question})
    uid = (await client.expect("ack")).utterance_id
    first_at: float | None = None
    received_ms = 0.0  # reply audio received, on its timeline
    last_chunk_at = 0.0
    talk_at_ms: float | None = None
    interrupted_at: float | None = None
    interrupted: Any = None
    complete = False
    while True:
        try:
            f: Any = (await client.next_frame(0.01)).frame
        except TimeoutError:
            f = None
        now = time.perf_counter()
        if f is not None:
            if os.environ.get("BARGE_DEBUG") and f.type != "tts_chunk":
                print("  ", f.type, f.utterance_id, getattr(f, "status", ""), file=sys.stderr)
            if f.type == "tts_chunk" and f.utterance_id == uid:
                if first_at is None:
                    first_at = now
                    talk_at_ms = rng.uniform(300, 3000)  # somewhere in the first 3 s of playout
                received_ms = max(received_ms, f.offset_ms + f.samples * 1000 / f.sample_rate)
                last_chunk_at = now
            elif f.type == "utterance_interrupted" and f.utterance_id == uid:
                interrupted_at, interrupted = now, f
            elif f.type == "utterance_complete" and f.utterance_id == uid:
                complete = True
        playout_ms = (now - first_at - PLAYOUT_DELAY_S) * 1000 if first_at else -1.0
        idle_mic = person.onset_at is None and person.speech is None
        if talk_at_ms is not None and idle_mic and playout_ms >= talk_at_ms:
            person.speech = voice.copy()
        if complete and (interrupted_at is not None or playout_ms > received_ms + 2000):
            break
    onset = person.onset_at
    result: dict[str, Any] = {"question": question, "talk_at_ms": round(talk_at_ms or 0)}
    if interrupted_at is None or onset is None or first_at is None:
        result["interrupted"] = False
        return result
    played_ms = max(0.0, (interrupted_at - first_at - PLAYOUT_DELAY_S) * 1000)
    result.update(
        interrupted=True,
        onset_to_interrupted_ms=round((interrupted_at - onset) * 1000, 1),
        onset_to_last_audio_ms=round((last_chunk_at - onset) * 1000, 1),
        last_audio_after_decision_ms=round((last_chunk_at - interrupted_at) * 1000, 1),
        sent_ms=interrupted.sent_ms,
        received_ms=round(received_ms, 1),
        played_ms=round(played_ms, 1),
        wasted_ms=round(max(0.0, received_ms - played_ms), 1),
    )
    await client.send_json({"type": "playback", "utterance_id": uid, "played_ms": played_ms})
    return result


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r.get("interrupted")]
    out: dict[str, Any] = {"trials": len(rows), "interrupted": len(ok)}
    for key in (
        "onset_to_interrupted_ms",
        "onset_to_last_audio_ms",
        "last_audio_after_decision_ms",
        "wasted_ms",
    ):
        values = [r[key] for r in ok]
        if values:
            out[key] = {
                "p50": round(percentile(values, 50), 1),
                "p95": round(percentile(values, 95), 1),
                "max": round(max(values), 1),
            }
    return out


async def run(url: str, trials: int, seed: int) -> list[dict[str, Any]]:
    """Each trial on a fresh session: what the interrupting speech starts does not leak into
    the next trial."""
    rng = random.Random(seed)
    spoken = await voices()
    rows = []
    for i in range(trials):
        client = await Client.connect(url)
        person = Person(client)
        mic = asyncio.create_task(person.microphone())
        try:
            question, voice = QUESTIONS[i % len(QUESTIONS)], spoken[i % len(spoken)]
            row = await trial(client, person, question, voice, rng)
        finally:
            person.stop()
            await mic
            await client.close()
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--env", action="append", default=[], help="VAR=VALUE for the server")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    proc = None
    url = args.url
    if url is None:
        proc, base = start_server({"VOICEWIRE_LEDGER": "false", **env}, None)
        url = base.replace("http", "ws", 1) + "/ws/multimodal"
    try:
        rows = asyncio.run(run(url, args.trials, args.seed))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    summary = summarize(rows)
    save_report("barge_in", env, summary, rows, args.out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
