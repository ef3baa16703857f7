"""``generate_chart``: line, bar, pie and scatter charts as Plotly figures, with a spoken summary.

The figure is built with plotly (validated, exactly what plotly.js renders) in a worker thread,
since building one takes milliseconds of CPU that the event loop should not pay.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from pydantic import BaseModel, Field

from voicewire.tools.registry import Tool, ToolError, ToolOutput

CHART_TYPES = ("line", "bar", "pie", "scatter")


class Series(BaseModel):
    name: str | None = Field(default=None, description="Legend name")
    values: list[Any] = Field(description="Y values, one per label / x value")


class ChartArgs(BaseModel):
    # the schema offers exactly these (constrained decoding needs it); the tool forgives "Bar"
    chart_type: str = Field(
        description="The kind of chart", json_schema_extra={"enum": list(CHART_TYPES)}
    )
    title: str = Field(default="", description="Chart title")
    labels: list[Any] = Field(
        default_factory=list, description="Category labels (bar, pie) or x values (line, scatter)"
    )
    values: list[Any] | None = Field(default=None, description="Y values of a single series")
    series: list[Series] | None = Field(
        default=None, description="Several named series (line, scatter); instead of values"
    )
    x_title: str = Field(default="", description="X axis title")
    y_title: str = Field(default="", description="Y axis title")


def _numbers(values: list[Any], where: str) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool):
            raise ToolError(f"{where}: {v!r} is not a number")
        try:
            number = float(str(v).replace(",", "")) if isinstance(v, str) else float(v)
        except (TypeError, ValueError):
            raise ToolError(f"{where}: {v!r} is not a number") from None
        if not math.isfinite(number):
            raise ToolError(f"{where}: {v!r} is not a finite number")
        out.append(number)
    return out


def normalize(args: ChartArgs) -> tuple[str, list[Any], list[tuple[str | None, list[float]]]]:
    """Check the data; return (chart type, labels, [(series name, numbers)])."""
    kind = args.chart_type.strip().lower()
    if kind not in CHART_TYPES:
        raise ToolError(
            f"unknown chart type {args.chart_type!r}; use one of {', '.join(CHART_TYPES)}"
        )
    if args.series and args.values is not None:
        raise ToolError("give either values or series, not both")
    raw = args.series or ([Series(values=args.values)] if args.values is not None else [])
    if not raw or not any(s.values for s in raw):
        raise ToolError("no data to chart: values are empty")
    if kind == "pie" and len(raw) > 1:
        raise ToolError("a pie chart takes a single series")
    series = [(s.name, _numbers(s.values, f"series {s.name or i + 1}")) for i, s in enumerate(raw)]
    labels = list(args.labels) or list(range(1, len(series[0][1]) + 1))
    for name, numbers in series:
        if len(numbers) != len(labels):
            raise ToolError(
                f"{len(labels)} labels but {len(numbers)} values"
                + (f" in series {name}" if name else "")
                + "; they must match one to one"
            )
    if kind == "scatter":
        _numbers(labels, "x values of a scatter chart")
    if kind == "pie" and any(v < 0 for v in series[0][1]):
        raise ToolError("a pie chart cannot show negative values")
    return kind, labels, series


def build_figure(args: ChartArgs) -> dict[str, Any]:
    import plotly.graph_objects as go

    kind, labels, series = normalize(args)
    fig = go.Figure()
    for name, ys in series:
        if kind == "bar":
            fig.add_trace(go.Bar(x=labels, y=ys, name=name))
        elif kind == "pie":
            fig.add_trace(go.Pie(labels=labels, values=ys, name=name))
        elif kind == "line":
            fig.add_trace(go.Scatter(x=labels, y=ys, mode="lines+markers", name=name))
        else:
            fig.add_trace(go.Scatter(x=labels, y=ys, mode="markers", name=name))
    fig.update_layout(
        title={"text": args.title},
        xaxis_title=args.x_title or None,
        yaxis_title=args.y_title or None,
        template="plotly_white",
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
    )
    return json.loads(fig.to_json())


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v == int(v) else f"{v:,.2f}".rstrip("0").rstrip(".")


MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ORDINAL_LABEL = re.compile(
    r"^(?:(?:week|day|month|quarter|year|hour|round|game|lap|step|q|h|t)\s*-?\d+|"
    r"\d{1,2}:\d{2}|\d{4}(?:-\d{2}(?:-\d{2})?)?)$",
    re.I,
)


def ordered(labels: list[Any]) -> bool:
    """Does the x axis run in an order (numbers, years, months, days, "Week 3", "14:00")?

    Only then does "from first to last" mean something; for categories it is noise."""

    def is_ordinal(label: Any) -> bool:
        if isinstance(label, int | float) and not isinstance(label, bool):
            return True
        text = str(label).strip().lower()
        return (
            text[:3] in MONTHS
            or text[:3] in DAYS
            or bool(_ORDINAL_LABEL.match(text))
            or bool(re.fullmatch(r"-?\d+(?:\.\d+)?", text))
        )

    return len(labels) > 1 and all(is_ordinal(x) for x in labels)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def summarize(args: ChartArgs) -> str:
    """One or two spoken sentences about the data, in sentence case."""
    kind, labels, series = normalize(args)
    _, ys = series[0]
    hi = max(range(len(ys)), key=ys.__getitem__)
    lo = min(range(len(ys)), key=ys.__getitem__)
    if kind == "pie":
        total = sum(ys) or 1.0
        if abs(total - 100) < 0.5:  # the values are percentages already: "80 or 80%" is noise
            big, small = f"{_fmt(ys[hi])}%", f"{_fmt(ys[lo])}%"
        else:
            big = f"{_fmt(ys[hi])}, or {ys[hi] / total:.0%}"
            small = f"{_fmt(ys[lo])}, or {ys[lo] / total:.0%}"
        return _sentence(
            f"{labels[hi]} has the largest share, {big}, and {labels[lo]} the smallest, {small}."
        )
    text = _sentence(
        f"{labels[hi]} is the highest at {_fmt(ys[hi])}, "
        f"and {labels[lo]} the lowest at {_fmt(ys[lo])}."
    )
    if kind in ("line", "bar") and ordered(labels) and len(ys) > 2 and ys[0]:
        change = (ys[-1] - ys[0]) / abs(ys[0])
        text += f" From {labels[0]} to {labels[-1]} it changes by {change:+.0%}."
    return text


async def generate_chart(args: ChartArgs) -> ToolOutput:
    kind, labels, series = normalize(args)  # fail fast, on the loop, before the thread
    figure = await asyncio.to_thread(build_figure, args)
    result = {
        "chart_type": kind,
        "title": args.title,
        "labels": labels,
        "series": [{"name": n, "values": v} for n, v in series],
        "summary": summarize(args),
    }
    return ToolOutput(result=result, figure=figure)


CHART_TOOL = Tool(
    name="generate_chart",
    description=(
        "Draw a line, bar, pie or scatter chart for the user. Give labels (categories or x "
        "values) and values (one series) or series (several). Returns a short summary."
    ),
    args=ChartArgs,
    vocabulary=("bar chart", "pie chart", "line chart", "scatter plot", "graph"),
    run=generate_chart,
)
