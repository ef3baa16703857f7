"""The tools themselves, and how a turn runs them: parallel, bounded, cancellable, charted."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from tests.test_turn import make_turn
from voicewire.providers.base import ToolCallRequest
from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeTTS
from voicewire.tools import Tool, ToolError, ToolOutput, ToolRegistry, default_tools
from voicewire.tools.charts import CHART_TOOL, ChartArgs, summarize
from voicewire.tools.realtime import simulated_stock


def stats() -> dict[str, Any]:
    return {"sessions": {"value": 3, "turns": 7}, "latency": {"value": 420.0}}


@pytest.fixture
def tools() -> ToolRegistry:
    return default_tools(stats)


def test_tool_schemas_are_openai_functions(tools: ToolRegistry) -> None:
    schemas = {s.name: s.openai_schema() for s in tools.specs()}
    assert set(schemas) == {"generate_chart", "analyze_sentiment", "get_realtime_data"}
    chart = schemas["generate_chart"]["function"]
    assert chart["parameters"]["type"] == "object"
    assert "chart_type" in chart["parameters"]["required"]
    # the values the tools take are in the schema, so a model's constrained decoding (and a
    # cloud model) can only pick one of them
    properties = chart["parameters"]["properties"]
    assert properties["chart_type"]["enum"] == ["line", "bar", "pie", "scatter"]
    metric = schemas["get_realtime_data"]["function"]["parameters"]["properties"]["metric"]
    assert "cpu" in metric["enum"] and "temperature" in metric["enum"]


async def test_a_temperature_here_is_said_as_here(tools: ToolRegistry) -> None:
    here = (await tools.call("get_realtime_data", {"metric": "temperature"})).result
    args = {"metric": "temperature", "location": "paris"}
    paris = (await tools.call("get_realtime_data", args)).result
    assert here["location"] == "here" and paris["location"] == "Paris"


@pytest.mark.parametrize(
    "kind, trace", [("bar", "bar"), ("pie", "pie"), ("line", "scatter"), ("scatter", "scatter")]
)
async def test_each_chart_type_is_a_plotly_figure(
    tools: ToolRegistry, kind: str, trace: str
) -> None:
    out = await tools.call(
        "generate_chart",
        {"chart_type": kind, "title": "Sales", "labels": [1, 2, 3], "values": [120, "150", 90]},
    )
    assert out.figure is not None and out.figure["data"][0]["type"] == trace
    assert out.figure["layout"]["title"]["text"] == "Sales"
    assert out.result["series"][0]["values"] == [120, 150, 90]
    assert "150" in out.result["summary"] and "90" in out.result["summary"]


async def test_line_chart_with_several_series(tools: ToolRegistry) -> None:
    out = await tools.call(
        "generate_chart",
        {
            "chart_type": "line",
            "labels": ["Q1", "Q2"],
            "series": [{"name": "2023", "values": [1, 2]}, {"name": "2024", "values": [2, 4]}],
        },
    )
    assert [t["name"] for t in out.figure["data"]] == ["2023", "2024"]  # type: ignore[index]


@pytest.mark.parametrize(
    "args, message",
    [
        ({"chart_type": "radar", "labels": ["a"], "values": [1]}, "unknown chart type 'radar'"),
        ({"chart_type": "bar", "labels": ["a", "b"], "values": [1]}, "2 labels but 1 values"),
        ({"chart_type": "bar", "labels": ["a"], "values": ["lots"]}, "'lots' is not a number"),
        ({"chart_type": "bar", "labels": [], "values": []}, "no data to chart"),
        ({"chart_type": "pie", "labels": ["a", "b"], "values": [1, -2]}, "negative"),
        ({"chart_type": "scatter", "labels": ["x", "y"], "values": [1, 2]}, "not a number"),
        ({"labels": ["a"], "values": [1]}, "invalid arguments for generate_chart: chart_type"),
    ],
)
async def test_bad_chart_requests_are_clear_tool_errors(
    tools: ToolRegistry, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(ToolError, match=message):
        await tools.call("generate_chart", args)


async def test_sentiment_scores_and_labels(tools: ToolRegistry) -> None:
    good = (await tools.call("analyze_sentiment", {"text": "I love this, it is wonderful!"})).result
    bad = (
        await tools.call("analyze_sentiment", {"text": "This is terrible and I hate it."})
    ).result
    flat = (await tools.call("analyze_sentiment", {"text": "The box is on the table."})).result
    assert (good["label"], bad["label"], flat["label"]) == ("positive", "negative", "neutral")
    assert good["compound"] > 0.5 > -0.5 > bad["compound"]
    assert good["positive"] + good["neutral"] + good["negative"] == pytest.approx(1, abs=0.01)
    long = (
        await tools.call("analyze_sentiment", {"text": "Great food. Awful service. Fine."})
    ).result
    assert [s["label"] for s in long["sentences"]] == ["positive", "negative", "positive"]


async def test_realtime_real_and_simulated(tools: ToolRegistry) -> None:
    cpu = (await tools.call("get_realtime_data", {"metric": "cpu"})).result
    assert 0 <= cpu["value"] <= 100 and cpu["simulated"] is False
    memory = (await tools.call("get_realtime_data", {"metric": "memory"})).result
    assert memory["total_mb"] > memory["used_mb"] > 0
    sessions = (await tools.call("get_realtime_data", {"metric": "sessions"})).result
    assert sessions["value"] == 3 and sessions["turns"] == 7
    stock = (await tools.call("get_realtime_data", {"metric": "stock", "symbol": "aapl"})).result
    assert stock["simulated"] is True and stock["symbol"] == "AAPL"
    assert len(stock["series"]["values"]) == 24 == len(stock["series"]["labels"])
    assert simulated_stock("AAPL", 24)["series"] == stock["series"]  # reproducible
    assert simulated_stock("TSLA", 24)["series"] != stock["series"]
    with pytest.raises(ToolError, match="unknown metric"):
        await tools.call("get_realtime_data", {"metric": "vibes"})


class SleepArgs(BaseModel):
    seconds: float = 0.0
    fail: bool = False


class Gate:
    """Tools that run, fail, or hang until cancelled, recording what happened."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.cancelled: set[str] = set()
        self.hanging = asyncio.Event()

    def registry(self) -> ToolRegistry:
        async def quick(a: SleepArgs) -> ToolOutput:
            self.started["quick"] = time.perf_counter()
            if a.fail:
                raise RuntimeError("disk on fire")
            return ToolOutput({"ok": True})

        async def hang(a: SleepArgs) -> ToolOutput:
            self.started["hang"] = time.perf_counter()
            self.hanging.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.add("hang")
                raise
            return ToolOutput(None)

        return ToolRegistry(
            [Tool("quick", "q", SleepArgs, quick), Tool("hang", "h", SleepArgs, hang)]
        )


