"""The embedded agent with a language model behind it: rules first, the model for the rest.

The rules agent answers at once what it recognises with confidence (a tool request it can
route, small talk it has a line for) and always speaks from tool results (its sentences say
the figures exactly). Everything else goes to the model: open questions, follow-ups the
rules cannot parse, requests misheard past the rules' healing. ``handled`` counts which path
answered each turn (``/metrics``). A model that fails before it says anything (its output
cut off mid-call, an error) hands the turn back to the rules: the user hears the rules'
answer, never silence.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator

from voicewire.providers.base import LLM, LLMEvent, Message, ProviderError, ToolSpec
from voicewire.providers.local.agent import RulesAgent, reply_for, split_turn
from voicewire.providers.local.routing import plan

log = logging.getLogger(__name__)


class HybridLLM:
    def __init__(self, rules: RulesAgent, model: LLM) -> None:
        self.rules = rules
        self.model = model
        self.name = f"local:rules-agent+{model.name.removeprefix('local:')}"
        self.handled: Counter[str] = Counter()

    def route(self, messages: list[Message], tools: list[ToolSpec]) -> str:
        """ "rules" or "model", for this step."""
        history, text, steps = split_turn(messages)
        if steps:
            return "rules"  # tools have answered: the rules say their figures exactly
        offered = {t.name for t in tools}
        route = plan(text, history)
        calls = route.calls
        if calls and all(name in offered for name, _ in calls):
            return "rules"
        if route.need_data or route.answer:
            return "rules"  # nothing to draw (ask for figures), or the chart's figures answer it
        if not calls and reply_for(text)[0] != "fallback":
            return "rules"  # small talk the rules have a line for
        return "model"

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[LLMEvent]:
        path = self.route(messages, tools)
        if not split_turn(messages)[2]:  # count turns, not their tool steps
            self.handled[path] += 1
        if path == "rules":
            async for event in self.rules.stream(messages, tools):
                yield event
            return
        said = False
        try:
            async for event in self.model.stream(messages, tools):
                said = True
                yield event
        except ProviderError as e:
            if said:
                raise
            log.warning("%s; the rules answer instead", e)
            self.handled["model_failed"] += 1
            async for event in self.rules.stream(messages, tools):
                yield event
