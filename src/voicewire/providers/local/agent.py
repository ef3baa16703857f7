"""The offline default "LLM": a deterministic rule-based agent behind the real LLM interface.

No language model small enough to ship on PyPI can hold a conversation, so the offline default
is honest about what it is: rules in one table, a reply streamed token by token through the same
``LLM.stream`` interface (and tool-call events) a real model uses. ``/health`` and ``init`` name
it ``local:rules-agent``. Swap in a real LLM by configuration.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime

from voicewire.providers.base import LLMEvent, Message, TextDelta, ToolSpec, Usage, UsageReport

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
        "I can chat and tell you the time or the date. "
        "Connect a real language model in the settings and I can do much more.",
    ),
    _rule(
        "joke",
        r"\b(?:tell|know) (?:me )?(?:a |any )?jokes?\b|\bmake me laugh\b",
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


def last_user_text(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""


class RulesAgent:
    """Deterministic offline agent; streams its reply one token at a time."""

    name = "local:rules-agent"

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[LLMEvent]:
        start = time.process_time()
        _, reply = reply_for(last_user_text(messages))
        tokens = _TOKEN.findall(reply)
        for token in tokens:
            yield TextDelta(token)
        prompt_words = sum(len(str(m.get("content") or "").split()) for m in messages)
        yield UsageReport(
            Usage(
                input_tokens=prompt_words,
                output_tokens=len(tokens),
                cpu_seconds=time.process_time() - start,
            )
        )
