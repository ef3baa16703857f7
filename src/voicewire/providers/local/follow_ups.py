"""Follow-ups on the chart already drawn: edit it, or answer a question about its figures.

People rarely state a chart once: they add the quarter they forgot ("add April, 170"),
correct a figure ("actually food was 450, not 400"), drop one ("take January out") or ask
about it ("which month was the lowest?", "what's the total?"). The chart is in the history
as the arguments of the last ``generate_chart`` call, so the offline agent can do all of this
exactly, with no model: an edit is a new call with the changed series, and a question is
answered from the figures (never guessed). Numbers arrive as digits (``words_to_digits``).
"""

from __future__ import annotations

import re
from statistics import fmean
from typing import Any

NUMBER = r"(?<![A-Za-z\d.])-?\d[\d,]*(?:\.\d+)?"  # not inside "q1" or "mp3"


def to_number(text: str) -> float | int:
    value = float(text.replace(",", ""))
    return int(value) if value.is_integer() else value


def say_number(value: Any) -> str:
    """A figure as the agent says it: 1,900; 2.5; 3.14."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:,.0f}" if isinstance(value, int | float) else str(value)


# one edit per clause: "update March to 95 and add April at 130"
_CLAUSES = re.compile(r"\s*(?:;|\.\s+|\s+and\s+|\s+then\s+|\s+also\s+)\s*", re.I)
_REMOVE = re.compile(
    r"\b(?:remove|drop|delete|take (?:out|off|away)|get rid of|leave out|exclude|without)\b"
    r"|\btake\b.+\b(?:out|off|away)\b",
    re.I,
)
_ADD = re.compile(r"\b(?:add|include|append|plus|insert|put in)\b", re.I)
_NOT = re.compile(r"\bnot\s+$", re.I)  # "food was 450, not 400": 400 is the old figure
# words around a new item that are not its label
_FILLER = {
    "also", "add", "include", "append", "plus", "insert", "put", "in", "please", "at", "of",
    "to", "that", "this", "it", "the", "a", "an", "new", "with", "for", "and", "another",
    "one", "entry", "chart", "graph", "value", "is", "was", "on", "can", "you", "could",
    "now", "then", "let's", "lets", "we", "i", "me", "us", "there",
}  # fmt: skip
_QUESTION = re.compile(r"\?\s*$|^\W*(?:what|which|who|how|where|when|tell me|give me)\b", re.I)
# a superlative is about the chart when it asks "which", or is short ("what's the biggest
# expense?"), not "what's the best way to cook rice?"
_ABOUT_ITEMS = re.compile(r"\bwhich\b|^\W*(?:\S+\s+){0,5}\S+\W*$", re.I)
QUESTIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("total", re.compile(r"\b(?:total|sum|altogether|all together|in all|combined)\b", re.I)),
    ("average", re.compile(r"\b(?:average|mean)\b", re.I)),
    (
        "highest",
        re.compile(r"\b(?:highest|biggest|largest|most|best|top|peak|maximum|greatest)\b", re.I),
    ),
    ("lowest", re.compile(r"\b(?:lowest|smallest|least|worst|minimum|fewest)\b", re.I)),
)


def answer(spoken: str, chart: dict[str, Any]) -> str | None:
    """The answer to a question about the chart's figures, or None if it is not one."""
    if not _QUESTION.search(spoken) or re.search(NUMBER, spoken):
        return None
    values = chart.get("values") or []
    labels = chart.get("labels") or []
    if not values or len(labels) != len(values):
        return None
    for kind, pattern in QUESTIONS:
        if not pattern.search(spoken):
            continue
        if kind in ("highest", "lowest") and not _ABOUT_ITEMS.search(spoken):
            continue
        if kind == "total":
            return f"They add up to {say_number(sum(values))}."
        if kind == "average":
            return f"The average is {say_number(round(fmean(values), 2))}."
        best = max(values) if kind == "highest" else min(values)
        named = [str(label) for label, value in zip(labels, values, strict=True) if value == best]
        who = " and ".join(named)
        return f"{who} {'is' if len(named) == 1 else 'are'} the {kind}, at {say_number(best)}."
    return None


def edit(spoken: str, chart: dict[str, Any], kind: str, refers: bool) -> dict[str, Any] | None:
    """The chart with the edits the request asks for (add, change, remove an item; another
    chart type), or None if it asks for none. ``kind`` is the chart type the request names
    (else the chart's own); ``refers`` whether it points at the chart ("it", "that", ...)."""
    labels = list(chart.get("labels") or [])
    values = list(chart.get("values") or [])
    changed = False
    for clause in _CLAUSES.split(spoken):
        named = _named(clause, labels)
        spans = [span for _, span in named]
        numbers = [
            m
            for m in re.finditer(NUMBER, clause)
            if not any(s <= m.start() < e for s, e in spans)
            and not _NOT.search(clause[: m.start()])
        ]
        if _REMOVE.search(clause) and named and not numbers:
            drop = {i for i, _ in named}
            labels = [x for i, x in enumerate(labels) if i not in drop]
            values = [x for i, x in enumerate(values) if i not in drop]
            changed = True
        elif named and numbers:  # "make February 160", "food was 450", "Q2 to 3.5"
            index, (_, end) = named[0]
            after = [m for m in numbers if m.start() >= end] or numbers
            values[index] = to_number(after[0].group(0))
            changed = True
        elif numbers and _ADD.search(clause):
            label = _new_label(clause, numbers[-1], labels)
            if label:
                labels.append(label)
                values.append(to_number(numbers[-1].group(0)))
                changed = True
    if not changed and not (refers and kind != chart.get("chart_type")):
        return None
    return {**chart, "chart_type": kind, "labels": labels, "values": values}


def _named(clause: str, labels: list[Any]) -> list[tuple[int, tuple[int, int]]]:
    """(index, span) of each of the chart's labels the clause names, in the clause's order."""
    found = []
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            continue
        match = re.search(rf"(?<![\w]){re.escape(label)}(?![\w])", clause, re.I)
        if match:
            found.append((i, match.span()))
    return sorted(found, key=lambda item: item[1][0])


def _new_label(clause: str, value: re.Match[str], labels: list[Any]) -> str:
    """The label of an added item: the words before its figure ("add utilities at 100"),
    else after it ("add 100 for utilities"); styled like the chart's labels."""
    before = re.findall(r"[A-Za-z][\w'&-]*", clause[: value.start()])
    words: list[str] = []
    for word in reversed(before):
        if word.lower() in _FILLER:
            if words:
                break
            continue
        words.insert(0, word)
        if len(words) == 2:
            break
    if not words:
        after = re.findall(r"[A-Za-z][\w'&-]*", clause[value.end() :])
        words = [w for w in after if w.lower() not in _FILLER][:2]
    label = " ".join(words)
    capitalised = [x for x in labels if isinstance(x, str)] and all(
        x[:1].isupper() for x in labels if isinstance(x, str)
    )
    return label[:1].upper() + label[1:] if label and capitalised else label
