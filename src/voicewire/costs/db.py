"""Where the ledger lives: SQLite (default: a file in the data directory, safe for several
workers on one machine) or PostgreSQL (``VOICEWIRE_LEDGER_URL=postgresql://...``, for workers
on many machines), behind the few things the ledger needs from a database.

The schema changes only through numbered migrations, below, one list per engine; a database
records the version it is at (table ``schema_version``). The server applies what is missing at
start, under a lock (several workers start at once); ``voicewire migrate`` does it as a
deployment step. SQL is written once with ``?`` marks; PostgreSQL's driver gets ``%s``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voicewire.providers import ConfigError

_ENTRIES = """
CREATE TABLE IF NOT EXISTS entries (
    id {id},
    ts {real} NOT NULL,
    session_id TEXT NOT NULL,
    utterance_id TEXT NOT NULL,
    component TEXT NOT NULL,          -- stt | llm | tts | tools
    provider TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    characters BIGINT NOT NULL,
    audio_seconds {real} NOT NULL,
    cpu_seconds {real} NOT NULL,
    tool_calls BIGINT NOT NULL,
    cost_usd {money} NOT NULL         -- exact
);
CREATE INDEX IF NOT EXISTS entries_session ON entries (session_id);
CREATE INDEX IF NOT EXISTS entries_ts ON entries (ts);
-- retention (costs/retention.py): old sessions' entries, rolled up per UTC day
CREATE TABLE IF NOT EXISTS daily (
    day TEXT NOT NULL,
    component TEXT NOT NULL,
    provider TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    characters BIGINT NOT NULL,
    audio_seconds {real} NOT NULL,
    cpu_seconds {real} NOT NULL,
    tool_calls BIGINT NOT NULL,
    cost_usd {money} NOT NULL,
    PRIMARY KEY (day, component, provider)
);
CREATE TABLE IF NOT EXISTS daily_sessions (
    day TEXT PRIMARY KEY,
    sessions BIGINT NOT NULL,
    turns BIGINT NOT NULL,
    minutes {money} NOT NULL          -- conversation minutes, exact
);
"""

# (version, SQL): append, never edit one that has shipped
MIGRATIONS: dict[str, list[tuple[int, str]]] = {
    "sqlite": [
        (1, _ENTRIES.format(id="INTEGER PRIMARY KEY", real="REAL", money="TEXT")),
    ],
    "postgresql": [
        (1, _ENTRIES.format(id="BIGSERIAL PRIMARY KEY", real="DOUBLE PRECISION", money="NUMERIC")),
    ],
}
LOCK_ID = 0x766F6963  # PostgreSQL advisory lock held while migrating ("voic")


class Database:
    """One engine: connections, its SQL dialect, transactions and migrations."""

    kind: str

    def connect(self) -> Any:
        raise NotImplementedError

    def sql(self, query: str) -> str:
        return query

    @contextlib.contextmanager
    def transaction(self, db: Any) -> Iterator[None]:
        raise NotImplementedError
        yield

    def describe(self) -> str:
        raise NotImplementedError

    def version(self, db: Any) -> int:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> tuple[int, int]:
        """Apply the migrations this database lacks; (version before, version now)."""
        db = self.connect()
        try:
            with self.transaction(db):
                self._lock(db)
                before = self.version(db)
                now = before
                for version, script in MIGRATIONS[self.kind]:
                    if version > before:
                        self._script(db, script)
                        db.execute(self.sql("INSERT INTO schema_version VALUES (?)"), (version,))
                        now = version
            return before, now
        finally:
            db.close()

    def _lock(self, db: Any) -> None:
        pass

    def _script(self, db: Any, script: str) -> None:
        """Run a migration's statements one by one (no ``;`` inside a statement or comment)."""
        code = "\n".join(line.split("--")[0] for line in script.splitlines())
        for statement in code.split(";"):
            if statement.strip():
                db.execute(statement)


_BUSY_TIMEOUT_S = 30.0


def _use_wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode (once per file: the mode is stored in it).

    Several workers opening a new file at once all try to switch it; SQLite answers "locked" at
    once, without waiting out the busy timeout, to the one whose wait could deadlock (two
    readers both wanting the exclusive lock the switch takes), so that one tries again.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


class SQLiteDatabase(Database):
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # timeout: another worker's write holds the file for a moment
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
        _use_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")  # survives a process crash; fsync per checkpoint
        return db

    @contextlib.contextmanager
    def transaction(self, db: sqlite3.Connection) -> Iterator[None]:
        db.execute("BEGIN IMMEDIATE")  # the write lock now: migrations of two workers queue
        try:
            yield
        except BaseException:
            db.rollback()
            raise
        db.commit()

    def describe(self) -> str:
        return str(self.path)


class PostgresDatabase(Database):
    kind = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigError(
                "VOICEWIRE_LEDGER_URL is PostgreSQL: install voicewire[scale] (psycopg)"
            ) from exc
        try:
            return psycopg.connect(self.url, connect_timeout=10)
        except psycopg.Error as exc:
            raise ConfigError(f"VOICEWIRE_LEDGER_URL: cannot connect ({exc})".strip()) from exc

    def sql(self, query: str) -> str:
        return query.replace("?", "%s")

    @contextlib.contextmanager
    def transaction(self, db: Any) -> Iterator[None]:
        with db.transaction():
            yield

    def _lock(self, db: Any) -> None:
        db.execute(f"SELECT pg_advisory_xact_lock({LOCK_ID})")

    def describe(self) -> str:
        head, sep, tail = self.url.rpartition("@")
        return f"{head.partition('://')[0]}://***@{tail}" if sep else self.url


def open_database(target: str | Path) -> Database:
    """A ``postgresql://`` URL, or a SQLite file's path."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(text)
    if "://" in text:
        raise ConfigError(f"VOICEWIRE_LEDGER_URL: unsupported database {text.split(':')[0]!r}")
    return SQLiteDatabase(Path(text))
