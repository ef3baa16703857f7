"""Per-key limits: sessions at once, turns per minute, seconds of user audio per day.

Limits are set for every key with ``VOICEWIRE_KEY_LIMITS`` (``sessions=5,turns_per_min=30,
audio_s_per_day=3600``; any may be left out) and per key on its line of the keys file
(``alice:KEY turns_per_min=60``), which wins. Over the session limit the handshake gets HTTP
429 with ``Retry-After``; over a turn or audio limit the utterance gets an ``error`` frame
``rate_limited`` and the session lives on. A ``rate_limits`` frame after an admitted turn
tells the client where it stands (OpenAI's ``rate_limits.updated`` on ``/v1/realtime``): on
the first turn, then every 10 s at most, or every turn once a limit is nearly used up.

Counts live in this process (time passed in, so the arithmetic is tested without waiting);
with ``VOICEWIRE_REDIS_URL`` the server's calls (the ``async`` ones) go to Redis instead, so
several workers share them (``server/redis_limits.py``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from voicewire.providers import ConfigError

DAY_S = 86_400.0
WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class KeyLimits:
    sessions: int | None = None
    turns_per_min: int | None = None
    audio_s_per_day: float | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.sessions, self.turns_per_min, self.audio_s_per_day))


_NAMES = {"sessions": int, "turns_per_min": int, "audio_s_per_day": float}


def parse_limits(text: str, base: KeyLimits | None = None, where: str = "") -> KeyLimits:
    """``name=value`` words, separated by commas or spaces, over ``base``."""
    values: dict[str, Any] = {}
    for word in text.replace(",", " ").split():
        name, _, raw = word.partition("=")
        kind = _NAMES.get(name)
        try:
            value = kind(raw) if kind else None
        except ValueError:
            value = None
        if kind is None or value is None or value < 0:
            known = ", ".join(_NAMES)
            raise ConfigError(f"{where or 'VOICEWIRE_KEY_LIMITS'}: bad limit {word!r} ({known})")
        values[name] = value
    return replace(base or KeyLimits(), **values)


@dataclass(frozen=True, slots=True)
class Refusal:
    message: str
    retry_after_s: int


@dataclass(slots=True)
class _Usage:
    sessions: int = 0
    turns: deque[float] = field(default_factory=deque)  # start times in the last minute
    audio_day: int = -1  # the UTC day the audio seconds count for
    audio_s: float = 0.0


REPORT_EVERY_S = 10.0  # a session hears where its key stands at most this often ...
REPORT_BELOW = 0.2  # ... unless a limit has less than this share left: then every turn


class Quotas:
    """What each key has used, against its limits (``limits_of`` gives them per key name)."""

    def __init__(self, limits_of: Any) -> None:
        self.limits_of = limits_of  # Callable[[str], KeyLimits]
        self._usage: dict[str, _Usage] = {}
        self._reported: dict[str, float] = {}  # session id -> when it was last told

    def _of(self, key: str, now: float) -> _Usage:
        usage = self._usage.setdefault(key, _Usage())
        while usage.turns and usage.turns[0] <= now - WINDOW_S:
            usage.turns.popleft()
        day = int(now // DAY_S)
        if usage.audio_day != day:
            usage.audio_day, usage.audio_s = day, 0.0
        return usage

    def open_session(self, key: str, now: float | None = None) -> Refusal | None:
        now = time.time() if now is None else now
        limit = self.limits_of(key).sessions
        usage = self._of(key, now)
        if limit is not None and usage.sessions >= limit:
            return Refusal(f"this key may hold {limit} sessions at once", 5)
        usage.sessions += 1
        return None

    def close_session(self, key: str) -> None:
        usage = self._usage.get(key)
        if usage is not None and usage.sessions > 0:
            usage.sessions -= 1

    def start_turn(self, key: str, audio_s: float, now: float | None = None) -> Refusal | None:
        """Count a turn (and its audio) if the key may take it; else why not, and when."""
        now = time.time() if now is None else now
        limits = self.limits_of(key)
        usage = self._of(key, now)
        if limits.turns_per_min is not None and len(usage.turns) >= limits.turns_per_min:
            wait = math.ceil(usage.turns[0] + WINDOW_S - now)
            return Refusal(f"this key may start {limits.turns_per_min} turns a minute", wait)
        if limits.audio_s_per_day is not None and usage.audio_s >= limits.audio_s_per_day:
            wait = math.ceil((usage.audio_day + 1) * DAY_S - now)
            return Refusal(
                f"this key has used its {limits.audio_s_per_day:g} s of audio for today", wait
            )
        usage.turns.append(now)
        usage.audio_s += audio_s
        return None

    # ------------------------------------------------------------------ what the server calls
    # (a shared store overrides these; here they are the local arithmetic)

    async def acquire_session(self, key: str, connection_id: str) -> Refusal | None:
        return self.open_session(key)

    async def release_session(self, key: str, connection_id: str) -> None:
        self.close_session(key)

    async def admit_turn(self, key: str, audio_s: float) -> Refusal | None:
        return self.start_turn(key, audio_s)

    async def standing(self, key: str, session_id: str) -> list[dict[str, Any]]:
        return self.report(key, session_id)

    def heartbeat(self, live: dict[str, str]) -> None:
        """Connections still open (connection id -> key), for a store whose counts of
        sessions must outlive a worker that dies (here there is nothing to do)."""

    async def aclose(self) -> None:
        pass

    # ------------------------------------------------------------------ the arithmetic

    def report(self, key: str, session_id: str, now: float | None = None) -> list[dict[str, Any]]:
        """The status to send this session now, or [] if it heard recently and has room (a
        frame every turn cost a measurable share of a turn's CPU for nothing new)."""
        now = time.time() if now is None else now
        return self.due(session_id, self.status(key, now), now)

    def due(
        self, session_id: str, status: list[dict[str, Any]], now: float
    ) -> list[dict[str, Any]]:
        """``status`` if this session should hear it now, else []."""
        last = self._reported.get(session_id)
        low = any(s["remaining"] <= s["limit"] * REPORT_BELOW for s in status)
        if not status or (last is not None and now - last < REPORT_EVERY_S and not low):
            return []
        if len(self._reported) > 10_000:  # forget sessions not told for an hour
            self._reported = {k: v for k, v in self._reported.items() if now - v < 3600}
        self._reported[session_id] = now
        return status

    def status(self, key: str, now: float | None = None) -> list[dict[str, Any]]:
        """Where the key stands: each limit with what remains and when it resets."""
        now = time.time() if now is None else now
        limits = self.limits_of(key)
        usage = self._of(key, now)
        out = []
        if limits.turns_per_min is not None:
            reset = usage.turns[0] + WINDOW_S - now if usage.turns else 0.0
            left = max(0, limits.turns_per_min - len(usage.turns))
            out.append(_limit("turns_per_min", limits.turns_per_min, left, reset))
        if limits.audio_s_per_day is not None:
            reset = (usage.audio_day + 1) * DAY_S - now
            left = max(0.0, limits.audio_s_per_day - usage.audio_s)
            out.append(_limit("audio_s_per_day", limits.audio_s_per_day, round(left, 1), reset))
        if limits.sessions is not None:
            out.append(_limit("sessions", limits.sessions, limits.sessions - usage.sessions, 0))
        return out


def _limit(name: str, limit: float, remaining: float, reset_s: float) -> dict[str, Any]:
    return {
        "name": name,
        "limit": limit,
        "remaining": remaining,
        "reset_seconds": round(reset_s, 1),
    }


def quotas_for(default_limits: str, keyring: Any, redis_url: str | None = None) -> Quotas:
    """The per-key quotas: ``default_limits`` (``VOICEWIRE_KEY_LIMITS``) for every key, a
    key's own options in the keys file over them; counted in Redis when ``redis_url`` is set.
    Every key's limits are checked now, so a typo stops the start instead of the key's first
    turn."""
    default = parse_limits(default_limits)

    def limits_of(name: str) -> KeyLimits:
        key = keyring.named(name)
        if key is None or not key.options:
            return default
        words = " ".join(f"{k}={v}" for k, v in key.options.items())
        return parse_limits(words, default, where=f"keys file, key {name}")

    for key in keyring.keys:
        limits_of(key.name)
    if redis_url is not None:
        from voicewire.server.redis_limits import SharedQuotas

        return SharedQuotas(limits_of, redis_url)
    return Quotas(limits_of)
