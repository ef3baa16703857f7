"""What the user heard of a reply, from where its playout stopped.

The server knows what it sent; the client knows what it played. A reply's sentences are placed
on its audio timeline (each ``assistant_text`` carries the offset of its first sample), so a
playout position maps to words: the sentences that started before it, and a proportional part
of the one it stopped in, cut back to a whole word (no TTS we ship gives word timings). A
sentence that never got audio (TTS failed, the audio cap) was shown as text, so it counts as
heard once reached.

Pure logic over offsets: no clock, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from voicewire.providers.base import Message

ELLIPSIS = "…"  # marks a reply cut where the user stopped hearing it: the LLM sees it


@dataclass(slots=True)
class Sentence:
    text: str
    offset_ms: float | None  # where its audio starts; None: shown without audio


@dataclass(slots=True)
class ReplyLog:
    """One reply as it went out: its sentences, how much audio was sent, when sending began."""

    sentences: list[Sentence] = field(default_factory=list)
    sent_ms: float = 0.0  # end of the audio sent so far, on the reply timeline
    started_at: float | None = None  # the sender's clock when the first chunk left
    heard_ms: float | None = None  # set by a playback report (or the interruption)
    messages: list[Message] | None = None  # the turn's history as made, before any cut
    levels: list[tuple[float, float]] = field(default_factory=list)  # (offset_ms, RMS)

    def add_sentence(self, text: str, offset_ms: float | None) -> None:
        self.sentences.append(Sentence(text, offset_ms))

    def add_audio(
        self, offset_ms: float, duration_ms: float, levels: list[tuple[float, float]], now: float
    ) -> None:
        """Audio sent: where it ends, and its loudness by piece (``(offset_ms, RMS)``)."""
        if self.started_at is None:
            self.started_at = now
        self.sent_ms = max(self.sent_ms, offset_ms + duration_ms)
        self.levels += levels

    def level_near(self, position_ms: float, before_ms: float, after_ms: float) -> float:
        """The loudest piece sent around ``position_ms`` of the reply (its echo's source)."""
        lo, hi = position_ms - before_ms, position_ms + after_ms
        return max((rms for at, rms in self.levels if lo <= at <= hi), default=0.0)

    def playing_until(self) -> float | None:
        """The sender's clock when the client will have played all audio sent so far."""
        if self.started_at is None:
            return None
        return self.started_at + self.sent_ms / 1000

    def heard_text(self, played_ms: float) -> str:
        """The words of the reply heard by ``played_ms`` of its audio."""
        words: list[str] = []
        for i, sentence in enumerate(self.sentences):
            if sentence.offset_ms is None:  # shown as text when the reply reached it
                words += sentence.text.split()
                continue
            if sentence.offset_ms >= played_ms:
                break
            end = self._end_of(i)
            spoken = sentence.text.split()
            if end <= played_ms:
                words += spoken
                continue
            share = (played_ms - sentence.offset_ms) / max(1.0, end - sentence.offset_ms)
            words += spoken[: int(len(spoken) * share)]
            break
        return " ".join(words)

    def _end_of(self, i: int) -> float:
        """Where sentence ``i``'s audio ends: the next timed sentence's start, or the last
        audio sent."""
        for later in self.sentences[i + 1 :]:
            if later.offset_ms is not None:
                return later.offset_ms
        return self.sent_ms


PLAYOUT_SLACK_S = 0.25  # the client starts playing a little after the first chunk arrives


class Replies:
    """A session's recent replies (by utterance id): what was sent, and what plays now by the
    pacing clock (the sender's clock from each reply's first chunk)."""

    def __init__(self, keep: int = 16) -> None:
        self._logs: dict[str, ReplyLog] = {}
        self._keep = keep  # only recent replies can still be reported on

    def get(self, uid: str) -> ReplyLog | None:
        return self._logs.get(uid)

    def of(self, uid: str) -> ReplyLog:
        log = self._logs.get(uid)
        if log is None:
            log = self._logs[uid] = ReplyLog()
            while len(self._logs) > self._keep:
                self._logs.pop(next(iter(self._logs)))
        return log

    def playing(self, now: float) -> list[tuple[str, ReplyLog]]:
        """Replies whose audio is still playing at the client."""
        out = []
        for uid, log in self._logs.items():
            until = log.playing_until()
            if until is not None and now < until + PLAYOUT_SLACK_S:
                out.append((uid, log))
        return out

    def speech_floor(self, now: float, quiet: float, echo: float, ratio: float) -> float:
        """The VAD's energy floor now: ``quiet`` when nothing plays; while a reply plays, the
        larger of ``echo`` and ``ratio`` times the agent's own level around its playout
        position (the echo of a loud sentence is louder)."""
        floor = quiet
        for _, log in self.playing(now):
            position = (now - (log.started_at or now)) * 1000
            level = log.level_near(position, before_ms=600, after_ms=200)
            floor = max(floor, echo, ratio * level)
        return floor


def _rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    return float(np.sqrt(np.dot(samples, samples) / max(1, samples.size)))


LEVEL_PIECE_MS = 100


def chunk_levels(pcm: bytes, rate: int, offset_ms: float) -> list[tuple[float, float]]:
    """The RMS of each 100 ms of a reply's audio chunk, placed on the reply's timeline: a loud
    word in a long chunk is not averaged away with the pauses around it."""
    step = max(2, rate * LEVEL_PIECE_MS // 1000 * 2)
    return [
        (offset_ms + i / 2 * 1000 / rate, _rms(pcm[i : i + step])) for i in range(0, len(pcm), step)
    ]


def truncate_messages(messages: list[Message], heard: str) -> list[Message]:
    """A turn's messages with the assistant's words cut to those heard (``heard`` is a prefix
    of the reply, word for word). Tool calls and their results stay: the tools did run. The
    cut message ends with an ellipsis, so the next LLM step knows it was interrupted."""
    budget = len(heard.split())
    out: list[Message] = []
    cut = False
    for message in messages:
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, str) or not content:
            if message.get("role") == "assistant" and cut and not message.get("tool_calls"):
                continue
            out.append(message)
            continue
        if cut:  # after the cut: keep tool calls (they ran), drop the unheard words
            if message.get("tool_calls"):
                out.append({**message, "content": None})
            continue
        words = content.split()
        if len(words) <= budget:
            out.append(message)
            budget -= len(words)
            continue
        cut = True
        kept = " ".join(words[:budget])
        text = re.sub(r"[\s,;:.!?]+$", "", kept) + ELLIPSIS if kept else ELLIPSIS
        out.append({**message, "content": text})
    return out
