"""``/v1/realtime`` driven by the official ``openai`` SDK's realtime client, on the fakes.

Every server event is parsed with the SDK's own models (``RealtimeServerEvent``, strictly:
a missing or mistyped field fails), except voicewire's own ``voicewire.*`` events, which are
sent only to a client that asks for them. Spoken turns use Piper's voice through the real VAD.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from tests.conftest import Fakes, RunningServer, Speaker, silence
from voicewire.audio import resample_pcm16
from voicewire.providers.base import ToolCallRequest
from voicewire.providers.fake import FakeLLMStep

Make = Callable[..., RunningServer]
SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
LONG = " ".join(f"Sentence number {n} of a long answer is spoken here." for n in range(1, 9))
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


class Events:
    """An SDK realtime connection whose every server event is checked as it arrives."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []

    async def next(self, timeout: float = 30) -> dict[str, Any]:
        raw = json.loads(await asyncio.wait_for(self.conn.recv_bytes(), timeout))
        if not raw["type"].startswith("voicewire."):
            SERVER_EVENT.validate_python(raw)  # the SDK's own definition of the event
        self.seen.append(raw)
        return raw

    async def until(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        """Events up to and including the first of ``kind`` whose fields match."""
        got = []
        while True:
            event = await self.next()
            got.append(event)
            if event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
                return got


@asynccontextmanager
async def realtime(srv: RunningServer, query: str = "") -> AsyncIterator[tuple[Any, Events]]:
    client = AsyncOpenAI(base_url=srv.base + "/v1", api_key="sk-anything")
    extra = {"extra_query": {"voicewire_events": "true"}} if query == "events" else {}
    async with client.realtime.connect(model="gpt-realtime", **extra) as conn:
        events = Events(conn)
        created = await events.next()
        assert created["type"] == "session.created"
        yield conn, events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def pcm24(pcm16k: bytes) -> bytes:
    return resample_pcm16(pcm16k, 16_000, 24_000)


async def say_text(conn: Any, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await conn.conversation.item.create(item=item)


async def test_a_text_turn_follows_the_openai_event_sequence(
    fake_server: Make, fakes: Fakes
) -> None:
    async with realtime(fake_server()) as (conn, events):
        await conn.session.update(
            session={"type": "realtime", "instructions": "Be brief.", "output_modalities": ["text"]}
        )
        updated = (await events.until("session.updated"))[-1]["session"]
        assert updated["instructions"] == "Be brief."
        assert updated["output_modalities"] == ["text"]
        await say_text(conn, "hello")
        await conn.response.create()
        got = await events.until("response.done")
    kinds = [k for k in types(got) if not k.endswith(".delta")]
    assert kinds == [
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    text = "".join(e["delta"] for e in got if e["type"] == "response.output_text.delta")
    assert text == "Hello there. How can I help?"
    done = got[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"] == [{"type": "output_text", "text": text}]
    assert done["usage"]["output_tokens"] > 0
    assert "total_usd" in done["voicewire"]["cost_usd"]
    messages, _ = fakes.llm.calls[0]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[-1] == {"role": "user", "content": "hello"}
    assert fakes.tts.calls == []  # text only: nothing was synthesized


async def test_a_spoken_turn_with_server_vad_transcribes_and_answers_in_24khz_audio(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    fakes.stt.transcripts = ["what is the weather like"]
    async with realtime(fake_server()) as (conn, events):
        audio = pcm24(speaker.say("What is the weather like?") + silence(1500))
        for i in range(0, len(audio), 4800):  # 100 ms appends
            await conn.input_audio_buffer.append(
                audio=base64.b64encode(audio[i : i + 4800]).decode()
            )
        got = await events.until("response.done")
    kinds = types(got)
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_audio.delta",
        "response.done",
    ]
    assert [kinds.index(k) for k in order] == sorted(kinds.index(k) for k in order)
    started = got[kinds.index("input_audio_buffer.speech_started")]
    completed = got[kinds.index("conversation.item.input_audio_transcription.completed")]
    assert completed["item_id"] == started["item_id"]
    assert completed["transcript"] == "what is the weather like"
    pcm = b"".join(
        base64.b64decode(e["delta"]) for e in got if e["type"] == "response.output_audio.delta"
    )
    spoken_ms = sum(len(t) for t in fakes.tts.calls) * fakes.tts.ms_per_char
    assert len(pcm) / 2 / 24_000 * 1000 == pytest.approx(spoken_ms, rel=0.02)  # 24 kHz out
    transcript = got[kinds.index("response.output_audio_transcript.done")]["transcript"]
    assert transcript == "Hello there. How can I help?"
    assert got[-1]["response"]["output"][0]["content"][0]["type"] == "output_audio"


async def test_a_client_function_tool_round_trip(fake_server: Make, fakes: Fakes) -> None:
    call = ToolCallRequest("call_w1", "get_weather", {"city": "Paris"})
    fakes.llm.steps = [FakeLLMStep(tool_calls=[call]), FakeLLMStep("It is sunny in Paris.")]
    async with realtime(fake_server()) as (conn, events):
        await conn.session.update(
            session={"type": "realtime", "tools": [WEATHER_TOOL], "output_modalities": ["text"]}
        )
        await events.until("session.updated")
        await say_text(conn, "weather in Paris?")
        await conn.response.create()
        got = await events.until("response.done")
        args = next(e for e in got if e["type"] == "response.function_call_arguments.done")
        assert (args["name"], json.loads(args["arguments"])) == ("get_weather", {"city": "Paris"})
        output = got[-1]["response"]["output"]
        assert [i["type"] for i in output] == ["function_call"]
        assert output[0]["call_id"] == "call_w1"
        assert len(fakes.llm.calls) == 1  # the reply waits for the client's result
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": "call_w1", "output": '{"sky": "sun"}'}
        )
        await conn.response.create()
        got = await events.until("response.done")
    assert got[-1]["response"]["output"][0]["content"][0]["text"] == "It is sunny in Paris."
    messages, tools = fakes.llm.calls[1]
    assert {t.name for t in tools} >= {"get_weather", "generate_chart"}
    assert messages[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_w1", "content": '{"sky": "sun"}'}


async def test_a_server_tool_makes_a_chart_for_a_client_that_asks_for_voicewire_events(
    fake_server: Make, fakes: Fakes
) -> None:
    chart = ToolCallRequest(
        "call_c1", "generate_chart", {"chart_type": "bar", "labels": ["a", "b"], "values": [1, 2]}
    )
    fakes.llm.steps = [FakeLLMStep(tool_calls=[chart]), FakeLLMStep("Here is your chart.")]
    srv = fake_server()
    async with realtime(srv, "events") as (conn, events):
        await say_text(conn, "chart please")
        await conn.response.create()
        got = await events.until("response.done")
    figure = next(e for e in got if e["type"] == "voicewire.visualization")
    assert figure["figure"]["data"][0]["type"] == "bar"
    assert figure["item_id"] == got[-1]["response"]["output"][0]["id"]
    assert "voicewire.tool_call.completed" in types(got)
    # the server's own tools are not the client's business: no function_call items
    assert [i["type"] for i in got[-1]["response"]["output"]] == ["message"]
    async with realtime(srv) as (conn, events):  # without asking: pure OpenAI events only
        await say_text(conn, "chart please")
        await conn.response.create()
        got = await events.until("response.done")
    assert not [k for k in types(got) if k.startswith("voicewire.")]


async def test_truncate_keeps_only_what_was_heard(fake_server: Make, fakes: Fakes) -> None:
    fakes.llm.steps = [FakeLLMStep(LONG), FakeLLMStep("Sure.")]
    srv = fake_server()
    async with realtime(srv) as (conn, events):
        await say_text(conn, "talk to me")
        await conn.response.create()
        got = await events.until("response.done")
        item_id = got[-1]["response"]["output"][0]["id"]
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=1200)
        truncated = (await events.until("conversation.item.truncated"))[-1]
        assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 1200)
        await conn.conversation.item.retrieve(item_id=item_id)
        item = (await events.until("conversation.item.retrieved"))[-1]["item"]
        heard = item["content"][0]["transcript"]
        await say_text(conn, "go on")
        await conn.response.create()
        await events.until("response.done")
    messages, _ = fakes.llm.calls[1]
    remembered = messages[-2]
    assert remembered == {"role": "assistant", "content": heard + "…"}  # "…": it was cut
    assert heard.startswith("Sentence number 1")
    assert len(heard) < len(LONG) / 3


async def test_speech_over_a_response_cancels_it_as_turn_detected(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    fakes.llm.steps = [FakeLLMStep(LONG), FakeLLMStep("Sure.")]
    fakes.tts.ms_per_char = 15
    async with realtime(fake_server()) as (conn, events):
        await say_text(conn, "talk to me")
        await conn.response.create()
        await events.until("response.output_audio.delta")
        audio = pcm24(speaker.say("Wait, stop please.") + silence(800))
        await conn.input_audio_buffer.append(audio=base64.b64encode(audio).decode())
        got = await events.until("response.done")
    done = got[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "turn_detected"
    assert done["output"][0]["status"] == "incomplete"


async def test_speech_while_a_finished_reply_still_plays_cuts_what_is_remembered(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    fakes.llm.steps = [FakeLLMStep("One two three four five six seven eight."), FakeLLMStep("Ok.")]
    fakes.tts.ms_per_char = 150  # 6 s of reply audio; sent 1.5 s ahead of its playout
    async with realtime(fake_server(audio_lead_ms=6000)) as (conn, events):
        await say_text(conn, "count")
        await conn.response.create()
        done = (await events.until("response.done"))[-1]["response"]  # all sent, not played
        item_id = done["output"][0]["id"]
        audio = pcm24(speaker.say("Wait, stop please.") + silence(800))
        await conn.input_audio_buffer.append(audio=base64.b64encode(audio).decode())
        truncated = (await events.until("conversation.item.truncated"))[-1]
    assert truncated["item_id"] == item_id
    assert 0 < truncated["audio_end_ms"] < 5000  # heard by the estimate of the playout


async def test_a_cough_during_a_response_is_not_a_turn_nor_an_item(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    fakes.llm.steps = [FakeLLMStep(LONG), FakeLLMStep("Sure.")]
    fakes.tts.ms_per_char = 15
    said = np.frombuffer(speaker.say("Wait."), dtype=np.int16)
    voiced = int(np.flatnonzero(np.abs(said) > 1000)[0])
    cough = said[voiced : voiced + 16 * 180].tobytes()  # 180 ms of voice: under 200 ms
    async with realtime(fake_server()) as (conn, events):
        await say_text(conn, "talk to me")
        await conn.response.create()
        await events.until("response.output_audio.delta")
        await conn.input_audio_buffer.append(
            audio=base64.b64encode(pcm24(cough + silence(600))).decode()
        )
        got = await events.until("response.done")
        kinds = types(got)
        assert "input_audio_buffer.speech_started" in kinds  # the VAD heard it as speech ...
        assert got[-1]["response"]["status"] == "completed"  # ... too short to interrupt
        added = next(e for e in got if e["type"] == "input_audio_buffer.committed")["item_id"]
        assert {"type": "conversation.item.deleted", "item_id": added}.items() <= next(
            e for e in got if e["type"] == "conversation.item.deleted"
        ).items()
        await conn.conversation.item.retrieve(item_id=added)
        assert (await events.until("error"))[-1]["error"]["code"] == "item_not_found"


async def test_response_cancel(fake_server: Make, fakes: Fakes) -> None:
    gate = asyncio.Event()  # never set: the LLM stalls after its first token
    fakes.llm.steps = [FakeLLMStep(LONG, gate=gate, gate_after_tokens=1)]
    async with realtime(fake_server()) as (conn, events):
        await say_text(conn, "talk")
        await conn.response.create()
        created = (await events.until("response.created"))[-1]["response"]
        await events.until("response.output_audio_transcript.delta")  # the LLM is under way
        await conn.response.cancel()
        got = await events.until("response.done")
    done = got[-1]["response"]
    assert done["id"] == created["id"]
    assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "client_cancelled")
    assert fakes.llm.cancelled.is_set()


async def test_manual_turns_commit_then_respond(
    fake_server: Make, fakes: Fakes, speaker: Speaker
) -> None:
    fakes.stt.transcripts = ["hello there"]
    async with realtime(fake_server()) as (conn, events):
        await conn.session.update(
            session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        )
        session = (await events.until("session.updated"))[-1]["session"]
        assert session["audio"]["input"]["turn_detection"] is None
        audio = pcm24(speaker.say("Hello there.") + silence(1500))
        await conn.input_audio_buffer.append(audio=base64.b64encode(audio).decode())
        await conn.input_audio_buffer.commit()
        got = await events.until("conversation.item.input_audio_transcription.completed")
        assert "input_audio_buffer.speech_started" not in types(got)
        assert got[-1]["transcript"] == "hello there"
        assert not fakes.llm.calls  # no response until the client asks
        await conn.response.create()
        await events.until("response.done")
    assert fakes.llm.calls[0][0][-1] == {"role": "user", "content": "hello there"}


async def test_g711_in_and_out(fake_server: Make, fakes: Fakes, speaker: Speaker) -> None:
    from voicewire.realtime.codec import encode_g711

    fmt = {"type": "audio/pcmu"}
    async with realtime(fake_server()) as (conn, events):
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {
                    "input": {"format": fmt, "turn_detection": None},
                    "output": {"format": fmt},
                },
            }
        )
        await events.until("session.updated")
        said = speaker.say("Hello there.")
        speech = resample_pcm16(said + silence(500), 16_000, 8_000)
        ulaw = encode_g711(np.frombuffer(speech, dtype="<i2"), "audio/pcmu")
        await conn.input_audio_buffer.append(audio=base64.b64encode(ulaw).decode())
        await conn.input_audio_buffer.commit()
        await events.until("conversation.item.input_audio_transcription.completed")
        await conn.response.create()
        got = await events.until("response.done")
    # the core heard the same speech (G.711 and two resamplings away)
    heard = np.frombuffer(fakes.stt.calls[0], dtype="<i2").astype(np.float64)
    sent = np.frombuffer(said, dtype="<i2").astype(np.float64)
    lag = int(np.argmax(np.correlate(sent[:8000], heard[:4000], "valid")))
    a, b = sent[lag : lag + len(heard)], heard[: len(sent) - lag]
    assert np.corrcoef(a, b)[0, 1] > 0.9
    out = b"".join(
        base64.b64decode(e["delta"]) for e in got if e["type"] == "response.output_audio.delta"
    )
    spoken_ms = sum(len(t) for t in fakes.tts.calls) * fakes.tts.ms_per_char
    assert len(out) / 8 == pytest.approx(spoken_ms, rel=0.02)  # one byte per sample at 8 kHz


async def test_bad_events_get_error_events_and_the_session_lives_on(fake_server: Make) -> None:
    async with realtime(fake_server()) as (conn, events):
        bad: list[tuple[dict[str, Any] | str, str, str | None]] = [
            ("{not json", "invalid_json", None),
            ({"type": "no.such.event", "event_id": "e1"}, "invalid_value", "type"),
            ({"type": "conversation.item.truncate", "event_id": "e2"}, "invalid_value", None),
            (
                {"type": "input_audio_buffer.append", "audio": "é", "event_id": "e3b"},
                "invalid_value",
                "audio",
            ),
            (
                {"type": "input_audio_buffer.append", "audio": "!!", "event_id": "e3"},
                "invalid_value",
                "audio",
            ),
            (
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "colour": "red"},
                    "event_id": "e4",
                },
                "unknown_parameter",
                "session.colour",
            ),
            (
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "tools": [{"type": "mcp", "server_label": "x"}],
                    },
                    "event_id": "e5",
                },
                "invalid_value",
                "session.tools[0].type",
            ),
            (
                {"type": "response.cancel", "event_id": "e6"},
                "response_cancel_not_active",
                "response_id",
            ),
            (
                {"type": "input_audio_buffer.commit", "event_id": "e7"},
                "input_audio_buffer_commit_empty",
                None,
            ),
            (
                {"type": "conversation.item.retrieve", "item_id": "nope", "event_id": "e8"},
                "item_not_found",
                "item_id",
            ),
        ]
        for event, code, param in bad:
            await conn.send_raw(event if isinstance(event, str) else json.dumps(event))
            error = (await events.until("error"))[-1]["error"]
            assert error["type"] == "invalid_request_error"
            assert error["code"] == code, (event, error)
            if param is not None:
                assert error["param"] == param, (event, error)
            if isinstance(event, dict) and "event_id" in event and code != "invalid_json":
                assert error["event_id"] == event["event_id"]
        await say_text(conn, "still there?")
        await conn.response.create()
        done = (await events.until("response.done"))[-1]
    assert done["response"]["status"] == "completed"


