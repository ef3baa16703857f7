"""Has the user finished, judging by what they said? The semantic half of endpointing.

A fixed silence cannot tell "Show me a bar chart of sales:" + a breath + "January 120, ..."
from a finished request: people pause while listing, and a 300 ms threshold ends the turn in
the middle. When the user pauses, the speculative transcript of the turn so far is already
being made; this module reads it. A turn that stops on a comma, a colon, a conjunction or a
preposition ("... and", "... of"), or that asks a tool for something without the data the tool
needs ("a pie chart of my budget." with no figures yet, "is this email positive or negative?"
with no email yet) is given a longer silence (bounded: ``max_silence_ms``) before it ends;
anything else ends at the usual short one.

Pure functions of the text, so they are tested without audio. A trained end-of-turn model
(Smart Turn) was measured as an alternative and not kept: docs/performance.md, "Hearing".
"""

from __future__ import annotations

import re

from voicewire.providers.base import Message
from voicewire.providers.local.routing import CHART_WORDS, OPINION, SENTIMENT, plan

# Words a finished sentence does not end on (Whisper writes a period after them all the same).
HANGING_WORDS = frozenset(
    """
    and or but nor so because although though while whereas if unless until than then
    of to for with without in on at by from into onto about as like per via versus vs against
    the a an my your our their his her its this that these those some any every each
    is are was were be been being am do does did has have had will would can could should
    um uh er erm hmm
    plus minus including between among
    comparing showing listing containing featuring such namely
    """.split()  # noqa: SIM905 - a list of 80 quoted words would hide what it is
)
_TRAILING = re.compile(r"(?:[,:;\u2013\u2014-]|\.\.\.|\u2026)\s*$")
_LAST_WORD = re.compile(r"([A-Za-z']+)\W*$")
# "... of this email." / "... the following review": the text to judge is still to come
_POINTS_AHEAD = re.compile(
    r"\b(?:this|these|the following|following|my|our)(?:\s+[A-Za-z'-]+){1,2}\s*[.?!]?\s*$", re.I
)
# an opinion of "this ..." with nothing before it to be about: the thing itself comes next
_ASKS_OF_WHAT_FOLLOWS = re.compile(
    rf"\b{OPINION} (?:this|these|the following)(?: [A-Za-z'-]+){{0,2}}\s*[.?!:]?\s*$", re.I
)
_PAIR = re.compile(r"^\s*(?:and\s+)?\d[\d.]*\s+and\s+\d[\d.]*\s*$", re.I)  # "3 and 5"
# ends on a figure ("30", "30th", "1,200."), not on a question mark: a question is done
_ENDS_ON_NUMBER = re.compile(r"\d[\d,.]*(?:%|st|nd|rd|th)?[\s.,;:]*$", re.I)


def _open_list(text: str) -> bool:
    """A list of figures that has not been closed: "January 120, February 150." (people close
    one with "and": "..., and March 90.")."""
    if not _ENDS_ON_NUMBER.search(text):
        return False
    if len(re.findall(r"\d+", text)) < 2 and not CHART_WORDS.search(text):
        return False
    tail = text.rstrip(" .!?")
    items = re.split(r"[,;:]|\.\s", tail)
    last = items[-1]
    if _PAIR.match(last) and (
        any(_PAIR.match(item) for item in items[:-1]) or CHART_WORDS.search(items[0])
    ):
        # x-y pairs said with "and" ("1 and 2, 3 and 5"): that "and" closes nothing
        return not re.match(r"\s*and\b", last, re.I)
    return not re.search(r"\b(and|then)\b", last, re.I)


def unfinished_reason(text: str, history: list[Message] | None = None) -> str | None:
    """Why ``text`` sounds like the speaker has more to say, or None if it sounds finished.

    ``history``: the conversation so far, so "make that a pie chart" after a chart is whole."""
    text = text.strip()
    if not text:
        return None  # nothing heard (noise, a cough): no reason to wait
    if _TRAILING.search(text):
        return "punctuation"
    last = _LAST_WORD.search(text)
    if last and last.group(1).lower() in HANGING_WORDS:
        return "last word"
    if _open_list(text):
        return "list"
    if _ASKS_OF_WHAT_FOLLOWS.search(text) and not any(m.get("tool_calls") for m in history or []):
        return "missing data"
    planned = plan(text, history or [])
    sentiment = SENTIMENT.search(text)
    if planned.need_data or (sentiment and (not planned.calls or _POINTS_AHEAD.search(text))):
        return "missing data"
    return None
