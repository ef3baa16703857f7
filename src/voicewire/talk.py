"""``voicewire talk``: a conversation from the terminal, in one session.

By default it prints what a person wants to read (what you said, what the agent said, the tools
it ran, where its charts are); ``--frames`` prints every frame with its timing instead, for
whoever debugs the protocol. ``--chat`` keeps the session open for follow-ups typed at the
prompt. Failures a user can cause (no server, a file that is not a WAV) are one line, not a
traceback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from voicewire.audio import AudioError, decode_wav, encode_wav, resample_pcm16
from voicewire.client import Client, RequestError, TurnResult
from voicewire.protocol import INPUT_SAMPLE_RATE, ServerFrame


class TalkError(Exception):
    """Something the user can fix, said in one line."""


@dataclass(frozen=True, slots=True)
class Said:
    """One thing to say: typed text, or a WAV file streamed like a microphone."""

    text: str | None = None
    wav: Path | None = None

    def describe(self) -> str:
        return self.text if self.text is not None else str(self.wav)


def load_wav(path: Path) -> bytes:
    """A WAV file as 16 kHz PCM, or a TalkError naming the file and what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TalkError(f"{path}: {exc.strerror or exc}") from None
    try:
        pcm, rate = decode_wav(data)
    except AudioError as exc:
        raise TalkError(f"{path}: {exc}") from None
    return resample_pcm16(pcm, rate, INPUT_SAMPLE_RATE)


def http_base(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}"


async def connect(url: str, timeout_s: float = 10.0) -> Client:
    try:
        return await Client.connect(url, open_timeout=timeout_s)
    except (OSError, TimeoutError) as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else None
        reason = reason or getattr(exc, "strerror", None) or type(exc).__name__
        raise TalkError(
            f"cannot connect to {url} ({reason}): is the server running (`make run`)?"
        ) from None
    except Exception as exc:  # a refused handshake, an invalid URL
        raise TalkError(f"cannot connect to {url}: {exc}") from None


class Conversation:
    """One session; ``say`` runs a turn and prints it as the user chose."""

    def __init__(
        self, client: Client, base: str, console: Console, frames: bool, realtime: bool
    ) -> None:
        self.client = client
        self.base = base  # http://host:port, for the REST links printed
        self.console = console
        self.frames = frames
        self.realtime = realtime
        self.replies: list[bytes] = []
        self.charts = 0

    async def say(self, said: Said) -> TurnResult:
        if said.text is not None:
            result = await self.client.ask(said.text)
        else:
            assert said.wav is not None
            result = await self.client.say(load_wav(said.wav), realtime=self.realtime)
        self.replies.append(result.audio)
        if self.frames:
            print_frames(self.console, result)
        else:
            self.print_turn(said, result)
        return result

    def print_turn(self, said: Said, result: TurnResult) -> None:
        c = self.console
        heard = result.first("stt_complete")
        you = getattr(heard, "text", None) if said.wav is not None else said.text
        c.print(f"[bold cyan]you said:[/] {you or '(nothing was recognised)'}", highlight=False)
        args = {f.call_id: f.arguments for f in result.of_type("tool_call_start")}  # type: ignore[attr-defined]
        for frame in result.of_type("tool_call_complete"):
            line = tool_line(frame, args.get(frame.call_id, {}))  # type: ignore[attr-defined]
            c.print(f"  [dim]tool[/] {line}", highlight=False)
        reply = " ".join(getattr(f, "text", "") for f in result.of_type("assistant_text"))
        if reply:
            c.print(f"[bold green]agent:[/] {reply}", highlight=False)
        for frame in result.of_type("error"):
            c.print(f"  [red]{frame.code}:[/] {frame.message}", highlight=False)  # type: ignore[attr-defined]
        charts = result.of_type("visualization_data")
        if charts:
            self.charts += len(charts)
            sid = self.client.session_id
            c.print(f"  [dim]chart[/] {self.base}/data-viz/{sid}?format=html", highlight=False)
        c.print(f"  [dim]{turn_summary(result)}[/]", highlight=False)


