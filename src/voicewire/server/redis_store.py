"""Sessions kept in Redis, so a conversation resumes on any worker.

A session is one hash, ``vw:s:{id}``: its durable state (:meth:`Session.to_state`: history,
utterance records, settings, cost) as one JSON field, rewritten when an utterance completes and
on session changes, and its charts, large and never changed, one field each (``c:<n>``, the
chart's ordinal: writing one twice, after a timeout that hid a success, changes nothing), the
oldest dropped past ``MAX_CHARTS``. It expires ``VOICEWIRE_SESSION_TTL_S`` after its last write
(the sweeper renews connected sessions).

Each write carries the lease of the worker serving the session: the one that resumed it last.
A write from a worker that lost its lease (its client resumed elsewhere while this worker still
thought it connected) is refused, and that worker closes its copy. So that what it held is not
lost with it (the words of a reply the drop cut), a worker resuming a session first claims it:
it publishes on the holder's channel (``vw:handoff:<node>``, the node written with the state)
and, if the holder listens, waits up to ``HANDOFF_S`` for it to close its connection, write the
session out and say so (a list ``vw:released:<nonce>``). A holder that is gone hears nothing
and costs no wait.

Redis unreachable at start is a configuration error; lost while serving, sessions carry on in
memory (a warning is logged once, writes are retried at most every ``RETRY_S``), and resume
works again once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aredis

from voicewire.providers import ConfigError
from voicewire.session import MAX_CHARTS, Session, SessionStore

log = logging.getLogger(__name__)

WORKERS = "vw:workers"  # hash: worker -> its figures as of its last sweep
TIMEOUT_S = 1.0  # one Redis call; a turn never waits longer than this on the store
RETRY_S = 5.0  # while Redis is down, how often a write tries again
HANDOFF_S = 0.8  # a resume waits at most this for the worker that held the session

# KEYS: the session's hash. ARGV: lease, state JSON, TTL ms, then (field, value) pairs: the
# new charts, and fields to delete with an empty value (charts past MAX_CHARTS).
_SAVE = """
local lease = redis.call('HGET', KEYS[1], 'lease')
if lease and lease ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease', ARGV[1], 'state', ARGV[2])
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


class Outage:
    """Whether Redis may be tried now: after a failure, again only every ``RETRY_S`` (a
    blackholed host would otherwise cost every turn a timeout). Says so in the log once
    when it goes and once when it is back."""

    def __init__(self, down: str, back: str) -> None:
        self.down, self.back = down, back
        self.since: float | None = None

    def usable(self) -> bool:
        return self.since is None or time.monotonic() - self.since >= RETRY_S

    def failed(self, exc: BaseException) -> None:
        if self.since is None:
            log.warning("%s (%s)", self.down, type(exc).__name__)
        self.since = time.monotonic()

    def ok(self) -> None:
        if self.since is not None:
            log.warning("%s", self.back)
            self.since = None


REDIS_ERRORS = (redis.RedisError, OSError, TimeoutError)


def _key(session_id: str) -> str:
    return f"vw:s:{{{session_id}}}"


def check_reachable(url: str) -> None:
    """Fail the start with a clear message when Redis cannot be reached."""
    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ConfigError(f"VOICEWIRE_REDIS_URL: cannot reach Redis ({exc})") from exc
    finally:
        client.close()


