"""Property test for ``/v1/realtime``: whatever a client sends, every answer is a valid
Realtime event, no bad input is an internal error, and the session goes on answering."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.asyncio.client import connect

from tests.conftest import RunningServer, start_server
from tests.test_fuzz_protocol import json_values
from voicewire.providers.base import Providers
from voicewire.providers.fake import FakeLLM, FakeSTT, FakeTTS

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
TYPES = [
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.delete",
    "conversation.item.truncate",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
    "bogus",
]
items = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "function_call", "function_call_output", "x"])},
    optional={
        "role": st.sampled_from(["user", "assistant", "system", "tool"]),
        "content": st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["input_text", "input_audio", "output_text", "image"])},
                optional={"text": json_values, "audio": st.text(max_size=12)},
            ),
            max_size=3,
        ),
        "call_id": json_values,
        "output": json_values,
        "name": json_values,
        "arguments": json_values,
        "id": json_values,
    },
)
sessions = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["realtime", "transcription", 3]),
        "instructions": json_values,
        "tools": json_values,
        "output_modalities": json_values,
        "audio": st.fixed_dictionaries(
            {},
            optional={
                "input": st.fixed_dictionaries(
                    {},
                    optional={
                        "format": json_values,
                        "turn_detection": json_values
                        | st.fixed_dictionaries(
                            {"type": st.sampled_from(["server_vad", "semantic_vad"])},
                            optional={"silence_duration_ms": json_values, "eagerness": json_values},
                        ),
                    },
                ),
                "output": json_values,
            },
        ),
        "colour": json_values,
    },
)
events = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(TYPES)},
        optional={
            "event_id": json_values,
            "session": sessions,
            "item": items,
            "item_id": json_values,
            "audio": st.text(max_size=40) | st.just(base64.b64encode(bytes(960)).decode()),
            "audio_end_ms": json_values,
            "content_index": json_values,
            "response": json_values,
            "response_id": json_values,
            "previous_item_id": json_values,
        },
    ).map(json.dumps),
    st.text(max_size=50),
    st.binary(max_size=100),
)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    srv = start_server(Providers(stt=FakeSTT(), llm=FakeLLM(), tts=FakeTTS()))
    yield srv
    srv.stop()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(events, min_size=1, max_size=6))
def test_any_events_leave_the_session_answering(server: RunningServer, batch: list[Any]) -> None:
    asyncio.run(_exchange(server.base.replace("http", "ws", 1) + "/v1/realtime", batch))


async def _exchange(url: str, batch: list[Any]) -> None:
    async with connect(url, max_size=None) as ws:
        json.loads(await ws.recv())  # session.created
        for event in batch:
            await ws.send(event)
        probe = {"type": "conversation.item.retrieve", "item_id": "none", "event_id": "alive"}
        await ws.send(json.dumps(probe))
        while True:  # every event before the probe was answered or ignored; the session lives
            event = json.loads(await asyncio.wait_for(ws.recv(), 20))
            SERVER_EVENT.validate_python(event)
            if event["type"] == "error":
                assert event["error"]["code"] != "internal", event
                if event["error"].get("event_id") == "alive":
                    break