async def test_a_timeout_and_an_exception_are_that_calls_error_only() -> None:
    gate = Gate()
    calls = [
        ToolCallRequest("c1", "hang", {}),
        ToolCallRequest("c2", "quick", {"fail": True}),
        ToolCallRequest("c3", "quick", {}),
    ]
    llm = FakeLLM([FakeLLMStep(tool_calls=calls), FakeLLMStep("All done.")])
    turn, rec, _ = make_turn(llm, tools=gate.registry())
    turn.cfg.tool_timeout_s = 0.05
    assert await turn.run() == "completed"
    done = {f.call_id: f for f in rec.of("tool_call_complete")}
    assert done["c1"].error == "timed out after 0.05 s" and "hang" in gate.cancelled
    assert done["c2"].error == "RuntimeError: disk on fire"
    assert done["c3"].error is None and done["c3"].result == {"ok": True}
    results = [m for m in llm.calls[1][0] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in results] == ["c1", "c2", "c3"]
    assert rec.of("llm_complete")[0].text == "All done."


async def test_cancel_stops_a_hanging_tool() -> None:
    gate = Gate()
    llm = FakeLLM([FakeLLMStep(tool_calls=[ToolCallRequest("c1", "hang", {})])])
    turn, _, _ = make_turn(llm, tools=gate.registry())
    task = asyncio.create_task(turn.run())
    await gate.hanging.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate.cancelled == {"hang"}


async def test_tool_rounds_are_bounded() -> None:
    gate = Gate()
    looping = FakeLLMStep("Again. ", tool_calls=[ToolCallRequest("c", "quick", {})])
    llm = FakeLLM([looping])
    turn, rec, _ = make_turn(llm, tools=gate.registry())
    turn.cfg.max_tool_rounds = 2
    await turn.run()
    assert len(rec.of("tool_call_start")) == 2
    assert llm.calls[-1][1] == []  # the last step is offered no tools


async def test_chart_is_placed_where_the_sentence_about_it_starts() -> None:
    call = ToolCallRequest(
        "c1", "generate_chart", {"chart_type": "bar", "labels": ["a", "b"], "values": [1, 2]}
    )
    llm = FakeLLM(
        [
            FakeLLMStep("Let me draw it. ", tool_calls=[call]),
            FakeLLMStep("Here it is. B is higher."),
        ]
    )
    turn, rec, session = make_turn(
        llm, tts=FakeTTS(ms_per_char=10), tools=ToolRegistry([CHART_TOOL])
    )
    assert await turn.run() == "completed"
    types = rec.types()
    assert (
        types.index("viz_start") < types.index("visualization_data") < types.index("viz_complete")
    )
    viz = rec.of("visualization_data")[0]
    here = next(f for f in rec.of("assistant_text") if f.text == "Here it is.")
    assert viz.offset_ms == here.offset_ms == pytest.approx(len("Let me draw it.") * 10, abs=0.1)
    assert (
        types.index("visualization_data")
        == types.index("assistant_text", types.index("viz_start")) + 1
    )
    assert viz.figure["data"][0]["type"] == "bar" and viz.call_id == "c1"
    assert session.last_visualization is not None and len(session.charts) == 1
    history = session.messages()
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]


