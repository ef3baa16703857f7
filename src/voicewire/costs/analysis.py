"""Cost analysis over ledger entries: breakdowns, efficiency, projections, recommendations.

Recommendations are computed from the data and the price table (what the biggest component
costs now, what the cheapest listed alternative would have cost for the same usage), never
canned text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from voicewire.costs.ledger import Entry
from voicewire.costs.prices import COMPONENTS, Price, PriceTable
from voicewire.costs.retention import Day
from voicewire.providers.base import Usage

DAYS_PER_MONTH = Decimal(30)
DAYS_PER_YEAR = Decimal(365)


@dataclass(frozen=True, slots=True)
class Volume:
    """The traffic to project for."""

    sessions_per_day: int = 1000
    minutes_per_session: Decimal = Decimal(3)


def summarize(entries: Iterable[Entry], rolled: Iterable[Day] = ()) -> dict[str, Any]:
    """Totals by component, session and minute; turns; efficiency figures. ``rolled``: days
    the retention folded away (costs/retention.py), counted in every total but per session."""
    by_component: dict[str, Decimal] = defaultdict(Decimal)
    by_session: dict[str, Decimal] = defaultdict(Decimal)
    by_minute: dict[int, Decimal] = defaultdict(Decimal)
    usage: dict[str, Usage] = {c: Usage() for c in COMPONENTS}
    providers: dict[str, str] = {}
    utterances: set[str] = set()
    session_span: dict[str, list[float]] = {}
    for e in entries:
        by_component[e.component] += e.cost_usd
        by_session[e.session_id] += e.cost_usd
        by_minute[int(e.ts // 60) * 60] += e.cost_usd
        utterances.add(e.utterance_id)
        span = session_span.setdefault(e.session_id, [e.ts, e.ts])
        span[0], span[1] = min(span[0], e.ts), max(span[1], e.ts)
        if e.component in usage:
            providers[e.component] = e.provider
            u = usage[e.component]
            for name in Usage.__slots__:  # type: ignore[attr-defined]
                setattr(u, name, getattr(u, name) + getattr(e.usage, name))
    rolled_turns = rolled_sessions = 0
    rolled_minutes = Decimal(0)
    for day in rolled:
        for (component, provider), (part, _, cost) in day.parts.items():
            by_component[component] += cost
            by_minute[int(day.start_ts)] += cost
            if component in usage:
                providers.setdefault(component, provider)
                u = usage[component]
                for name in Usage.__slots__:  # type: ignore[attr-defined]
                    setattr(u, name, getattr(u, name) + getattr(part, name))
        rolled_turns += day.turns
        rolled_sessions += day.sessions
        rolled_minutes += day.minutes
    total = sum(by_component.values(), Decimal(0))
    turns = len(utterances) + rolled_turns
    # a session lasts at least one minute: short test sessions must not inflate cost per minute
    minutes = rolled_minutes + sum(
        (Decimal(str(max(60.0, b - a))) / 60 for a, b in session_span.values()), Decimal(0)
    )
    audio_minutes = Decimal(str(usage["stt"].audio_seconds)) / 60
    return {
        "total_usd": total,
        "turns": turns,
        "sessions": len(by_session) + rolled_sessions,
        "conversation_minutes": minutes,
        "by_component": dict(by_component),
        "share": {c: (v / total if total else Decimal(0)) for c, v in by_component.items()},
        "by_session": dict(by_session),
        "by_minute": dict(sorted(by_minute.items())),
        "providers": providers,
        "usage": usage,
        "efficiency": {
            "usd_per_turn": total / turns if turns else Decimal(0),
            "usd_per_minute": total / minutes if minutes else Decimal(0),
            "usd_per_audio_minute": total / audio_minutes if audio_minutes else None,
            "tokens_per_turn": (
                Decimal(usage["llm"].input_tokens + usage["llm"].output_tokens) / turns
                if turns
                else Decimal(0)
            ),
        },
    }


def project(usd_per_minute: Decimal, volume: Volume) -> dict[str, Decimal]:
    per_day = usd_per_minute * volume.minutes_per_session * volume.sessions_per_day
    return {"day": per_day, "month": per_day * DAYS_PER_MONTH, "year": per_day * DAYS_PER_YEAR}


def recommend(summary: dict[str, Any], prices: PriceTable, volume: Volume) -> list[str]:
    """Advice from the numbers: the biggest cost, and what a cheaper listed model would save."""
    total: Decimal = summary["total_usd"]
    if not total:
        return ["No costs recorded yet."]
    tips = []
    monthly = project(summary["efficiency"]["usd_per_minute"], volume)["month"]
    ranked = sorted(summary["share"].items(), key=lambda kv: kv[1], reverse=True)
    for component, share in ranked:
        if component not in COMPONENTS or share < Decimal("0.2"):
            continue
        provider = summary["providers"].get(component, "")
        spent = summary["by_component"][component]
        label = component.upper()
        current = prices.find(component, provider)
        if current is None:  # local: all of it is CPU
            tips.append(
                f"{label} is {share:.0%} of cost and runs locally: it is priced by CPU at "
                f"${prices.usd_per_core_hour} per core-hour; at your volume that is about "
                f"${monthly * share:,.2f} a month."
            )
            continue
        usage = summary["usage"][component]
        cheaper = _cheapest_alternative(component, current, usage, prices)
        name = current.model if current.model != "*" else f"the simulated {component.upper()}"
        if cheaper is None:
            tips.append(f"{label} is {share:.0%} of cost; {name} is already the cheapest listed.")
            continue
        alt, alt_cost = cheaper
        ratio = alt_cost / spent if spent else Decimal(0)
        saving = monthly * share * (1 - ratio)
        tips.append(
            f"{label} is {share:.0%} of cost; {alt.model} would cost {ratio:.0%} of what "
            f"{name} costs for the same usage: about ${saving:,.2f} a month less at "
            f"{volume.sessions_per_day} sessions a day of {volume.minutes_per_session} minutes."
        )
    llm = summary["usage"]["llm"]
    if llm.input_tokens and summary["share"].get("llm", 0) >= Decimal("0.2"):
        cached = Decimal(llm.cached_tokens) / llm.input_tokens
        if cached < Decimal("0.5"):
            tips.append(
                f"Only {cached:.0%} of LLM input tokens were cached; a stable system prompt and "
                "history prefix raise that, and cached tokens cost a fraction of input tokens."
            )
    return tips


def _cheapest_alternative(
    component: str, current: Price, usage: Usage, prices: PriceTable
) -> tuple[Price, Decimal] | None:
    best: tuple[Price, Decimal] | None = None
    now = prices.service_cost(component, current, usage)
    for alt in prices.alternatives(component):
        if alt.key == current.key:
            continue
        cost = prices.service_cost(component, alt, usage) + prices.compute_cost(usage)
        if cost < now + prices.compute_cost(usage) and (best is None or cost < best[1]):
            best = (alt, cost)
    return best
