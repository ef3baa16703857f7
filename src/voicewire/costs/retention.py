"""Ledger retention: old sessions rolled up into daily per-component totals, then deleted.

``VOICEWIRE_LEDGER_RETENTION_DAYS`` keeps every entry of the last N days; a session whose last
entry is older is folded, whole, into per-day rows (usage and cost per component and provider;
sessions, turns and conversation minutes per day) and its entries are deleted, in one
transaction. Whole sessions, so that a report over the rolled-up days adds up to exactly what
it said before (turns are distinct utterances and a session's minutes are its span: neither
can be split across a cut). What is lost is detail: which session spent what, and the minute
by minute series of those days (they count at the start of their day).
"""

from __future__ import annotations

import calendar
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from voicewire.costs.db import Database
from voicewire.providers.base import Usage

_USAGE = ("input_tokens", "cached_tokens", "output_tokens", "characters", "audio_seconds",
          "cpu_seconds")  # fmt: skip
MIN_SESSION_S = 60.0  # as the report counts a session's minutes (costs/analysis.py)


@dataclass
class Day:
    """One UTC day's rolled-up totals."""

    day: str  # YYYY-MM-DD
    sessions: int = 0
    turns: int = 0
    minutes: Decimal = Decimal(0)
    # (component, provider) -> (usage, tool calls, cost)
    parts: dict[tuple[str, str], tuple[Usage, int, Decimal]] = field(default_factory=dict)

    @property
    def start_ts(self) -> float:
        return float(calendar.timegm(time.strptime(self.day, "%Y-%m-%d")))


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def roll_up(database: Database, older_than_ts: float) -> int:
    """Fold every session whose last entry is before ``older_than_ts``; return how many."""
    db = database.connect()
    q = database.sql
    try:
        with database.transaction(db):
            old = [
                row[0]
                for row in db.execute(
                    q("SELECT session_id FROM entries GROUP BY session_id HAVING MAX(ts) < ?"),
                    (older_than_ts,),
                )
            ]
            if not old:
                return 0
            marks = ",".join("?" for _ in old)
            rows = db.execute(
                q(
                    f"SELECT session_id, utterance_id, ts, component, provider, "
                    f"{', '.join(_USAGE)}, tool_calls, cost_usd FROM entries "
                    f"WHERE session_id IN ({marks})"
                ),
                old,
            ).fetchall()
            days: dict[str, Day] = {}
            spans: dict[str, list[float]] = {}
            turns: dict[str, set[str]] = defaultdict(set)
            for sid, uid, ts, component, provider, *rest in rows:
                day = days.setdefault(_day(ts), Day(_day(ts)))
                usage, calls, cost = day.parts.get((component, provider), (Usage(), 0, Decimal(0)))
                for name, value in zip(_USAGE, rest[:6], strict=True):
                    setattr(usage, name, getattr(usage, name) + value)
                day.parts[(component, provider)] = (usage, calls + rest[6], cost + Decimal(rest[7]))
                span = spans.setdefault(sid, [ts, ts])
                span[0], span[1] = min(span[0], ts), max(span[1], ts)
                turns[sid].add(uid)
            for sid, (first, last) in spans.items():  # a session counts on the day it ended
                day = days.setdefault(_day(last), Day(_day(last)))
                day.sessions += 1
                day.turns += len(turns[sid])
                day.minutes += Decimal(str(max(MIN_SESSION_S, last - first))) / 60
            for day in days.values():
                _add(db, q, day)
            db.execute(q(f"DELETE FROM entries WHERE session_id IN ({marks})"), old)
        return len(old)
    finally:
        db.close()


def _add(db: Any, q: Any, day: Day) -> None:
    """Add a day's totals to what earlier rollups stored for it (read, delete, insert: the
    same SQL on every engine)."""
    for (component, provider), (usage, calls, cost) in day.parts.items():
        key = (day.day, component, provider)
        where = "WHERE day = ? AND component = ? AND provider = ?"
        row = db.execute(
            q(f"SELECT {', '.join(_USAGE)}, tool_calls, cost_usd FROM daily {where}"), key
        ).fetchone()
        values = [getattr(usage, name) for name in _USAGE]
        if row is not None:
            values = [a + b for a, b in zip(values, row[:6], strict=True)]
            calls, cost = calls + row[6], cost + Decimal(row[7])
            db.execute(q(f"DELETE FROM daily {where}"), key)
        db.execute(
            q(
                f"INSERT INTO daily (day, component, provider, {', '.join(_USAGE)}, "
                "tool_calls, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (*key, *values, calls, str(cost)),
        )
    if day.sessions:
        row = db.execute(
            q("SELECT sessions, turns, minutes FROM daily_sessions WHERE day = ?"), (day.day,)
        ).fetchone()
        sessions, turns, minutes = day.sessions, day.turns, day.minutes
        if row is not None:
            sessions, turns, minutes = sessions + row[0], turns + row[1], minutes + Decimal(row[2])
            db.execute(q("DELETE FROM daily_sessions WHERE day = ?"), (day.day,))
        db.execute(
            q("INSERT INTO daily_sessions (day, sessions, turns, minutes) VALUES (?, ?, ?, ?)"),
            (day.day, sessions, turns, str(minutes)),
        )


def rolled_days(database: Database) -> list[Day]:
    """What earlier rollups stored, per day."""
    days: dict[str, Day] = {}
    db = database.connect()
    try:
        for day_, component, provider, *rest in db.execute(
            f"SELECT day, component, provider, {', '.join(_USAGE)}, tool_calls, cost_usd "
            "FROM daily ORDER BY day"
        ):
            usage = Usage(*rest[:6])
            days.setdefault(day_, Day(day_)).parts[(component, provider)] = (
                usage,
                rest[6],
                Decimal(rest[7]),
            )
        for day_, sessions, turns, minutes in db.execute(
            "SELECT day, sessions, turns, minutes FROM daily_sessions"
        ):
            day = days.setdefault(day_, Day(day_))
            day.sessions, day.turns, day.minutes = sessions, turns, Decimal(minutes)
    finally:
        db.close()
    return sorted(days.values(), key=lambda d: d.day)
