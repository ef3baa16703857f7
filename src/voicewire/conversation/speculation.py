"""Speculative transcription: start transcribing at a pause, before the turn is known to end.

Its text also decides whether the pause ends the turn: words that sound unfinished wait
longer (``pipeline/turn_end.py``).

If the user does not speak again before the end-of-turn silence has passed, the transcript is
ready when the turn ends. At most one per session, as low-priority model work: a newer pause
supersedes the older job, which is dropped if it has not started (a running one finishes; the
runner keeps its CPU so the session still pays for it).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

from voicewire.conversation.tasks import TaskSet
from voicewire.pipeline.turn_end import unfinished_reason
from voicewire.protocol import INPUT_SAMPLE_RATE
from voicewire.providers.base import STT, Message, Transcript
from voicewire.providers.runner import Priority, model_priority

JUDGE_TIMEOUT_S = 3.0  # the longest the end of a turn waits for its words to be judged


class Speculation:
    def __init__(self, tasks: TaskSet, stt: Callable[[], STT], promote: Callable[[], None]) -> None:
        self._tasks = tasks
        self._stt = stt
        self._promote = promote  # tell the model runner the result is now wanted
        self._task: asyncio.Task[Transcript] | None = None

    def start(self, turn_audio: bytes) -> None:
        """Transcribe the turn so far, superseding any earlier speculation."""
        self.drop()
        ctx = contextvars.copy_context()
        ctx.run(model_priority.set, Priority.SPECULATIVE)
        self._task = self._tasks.create(
            self._stt().transcribe(turn_audio, INPUT_SAMPLE_RATE),
            "speculative-stt",
            context=ctx,
            expected_failures=True,
        )

    async def unfinished(self, history: list[Message]) -> str | None:
        """The user has been silent ``silence_ms``: why do their words sound unfinished (None:
        they sound finished, or there is nothing to judge them by)? Waits for this
        speculation, which now has someone waiting for it. The caller reads no more audio
        meanwhile, so the verdict is the same in real time and in a burst (where each such
        pause costs a transcription's time)."""
        task = self._task
        if task is None:
            return None  # silence alone decides
        self._promote()
        await asyncio.wait([task], timeout=JUDGE_TIMEOUT_S)
        if not task.done() or task.cancelled() or task.exception() is not None:
            return None
        return unfinished_reason(task.result().text, history)

    def drop(self) -> None:
        """The user spoke again, or the turn went away: that transcript is stale."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def hand_over(self) -> asyncio.Task[Transcript] | None:
        """The turn ended at the pause: its transcript is wanted now, not speculatively."""
        task, self._task = self._task, None
        if task is not None:
            self._promote()
        return task
