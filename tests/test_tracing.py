"""OpenTelemetry: an utterance is one trace with a span per stage, read back from the SDK's
in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import start_server
from voicewire import tracing
from voicewire.client import Client
from voicewire.providers.base import Providers, ToolCallRequest
from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT, FakeTTS


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.enable(SimpleSpanProcessor(exporter))
    yield exporter
    tracing.disable()


async def test_an_utterance_is_a_trace_with_a_span_per_stage(spans: InMemorySpanExporter) -> None:
    chart = ToolCallRequest(
        "c1", "generate_chart", {"chart_type": "bar", "labels": ["a"], "values": [1]}
    )
    llm = FakeLLM([FakeLLMStep("", tool_calls=[chart]), FakeLLMStep("Here it is.")])
    srv = start_server(Providers(FakeSTT(["chart it"]), llm, FakeTTS()), otel=True)
    try:
        client = await Client.connect(srv.ws_url)
        speech = (3000 * np.sin(np.arange(16000) / 5)).astype("<i2").tobytes()
        turn = await client.say(speech, realtime=False)
        assert turn.status == "completed"
        await client.close()
    finally:
        srv.stop()
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert {"utterance", "stt", "llm", "tool", "tts.first_byte"} <= set(finished)
    root = finished["utterance"]
    assert root.attributes["voicewire.utterance_id"] == turn.utterance_id
    assert root.attributes["voicewire.session_id"] == client.session_id
    assert root.attributes["voicewire.status"] == "completed"
    children = [s for s in spans.get_finished_spans() if s is not root]
    for child in children:
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id
        assert root.start_time <= child.start_time <= child.end_time <= root.end_time
        assert child.attributes["voicewire.utterance_id"] == turn.utterance_id
    llm_rounds = [s for s in children if s.name == "llm"]
    assert [s.attributes["round"] for s in llm_rounds] == [0, 1]
    assert llm_rounds[0].attributes["tool_calls"] == 1
    assert finished["tool"].attributes["tool.name"] == "generate_chart"
    assert finished["stt"].attributes["provider"] == "fake:stt"
    assert finished["tts.first_byte"].attributes["provider"] == "fake:tts"
