"""Does the agent hear the user right? The spoken set (``spoken_set.py``) through a real server.

Each clip (one request, said by one voice, clean or in noise, followed by 2 s of the same room)
goes to a fresh session of a freshly started ``voicewire serve``, and the benchmark reads what
the server did with it:

- **split**: the request became more than one turn (the endpointer ended it at a pause);
- **keyword hits**: the tool words of the request found in the transcript;
- **routing**: the turn called the expected tool with the arguments that matter (or none, for
  small talk and requests that still lack data);
- **TTFA**: end of speech -> first reply audio at the client.

Delivery is ``burst`` (the clip as fast as the socket takes it; endpointing runs on audio time,
so accuracy is the same as in real time, and it is quick) or ``realtime`` (a microphone's pace,
for latency). ``vad`` lets the server end the turn; ``commit`` sends ``audio_commit`` at the end
of the speech (push-to-talk).

    python -m benchmarks.hearing --set held_out --out benchmarks/results/hearing-held_out.json
    python -m benchmarks.hearing --set tune --noise clean --env VOICEWIRE_STT_WINDOW_S=10
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from benchmarks.latency_embedded import save_report, start_server
from benchmarks.spoken_set import (
    HELD_OUT,
    HELD_OUT_2,
    HELD_OUT_2_VOICES,
    HELD_OUT_3,
    HELD_OUT_3_VOICES,
    HELD_OUT_VOICES,
    NOISES,
    TRAILING_MS,
    TUNE,
    TUNE_VOICES,
    Item,
    Synth,
    Voice,
    keyword_hits,
    render,
)
from voicewire.client import Client
from voicewire.metrics import percentile
from voicewire.protocol import INPUT_SAMPLE_RATE

SETS = {
    "tune": (TUNE, TUNE_VOICES),
    "held_out": (HELD_OUT, HELD_OUT_VOICES),
    "held_out_2": (HELD_OUT_2, HELD_OUT_2_VOICES),
    "held_out_3": (HELD_OUT_3, HELD_OUT_3_VOICES),
}


def routed(item: Item, calls: list[tuple[str, dict[str, Any]]]) -> bool:
    """The expected tool with the arguments that matter, and nothing else; or no call."""
    if item.tool is None:
        return not calls
    if len(calls) != 1 or calls[0][0] != item.tool:
        return False
    args = calls[0][1]
    return all(str(args.get(k, "")).lower() == str(v).lower() for k, v in item.args.items())


async def one_clip(
    url: str, pcm: bytes, speech_bytes: int, mode: str, burst: bool, barge_in: bool = False
) -> dict[str, Any]:
    """One request in a fresh session. ``barge_in``: as served by default, speech during a reply
    being made interrupts it; a reply cut before it said a word is joined to what follows, so
    only the turns that completed count (without it, every utterance counts)."""
    client = await Client.connect(url)
    try:
        detection = "manual" if mode == "commit" else "server_vad"
        await client.send_json(
            {"type": "session_update", "turn_detection": detection, "barge_in": barge_in}
        )
        await client.expect("ack")
        await client.stream_audio(pcm[:speech_bytes], realtime=not burst)
        client.mark()  # arrival times count from the end of the speech
        if mode == "commit":
            await client.send_json({"type": "audio_commit"})
        else:  # the room goes on, as an open microphone's does
            await client.stream_audio(pcm[speech_bytes:], realtime=not burst)
        await client.send_json({"type": "ping", "ref": "end"})  # answered after all audio
        heard: dict[str, list[str]] = {}
        called: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        transcripts: list[str] = []
        calls: list[tuple[str, dict[str, Any]]] = []
        open_turns: set[str] = set()
        turns = 0
        ponged = False
        first_audio: float | None = None
        while not ponged or open_turns:
            received = await client.next_frame(120)
            frame = received.frame
            kind = frame.type
            if kind == "pong":
                ponged = True
            elif kind in ("speech_started", "ack") and frame.utterance_id:
                open_turns.add(frame.utterance_id)
            elif kind == "stt_complete":
                text = frame.text  # type: ignore[attr-defined]
                heard.setdefault(frame.utterance_id or "", []).append(text)
            elif kind == "tool_call_start":
                called.setdefault(frame.utterance_id or "", []).append(
                    (frame.name, frame.arguments)  # type: ignore[attr-defined]
                )
            elif kind == "tts_chunk" and first_audio is None:
                first_audio = received.at_ms
            elif kind == "utterance_complete":
                uid = frame.utterance_id or ""
                open_turns.discard(uid)
                status = frame.status  # type: ignore[attr-defined]
                if status == "ignored" or (barge_in and status == "interrupted"):
                    continue
                turns += 1
                transcripts += heard.get(uid, [])
                calls += called.get(uid, [])
        return {
            "turns": turns,
            "transcript": " | ".join(transcripts),
            "calls": calls,
            "ttfa_ms": round(first_audio, 1) if first_audio is not None else None,
        }
    finally:
        await client.close()


async def run(
    url: str,
    items: list[Item],
    voices: list[Voice],
    noises: list[tuple[str, float] | None],
    mode: str,
    burst: bool,
    barge_in: bool = False,
) -> list[dict[str, Any]]:
    synth = Synth()
    rows = []
    for voice in voices:
        for noise in noises:
            for i, item in enumerate(items):
                pcm = render(synth, item, voice, noise, seed=i)
                speech_bytes = len(pcm) - INPUT_SAMPLE_RATE * TRAILING_MS // 1000 * 2
                row = await one_clip(url, pcm, speech_bytes, mode, burst, barge_in)
                hits, said = keyword_hits(item, row["transcript"])
                row.update(
                    text=item.text,
                    voice=voice.label,
                    noise=f"{noise[0]}{noise[1]:g}dB" if noise else "clean",
                    paused=bool(item.pauses),
                    hits=hits,
                    keywords=said,
                    routed=routed(item, row["calls"]),
                )
                rows.append(row)
                mark = "ok " if row["routed"] and row["turns"] == 1 else "BAD"
                print(
                    f"{mark} {row['voice']:28} {row['noise']:11} turns={row['turns']} "
                    f"kw={hits}/{said} ttfa={row['ttfa_ms']} {row['transcript']!r}",
                    flush=True,
                )
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def pct(part: float, whole: float) -> float:
        return round(100 * part / whole, 1) if whole else 0.0

    out: dict[str, Any] = {}
    for noise in sorted({r["noise"] for r in rows}):
        group = [r for r in rows if r["noise"] == noise]
        paused = [r for r in group if r["paused"]]
        ttfa = [r["ttfa_ms"] for r in group if r["ttfa_ms"] is not None and r["turns"] == 1]
        out[noise] = {
            "clips": len(group),
            "keyword_hits_pct": pct(
                sum(r["hits"] for r in group), sum(r["keywords"] for r in group)
            ),
            "routing_pct": pct(sum(r["routed"] for r in group), len(group)),
            "split_clips": sum(1 for r in group if r["turns"] > 1),
            "paused_clips": len(paused),
            "missed_clips": sum(1 for r in group if r["turns"] == 0),
            "ttfa_p50_ms": round(percentile(ttfa, 50), 1) if ttfa else None,
            "ttfa_p95_ms": round(percentile(ttfa, 95), 1) if ttfa else None,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", choices=list(SETS), default="held_out")
    parser.add_argument("--noise", default="clean,white,pink", help="clean,white,pink")
    parser.add_argument("--voices", help="comma-separated indices into the set's voices")
    parser.add_argument("--mode", choices=["vad", "commit"], default="vad")
    parser.add_argument("--realtime", action="store_true", help="stream at a microphone's pace")
    parser.add_argument(
        "--barge-in", action="store_true", help="as served by default (see one_clip)"
    )
    parser.add_argument("--url", help="use a running server instead of starting one")
    parser.add_argument("--env", action="append", default=[], help="VAR=VALUE for the server")
    parser.add_argument("--out", type=Path, help="write the raw results as JSON")
    args = parser.parse_args()
    items, voices = SETS[args.set]
    if args.voices:
        voices = [voices[int(i)] for i in args.voices.split(",")]
    wanted = args.noise.split(",")
    noises = [n for n in NOISES if (n[0] if n else "clean") in wanted]
    env = dict(item.split("=", 1) for item in args.env)
    env.setdefault("VOICEWIRE_AUDIO_LEAD_MS", "0")  # replies unpaced: the benchmark plays none
    proc = None
    url = args.url
    if url is None:
        proc, base = start_server(env, None)
        url = base.replace("http", "ws", 1) + "/ws/multimodal"
    try:
        rows = asyncio.run(
            run(url, items, voices, noises, args.mode, not args.realtime, args.barge_in)
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    summary = summarize(rows)
    for noise, figures in summary.items():
        print(noise, figures)
    save_report(f"hearing-{args.set}-{args.mode}", env, summary, rows, args.out)


if __name__ == "__main__":
    main()
