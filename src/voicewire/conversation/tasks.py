"""Every task a conversation starts, owned in one place (after LiveKit's ``utils/aio/task_set``).

A task nobody holds can be garbage-collected mid-flight, and one nobody awaits hides its
exception; a session that closes must cancel exactly its own tasks and wait for them. So each
conversation creates its tasks here, by name, and ``aclose`` ends them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class TaskSet:
    def __init__(self, owner: str) -> None:
        self.owner = owner  # for task names and logs
        self._tasks: set[asyncio.Task[Any]] = set()

    def create(
        self,
        coro: Coroutine[Any, Any, T],
        name: str,
        context: contextvars.Context | None = None,
        expected_failures: bool = False,
    ) -> asyncio.Task[T]:
        """Start ``coro`` as a task of this set. A task that fails is logged with its
        traceback, unless failing is part of its job (``expected_failures``: its awaiter, if
        any, reports it)."""
        task = asyncio.get_running_loop().create_task(
            coro, name=f"{self.owner}:{name}", context=context
        )
        self._tasks.add(task)
        task.add_done_callback(self._quiet if expected_failures else self._done)
        return task

    def _quiet(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: never "exception was never retrieved"

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task %s failed", task.get_name(), exc_info=exc)

    def __len__(self) -> int:
        """Tasks still running (a finished one leaves the set a moment later)."""
        return sum(1 for task in self._tasks if not task.done())

    async def aclose(self) -> None:
        """Cancel every task still running and wait until each has unwound."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
