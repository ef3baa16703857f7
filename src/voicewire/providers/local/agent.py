"""The offline default "LLM": a deterministic rule-based agent behind the real LLM interface.

No language model small enough to ship on PyPI can hold a conversation, so the offline default
is honest about what it is: rules in tables, a reply streamed token by token through the same
``LLM.stream`` interface a real model uses, and real tool calls (``routing.py`` decides which)
whose results it then puts into words. ``/health`` and ``init`` name it ``local:rules-agent``.
Swap in a real LLM by configuration.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from voicewire.providers.base import (
    LLMEvent,
    Message,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
    Usage,
    UsageReport,
)
from voicewire.providers.local.follow_ups import say_number as _n
from voicewire.providers.local.routing import plan

_TOKEN = re.compile(r"\S+\s*")


@dataclass(frozen=True, slots=True)
class Rule:
    """When ``pattern`` matches the user's words, answer with ``reply`` (text or a function)."""

    name: str
    pattern: re.Pattern[str]
    reply: str | Callable[[re.Match[str], datetime], str]


def _rule(name: str, pattern: str, reply: str | Callable[[re.Match[str], datetime], str]) -> Rule:
    return Rule(name, re.compile(pattern, re.IGNORECASE), reply)


def _time(_: re.Match[str], now: datetime) -> str:
    return f"It's {now.strftime('%-I:%M %p')} here. Anything else?"


def _date(_: re.Match[str], now: datetime) -> str:
    return f"Today is {now.strftime('%A, %B %-d, %Y')}. Anything else?"


# First match wins: put the specific rules before the general ones.
SMALL_TALK: tuple[Rule, ...] = (
    _rule("time", r"\bwhat(?:'s| is)? (?:the )?time\b|\btime is it\b", _time),
    _rule("date", r"\bwhat(?:'s| is)? (?:the |today's )?date\b|\bwhat day is it\b", _date),
    _rule(
        "how_are_you",
        r"\bhow are (?:you|u)\b|\bhow(?:'s| is) it going\b",
        "I'm doing well, thanks for asking. Everything here runs offline on this machine.",
    ),
    _rule(
        "identity",
        r"\bwho are you\b|\bwhat(?:'s| is) your name\b|\bare you (?:a |an )?(?:robot|ai|human)\b",
        "I'm the voicewire offline agent. I run entirely on this machine, "
        "with no cloud model behind me.",
    ),
    _rule(
        "capabilities",
        r"\bwhat can you do\b|\bhelp me\b|\bwhat do you do\b|^help\b",
        "I can draw charts from numbers you tell me, read the sentiment of a text, "
        "and check this server's CPU, memory or sessions, or a simulated stock price.",
    ),
    _rule(
        "joke",
        r"\b(?:tell|know) (?:me )?(?:a |an |any |the |that |another )?jokes?\b|\bmake me laugh\b",
        "Why do programmers prefer dark mode? Because light attracts bugs.",
    ),
    _rule("thanks", r"\bthanks?\b|\bthank you\b", "You're welcome! What else can I do for you?"),
    _rule("goodbye", r"\b(?:good ?bye|bye|see you|farewell)\b", "Goodbye! Talk to you soon."),
    _rule(
        "greeting",
        r"^\W*(?:hello|hi|hey|hiya|howdy|greetings|good (?:morning|afternoon|evening))\b",
        "Hello! I'm the voicewire offline agent. How can I help you today?",
    ),
)

FALLBACK = (
    "Sorry, I can't answer that yet. "
    'You said: "{text}". I\'m a simple offline agent; '
    "plug in a language model by configuration and I can do much more."
)


def reply_for(text: str, now: datetime | None = None) -> tuple[str, str]:
    """Return (rule name, reply) for what the user said."""
    now = now or datetime.now()
    for rule in SMALL_TALK:
        match = rule.pattern.search(text)
        if match:
            reply = rule.reply if isinstance(rule.reply, str) else rule.reply(match, now)
            return rule.name, reply
    return "fallback", FALLBACK.format(text=text.strip().rstrip(".?!"))


def split_turn(messages: list[Message]) -> tuple[list[Message], str, list[Message]]:
    """(history before the last user message, its text, this turn's tool steps after it)."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            return messages[:i], m["content"], messages[i + 1 :]
    return messages, "", []


def tool_results(steps: list[Message]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, arguments, result or {"error": ...}) for each call of this turn, in call order."""
    results = {m["tool_call_id"]: m["content"] for m in steps if m.get("role") == "tool"}
    out = []
    for message in steps:
        for call in message.get("tool_calls") or []:
            fn = call["function"]
            content = results.get(call["id"], '{"error": "no result"}')
            try:
                result = json.loads(content)
            except ValueError:
                result = {"error": content}
            out.append((fn["name"], json.loads(fn["arguments"]), result))
    return out


def unspoken(steps: list[Message]) -> list[Message]:
    """This turn's tool steps since the agent last spoke: each result is put into words once
    (a fetched series is spoken about, then charted, then only the chart is described). The
    message that spoke also holds the calls made after its words, so it stays in."""
    for i in range(len(steps) - 1, -1, -1):
        if steps[i].get("role") == "assistant" and steps[i].get("content"):
            return steps[i:]
    return steps


