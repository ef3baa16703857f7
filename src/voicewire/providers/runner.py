"""Where embedded model work runs: a fixed set of worker threads shared fairly by every session.

CTranslate2 and onnxruntime release the GIL while they compute, so threads give real parallelism
and the event loop keeps serving frames while one utterance is being transcribed. The workers
are few (cores are few), so *which* job runs next matters more than how it runs: a plain FIFO
pool let one client that paused every 160 ms queue a hundred speculative transcriptions ahead of
everyone else's replies. Jobs therefore wait here, not in the pool, and a free worker takes:

1. the most urgent class first: what a user is waiting for now (a finished turn's
   transcription, a reply's synthesis) before speculative work that may be thrown away;
2. within a class, the job whose owner (a session) has used the least model time lately
   (decayed over ``half_life_s``), so a session that synthesises a long reply or sends
   pause-riddled speech gets its share, not everyone's;
3. then the oldest.

Speculative work also never takes the last free worker and runs one job per session at a time:
a running job cannot be stopped, and superseded speculations on every worker were what still
delayed other sessions' replies by a second after the queue itself was fair.

A job whose caller is cancelled before it starts is dropped: it never runs. A running job
cannot be stopped (the native code has no cancel), so its result is discarded. Owner and class
come from context variables set where the work is caused (a session's tasks, a speculative
transcription), so providers need not know about sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Priority(IntEnum):
    INTERACTIVE = 0  # someone is waiting for it now
    SPECULATIVE = 1  # may be superseded: an early transcription at a pause


#: Who caused the model work (a session id); set on a session's tasks.
model_owner: contextvars.ContextVar[str] = contextvars.ContextVar("model_owner", default="")
#: How urgent it is; set on speculative work.
model_priority: contextvars.ContextVar[Priority] = contextvars.ContextVar(
    "model_priority", default=Priority.INTERACTIVE
)


@dataclass(slots=True)
class _Job:
    call: Callable[[], Any]
    owner: str
    priority: Priority
    order: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    speculating: bool = False  # started as speculative work (counted in the runner's limits)


@dataclass(slots=True)
class _Share:
    used_s: float = 0.0  # decayed seconds of model time
    at: float = field(default_factory=time.monotonic)


class ModelRunner:
    def __init__(self, workers: int, half_life_s: float = 10.0) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="voicewire-model")
        self.workers = workers
        self._half_life_s = half_life_s
        self._lock = threading.Lock()  # the runner may be shared by several event loops (tests)
        self._waiting: list[_Job] = []
        self._free = workers
        self._shares: dict[str, _Share] = {}
        self._speculating: set[str] = set()  # owners with speculative work on a worker
        self._discarded: dict[str, float] = {}  # owner -> CPU s of speculations nobody took
        self._order = itertools.count()
        self._closed = False

    @property
    def pending(self) -> int:
        """Jobs waiting for a worker or running (for metrics)."""
        return len(self._waiting) + self.workers - self._free

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
        """Run ``fn`` on a worker; return its result and the CPU seconds of the worker thread.

        The CPU figure is a lower bound: a model's own intra-op threads are not counted.
        """

        def timed() -> tuple[T, float]:
            start = time.thread_time()
            result = fn(*args, **kwargs)
            return result, time.thread_time() - start

        loop = asyncio.get_running_loop()
        job = _Job(
            timed,
            model_owner.get(),
            model_priority.get(),
            next(self._order),
            loop,
            loop.create_future(),
        )
        with self._lock:
            if self._closed:
                raise RuntimeError("the model runner is shut down")
            self._waiting.append(job)
            self._dispatch()
        try:
            return await job.future
        except asyncio.CancelledError:
            with self._lock, contextlib.suppress(ValueError):
                self._waiting.remove(job)  # not started: it never runs
            raise

    def promote(self, owner: str) -> None:
        """Someone now waits for ``owner``'s speculative work (the turn ended at a pause)."""
        with self._lock:
            for job in self._waiting:
                if job.owner == owner:
                    job.priority = Priority.INTERACTIVE
            self._dispatch()  # it may start now: speculative limits no longer hold it back

    # ------------------------------------------------------------------ scheduling (locked)

    def _decayed(self, share: _Share, now: float) -> float:
        return share.used_s * 0.5 ** ((now - share.at) / self._half_life_s)

    def _dispatch(self) -> None:
        now = time.monotonic()
        while self._free and self._waiting:
            eligible = [j for j in self._waiting if self._may_start(j)]
            if not eligible:
                return
            job = min(eligible, key=lambda j: self._rank(j, now))
            self._waiting.remove(job)
            self._free -= 1
            if job.priority is Priority.SPECULATIVE:
                job.speculating = True
                self._speculating.add(job.owner)
            self._pool.submit(self._execute, job)

    def _may_start(self, job: _Job) -> bool:
        """Speculative work never takes the last free worker (while there are two or more) and
        runs one job per session at a time: a superseded job that already runs cannot be
        stopped, so a burst of pauses must not pile such jobs onto every worker."""
        if job.priority is not Priority.SPECULATIVE:
            return True
        if job.owner in self._speculating:
            return False
        return self.workers == 1 or len(self._speculating) < self.workers - 1

    def _rank(self, job: _Job, now: float) -> tuple[int, float, int]:
        share = self._shares.get(job.owner)
        return job.priority, self._decayed(share, now) if share else 0.0, job.order

    def _charge(self, owner: str, seconds: float) -> None:
        now = time.monotonic()
        share = self._shares.get(owner)
        if share is None:
            share = self._shares[owner] = _Share(0.0, now)
        share.used_s = self._decayed(share, now) + seconds
        share.at = now
        if len(self._shares) > 4096:  # forget owners whose share has decayed away
            stale = [o for o, s in self._shares.items() if self._decayed(s, now) < 1e-3]
            for o in stale:
                del self._shares[o]

    # ------------------------------------------------------------------ worker thread

    def _execute(self, job: _Job) -> None:
        start = time.monotonic()
        outcome: Any
        failed = False
        if job.future.cancelled():  # cancelled between dispatch and start
            outcome = None
        else:
            try:
                outcome = job.call()
            except BaseException as exc:  # delivered to the caller, who decides
                outcome, failed = exc, True
        with self._lock:
            self._charge(job.owner, time.monotonic() - start)
            self._free += 1
            if job.speculating:
                self._speculating.discard(job.owner)
            if not self._closed:
                self._dispatch()
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone
            job.loop.call_soon_threadsafe(self._settle, job, outcome, failed)

    def _settle(self, job: _Job, outcome: Any, failed: bool) -> None:
        """On the caller's loop: deliver the outcome, or, if the caller stopped waiting (a
        superseded speculation), keep the CPU it used for its owner to pay."""
        if not job.future.done():
            if failed:
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        elif not failed and job.speculating and isinstance(outcome, tuple):
            with self._lock:
                if len(self._discarded) > 4096:  # owners that never came back for it
                    self._discarded.clear()
                self._discarded[job.owner] = self._discarded.get(job.owner, 0.0) + outcome[1]

    def take_discarded(self, owner: str) -> float:
        """CPU seconds of ``owner``'s speculative work that ran but whose result nobody took
        (superseded), since the last call: spent all the same, so it is priced."""
        with self._lock:
            return self._discarded.pop(owner, 0.0)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            waiting, self._waiting = self._waiting, []
        for job in waiting:
            with contextlib.suppress(RuntimeError):
                job.loop.call_soon_threadsafe(job.future.cancel)
        self._pool.shutdown(wait=False, cancel_futures=True)
