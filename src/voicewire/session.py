"""Session state: what one conversation remembers, and the store that holds every session.

Plain data with no tasks or timers of its own, so an idle session costs a few kilobytes; one
sweeper per process (see ``server.app``) expires idle and disconnected sessions. What lasts
beyond a connection (history, charts, utterance records, settings, cost) round-trips through
:meth:`Session.to_state`, so a session can be kept in Redis and resumed on another worker
(``server/redis_store.py``); what is in flight (audio, a running turn) stays in its worker.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
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

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> UtteranceRecord:
        timings = raw.get("timings")
        return cls(
            id=raw["id"],
            source=raw["source"],
            created_at=raw["created_at"],
            status=raw["status"],
            transcript=raw.get("transcript"),
            reply=raw.get("reply") or "",
            error=raw.get("error"),
            timings=StageTimings.model_validate(timings) if timings else None,
            heard=raw.get("heard"),
        )


class Session:
    __slots__ = (
        "_history",
        "charts",
        "charts_added",
        "connected",
        "cost_usd",
        "created_at",
        "first_turn_at",
        "history_turns",
        "id",
        "last_activity",
        "last_visualization",
        "owner",
        "resume_digest",
        "settings",
        "silence_ms",
        "turn_detection",
        "unreported",
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
        # plain lists and dicts, trimmed by hand: an empty deque or OrderedDict costs 0.5-0.8
        # KB, and an idle session should cost little more than its socket (performance.md)
        self.history_turns = history_turns
        self._history: list[tuple[str, list[Message]]] = []
        self.utterances: dict[str, UtteranceRecord] = {}  # oldest first
        self.last_visualization: dict[str, Any] | None = None
        self.charts: list[dict[str, Any]] = []  # the last MAX_CHARTS
        self.cost_usd = Decimal(0)
        self.first_turn_at: float | None = None  # wall clock when the first utterance began
        self.charts_added = 0  # charts ever added (a store saves the ones it has not yet)
        # the conversation's own settings from session_update (barge_in, ...), kept on resume
        self.settings: dict[str, Any] = {}
        # utterances cut by a lost connection, told to the client that resumes
        self.unreported: list[str] = []
        self.resume_digest = ""

    def new_resume_token(self) -> str:
        """A secret the client keeps to resume this session; only its digest is kept."""
        token = secrets.token_urlsafe(24)
        self.resume_digest = _digest(token)
        return token

    def resumable_with(self, token: str) -> bool:
        return bool(self.resume_digest) and hmac.compare_digest(self.resume_digest, _digest(token))

    def to_state(self, charts: bool = True) -> dict[str, Any]:
        """What lasts beyond the connection, as JSON-able data (``charts``: include them;
        a store may save them apart, since they are large and never change)."""
        state: dict[str, Any] = {
            "id": self.id,
            "created_at": self.created_at,
            "owner": self.owner,
            "turn_detection": self.turn_detection,
            "silence_ms": self.silence_ms,
            "settings": self.settings,
            "history": [[uid, messages] for uid, messages in self._history],
            "history_turns": self.history_turns,
            "utterances": [u.to_json() for u in self.utterances.values()],
            "unreported": self.unreported,
            "last_visualization": self.last_visualization,
            "cost_usd": str(self.cost_usd),
            "first_turn_at": self.first_turn_at,
            "resume_digest": self.resume_digest,
            "charts_added": self.charts_added,
        }
        if charts:
            state["charts"] = list(self.charts)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], charts: list[dict[str, Any]]) -> Session:
        """A session saved by :meth:`to_state`, resumed: utterances that were queued or
        running when its worker stopped are marked interrupted and told to the client."""
        session = cls(state["turn_detection"], state["silence_ms"], state["history_turns"] or 0)
        session.id = state["id"]
        session.created_at = state["created_at"]
        session.owner = state.get("owner")
        session.settings = dict(state.get("settings") or {})
        for uid, messages in state.get("history") or []:
            session.add_turn(messages, uid)
        session.unreported = list(state.get("unreported") or [])
        for raw in state.get("utterances") or []:
            record = UtteranceRecord.from_json(raw)
            if record.status in ("queued", "running"):
                record.status, record.error = "interrupted", "the connection was lost"
                session.unreported.append(record.id)
            session.record(record)
        session.charts = charts[-MAX_CHARTS:]
        session.charts_added = state.get("charts_added", len(session.charts))
        session.last_visualization = state.get("last_visualization")
        session.cost_usd = Decimal(state.get("cost_usd") or "0")
        session.first_turn_at = state.get("first_turn_at")
        session.resume_digest = state.get("resume_digest") or ""
        return session

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
        if self.history_turns:
            self._history.append((utterance_id, list(messages)))
            del self._history[: -self.history_turns]

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
        del self.charts[:-MAX_CHARTS]
        self.charts_added += 1
        self.last_visualization = chart

    def record(self, utterance: UtteranceRecord) -> None:
        self.utterances[utterance.id] = utterance
        while len(self.utterances) > MAX_UTTERANCE_RECORDS:
            del self.utterances[next(iter(self.utterances))]

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


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
    """This process's sessions, in memory. A durable store (``server/redis_store.py``) keeps
    the same dict for the sessions this worker serves and also writes their state out, so
    :meth:`resume` can find a session another worker served."""

    durable = False  # a session outlives this process

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    async def save(self, session: Session) -> None:
        """Write the session's state out, before the client is told of a session or an
        utterance (acknowledged, done): what the client saw survives its worker."""

    def save_soon(self, session: Session) -> None:
        """Write it out without waiting (a change the client does not wait on)."""

    async def load(self, session_id: str) -> Session | None:
        """A session this process does not hold, from where sessions are kept."""
        return None

    async def claim(self, session_id: str) -> None:
        """Before a resume loads the session: have the worker serving it (if another, and
        alive) close its connection and write out what it holds (here: nothing to ask)."""

    async def serve_handoffs(self, hand_over: Callable[[str], Awaitable[None]]) -> None:
        """Answer the claims of other workers (``hand_over`` closes this worker's connection
        to the session); returns once it listens, leaving a task that does."""

    async def take(self, session: Session) -> None:
        """This process serves ``session`` from now on (a worker that served it before
        stops writing it)."""

    def refresh(self) -> None:
        """Keep the connected sessions' saved state from expiring."""

    async def publish(
        self, worker: str, stats: dict[str, Any], stale_s: float
    ) -> dict[str, Any] | None:
        """Post this worker's figures where every worker sees them; the totals over the
        workers heard from within ``stale_s`` (None: this process is alone)."""
        return None

    async def aclose(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"backend": "memory"}

    async def resume(self, session_id: str, token: str, owner: str | None) -> Session | None:
        """The session to continue, if ``token`` is its resume token and ``owner`` the key
        that opened it; else None (the caller starts a new one: never someone else's)."""
        session = self.get(session_id)
        if session is None:
            await self.claim(session_id)
            session = await self.load(session_id)
        if session is None or not session.resumable_with(token) or session.owner != owner:
            return None
        self._sessions[session.id] = session
        await self.take(session)
        return session

    def add(self, session: Session) -> None:
        self._sessions[session.id] = session

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def __len__(self) -> int:
        return len(self._sessions)

    def connected(self) -> int:
        return sum(1 for s in self._sessions.values() if s.connected)

    def expire(self, now: float, ttl_s: float) -> list[str]:
        """Forget disconnected sessions idle for longer than ``ttl_s`` (here: a durable
        store keeps them for their time to live there)."""
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
