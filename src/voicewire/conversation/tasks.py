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
    ) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(
            coro, name=f"{self.owner}:{name}", context=context
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.debug("task %s ended with %r", task.get_name(), exc)  # its owner reports it

    def __len__(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel every task still running and wait until each has unwound."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
