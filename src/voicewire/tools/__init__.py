"""The tools the agent can call; ``default_tools`` builds the server's registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voicewire.tools.charts import CHART_TOOL
from voicewire.tools.realtime import make_realtime_tool
from voicewire.tools.registry import Tool, ToolError, ToolOutput, ToolRegistry
from voicewire.tools.sentiment import SENTIMENT_TOOL

__all__ = ["Tool", "ToolError", "ToolOutput", "ToolRegistry", "default_tools", "warm_tools"]


def warm_tools() -> None:
    """Import plotly and load VADER now, so the first chart or score is not slow."""
    from voicewire.tools.charts import ChartArgs, build_figure
    from voicewire.tools.sentiment import score

    build_figure(ChartArgs(chart_type="bar", labels=["a"], values=[1]))
    score("warm")


def default_tools(server_stats: Callable[[], dict[str, Any]]) -> ToolRegistry:
    return ToolRegistry([CHART_TOOL, SENTIMENT_TOOL, make_realtime_tool(server_stats)])