class RedisSessions(SessionStore):
    durable = True

    def __init__(
        self,
        url: str,
        ttl_s: float,
        on_superseded: Callable[[str], None] = lambda session_id: None,
    ) -> None:
        super().__init__()
        self.url = url
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self.on_superseded = on_superseded  # a session's lease went to another connection
        self.client = aredis.Redis.from_url(
            url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
        self._save = self.client.register_script(_SAVE)
        self.node = secrets.token_hex(6)  # this store, for handoffs (one or more per process)
        self._listener: asyncio.Task[None] | None = None
        self._leases: dict[str, str] = {}  # session id -> the lease this process holds
        self._charts_saved: dict[str, int] = {}  # session id -> charts_added already written
        self._locks: dict[str, asyncio.Lock] = {}  # one write at a time per session, in order
        self._tasks: set[asyncio.Task[None]] = set()
        self.outage = Outage(
            f"Redis at {_safe(url)} failed: sessions carry on in this worker's memory and "
            "cannot be resumed elsewhere until it is back",
            f"Redis at {_safe(url)} is back: sessions are saved again",
        )
        self.writes = 0
        self.write_s = 0.0  # time spent in writes, for the per-turn cost

    # ------------------------------------------------------------------ writes

    async def save(self, session: Session) -> None:
        if not session.resume_digest:  # nothing can resume it (a /v1/realtime session)
            return
        lock = self._locks.setdefault(session.id, asyncio.Lock())
        async with lock:
            if not self.outage.usable():
                return
            lease = self._leases.setdefault(session.id, secrets.token_hex(8))
            saved = self._charts_saved.get(session.id, 0)
            total = session.charts_added
            fresh = min(total - saved, len(session.charts))
            argv: list[str | int] = [
                lease,
                json.dumps(session.to_state(charts=False), separators=(",", ":")),
                self.ttl_ms,
                "holder",
                self.node,
            ]
            if fresh > 0:
                for n, chart in zip(
                    range(total - fresh, total), list(session.charts)[-fresh:], strict=True
                ):
                    argv += [f"c:{n:08d}", json.dumps(chart, separators=(",", ":"))]
                    if n >= MAX_CHARTS:
                        argv += [f"c:{n - MAX_CHARTS:08d}", ""]
            started = time.perf_counter()
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    kept = await self._save(keys=[_key(session.id)], args=argv)
            except REDIS_ERRORS as exc:
                self.outage.failed(exc)
                return
            self.outage.ok()
            self.writes += 1
            self.write_s += time.perf_counter() - started
            self._charts_saved[session.id] = total  # not charts_added: one may have come since
            if not kept:
                log.warning("session %s was resumed on another connection", session.id)
                self._forget(session.id)
                self.on_superseded(session.id)

    def save_soon(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(self.save(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def refresh(self) -> None:
        ids = [sid for sid, s in self._sessions.items() if s.connected]
        if ids and self.outage.usable():
            task = asyncio.get_running_loop().create_task(self._refresh(ids))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _refresh(self, ids: list[str]) -> None:
        try:
            async with asyncio.timeout(TIMEOUT_S * 2):
                async with self.client.pipeline(transaction=False) as pipe:
                    for sid in ids:
                        pipe.pexpire(_key(sid), self.ttl_ms)
                    await pipe.execute()
        except REDIS_ERRORS as exc:
            self.outage.failed(exc)

    async def publish(
        self, worker: str, stats: dict[str, Any], stale_s: float
    ) -> dict[str, Any] | None:
        now = time.time()
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await self.client.hset(WORKERS, worker, json.dumps({**stats, "at": now}))
                posted = await self.client.hgetall(WORKERS)
        except REDIS_ERRORS as exc:
            self.outage.failed(exc)
            return None
        fresh, gone = [], []
        for name, raw in posted.items():
            figures = json.loads(raw)
            age = now - figures["at"]
            if age <= stale_s:
                fresh.append(figures)
            elif age > 10 * stale_s:  # a worker long gone: forget it
                gone.append(name)
        if gone:
            with contextlib.suppress(*REDIS_ERRORS):
                await self.client.hdel(WORKERS, *gone)
        return {
            "workers": len(fresh),
            "sessions_connected": sum(f["sessions_connected"] for f in fresh),
            "turns": sum(f["turns"] for f in fresh),
        }

    # ------------------------------------------------------------------ reads

    async def load(self, session_id: str) -> Session | None:
        if not self.outage.usable():
            return None
        try:
            async with asyncio.timeout(TIMEOUT_S):
                fields = await self.client.hgetall(_key(session_id))
        except REDIS_ERRORS as exc:
            self.outage.failed(exc)
            return None
        self.outage.ok()
        if b"state" not in fields:
            return None
        names = sorted(f for f in fields if f.startswith(b"c:"))[-MAX_CHARTS:]
        charts = [json.loads(fields[name]) for name in names]
        session = Session.from_state(json.loads(fields[b"state"]), charts)
        self._charts_saved[session.id] = session.charts_added
        return session

    async def claim(self, session_id: str) -> None:
        if not self.outage.usable():
            return
        nonce = secrets.token_hex(8)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                holder = await self.client.hget(_key(session_id), "holder")
                if holder is None or (node := holder.decode()) == self.node:
                    return
                listening = await self.client.publish(f"vw:handoff:{node}", f"{session_id} {nonce}")
            if listening:  # else its worker is gone: what it wrote is all there is
                await self.client.blpop([f"vw:released:{nonce}"], timeout=HANDOFF_S)
        except REDIS_ERRORS as exc:  # a timeout included: resume with what is written
            log.info("claim of session %s: no handoff (%s)", session_id, type(exc).__name__)

    async def serve_handoffs(self, hand_over: Callable[[str], Awaitable[None]]) -> None:
        listener = aredis.Redis.from_url(self.url, socket_connect_timeout=TIMEOUT_S)
        pubsub = listener.pubsub()
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await pubsub.subscribe(f"vw:handoff:{self.node}")
        except REDIS_ERRORS as exc:
            log.warning("session handoffs not served: %s", type(exc).__name__)
            await listener.aclose()
            return
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(listener, pubsub, hand_over)
        )

    async def _listen(
        self, listener: aredis.Redis, pubsub: Any, hand_over: Callable[[str], Awaitable[None]]
    ) -> None:
        try:
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                session_id, _, nonce = message["data"].decode().partition(" ")
                task = asyncio.get_running_loop().create_task(
                    self._release(session_id, nonce, hand_over)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except REDIS_ERRORS as exc:  # resumes elsewhere go on with what was written
            log.warning("session handoffs no longer served: %s", type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
                await listener.aclose()

    async def _release(
        self, session_id: str, nonce: str, hand_over: Callable[[str], Awaitable[None]]
    ) -> None:
        """Another worker resumes this session: close our connection to it, write it out
        (the lease is still ours), then tell the claimant."""
        await hand_over(session_id)
        if (session := self.get(session_id)) is not None:
            await self.save(session)
            self._forget(session_id)  # from now on another worker's copy is the session
        key = f"vw:released:{nonce}"
        with contextlib.suppress(*REDIS_ERRORS):
            async with asyncio.timeout(TIMEOUT_S):
                await self.client.rpush(key, 1)
                await self.client.pexpire(key, int(HANDOFF_S * 2000))

    async def take(self, session: Session) -> None:
        """A new lease for this connection: the worker that held it is refused its next
        write (and closes its copy)."""
        self._leases[session.id] = secrets.token_hex(8)
        if self.outage.usable():
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    await self.client.hset(_key(session.id), "lease", self._leases[session.id])
            except REDIS_ERRORS as exc:
                self.outage.failed(exc)
        await self.save(session)

    def expire(self, now: float, ttl_s: float) -> list[str]:
        gone = super().expire(now, ttl_s)
        for sid in gone:
            self._forget(sid)
        return gone

    def _forget(self, session_id: str) -> None:
        """Drop this worker's copy: a resume here loads the session from Redis again (a copy
        kept after it moved would miss the turns taken elsewhere, and overwrite them)."""
        self._sessions.pop(session_id, None)
        self._leases.pop(session_id, None)
        self._charts_saved.pop(session_id, None)
        self._locks.pop(session_id, None)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()

    def stats(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "up": self.outage.since is None,
            "writes": self.writes,
            "write_ms_avg": round(self.write_s * 1000 / self.writes, 3) if self.writes else None,
        }


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"
