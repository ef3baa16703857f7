"""The in-process language model: a real GGUF (SmolLM2-135M, the smallest verified one) on
xllamacpp, alone and through the real server, and the hybrid that puts it behind the rules.

What is asserted is what construction guarantees, not what a 135M model happens to answer:
every step is a reply or a call whose arguments satisfy the tool's schema; replies stream;
the fixed prompt prefix is evaluated once; a cancelled turn stops the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import jsonschema
import pytest

from tests.conftest import RunningServer, start_server
from voicewire.client import Client
from voicewire.providers.base import (
    ProviderError,
    Providers,
    TextDelta,
    ToolCallRequest,
    UsageReport,
)
from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT, FakeTTS
from voicewire.providers.local.agent import RulesAgent
from voicewire.providers.local.hybrid import HybridLLM
from voicewire.tools import default_tools

TOOLS = default_tools(lambda: {"sessions": 1}).specs()


@pytest.fixture(scope="module")
def model() -> Iterator[object]:
    """As shipped: plain replies (the rules make the calls in front of it)."""
    pytest.importorskip("xllamacpp")
    from voicewire.providers.local.gguf import GGUFLLM, MODELS

    llm = GGUFLLM(MODELS["smollm2-135m"])
    llm.warm(TOOLS)
    yield llm


@pytest.fixture(scope="module")
def router() -> Iterator[object]:
    """The same weights offered the tools, as a user's larger GGUF is: the JSON router."""
    pytest.importorskip("xllamacpp")
    from voicewire.providers.local.gguf import GGUFLLM, MODELS

    llm = GGUFLLM(replace(MODELS["smollm2-135m"], tool_calls=True))
    llm.warm(TOOLS)
    yield llm


async def collect(llm: object, text: str) -> list[object]:
    return [e async for e in llm.stream([{"role": "user", "content": text}], TOOLS)]  # type: ignore[attr-defined]


async def test_every_step_is_a_reply_or_a_call_the_tool_schema_accepts(router: object) -> None:
    requests = [
        "Draw a bar chart: apples 3, pears 5.",
        "Tell me a story about a cat.",
        "How does this review sound: I love this phone.",
        "What is the capital of France?",
        "can you platter ever in the line? First quarter 2.5 million, second 3.1",
    ]
    schemas = {t.name: t.parameters for t in TOOLS}
    for text in requests:
        events = await collect(router, text)
        calls = [e for e in events if isinstance(e, ToolCallRequest)]
        said = "".join(e.text for e in events if isinstance(e, TextDelta))
        assert isinstance(events[-1], UsageReport)
        assert bool(calls) != bool(said.strip()), (text, events)  # one or the other
        for call in calls:
            jsonschema.validate(call.arguments, schemas[call.name])


async def test_the_fixed_prefix_is_evaluated_once(router: object) -> None:
    await collect(router, "What is the capital of France?")
    first = dict(router.last_timings)  # type: ignore[attr-defined]
    await collect(router, "Tell me something about the sea.")
    second = router.last_timings  # type: ignore[attr-defined]
    assert first["cache_n"] > 150  # the system prompt and the tools were cached at warm-up
    assert second["cache_n"] >= first["cache_n"] // 2
    assert second["prompt_n"] < second["cache_n"] // 4  # only the new question is evaluated


async def test_a_plain_reply_streams_and_stops_after_two_sentences(model: object) -> None:
    """No tools offered to it, no JSON: its words as it writes them, cut where a spoken
    answer should end (and the model stopped there, not left to run to ``max_tokens``)."""
    from voicewire.providers.local.gguf import PlainReply

    events = await collect(model, "Tell me about the sea and the stars.")
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) >= 3 and not any(isinstance(e, ToolCallRequest) for e in events)
    said = "".join(deltas)
    assert said.strip() and "{" not in said[:2]  # words, not a JSON wrapper
    usage = events[-1]
    assert isinstance(usage, UsageReport) and usage.usage.output_tokens > 0  # priced
    reply = PlainReply()
    pieces = [reply.push(p) for p in ["  One. Tw", 'o?" Three', ". Four."]]
    assert pieces == ["One. Tw", 'o?"', ""] and reply.full


def test_a_plain_model_hears_what_was_said_not_call_notes(model: object) -> None:
    """Shown "(called get_realtime_data(...))" in its history, a small model writes such notes
    back as its answer; the words the rules spoke about the results are what it needs."""
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": "get_realtime_data", "arguments": "{}"},
    }
    history = [
        {"role": "user", "content": "How busy is the CPU?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": '{"value": 5}'},
        {"role": "assistant", "content": "CPU usage on this server is 5 percent."},
        {"role": "user", "content": "Book a table."},
    ]
    sent = model._request(history, TOOLS)["messages"]  # type: ignore[attr-defined]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert "called" not in str(sent) and sent[2]["content"].startswith("CPU usage")


async def test_a_cancelled_turn_stops_the_model(model: object) -> None:
    stream = model.stream(  # type: ignore[attr-defined]
        [{"role": "user", "content": "Tell me a very long story about the sea and the stars."}],
        [],
    )
    async for event in stream:
        if isinstance(event, TextDelta):
            break  # the user talked over it
    await stream.aclose()
    await asyncio.to_thread(model._lock.acquire)  # type: ignore[attr-defined]
    model._lock.release()  # type: ignore[attr-defined]
    assert model.last_chunks < 20  # type: ignore[attr-defined]  # of up to 350 tokens


@pytest.fixture(scope="module")
def hybrid_server(model: object) -> Iterator[tuple[RunningServer, HybridLLM]]:
    hybrid = HybridLLM(RulesAgent(), model)  # type: ignore[arg-type]
    srv = start_server(Providers(FakeSTT(), hybrid, FakeTTS()))
    yield srv, hybrid
    srv.stop()


