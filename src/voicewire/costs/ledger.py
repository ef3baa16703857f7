"""The cost ledger: every provider call's usage and cost, persisted in SQLite or PostgreSQL
(``costs/db.py``).

One writer thread owns the connection. Turns hand it their entries and await the commit before
the client hears ``utterance_complete``, so a completed utterance is never lost to a crash;
entries from many sessions that arrive together share one commit, so the ledger costs the event
loop one thread hand-off per turn, not a disk write or a round trip. SQLite in WAL mode: readers
(reports, /metrics) do not block the writer. A PostgreSQL connection that breaks is opened again
for the next batch (the batch that met the break fails, and is logged by the accountant).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from voicewire.costs.db import Database, open_database
from voicewire.providers.base import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    ts: float
    session_id: str
    utterance_id: str
    component: str
    provider: str
    usage: Usage = field(default_factory=Usage)
    tool_calls: int = 0
    cost_usd: Decimal = Decimal(0)

    def row(self) -> tuple[object, ...]:
        u = self.usage
        return (self.ts, self.session_id, self.utterance_id, self.component, self.provider,
                u.input_tokens, u.cached_tokens, u.output_tokens, u.characters,
                u.audio_seconds, u.cpu_seconds, self.tool_calls, str(self.cost_usd))  # fmt: skip

    @classmethod
    def from_row(cls, row: tuple[object, ...]) -> Entry:
        usage = Usage(*row[5:11])  # type: ignore[arg-type]
        return cls(*row[:5], usage=usage, tool_calls=row[11], cost_usd=Decimal(row[12]))  # type: ignore[arg-type]


_Batch = tuple[list[Entry], asyncio.AbstractEventLoop, asyncio.Future[None]]


def ledger_target(settings: Any) -> str | Path:
    """``VOICEWIRE_LEDGER_URL``, else ``ledger.sqlite3`` in the data directory."""
    if settings.ledger_url is not None:
        return str(settings.ledger_url.get_secret_value())
    return Path(settings.data_dir) / "ledger.sqlite3"


class Ledger:
    def __init__(self, target: Database | Path | str) -> None:
        self.db = target if isinstance(target, Database) else open_database(target)
        before, now = self.db.migrate()
        if now != before:
            log.info("ledger %s: schema %d -> %d", self.db.describe(), before, now)
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._write_loop, name="voicewire-ledger", daemon=True
        )
        self._thread.start()

    @property
    def path(self) -> str:
        """Where it is, for people (a PostgreSQL URL without its password)."""
        return self.db.describe()

    async def record(self, entries: list[Entry]) -> None:
        """Persist ``entries``; returns once they are committed."""
        if not entries:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put((entries, loop, done))
        await done

    def _write_loop(self) -> None:
        db: Any = None
        insert = self.db.sql(f"INSERT INTO entries ({_COLUMNS}) VALUES ({_MARKS})")
        while (first := self._queue.get()) is not None:
            batch = [first]
            while True:  # everything already waiting shares this commit
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            rows = [e.row() for entries, _, _ in batch for e in entries]
            error: Exception | None = None
            try:
                db = db or self.db.connect()
                with self.db.transaction(db):
                    db.cursor().executemany(insert, rows)
            except Exception as exc:  # the next batch opens a new connection
                error = exc
                with contextlib.suppress(Exception):
                    db.close()
                db = None
            for _, loop, done in batch:
                loop.call_soon_threadsafe(_settle, done, error)
        if db is not None:
            db.close()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ reading

    def entries(self, session_id: str | None = None, since: float | None = None) -> Iterator[Entry]:
        query = f"SELECT {_COLUMNS} FROM entries"
        clauses, args = [], []
        if session_id is not None:
            clauses.append("session_id = ?")
            args.append(session_id)
        if since is not None:
            clauses.append("ts >= ?")
            args.append(since)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        db = self.db.connect()
        try:
            for row in db.execute(self.db.sql(query + " ORDER BY id"), args):
                yield Entry.from_row(row)
        finally:
            db.close()


_COLUMNS = (
    "ts, session_id, utterance_id, component, provider, input_tokens, cached_tokens, "
    "output_tokens, characters, audio_seconds, cpu_seconds, tool_calls, cost_usd"
)
_MARKS = ", ".join("?" for _ in _COLUMNS.split(","))


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
