"""Session state: what one conversation remembers, and the store that holds every session.

Plain data with no tasks or timers of its own, so an idle session costs a few kilobytes; one
sweeper per process (see ``server.app``) expires idle and disconnected sessions.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from voicewire.costs.prices import money
from voicewire.protocol import StageTimings
from voicewire.providers.base import Message

UtteranceStatus = Literal[
    "queued", "running", "completed", "failed", "cancelled", "interrupted", "empty", "ignored"
]
MAX_UTTERANCE_RECORDS = 100
MAX_CHARTS = 50


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


@dataclass(slots=True)
class UtteranceRecord:
    id: str
    source: Literal["text", "audio"]
    created_at: float = field(default_factory=time.time)
    status: UtteranceStatus = "queued"
    transcript: str | None = None
    reply: str = ""
    error: str | None = None
    timings: StageTimings | None = None
    heard: str | None = None  # what the user heard of the reply, when not all of it

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "created_at": self.created_at,
            "status": self.status,
            "transcript": self.transcript,
            "reply": self.reply,
            "error": self.error,
            "heard": self.heard,
            "timings": self.timings.model_dump(exclude_none=True) if self.timings else None,
        }


class Session:
    __slots__ = (
        "_history",
        "charts",
        "connected",
        "cost_usd",
        "created_at",
        "first_turn_at",
        "id",
        "last_activity",
        "last_visualization",
        "owner",
        "silence_ms",
        "turn_detection",
        "utterances",
    )

    def __init__(self, turn_detection: str, silence_ms: int, history_turns: int) -> None:
        self.id = new_id("s")
        self.created_at = time.time()
        self.last_activity = time.monotonic()
        self.connected = True
        self.owner: str | None = None  # the API key's name that opened it (keys on)
        self.turn_detection = turn_detection
        self.silence_ms = silence_ms
        # a turn is its messages (user, assistant tool calls, tool results, assistant reply),
        # by utterance id, so a reply can be cut to what was heard after the fact
        self._history: deque[tuple[str, list[Message]]] = deque(maxlen=history_turns)
        self.utterances: OrderedDict[str, UtteranceRecord] = OrderedDict()
        self.last_visualization: dict[str, Any] | None = None
        self.charts: deque[dict[str, Any]] = deque(maxlen=MAX_CHARTS)
        self.cost_usd = Decimal(0)
        self.first_turn_at: float | None = None  # wall clock when the first utterance began

    def add_cost(self, usd: Decimal, turn_started_at: float) -> None:
        self.cost_usd += usd
        if self.first_turn_at is None:
            self.first_turn_at = turn_started_at

    def conversation_s(self, now: float) -> float:
        """Seconds from the start of the first utterance to ``now``: the conversation's length."""
        return 0.0 if self.first_turn_at is None else max(0.0, now - self.first_turn_at)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def messages(self) -> list[Message]:
        """The conversation so far (last N turns, tool calls included), for the LLM."""
        return well_formed([m for _, turn in self._history for m in turn])

    def add_turn(self, messages: list[Message], utterance_id: str = "") -> None:
        if self._history.maxlen:
            self._history.append((utterance_id, list(messages)))

    def turn_messages(self, utterance_id: str) -> list[Message] | None:
        for uid, messages in self._history:
            if uid == utterance_id:
                return list(messages)
        return None

    def replace_turn(self, utterance_id: str, messages: list[Message]) -> None:
        for i, (uid, _) in enumerate(self._history):
            if uid == utterance_id:
                self._history[i] = (uid, list(messages))
                return

    def add_visualization(self, utterance_id: str, call_id: str, figure: dict[str, Any]) -> None:
        chart = {
            "utterance_id": utterance_id,
            "call_id": call_id,
            "created_at": time.time(),
            "figure": figure,
        }
        self.charts.append(chart)
        self.last_visualization = chart

    def record(self, utterance: UtteranceRecord) -> None:
        self.utterances[utterance.id] = utterance
        while len(self.utterances) > MAX_UTTERANCE_RECORDS:
            self.utterances.popitem(last=False)

    def snapshot(self) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "created_at": self.created_at,
            "idle_s": round(time.monotonic() - self.last_activity, 3),
            "connected": self.connected,
            "turn_detection": self.turn_detection,
            "silence_ms": self.silence_ms,
            "history": self.messages(),
            "utterances": [u.to_json() for u in self.utterances.values()],
            "last_visualization": self.last_visualization,
            "charts": len(self.charts),
            "cost_usd": money(self.cost_usd),
        }


def well_formed(messages: list[Message]) -> list[Message]:
    """``messages`` as a Chat Completions API accepts them: every tool call answered by its
    result and every result after its call. A client's function call waits for its output;
    the oldest turns fall out of the history; a client may delete either half."""
    if not any("tool_calls" in m or m.get("role") == "tool" for m in messages):
        return messages
    answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    called: set[str] = set()
    out: list[Message] = []
    for m in messages:
        if m.get("role") == "tool":
            if m.get("tool_call_id") in called:
                out.append(m)
            continue
        if calls := m.get("tool_calls"):
            kept = [c for c in calls if c.get("id") in answered]
            called.update(c.get("id") for c in kept)
            if kept:
                m = {**m, "tool_calls": kept} if len(kept) < len(calls) else m
            elif m.get("content"):
                m = {"role": m["role"], "content": m["content"]}
            else:
                continue
        out.append(m)
    return out


class SessionStore:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def add(self, session: Session) -> None:
        self._sessions[session.id] = session

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def __len__(self) -> int:
        return len(self._sessions)

    def connected(self) -> int:
        return sum(1 for s in self._sessions.values() if s.connected)

    def expire(self, now: float, ttl_s: float) -> list[str]:
        """Forget disconnected sessions idle for longer than ``ttl_s``."""
        gone = [
            sid
            for sid, s in self._sessions.items()
            if not s.connected and now - s.last_activity > ttl_s
        ]
        for sid in gone:
            del self._sessions[sid]
        return gone

    def idle_connected(self, now: float, idle_s: float) -> list[Session]:
        return [
            s for s in self._sessions.values() if s.connected and now - s.last_activity > idle_s
        ]