def tool_line(frame: ServerFrame, arguments: dict[str, Any]) -> str:
    f: Any = frame
    args = ", ".join(f"{k}={_short(v)}" for k, v in arguments.items())
    outcome = f"failed: {f.error}" if f.error else _short((f.result or {}).get("summary", f.result))
    return f"{f.name}({args}) {f.duration_ms:.0f} ms: {outcome}"


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def turn_summary(result: TurnResult) -> str:
    parts = [str(result.status)]
    if (first := result.first_audio_ms) is not None:
        parts.append(f"first audio {first:.0f} ms")
    done: Any = result.first("metrics_update")
    if done is not None and done.timings.total_ms is not None:
        parts.append(f"total {done.timings.total_ms:.0f} ms")
    cost: Any = result.first("cost_update")
    if cost is not None:
        parts.append(f"${cost.utterance['total_usd']}")
    return " · ".join(parts)


def print_frames(console: Console, result: TurnResult) -> None:
    table = Table(title=f"utterance {result.utterance_id} ({result.status})")
    for column in ("ms since send", "seq", "frame", "utterance", "offset_ms", "detail"):
        table.add_column(column, justify="left" if column in ("detail", "utterance") else "right")
    for r in result.frames:
        f = r.frame
        offset = getattr(f, "offset_ms", None)
        shown = "" if offset is None else f"{offset:.0f}"
        uid = f.utterance_id or ""
        table.add_row(f"{r.at_ms:.1f}", str(f.seq), f.type, uid, shown, _detail(f.model_dump()))
    console.print(table)


def _detail(data: dict[str, Any]) -> str:
    for key in ("type", "session_id", "utterance_id", "seq", "ts", "offset_ms"):
        data.pop(key, None)
    data = {k: v for k, v in data.items() if v is not None}
    text = json.dumps(data, ensure_ascii=False)
    return text if len(text) <= 90 else text[:87] + "..."


def parse_chat_line(line: str) -> Said | None:
    """A typed line: text to say, ``/wav PATH`` to stream a file; None for an empty line."""
    line = line.strip()
    if line.startswith("/wav "):
        return Said(wav=Path(line[5:].strip()).expanduser())
    return Said(text=line) if line else None


async def run(
    url: str,
    inputs: list[Said],
    *,
    console: Console,
    frames: bool = False,
    chat: bool = False,
    realtime: bool = True,
    out: Path | None = None,
    read_line: Callable[[str], str] = input,
) -> None:
    """Say ``inputs`` in one session, then (``chat``) what the user types, until EOF or
    ``/quit``; save every spoken reply to ``out``."""
    for said in inputs:  # bad files fail before we connect
        if said.wav is not None:
            load_wav(said.wav)
    client = await connect(url)
    conversation = Conversation(client, http_base(url), console, frames, realtime)
    try:
        for said in inputs:
            await _turn(conversation, said)
        if chat:
            console.print("[dim]type a message, /wav FILE to speak a file, /quit to leave[/]")
            while True:
                try:
                    line = await asyncio.to_thread(read_line, "> ")
                except EOFError:
                    break
                if line.strip() in ("/quit", "/exit"):
                    break
                said = parse_chat_line(line)
                if said is not None:
                    await _turn(conversation, said)
    finally:
        await client.close()
    sid = client.session_id
    base = conversation.base
    console.print(f"session {sid}: {base}/session/{sid}", highlight=False)
    if conversation.charts:
        console.print(f"charts: {base}/data-viz/{sid}?format=html", highlight=False)
    audio = b"".join(conversation.replies)
    if out is not None and audio:
        rate = client.init.output_audio.sample_rate
        await asyncio.to_thread(out.write_bytes, encode_wav(audio, rate))
        console.print(f"saved {len(audio) // 2 / rate:.2f} s of reply audio to {out}")


async def _turn(conversation: Conversation, said: Said) -> None:
    try:
        await conversation.say(said)
    except TalkError as exc:  # a bad file typed in chat: say so, keep the session
        conversation.console.print(f"[red]{exc}[/]", highlight=False)
    except RequestError as exc:
        conversation.console.print(f"[red]refused: {exc}[/]", highlight=False)
    except TimeoutError:
        raise TalkError(f"no answer to {said.describe()!r} in time") from None
    except ConnectionError as exc:
        raise TalkError(f"the connection was lost: {exc}") from None