async def test_the_model_answers_what_the_rules_do_not_know_through_the_server(
    hybrid_server: tuple[RunningServer, HybridLLM],
) -> None:
    srv, hybrid = hybrid_server
    client = await Client.connect(srv.ws_url)
    result = await client.ask("What is the capital of France?")
    deltas = [r for r in result.frames if r.frame.type == "llm_streaming"]
    assert result.status == "completed"
    assert hybrid.handled["model"] == 1
    assert len(deltas) >= 3 and deltas[0].at_ms < deltas[-1].at_ms  # streamed, not at once
    assert result.first("llm_complete").text  # type: ignore[union-attr]
    known = await client.ask("What time is it?")  # the rules' own line, at once
    assert hybrid.handled["rules"] == 1 and "It's" in known.first("llm_complete").text  # type: ignore[union-attr]
    await client.close()


async def test_the_hybrid_routes_by_what_the_rules_can_parse() -> None:
    model = FakeLLM([FakeLLMStep("From the model.")])
    hybrid = HybridLLM(RulesAgent(), model)

    def ask(text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": text}]

    assert hybrid.route(ask("What time is it?"), TOOLS) == "rules"
    assert hybrid.route(ask("Show me a bar chart of sales: May 3, June 5."), TOOLS) == "rules"
    assert hybrid.route(ask("Show me a bar chart."), TOOLS) == "rules"  # asks for the figures
    assert hybrid.route(ask("Tell me a story about a cat."), TOOLS) == "model"
    assert hybrid.route(ask("Add utilities 100 to that."), TOOLS) == "model"
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    after_tools = [
        *ask("Tell me a story."),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "{}"},
    ]
    assert hybrid.route(after_tools, TOOLS) == "rules"  # results are said by the rules
    said = [e async for e in hybrid.stream(ask("Tell me a story about a cat."), TOOLS)]
    assert "".join(e.text for e in said if isinstance(e, TextDelta)) == "From the model."
    assert hybrid.handled == {"model": 1}


async def test_a_model_that_fails_before_speaking_hands_the_turn_to_the_rules() -> None:
    """Its output cut off mid-call (``max_tokens``), say: the user hears the rules' answer."""
    failing = FakeLLM([FakeLLMStep("", fail_after_tokens=0)])
    hybrid = HybridLLM(RulesAgent(), failing)
    asked = [{"role": "user", "content": "Tell me a story about a cat."}]
    said = [e async for e in hybrid.stream(asked, TOOLS)]
    assert "Sorry, I can't answer that yet" in "".join(
        e.text for e in said if isinstance(e, TextDelta)
    )
    assert hybrid.handled == {"model": 1, "model_failed": 1}
    midway = HybridLLM(RulesAgent(), FakeLLM([FakeLLMStep("Once upon a", fail_after_tokens=2)]))
    with pytest.raises(ProviderError):  # words already spoken cannot be taken back
        _ = [e async for e in midway.stream(asked, TOOLS)]


def test_the_model_sees_the_last_exchanges_through_a_window_that_moves_two_at_a_time() -> None:
    from voicewire.providers.local.gguf import _recent

    def conversation(n: int) -> list[dict[str, str]]:
        out = []
        for i in range(n):
            out.append({"role": "user", "content": f"q{i}"})
            if i < n - 1:
                out.append({"role": "assistant", "content": f"a{i}"})
        return out

    heard = [[m["content"] for m in _recent(conversation(n), 2)] for n in range(1, 9)]
    assert heard[0] == ["q0"]
    for n in range(3, 9):  # 2 or 3 turns before this one, never more
        assert heard[n - 1][-1] == f"q{n - 1}" and 5 <= len(heard[n - 1]) <= 7
    assert heard[4][0] == heard[5][0] == "q2"  # the same start two turns running: cached
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    now = [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": "{}"},
    ]
    assert _recent(conversation(6) + now, 2)[-2:] == now  # this turn's steps stay


def test_metrics_say_which_path_answered(
    hybrid_server: tuple[RunningServer, HybridLLM],
) -> None:
    import httpx

    srv, hybrid = hybrid_server
    body = httpx.get(f"{srv.base}/metrics").json()
    assert body["llm_paths"] == dict(hybrid.handled)
    assert body["features"]["providers"]["llm"] == "local:rules-agent+smollm2-135m"


def test_a_gguf_of_the_users_own_is_configured_by_path(model: object, tmp_path: object) -> None:
    """``VOICEWIRE_LLM=local:/path/model.gguf``: no hash is pinned for it; a missing file is
    refused before the server starts."""
    from pathlib import Path

    from voicewire.config import Settings
    from voicewire.providers import ConfigError, validate
    from voicewire.providers.local.gguf import MODELS, model_path

    with pytest.raises(ConfigError, match="existing GGUF file"):
        validate(Settings(llm=f"local:{Path(str(tmp_path)) / 'missing.gguf'}"))
    path = model_path(MODELS["smollm2-135m"])
    settings = Settings(llm=f"local:{path}")
    validate(settings)  # accepted
    from voicewire.providers import _llm, parse

    built = _llm(parse(settings, "llm")[0], settings, None, None)  # type: ignore[arg-type]
    assert built.name == "local:rules-agent+SmolLM2-135M-Instruct.Q4_1"
    assert built.model.model.tool_calls is False  # type: ignore[attr-defined]  # plain replies
    with_tools = Settings(llm=f"local:{path}", llm_model_tools=True)
    built = _llm(parse(with_tools, "llm")[0], with_tools, None, None)  # type: ignore[arg-type]
    assert built.model.model.tool_calls is True  # type: ignore[attr-defined]
    assert "json_schema" in built.model._request([], TOOLS)  # type: ignore[attr-defined]
