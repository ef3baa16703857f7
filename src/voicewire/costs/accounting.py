"""Per-utterance cost accounting: usage -> ledger entries -> a ``cost_update`` frame."""

from __future__ import annotations

import logging
import time
from decimal import Decimal

from voicewire.costs.ledger import Entry, Ledger
from voicewire.costs.prices import COMPONENTS, PriceTable, money
from voicewire.protocol import CostUpdate
from voicewire.providers.base import Usage
from voicewire.session import Session

log = logging.getLogger(__name__)


class Accountant:
    def __init__(self, prices: PriceTable, ledger: Ledger | None) -> None:
        self.prices = prices
        self.ledger = ledger
        self.totals: dict[str, Decimal] = dict.fromkeys((*COMPONENTS, "tools"), Decimal(0))
        self.ledger_failures = 0  # reported in /metrics

    async def account(
        self,
        session: Session,
        utterance_id: str,
        calls: dict[tuple[str, str], Usage],
        tool_calls: int,
        started_at: float,
    ) -> CostUpdate:
        """Price this utterance, persist it, update the session; return its ``cost_update``.

        ``calls`` maps (stage, provider) to usage: a stage that fell back is priced per provider.
        """
        now = time.time()
        entries = []
        by_component: dict[str, Decimal] = dict.fromkeys(COMPONENTS, Decimal(0))
        for (component, provider), u in calls.items():
            cost = self.prices.cost(component, provider, u)
            by_component[component] += cost
            if u != Usage() or cost:
                entries.append(
                    Entry(now, session.id, utterance_id, component, provider, u, cost_usd=cost)
                )
        if tool_calls:
            entries.append(
                Entry(now, session.id, utterance_id, "tools", "local", tool_calls=tool_calls)
            )
        if self.ledger is not None:
            try:
                await self.ledger.record(entries)
            except Exception:  # bookkeeping must never break a conversation
                self.ledger_failures += 1
                log.exception("could not persist the cost of %s", utterance_id)
        total = sum(by_component.values(), Decimal(0))
        for component, cost in by_component.items():
            self.totals[component] += cost
        session.add_cost(total, started_at)
        minutes = max(session.conversation_s(now), 1.0) / 60
        return CostUpdate(
            utterance_id=utterance_id,
            utterance={**{k: money(v) for k, v in by_component.items()}, "total_usd": money(total)},
            session_total_usd=money(session.cost_usd),
            session_minutes=round(minutes, 3),
            usd_per_minute=money(session.cost_usd / Decimal(str(minutes))),
        )