def series_title(result: dict[str, Any]) -> str:
    """A fetched series' chart title in sentence case: "Temperature in Berlin, last week"."""
    span = {"week": ", last week", "month": ", last month"}.get(result.get("period") or "", "")
    if result.get("metric") == "stock":
        return f"{result.get('symbol')} stock price{span}"
    if result.get("location"):
        return f"Temperature in {result['location']}{span}"
    return f"{str(result.get('metric', '')).capitalize()}{span}"


# ----------------------------------------------------------------------------- replies


def _realtime_sentence(r: dict[str, Any]) -> str:
    metric, value = r.get("metric"), r.get("value")
    sentences = {
        "cpu": lambda: f"CPU usage on this server is {_n(value)} percent.",
        "memory": lambda: (
            f"Memory use is {_n(value)} percent, "
            f"{_n(r.get('used_mb'))} of {_n(r.get('total_mb'))} megabytes."
        ),
        "disk": lambda: (
            f"The disk is {_n(value)} percent full, "
            f"{_n(r.get('used_gb'))} of {_n(r.get('total_gb'))} gigabytes."
        ),
        "network": lambda: (
            f"This host has sent {_n(r.get('sent_mb'))} and received "
            f"{_n(r.get('received_mb'))} megabytes."
        ),
        "sessions": lambda: (
            f"There {'is' if value == 1 else 'are'} {_n(value)} connected "
            f"session{'' if value == 1 else 's'}, and {_n(r.get('turns', 0))} turns so far."
        ),
        "latency": lambda: (
            "No turns have been timed yet."
            if value is None
            else f"The median time to first audio is {_n(value)} milliseconds."
        ),
        "stock": lambda: (
            f"The simulated price of {r.get('symbol')} is {_n(value)} dollars. "
            "That is simulated data, not a real quote."
        ),
        "temperature": lambda: (
            f"The simulated temperature in {r.get('location')} is "
            f"{_n(value)} degrees Celsius. That is simulated data, not a real reading."
        ),
    }
    make = sentences.get(str(metric))
    return make() if make else f"The {metric} reading is {_n(value)}."


def _mid_sentence(title: str) -> str:
    """A sentence-case title inside a sentence: "Sales" -> "sales"; "AAPL stock" stays."""
    first = title.split(" ", 1)[0]
    return title[:1].lower() + title[1:] if first[1:2].islower() else title


def _reply_sentence(name: str, args: dict[str, Any], result: dict[str, Any]) -> str:
    if "error" in result and len(result) == 1:
        what = {"generate_chart": "draw that chart", "analyze_sentiment": "score that text"}
        return f"Sorry, I couldn't {what.get(name, 'get that')}: {result['error']}."
    if name == "generate_chart":
        title = f" of {_mid_sentence(result['title'])}" if result.get("title") else ""
        return f"Here's the {result['chart_type']} chart{title}. {result['summary']}"
    if name == "analyze_sentiment":
        return (
            f"That sounds {result['label']}, with a compound score of "
            f"{result['compound']:+.2f} on a scale from minus one to one."
        )
    return _realtime_sentence(result)


NEED_DATA = (
    "Sure, what should I chart? Tell me labels and values, "
    "for example: January 120, February 150, March 90."
)


# ----------------------------------------------------------------------------- the agent


class RulesAgent:
    """Deterministic offline agent: routes requests to tools, speaks from their results."""

    name = "local:rules-agent"

    def __init__(self) -> None:
        self._ids = 0

    def _call(self, name: str, args: dict[str, Any]) -> ToolCallRequest:
        self._ids += 1
        return ToolCallRequest(f"call_{self._ids}", name, args)

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[LLMEvent]:
        start = time.thread_time()
        history, text, steps = split_turn(messages)
        offered = {t.name for t in tools}
        route = plan(text, history)
        calls: list[ToolCallRequest] = []
        if not steps:  # first step: decide what to call
            if route.calls and all(name in offered for name, _ in route.calls):
                calls = [self._call(name, args) for name, args in route.calls]
                reply = ""
            elif route.answer:
                reply = route.answer
            elif route.need_data:
                reply = NEED_DATA
            else:
                reply = reply_for(text)[1]
        else:  # tools have answered: speak from their results, or chart fetched data
            done = tool_results(unspoken(steps))
            reply = " ".join(_reply_sentence(*d) for d in done)
            charted = any(name == "generate_chart" for name, _, _ in done)
            fetched = next((r for _, _, r in done if "series" in r), None)
            if route.chart_after and not charted and fetched and "generate_chart" in offered:
                chart = {
                    "chart_type": route.chart_after,
                    "title": series_title(fetched),
                    **fetched["series"],
                }
                calls = [self._call("generate_chart", chart)]
        tokens = _TOKEN.findall(reply)
        for token in tokens:
            yield TextDelta(token)
        for call in calls:
            yield call
        prompt_words = sum(len(str(m.get("content") or "").split()) for m in messages)
        yield UsageReport(
            Usage(
                input_tokens=prompt_words,
                output_tokens=len(tokens) + 10 * len(calls),
                cpu_seconds=time.thread_time() - start,
            )
        )