async def test_items_are_deleted_from_what_the_agent_remembers(
    fake_server: Make, fakes: Fakes
) -> None:
    async with realtime(fake_server()) as (conn, events):
        await say_text(conn, "my name is Ada")
        added = (await events.until("conversation.item.done"))[-1]["item"]
        await say_text(conn, "what is my name?")
        await events.until("conversation.item.done")
        await conn.conversation.item.delete(item_id=added["id"])
        assert (await events.until("conversation.item.deleted"))[-1]["item_id"] == added["id"]
        await conn.response.create()
        await events.until("response.done")
    messages, _ = fakes.llm.calls[0]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["what is my name?"]


def test_session_is_visible_over_rest(fake_server: Make) -> None:
    srv = fake_server()

    async def run() -> str:
        async with realtime(srv) as (conn, events):
            await say_text(conn, "hello")
            await conn.response.create()
            await events.until("response.done")
            return events.seen[0]["session"]["id"]

    session_id = asyncio.run(run())
    body = httpx.get(f"{srv.base}/session/{session_id}").json()
    assert [m["role"] for m in body["history"]] == ["user", "assistant"]


async def test_the_openai_agents_sdk_runs_a_function_tool_through_voicewire(
    fake_server: Make, fakes: Fakes
) -> None:
    """A higher-level client: the Agents SDK's ``RealtimeRunner`` pointed at voicewire."""
    from agents import function_tool
    from agents.realtime import RealtimeAgent, RealtimeRunner

    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"sunny in {city}"

    call = ToolCallRequest("call_a1", "get_weather", {"city": "Paris"})
    fakes.llm.steps = [FakeLLMStep(tool_calls=[call]), FakeLLMStep("It is sunny in Paris.")]
    srv = fake_server()
    agent = RealtimeAgent(name="assistant", instructions="Be helpful.", tools=[get_weather])
    url = srv.base.replace("http", "ws", 1) + "/v1/realtime?model=gpt-realtime"
    session = await RealtimeRunner(agent).run(model_config={"url": url, "api_key": "sk-any"})
    seen: list[str] = []
    async with session:
        await session.send_message("What is the weather in Paris?")
        async with asyncio.timeout(30):
            async for event in session:
                seen.append(event.type)
                assert event.type != "error", event
                if seen.count("agent_end") == 2:  # the tool call's response, then the answer
                    break
    assert asked == ["Paris"]
    assert seen.index("tool_start") < seen.index("tool_end")
    assert "audio" in seen, [s for s in seen if s != "raw_model_event"]
    messages, _ = fakes.llm.calls[1]
    assert messages[0] == {"role": "system", "content": "Be helpful."}
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_a1", "content": "sunny in Paris"}


