"""Per-key limits shared by every worker through Redis (``VOICEWIRE_REDIS_URL``).

The same limits as ``limits.py`` and the same answers, counted in Redis so that a key's five
sessions are five across the cluster, not five per worker. Each check is one Lua script (a
round trip, atomic: two workers cannot both take the last turn):

- sessions at once: a sorted set of connection ids scored by when they lapse; each worker
  renews its open connections every sweep (``heartbeat``), so a worker that dies stops
  counting ``LEASE_S`` later instead of holding its sessions for ever;
- turns per minute: a sorted set of the turns' start times, trimmed to the last minute;
- audio seconds per day: a float counter per UTC day.

Redis unreachable: the worker counts on its own (``Quotas``' local arithmetic) and logs it,
as the session store does; the limits are then per worker until Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aredis

from voicewire.server.limits import DAY_S, WINDOW_S, Quotas, Refusal, _limit
from voicewire.server.redis_store import REDIS_ERRORS, Outage

log = logging.getLogger(__name__)

LEASE_S = 90.0  # a session a worker stopped renewing stops counting after this
TIMEOUT_S = 1.0

# KEYS: sessions zset. ARGV: now, limit (-1: none), member, lease expiry
_OPEN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local limit = tonumber(ARGV[2])
if limit >= 0 and redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(ARGV[4]) * 1000))
return 1
"""

# KEYS: turns zset, audio counter. ARGV: now, turns limit (-1), audio limit (-1), audio s,
# member, day end. Returns {0, wait} refused for turns, {1, wait} for audio, {2} admitted.
_TURN = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60)
local turns = tonumber(ARGV[2])
if turns >= 0 and redis.call('ZCARD', KEYS[1]) >= turns then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(tonumber(oldest[2]) + 60 - now)}
end
local audio = tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if audio >= 0 and used >= audio then return {1, tostring(tonumber(ARGV[6]) - now)} end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], 61000)
if tonumber(ARGV[4]) > 0 then
  redis.call('INCRBYFLOAT', KEYS[2], ARGV[4])
end
redis.call('PEXPIREAT', KEYS[2], math.floor(tonumber(ARGV[6]) * 1000) + 3600000)
return {2}
"""


def _keys(key: str, now: float) -> tuple[str, str, str]:
    day = int(now // DAY_S)
    return f"vw:k:{{{key}}}:sessions", f"vw:k:{{{key}}}:turns", f"vw:k:{{{key}}}:audio:{day}"


class SharedQuotas(Quotas):
    def __init__(self, limits_of: Any, url: str) -> None:
        super().__init__(limits_of)
        self.client = aredis.Redis.from_url(
            url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
        self._open = self.client.register_script(_OPEN)
        self._turn = self.client.register_script(_TURN)
        self.outage = Outage(
            "Redis failed: per-key limits are counted per worker until it is back",
            "Redis is back: per-key limits are shared again",
        )
        self._tasks: set[asyncio.Task[Any]] = set()

    async def acquire_session(self, key: str, connection_id: str) -> Refusal | None:
        limit = self.limits_of(key).sessions
        if limit is None:
            return None
        now = time.time()
        args = [now, limit, connection_id, now + LEASE_S]
        done = await self._call(lambda: self._open(keys=[_keys(key, now)[0]], args=args))
        if done is None:  # Redis is down: this worker's own count
            return await super().acquire_session(key, connection_id)
        return None if done else Refusal(f"this key may hold {limit} sessions at once", 5)

    async def release_session(self, key: str, connection_id: str) -> None:
        if self.limits_of(key).sessions is None:
            return
        if await self._call(lambda: self.client.zrem(_keys(key, 0)[0], connection_id)) is None:
            await super().release_session(key, connection_id)

    async def admit_turn(self, key: str, audio_s: float) -> Refusal | None:
        limits = self.limits_of(key)
        if limits.turns_per_min is None and limits.audio_s_per_day is None:
            return None
        now = time.time()
        _, turns, audio = _keys(key, now)
        day_end = (int(now // DAY_S) + 1) * DAY_S
        args = [
            now,
            -1 if limits.turns_per_min is None else limits.turns_per_min,
            -1 if limits.audio_s_per_day is None else limits.audio_s_per_day,
            audio_s,
            f"{now}:{secrets.token_hex(4)}",
            day_end,
        ]
        answer = await self._call(lambda: self._turn(keys=[turns, audio], args=args))
        if answer is None:
            return await super().admit_turn(key, audio_s)
        if int(answer[0]) == 2:
            return None
        wait = max(1, math.ceil(float(answer[1])))
        if int(answer[0]) == 0:
            return Refusal(f"this key may start {limits.turns_per_min} turns a minute", wait)
        return Refusal(
            f"this key has used its {limits.audio_s_per_day:g} s of audio for today", wait
        )

    async def standing(self, key: str, session_id: str) -> list[dict[str, Any]]:
        limits = self.limits_of(key)
        if not limits.any:
            return []
        now = time.time()
        sessions, turns, audio = _keys(key, now)

        async def read() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(turns, "-inf", now - WINDOW_S)
                pipe.zrange(turns, 0, 0, withscores=True)
                pipe.zcard(turns)
                pipe.get(audio)
                pipe.zcount(sessions, now, "+inf")
                return await pipe.execute()

        got = await self._call(read)
        if got is None:
            return await super().standing(key, session_id)
        _, oldest, n_turns, used, n_sessions = got
        out = []
        if limits.turns_per_min is not None:
            reset = oldest[0][1] + WINDOW_S - now if oldest else 0.0
            left = max(0, limits.turns_per_min - n_turns)
            out.append(_limit("turns_per_min", limits.turns_per_min, left, reset))
        if limits.audio_s_per_day is not None:
            left = max(0.0, limits.audio_s_per_day - float(used or 0))
            reset = (int(now // DAY_S) + 1) * DAY_S - now
            out.append(_limit("audio_s_per_day", limits.audio_s_per_day, round(left, 1), reset))
        if limits.sessions is not None:
            out.append(_limit("sessions", limits.sessions, limits.sessions - n_sessions, 0))
        return self.due(session_id, out, now)

    def heartbeat(self, live: dict[str, str]) -> None:
        """Renew the leases of this worker's open connections (called by the sweeper)."""
        counted = {cid: key for cid, key in live.items() if self.limits_of(key).sessions}
        if not counted or not self.outage.usable():
            return

        async def renew() -> None:
            expiry = time.time() + LEASE_S
            async with self.client.pipeline(transaction=False) as pipe:
                for cid, key in counted.items():
                    pipe.zadd(_keys(key, 0)[0], {cid: expiry}, xx=True)
                await pipe.execute()

        task = asyncio.get_running_loop().create_task(self._call(renew))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        await self.client.aclose()

    # ------------------------------------------------------------------ outages

    async def _call(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()``'s answer, or None when Redis failed (then the local count answers)."""
        if not self.outage.usable():
            return None
        try:
            async with asyncio.timeout(TIMEOUT_S):
                answer = await call()
        except REDIS_ERRORS as exc:
            self.outage.failed(exc)
            return None
        self.outage.ok()
        return answer
