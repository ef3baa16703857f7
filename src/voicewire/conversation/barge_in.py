"""Barge-in: the user takes the floor, the reply stops, the history keeps what was heard.

A part of :class:`~voicewire.conversation.core.Conversation` (its base class), kept apart so
the core reads in one sitting. While a reply is being made, or is still playing at a client
that reports its playout, speech held for ``interrupt_min_speech_ms`` (or an ``interrupt``
from the client) stops it: the turn's task is cancelled and the history is cut to what was
heard, by the client's ``playback`` report, or else all audio sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from voicewire.conversation.replies import Replies, ReplyLog, truncate_messages
from voicewire.protocol import Ack, ReplyHeard, ServerFrame, UtteranceInterrupted
from voicewire.session import Session

if TYPE_CHECKING:
    from voicewire.conversation.core import ConversationConfig, Deps
    from voicewire.pipeline.turn_types import TurnRequest


class BargeIn:
    # the conversation's state this part reads and writes (set in Conversation.__init__)
    session: Session
    deps: Deps
    cfg: ConversationConfig
    reports_playback: bool
    _replies: Replies
    _running: tuple[TurnRequest, asyncio.Task[str]] | None
    _interrupted: dict[str, str]
    _took_floor: bool
    _held_back: tuple[bytes, float] | None
    send: Callable[[ServerFrame], Awaitable[None]]

    async def interrupt(self, ref: str | None) -> None:
        """The client says the user takes the floor: stop the reply being made or played."""
        await self.send(Ack(request="interrupt", ref=ref))
        await self._interrupt("client")

    async def playback(self, uid: str, played_ms: float, done: bool) -> None:
        """The client's playout of a reply: the history keeps only what was heard."""
        self.reports_playback = True
        reply = self._replies.get(uid)
        if reply is None:
            return  # too old, or never a reply of ours: nothing to correct
        if done:
            reply.started_at = None  # played out: no longer "speaking" for barge-in
            if played_ms >= reply.sent_ms - 1:
                return
        await self._remember_heard(uid, reply, min(played_ms, reply.sent_ms))

    def _speech_floor(self) -> float:
        cfg = self.cfg
        return self._replies.speech_floor(
            time.perf_counter(), cfg.vad_energy_floor, cfg.echo_energy_floor, cfg.echo_level_ratio
        )

    def _reply_active(self) -> bool:
        return self._running is not None or bool(self._still_playing())

    def _still_playing(self) -> list[tuple[str, ReplyLog]]:
        """Finished replies the client is still playing. Only for a client that reports its
        playout: for others, an utterance ends at ``utterance_complete`` (protocol 1.0)."""
        return self._replies.playing(time.perf_counter()) if self.reports_playback else []

    async def _interrupt(self, why: str) -> None:
        self._took_floor = True  # this speech took the floor: it will be a turn
        if self._running is not None:
            request, task = self._running
            uid = request.record.id
            if uid not in self._interrupted and not task.done():
                self._interrupted[uid] = why
                task.cancel()  # reported by the worker once the turn has unwound
                reply = self._replies.get(uid)
                if why == "speech" and request.audio and (reply is None or not reply.sent_ms):
                    # the user paused, then went on before the agent said a word: one turn
                    self._held_back = (request.audio, time.perf_counter())
        # a reply that was sent in full but still plays: stop the client, trim the history
        now = time.perf_counter()
        for uid, reply in self._still_playing():
            if uid in self._interrupted:
                continue
            played = max(0.0, (now - (reply.started_at or now)) * 1000)
            await self._stopped(uid, why, reply, min(played, reply.sent_ms))

    async def _stopped(self, uid: str, why: str, reply: ReplyLog, played_ms: float) -> None:
        """A reply sent in full, cut at the client by an interruption."""
        self.deps.count("interruptions", why)
        reply.started_at = None
        sent = reply.sent_ms
        await self.send(UtteranceInterrupted(utterance_id=uid, reason=why, sent_ms=sent))  # type: ignore[arg-type]
        heard = reply.heard_ms if reply.heard_ms is not None else played_ms  # a report came first
        await self._remember_heard(uid, reply, heard)

    async def _remember_heard(self, uid: str, reply: ReplyLog, played_ms: float) -> None:
        """Cut this reply's history to what was heard by ``played_ms`` and say so."""
        reply.heard_ms = played_ms
        if reply.messages is None:  # the turn as it was made, before any cut
            reply.messages = self.session.turn_messages(uid)
        if reply.messages is None:
            return  # not in the history yet: applied when the turn is (``_report``)
        heard = reply.heard_text(played_ms)
        record = self.session.utterances.get(uid)
        if record is not None:
            record.heard = heard
        self.session.replace_turn(uid, truncate_messages(reply.messages, heard))
        await self.send(ReplyHeard(utterance_id=uid, played_ms=round(played_ms, 1), text=heard))