@pytest.mark.models
async def test_embedded_models_hear_and_answer_through_the_realtime_protocol(
    speaker: Speaker,
) -> None:
    """Whisper hears 24 kHz audio appended by the SDK, the agent answers, Piper speaks."""
    from tests.conftest import start_server

    srv = start_server(None, warmup=True)
    try:
        async with realtime(srv) as (conn, events):
            audio = pcm24(speaker.say("What is the CPU usage right now?") + silence(1500))
            for i in range(0, len(audio), 9600):  # 200 ms appends, faster than real time
                chunk = base64.b64encode(audio[i : i + 9600]).decode()
                await conn.input_audio_buffer.append(audio=chunk)
            got = await events.until("response.done")
    finally:
        srv.stop()
    heard = next(e for e in got if e["type"].endswith("input_audio_transcription.completed"))
    assert "cpu" in heard["transcript"].lower()
    pcm = np.frombuffer(
        b"".join(base64.b64decode(e["delta"]) for e in got if e["type"].endswith("audio.delta")),
        dtype="<i2",
    )
    assert len(pcm) > 24_000 // 2, "less than half a second of reply"
    assert float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > 300
    said = next(e for e in got if e["type"] == "response.output_audio_transcript.done")
    assert "cpu" in said["transcript"].lower()
    assert got[-1]["response"]["status"] == "completed"


