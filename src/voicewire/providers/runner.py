"""Where embedded model work runs: a bounded thread pool shared by every session.

CTranslate2 and onnxruntime release the GIL while they compute, so threads give real parallelism
and the event loop keeps serving frames for all other sessions while one utterance is being
transcribed. The pool is bounded so that many sessions queue for the cores instead of
oversubscribing them; ``pending`` exposes the queue for metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class ModelRunner:
    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="voicewire-model")
        self.workers = workers
        self.pending = 0

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
        """Run ``fn`` in the pool; return its result and the CPU seconds of the calling thread.

        The CPU figure is a lower bound: a model's own intra-op threads are not counted.
        """

        def timed() -> tuple[T, float]:
            start = time.thread_time()
            result = fn(*args, **kwargs)
            return result, time.thread_time() - start

        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, timed)
        finally:
            self.pending -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
