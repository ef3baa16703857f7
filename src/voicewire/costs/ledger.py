"""The cost ledger: every provider call's usage and cost, persisted in SQLite.

One writer thread owns the connection. Turns hand it their entries and await the commit before
the client hears ``utterance_complete``, so a completed utterance is never lost to a crash;
entries from many sessions that arrive together share one commit, so the ledger costs the event
loop one thread hand-off per turn, not a disk write. WAL mode: readers (reports, /metrics) do
not block the writer.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from voicewire.providers.base import Usage

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    session_id TEXT NOT NULL,
    utterance_id TEXT NOT NULL,
    component TEXT NOT NULL,          -- stt | llm | tts | tools
    provider TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    characters INTEGER NOT NULL,
    audio_seconds REAL NOT NULL,
    cpu_seconds REAL NOT NULL,
    tool_calls INTEGER NOT NULL,
    cost_usd TEXT NOT NULL             -- exact Decimal as text
);
CREATE INDEX IF NOT EXISTS entries_session ON entries (session_id);
CREATE INDEX IF NOT EXISTS entries_ts ON entries (ts);
-- retention (costs/retention.py): old sessions' entries, rolled up per UTC day
CREATE TABLE IF NOT EXISTS daily (
    day TEXT NOT NULL,
    component TEXT NOT NULL,
    provider TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    characters INTEGER NOT NULL,
    audio_seconds REAL NOT NULL,
    cpu_seconds REAL NOT NULL,
    tool_calls INTEGER NOT NULL,
    cost_usd TEXT NOT NULL,
    PRIMARY KEY (day, component, provider)
);
CREATE TABLE IF NOT EXISTS daily_sessions (
    day TEXT PRIMARY KEY,
    sessions INTEGER NOT NULL,
    turns INTEGER NOT NULL,
    minutes TEXT NOT NULL              -- conversation minutes, exact Decimal as text
);
"""


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


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._write_loop, name="voicewire-ledger", daemon=True
        )
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash; fsync per checkpoint
        return db

    async def record(self, entries: list[Entry]) -> None:
        """Persist ``entries``; returns once they are committed."""
        if not entries:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put((entries, loop, done))
        await done

    def _write_loop(self) -> None:
        db = self._connect()
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
                with db:
                    db.executemany(f"INSERT INTO entries ({_COLUMNS}) VALUES ({_MARKS})", rows)
            except sqlite3.Error as exc:
                error = exc
            for _, loop, done in batch:
                loop.call_soon_threadsafe(_settle, done, error)
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
        with self._connect() as db:
            for row in db.execute(query + " ORDER BY id", args):
                yield Entry.from_row(row)


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
