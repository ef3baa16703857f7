"""``voicewire report``: the ledger as an HTML report with Plotly charts, and the same as JSON.

plotly.js is embedded in the page, so the report is one file that opens offline.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from voicewire.costs.analysis import Volume, project, recommend, summarize
from voicewire.costs.ledger import Ledger
from voicewire.costs.prices import PriceTable, money
from voicewire.costs.retention import rolled_days

CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:1rem auto;padding:0 1rem;"
    "color:#222}.cards{display:flex;flex-wrap:wrap;gap:.6rem}"
    ".card{border:1px solid #ddd;border-radius:8px;padding:.6rem 1rem;min-width:9rem}"
    ".card b{display:block;font-size:1.3rem}.card span{color:#666;font-size:.85rem}"
    ".grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(360px,1fr));gap:1rem}"
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__slots__") and not isinstance(value, str):
        return {k: getattr(value, k) for k in value.__slots__}
    return value


def build(ledger: Ledger, prices: PriceTable, volume: Volume) -> dict[str, Any]:
    summary = summarize(ledger.entries(), rolled_days(ledger.db))
    per_minute = summary["efficiency"]["usd_per_minute"]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ledger": str(ledger.path),
        "volume": {
            "sessions_per_day": volume.sessions_per_day,
            "minutes_per_session": volume.minutes_per_session,
        },
        "summary": summary,
        "projection": project(per_minute, volume),
        "recommendations": recommend(summary, prices, volume),
        "prices": {
            "usd_per_core_hour": prices.usd_per_core_hour,
            "compute_source": prices.compute_source,
        },
    }


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    import plotly.graph_objects as go

    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(_jsonable(report), indent=2))
    s = report["summary"]
    components = [c for c, v in s["by_component"].items() if v]
    pie = go.Figure(
        go.Pie(
            labels=components, values=[float(s["by_component"][c]) for c in components], hole=0.4
        )
    )
    pie.update_layout(title="Cost by component", template="plotly_white", height=360, width=350)
    minutes = [datetime.fromtimestamp(t, UTC).strftime("%H:%M") for t in s["by_minute"]]
    line = go.Figure(
        go.Scatter(x=minutes, y=[float(v) for v in s["by_minute"].values()], mode="lines+markers")
    )
    line.update_layout(
        title="Cost per minute (USD)", template="plotly_white", height=360, width=350
    )
    proj = report["projection"]
    bars = go.Figure(
        go.Bar(
            x=list(proj),
            y=[float(v) for v in proj.values()],
            text=[f"${v:,.2f}" for v in proj.values()],
        )
    )
    vol = report["volume"]
    bars.update_layout(
        title=f"Projection: {vol['sessions_per_day']}/day x {vol['minutes_per_session']} min",
        template="plotly_white",
        height=360,
        width=350,
    )
    charts = [
        pie.to_html(full_html=False, include_plotlyjs=True),
        line.to_html(full_html=False, include_plotlyjs=False),
        bars.to_html(full_html=False, include_plotlyjs=False),
    ]
    eff = s["efficiency"]
    figures = [
        ("Total", f"${s['total_usd']:.6f}"),
        ("Turns", str(s["turns"])),
        ("Sessions", str(s["sessions"])),
        ("Cost per turn", f"${eff['usd_per_turn']:.6f}"),
        ("Cost per minute", f"${eff['usd_per_minute']:.6f}"),
        ("Tokens per turn", f"{eff['tokens_per_turn']:.1f}"),
    ]
    cards = "".join(
        f"<div class=card><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>"
        for k, v in figures
    )
    tips = "".join(f"<li>{html.escape(t)}</li>" for t in report["recommendations"])
    made, ledger, core = (
        report["generated_at"],
        report["ledger"],
        report["prices"]["usd_per_core_hour"],
    )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>voicewire cost report</title><style>{CSS}</style></head><body>"
        f"<h1>voicewire cost report</h1><p>Generated {html.escape(made)} from "
        f"<code>{html.escape(ledger)}</code>. Compute priced at ${core} per core-hour.</p>"
        f"<div class=cards>{cards}</div><h2>Recommendations</h2><ul>{tips}</ul>"
        f"<div class=grid>{''.join(f'<div>{c}</div>' for c in charts)}</div></body></html>"
    )
    html_path = out.with_suffix(".html")
    html_path.write_text(page)
    return html_path, json_path
