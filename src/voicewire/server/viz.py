"""``/data-viz/{session_id}``: a session's charts as JSON, or as an offline HTML page.

plotly.js is served from the installed ``plotly`` package, never a CDN, so the page works with
no network.
"""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from voicewire.server.rest import visible_session

router = APIRouter()


@cache
def plotly_js_path() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@router.get("/static/plotly.min.js", include_in_schema=False)
async def plotly_js() -> FileResponse:
    return FileResponse(
        plotly_js_path(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/data-viz/{session_id}", response_model=None)
async def data_viz(
    request: Request, session_id: str, format: Literal["json", "html"] = "json"
) -> dict[str, Any] | HTMLResponse:
    """The session's last visualization and all its charts (JSON), or a page drawing them."""
    session = await visible_session(request, session_id)
    charts = list(session.charts)
    if format == "html":
        return HTMLResponse(render_page(session_id, charts))
    return {
        "session_id": session_id,
        "last_visualization": session.last_visualization,
        "charts": charts,
    }


def render_page(session_id: str, charts: list[dict[str, Any]]) -> str:
    blocks = []
    for i, chart in enumerate(charts):
        title = chart["figure"].get("layout", {}).get("title", {}).get("text") or f"Chart {i + 1}"
        heading = html.escape(str(title))
        blocks.append(
            f'<section><h2>{heading}</h2><div class="chart" id="chart-{i}"></div></section>'
        )
    # JSON in a <script> block: escape "<" so no string can close the tag
    data = json.dumps([c["figure"] for c in charts]).replace("<", "\\u003c")
    empty = "" if charts else "<p>No charts in this session yet.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>voicewire charts: {html.escape(session_id)}</title>
<script src="/static/plotly.min.js"></script>
<style>body{{font-family:system-ui,sans-serif;margin:1rem auto;max-width:900px;padding:0 1rem}}
.chart{{width:100%;height:420px}}</style></head>
<body><h1>Charts of session {html.escape(session_id)}</h1>{empty}{"".join(blocks)}
<script>
const figures = {data};
figures.forEach((f, i) => Plotly.newPlot("chart-" + i, f.data, f.layout, {{responsive: true}}));
</script></body></html>"""
