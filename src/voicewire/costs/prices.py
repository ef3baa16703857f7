"""Prices and the arithmetic that turns usage into money. Money is ``Decimal``, never float.

The shipped table (``prices.toml``) can be overridden or extended by a user file of the same
format: a row with the same component, provider and model replaces the shipped one. Provider
names are the ones providers report (``openai:gpt-4o-mini``, ``simulated:realistic``,
``local:piper/...``); ``local`` providers cost only the CPU they use, priced per core-hour.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from voicewire.providers.base import Usage

MONEY_QUANTUM = Decimal("0.0000000001")  # amounts leave the server to 1e-10 USD; kept exact


def money(value: Decimal) -> str:
    """An amount as clients and reports get it: fixed point, at most 10 decimals, no exponent
    and no trailing zeros ("0.0004488091", "12.5", "0"). Sums stay exact inside."""
    text = format(value.quantize(MONEY_QUANTUM).normalize(), "f")
    return "0" if text in ("0", "-0") else text


COMPONENTS = ("stt", "llm", "tts")
MILLION = Decimal(1_000_000)
RATE_KEYS = {"llm": ("input", "cached", "output"), "stt": ("per_minute",), "tts": ("per_1k_chars",)}
UNITS = {"llm": "USD per 1M tokens (input/cached/output)", "stt": "USD per audio minute",
         "tts": "USD per 1K characters"}  # fmt: skip


def dec(value: float | int | str) -> Decimal:
    """Exact decimal of a usage figure: 0.1 s is 0.1, not 0.1000000000000000055."""
    return Decimal(str(value))


@dataclass(frozen=True, slots=True)
class Price:
    component: str
    provider: str
    model: str
    rates: dict[str, Decimal]
    source: str
    date: str

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.model}"

    def unit_cost(self) -> Decimal:
        """One number to rank models of a component by (output price for LLMs)."""
        return self.rates.get("output") or next(iter(self.rates.values()))


class PriceTable:
    def __init__(
        self, prices: list[Price], usd_per_core_hour: Decimal, compute_source: str
    ) -> None:
        self.prices = prices
        self.usd_per_core_hour = usd_per_core_hour
        self.compute_source = compute_source
        self._index = {(p.component, p.provider, p.model): p for p in prices}

    @classmethod
    def load(
        cls, override: Path | None = None, usd_per_core_hour: Decimal | None = None
    ) -> PriceTable:
        data = tomllib.loads(resources.files("voicewire.costs").joinpath("prices.toml").read_text())
        rows = _rows(data)
        compute = data.get("compute", {})
        if override is not None:
            extra = tomllib.loads(Path(override).read_text())
            replaced = {(r.component, r.provider, r.model): r for r in rows}
            for row in _rows(extra):
                replaced[(row.component, row.provider, row.model)] = row
            rows = list(replaced.values())
            compute = {**compute, **extra.get("compute", {})}
        core_hour = (
            usd_per_core_hour
            if usd_per_core_hour is not None
            else Decimal(compute["usd_per_core_hour"])
        )
        return cls(rows, core_hour, str(compute.get("source", "")))

    def find(self, component: str, provider_name: str) -> Price | None:
        """The price row for a provider name like ``openai:gpt-4o-mini``; None for local."""
        kind, _, model = provider_name.partition(":")
        if kind == "local":
            return None
        return self._index.get((component, kind, model)) or self._index.get((component, kind, "*"))

    def service_cost(self, component: str, price: Price | None, usage: Usage) -> Decimal:
        if price is None:
            return Decimal(0)
        r = price.rates
        if component == "llm":
            uncached = max(0, usage.input_tokens - usage.cached_tokens)
            return (
                uncached * r["input"]
                + usage.cached_tokens * r["cached"]
                + usage.output_tokens * r["output"]
            ) / MILLION
        if component == "stt":
            return dec(usage.audio_seconds) / 60 * r["per_minute"]
        return dec(usage.characters) / 1000 * r["per_1k_chars"]

    def compute_cost(self, usage: Usage) -> Decimal:
        return dec(usage.cpu_seconds) / 3600 * self.usd_per_core_hour

    def cost(self, component: str, provider_name: str, usage: Usage) -> Decimal:
        """What one call cost: the provider's price for its usage, plus the CPU it burned here."""
        price = self.find(component, provider_name)
        return self.service_cost(component, price, usage) + self.compute_cost(usage)

    def alternatives(self, component: str) -> list[Price]:
        """Real (not simulated) models of a component, cheapest first."""
        rows = [p for p in self.prices if p.component == component and p.provider != "simulated"]
        return sorted(rows, key=Price.unit_cost)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"component": p.component, "provider": p.provider, "model": p.model,
             "unit": UNITS[p.component], "rates": {k: str(v) for k, v in p.rates.items()},
             "source": p.source, "date": p.date}
            for p in self.prices
        ]  # fmt: skip


def _rows(data: dict[str, Any]) -> list[Price]:
    rows = []
    for component in COMPONENTS:
        for row in data.get(component, []):
            rates = {k: Decimal(str(row[k])) for k in RATE_KEYS[component] if k in row}
            missing = set(RATE_KEYS[component]) - set(rates)
            if missing:
                raise ValueError(
                    f"price row {row.get('provider')}:{row.get('model')} lacks {sorted(missing)}"
                )
            rows.append(
                Price(
                    component,
                    row["provider"],
                    row["model"],
                    rates,
                    row.get("source", ""),
                    str(row.get("date", "")),
                )
            )
    return rows