def test_history_given_to_the_llm_is_always_well_formed() -> None:
    """An unanswered client call, or a result whose call fell out of the history, would make
    a Chat Completions API refuse the whole request."""
    from voicewire.session import well_formed

    def call(i: str) -> dict[str, Any]:
        return {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}}

    messages = [
        {"role": "tool", "tool_call_id": "gone", "content": "1"},  # its call fell out
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call("a"), call("b")]},
        {"role": "tool", "tool_call_id": "a", "content": "2"},  # b never answered
        {"role": "assistant", "content": "Let me check.", "tool_calls": [call("c")]},
        {"role": "user", "content": "never mind"},
    ]
    assert well_formed(messages) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call("a")]},
        {"role": "tool", "tool_call_id": "a", "content": "2"},
        {"role": "assistant", "content": "Let me check."},
        {"role": "user", "content": "never mind"},
    ]
    plain = [{"role": "user", "content": "hi"}]
    assert well_formed(plain) is plain


async def test_an_item_added_during_a_response_lands_after_it(
    fake_server: Make, fakes: Fakes
) -> None:
    gate = asyncio.Event()
    fakes.llm.steps = [FakeLLMStep("First answer.", gate=gate, gate_after_tokens=1)]
    srv = fake_server()
    async with realtime(srv) as (conn, events):
        await say_text(conn, "one")
        await conn.response.create()
        await events.until("response.output_audio_transcript.delta")  # the LLM waits
        await say_text(conn, "two")  # queued behind the running response
        await events.until("conversation.item.done")
        srv.app.state.runtime.loop.call_soon_threadsafe(gate.set)
        await events.until("response.done")
        fakes.llm.steps = [FakeLLMStep("Second answer.")]
        await conn.response.create()
        await events.until("response.done")
    messages, _ = fakes.llm.calls[1]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "one"),
        ("assistant", "First answer."),
        ("user", "two"),
    ]


async def test_a_page_from_another_origin_cannot_open_a_realtime_session(fake_server: Make) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    url = fake_server().base.replace("http", "ws", 1) + "/v1/realtime?model=gpt-realtime"
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, origin="http://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