async def run_agent(text: str) -> tuple[Any, Any]:
    from voicewire.providers.local.agent import RulesAgent

    turn, rec, _ = make_turn(RulesAgent(), tools=default_tools(stats))  # type: ignore[arg-type]
    turn.req.text = text
    assert await turn.run() == "completed"
    return turn, rec


async def test_agent_fetches_a_simulated_series_then_charts_it() -> None:
    _, rec = await run_agent("Plot the temperature in Berlin over the last week.")
    names = [f.name for f in rec.of("tool_call_start")]
    assert names == ["get_realtime_data", "generate_chart"]
    fetched = rec.of("tool_call_complete")[0].result
    chart = rec.of("tool_call_start")[1].arguments
    assert chart["chart_type"] == "line" and chart["values"] == fetched["series"]["values"]
    assert rec.of("visualization_data")[0].figure["data"][0]["type"] == "scatter"  # plotly line
    reply = rec.of("llm_complete")[0].text
    assert "simulated" in reply
    # a week is 7 days labelled by day, and each result is spoken once (issue 12)
    assert len(chart["labels"]) == 7 and fetched["period"] == "week"
    today = datetime.now().strftime("%a %-d %b")
    assert chart["labels"][-1] == today and not any(x.startswith("h-") for x in chart["labels"])
    assert reply.count("The simulated temperature in Berlin") == 1, reply
    assert chart["title"] == "Temperature in Berlin, last week"


async def test_agent_charts_new_unlabelled_numbers_not_the_old_chart() -> None:
    from benchmarks.routing_accuracy import EXPENSES

    from voicewire.providers.local.agent import RulesAgent

    turn, rec, session = make_turn(RulesAgent(), tools=default_tools(stats))  # type: ignore[arg-type]
    session.add_turn(EXPENSES)  # the last chart was of expenses
    turn.req.text = "Line chart of my weight over four weeks: 80, 79, 78.5 and 77."
    assert await turn.run() == "completed"
    chart = rec.of("tool_call_start")[0].arguments
    assert chart["labels"] == ["Week 1", "Week 2", "Week 3", "Week 4"]
    assert chart["values"] == [80, 79, 78.5, 77]


@pytest.mark.parametrize(
    "kind, labels, values, says, never",
    [
        ("line", ["rent", "food", "travel"], [1200, 400, 250], "Rent is the highest", "changes"),
        ("line", ["Week 1", "Week 2", "Week 3"], [80, 79, 60], "From Week 1 to Week 3", "or"),
        ("pie", ["Chrome", "Safari", "Other"], [80, 15, 5], "largest share, 80%,", "80 or"),
        ("pie", ["apples", "pears"], [3, 1], "Apples has the largest share, 3, or 75%", "3 or"),
    ],
)
def test_chart_summaries_make_sense(
    kind: str, labels: list[str], values: list[float], says: str, never: str
) -> None:
    text = summarize(ChartArgs(chart_type=kind, labels=labels, values=values))
    assert says in text and never not in text.replace("or 75%", ""), text
    assert text[0].isupper()


async def test_agent_asks_two_things_at_once() -> None:
    _, rec = await run_agent("What's the CPU and memory usage right now?")
    starts = rec.of("tool_call_start")
    assert [s.arguments["metric"] for s in starts] == ["cpu", "memory"]
    types = rec.types()
    assert types.index("tool_call_start", types.index("tool_call_start") + 1) < types.index(
        "tool_call_complete"
    )
    reply = rec.of("llm_complete")[0].text
    assert reply.startswith("CPU usage on this server is") and "Memory use is" in reply


async def test_a_tool_result_that_is_not_json_still_reaches_everyone() -> None:
    import datetime

    import numpy as np

    async def odd(_: SleepArgs) -> ToolOutput:
        return ToolOutput(
            {"when": datetime.date(2026, 11, 26), "x": np.float32(1.5), "tags": {"a"}}
        )

    calls = [ToolCallRequest("c1", "odd", {})]
    llm = FakeLLM([FakeLLMStep(tool_calls=calls), FakeLLMStep("Done.")])
    turn, rec, _ = make_turn(llm, tools=ToolRegistry([Tool("odd", "odd", SleepArgs, odd)]))
    assert await turn.run() == "completed"
    result = rec.of("tool_call_complete")[0].result
    assert result == {"when": "2026-11-26", "x": "1.5", "tags": "{'a'}"}
    for frame in rec.frames:
        frame.to_json()  # every frame the client gets can be encoded
