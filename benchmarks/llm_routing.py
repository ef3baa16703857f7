"""The embedded agent's first step on the routing sets: which tool calls each request gets,
how fast, and what it says to questions no tool answers (issue 16).

    python -m benchmarks.llm_routing                       # the rules agent alone
    python -m benchmarks.llm_routing --llm smollm2-135m    # rules first, the model for the rest
    python -m benchmarks.llm_routing --llm smollm2-135m --model-only
    python -m benchmarks.llm_routing --llm /path/model.gguf --tool-calls off   # plain replies

Sets: the routing tuning set and both held-out sets of ``routing_accuracy.py``, and
``llm_set.py`` (written before any tuning of the model path). A request passes when its calls
match (``routing_accuracy.calls_match``); one that expects no call passes when it gets none
(its words are printed for ``OPEN``, to be read). Time to first token: from the request to
the first text or call the agent yields.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from benchmarks.latency_embedded import save_report
from benchmarks.llm_set import FOLLOW_UPS, FOLLOW_UPS_2, MISHEARD, MISHEARD_2, OPEN
from benchmarks.routing_accuracy import CASES, HELD_OUT, HELD_OUT_2, Case, calls_match, says_match
from voicewire.metrics import percentile
from voicewire.providers.base import LLM, TextDelta, ToolCallRequest
from voicewire.providers.local.agent import RulesAgent
from voicewire.tools import default_tools

SETS = {
    "routing tuning": CASES,
    "routing held-out": HELD_OUT,
    "routing held-out 2": HELD_OUT_2,
    "llm misheard": MISHEARD,
    "llm misheard 2": MISHEARD_2,
    "llm follow-ups": FOLLOW_UPS,
    "llm follow-ups 2": FOLLOW_UPS_2,
    "llm open": OPEN,
}


def agent(llm: str | None, model_only: bool, tool_calls: bool | None = None) -> LLM:
    if llm is None:
        return RulesAgent()
    from voicewire.providers.local.gguf import GGUFLLM, MODELS, GGUFModel
    from voicewire.providers.local.hybrid import HybridLLM

    chosen = MODELS.get(llm) or GGUFModel.user_file(Path(llm))
    if tool_calls is not None:
        chosen = replace(chosen, tool_calls=tool_calls)
    model = GGUFLLM(chosen)
    model.warm(default_tools(dict).specs())
    return model if model_only else HybridLLM(RulesAgent(), model)


async def first_step(llm: LLM, case: Case) -> dict[str, Any]:
    specs = default_tools(dict).specs()
    start = time.perf_counter()
    first: float | None = None
    calls: list[tuple[str, dict[str, Any]]] = []
    text: list[str] = []
    async for event in llm.stream([*case.history, {"role": "user", "content": case.text}], specs):
        if isinstance(event, TextDelta | ToolCallRequest) and first is None:
            first = (time.perf_counter() - start) * 1000
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ToolCallRequest):
            calls.append((event.name, event.arguments))
    return {
        "text": case.text,
        "passed": calls_match(calls, case) and says_match("".join(text), case),
        "calls": calls,
        "said": "".join(text),
        "first_token_ms": round(first, 1) if first is not None else None,
        "total_ms": round((time.perf_counter() - start) * 1000, 1),
    }


async def run(llm: LLM) -> dict[str, list[dict[str, Any]]]:
    return {name: [await first_step(llm, c) for c in cases] for name, cases in SETS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--llm", help="a shipped GGUF model's name, or the path of a .gguf file")
    parser.add_argument("--model-only", action="store_true", help="the model without the rules")
    parser.add_argument(
        "--tool-calls",
        choices=["on", "off"],
        help="offer the model the tools (JSON router) or not (plain replies); default: the model's",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tool_calls = None if args.tool_calls is None else args.tool_calls == "on"
    llm = agent(args.llm, args.model_only, tool_calls)
    rows = asyncio.run(run(llm))
    summary: dict[str, Any] = {}
    for name, results in rows.items():
        passed = sum(r["passed"] for r in results)
        firsts = [r["first_token_ms"] for r in results if r["first_token_ms"] is not None]
        summary[name] = {
            "passed": f"{passed}/{len(results)}",
            "accuracy": round(passed / len(results), 3),
            "first_token_p50_ms": round(percentile(firsts, 50), 1) if firsts else None,
            "first_token_p95_ms": round(percentile(firsts, 95), 1) if firsts else None,
        }
        print(f"{name}: {passed}/{len(results)}")
        for r in results:
            if not r["passed"] or name == "llm open":
                mark = "ok  " if r["passed"] else "MISS"
                print(f"  {mark} {r['text']!r}\n       calls {r['calls']} said {r['said'][:160]!r}")
    summary["rss_mb"] = round(psutil.Process().memory_info().rss / 2**20)
    summary["handled"] = dict(getattr(llm, "handled", {}))
    print(json.dumps(summary, indent=2))
    flat = [{"set": name, **r} for name, results in rows.items() for r in results]
    env = {
        "llm": args.llm or "rules-agent",
        "model_only": str(args.model_only),
        "tool_calls": args.tool_calls or "the model's",
    }
    save_report("llm_routing", env, summary, flat, args.out)


if __name__ == "__main__":
    main()
