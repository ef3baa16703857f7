"""The real server on loopback with scripted providers: protocol, bad input, cancel, REST."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import Fakes, RunningServer, check_invariants
from voicewire.audio import encode_wav
from voicewire.client import Client
from voicewire.protocol import ServerFrame, parse_server_frame
from voicewire.providers.base import Providers
from voicewire.providers.fake import FakeLLMStep

Make = Callable[..., RunningServer]


async def recv(ws: Any, timeout: float = 10) -> ServerFrame:
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout)
        if isinstance(message, str):
            return parse_server_frame(message)


async def test_init_describes_the_session(fake_server: Make) -> None:
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    init = client.init
    assert init.session_id.startswith("s_") and init.seq == 1
    assert init.input_audio.sample_rate == 16000 and init.output_audio.sample_rate == 16000
    assert init.providers == {"stt": "fake:stt", "llm": "fake:llm", "tts": "fake:tts"}
    assert init.limits.max_text_chars == 4000
    await client.close()


async def test_text_turn_streams_every_stage_in_order(fake_server: Make) -> None:
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    result = await client.ask("hello")
    frames = [r.frame for r in result.frames]
    check_invariants(frames)
    types = [f.type for f in frames]
    assert types[0] == "ack" and types[1] == "llm_start"
    assert {"llm_streaming", "llm_complete", "tts_start", "tts_chunk", "assistant_text"} <= set(
        types
    )
    assert types[-3:] == ["metrics_update", "cost_update", "utterance_complete"]
    assert all(f.session_id == client.session_id for f in frames)
    assert result.status == "completed"
    assert len(result.audio) == sum(f.samples for f in result.of_type("tts_chunk")) * 2  # type: ignore[attr-defined]
    await client.close()


async def test_a_client_that_shows_no_tokens_turns_token_frames_off(fake_server: Make) -> None:
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    await client.send_json({"type": "session_update", "token_frames": False, "ref": "t"})
    assert (await client.expect("ack")).ref == "t"  # type: ignore[attr-defined]
    quiet = await client.ask("hello")
    assert quiet.status == "completed" and not quiet.of_type("llm_streaming")
    reply = quiet.first("llm_complete").text  # type: ignore[union-attr]
    assert reply and " ".join(t.text for t in quiet.of_type("assistant_text")) == reply  # type: ignore[attr-defined]
    await client.send_json({"type": "session_update", "token_frames": True})
    await client.expect("ack")
    assert (await client.ask("hello")).of_type("llm_streaming")
    await client.close()


async def test_utterances_of_a_session_run_strictly_in_order(
    fake_server: Make, fakes: Fakes
) -> None:
    fakes.llm.steps = [FakeLLMStep("First answer.", token_s=0.01), FakeLLMStep("Second answer.")]
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    await client.send_json({"type": "user_text", "text": "one"})
    await client.send_json({"type": "user_text", "text": "two"})
    seen: list[tuple[str | None, str]] = []
    while sum(1 for _, t in seen if t == "utterance_complete") < 2:
        r = await client.next_frame()
        seen.append((r.frame.utterance_id, r.frame.type))
    uids = [u for u, t in seen if t == "ack"]
    first_done = seen.index((uids[0], "utterance_complete"))
    second_frames = [i for i, (u, t) in enumerate(seen) if u == uids[1] and t != "ack"]
    assert min(second_frames) > first_done
    # the second turn saw the first in its history
    assert fakes.llm.calls[1][0][:2] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "First answer."},
    ]
    await client.close()


BAD_INPUTS: list[tuple[str, str | bytes, str]] = [
    ("malformed json", "{not json", "invalid_json"),
    ("not an object", "[1, 2]", "invalid_frame"),
    ("unknown type", json.dumps({"type": "dance"}), "unknown_type"),
    ("missing field", json.dumps({"type": "user_text"}), "invalid_frame"),
    ("wrong type", json.dumps({"type": "user_text", "text": 42}), "invalid_frame"),
    ("empty text", json.dumps({"type": "user_text", "text": "   "}), "invalid_frame"),
    ("text too long", json.dumps({"type": "user_text", "text": "a" * 201}), "text_too_long"),
    ("odd binary", b"\x00\x01\x02", "bad_audio"),
    ("frame too large", b"\x00" * 70_000, "frame_too_large"),
    (
        "text frame too large",
        json.dumps({"type": "user_text", "text": "a" * 70_000}),
        "frame_too_large",
    ),
    ("bad base64", json.dumps({"type": "user_audio", "audio": "!!notbase64!!"}), "bad_audio"),
    ("non-ASCII base64", json.dumps({"type": "user_audio", "audio": "UklGRé=="}), "bad_audio"),
    (
        "not a wav",
        json.dumps({"type": "user_audio", "audio": base64.b64encode(b"hello").decode()}),
        "bad_audio",
    ),
    (
        "odd pcm",
        json.dumps(
            {
                "type": "user_audio",
                "format": "pcm_s16le",
                "audio": base64.b64encode(b"abc").decode(),
            }
        ),
        "bad_audio",
    ),
    (
        "clip too long",
        json.dumps(
            {
                "type": "user_audio",
                "format": "pcm_s16le",
                "audio": base64.b64encode(b"\x00" * 40_000).decode(),
            }
        ),
        "audio_too_long",
    ),
    (
        "bad sample rate",
        json.dumps({"type": "user_audio", "audio": "AAAA", "sample_rate": 5}),
        "invalid_frame",
    ),
    (
        "cancel unknown",
        json.dumps({"type": "cancel", "utterance_id": "u_nope"}),
        "unknown_utterance",
    ),
    ("commit without audio", json.dumps({"type": "audio_commit"}), "no_audio"),
    ("bad silence", json.dumps({"type": "session_update", "silence_ms": 5}), "invalid_frame"),
]


@pytest.mark.parametrize(
    "payload, code", [(p, c) for _, p, c in BAD_INPUTS], ids=[n for n, _, _ in BAD_INPUTS]
)
async def test_bad_input_gets_an_error_and_the_session_lives_on(
    fake_server: Make, payload: str | bytes, code: str
) -> None:
    srv = fake_server(max_text_chars=200, max_frame_bytes=65_536, max_audio_s=1.0)
    async with connect(srv.ws_url) as ws:
        init = await recv(ws)
        await ws.send(payload)
        error = await recv(ws)
        while error.type == "ack":  # cancel acks before it reports the unknown id
            error = await recv(ws)
        assert error.type == "error" and error.code == code, error  # type: ignore[attr-defined]
        assert error.message  # type: ignore[attr-defined]
        await ws.send(json.dumps({"type": "user_text", "text": "still there?", "ref": "r1"}))
        ack = await recv(ws)
        assert ack.type == "ack" and ack.ref == "r1"  # type: ignore[attr-defined]
        while (frame := await recv(ws)).type != "utterance_complete":
            pass
        assert frame.status == "completed" and frame.session_id == init.session_id  # type: ignore[attr-defined]


async def test_streamed_audio_over_the_duration_limit(fake_server: Make) -> None:
    srv = fake_server(max_audio_s=1.0, turn_detection="manual")
    async with connect(srv.ws_url) as ws:
        await recv(ws)
        for _ in range(11):  # 1.1 s in 100 ms chunks
            await ws.send(b"\x00\x00" * 1600)
        error = await recv(ws)
        assert error.type == "error" and error.code == "audio_too_long"  # type: ignore[attr-defined]
        await ws.send(b"\x00\x00" * 1600)
        await ws.send(json.dumps({"type": "audio_commit"}))
        ack = await recv(ws)
        assert ack.type == "ack" and ack.utterance_id != error.utterance_id


async def test_one_shot_wav_at_another_rate_is_resampled(fake_server: Make, fakes: Fakes) -> None:
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    clip = encode_wav(b"\x10\x00" * 22050, 22050)  # 1 s at 22.05 kHz
    client.mark()
    await client.send_json({"type": "user_audio", "audio": base64.b64encode(clip).decode()})
    ack = await client.expect("ack")
    result = await client.collect(ack.utterance_id)
    assert result.status == "completed"
    assert len(fakes.stt.calls[0]) == 32000  # 1 s at 16 kHz
    stt = result.first("stt_complete")
    assert stt is not None and stt.text == "hello"  # type: ignore[attr-defined]
    await client.close()


async def test_push_to_talk_commit_makes_one_utterance(fake_server: Make, fakes: Fakes) -> None:
    srv = fake_server(turn_detection="manual")
    client = await Client.connect(srv.ws_url)
    result = await client.say(b"\x00\x00" * 8000, realtime=False)
    check_invariants([r.frame for r in result.frames])
    assert result.status == "completed" and len(fakes.stt.calls[0]) == 16000
    await client.close()


async def test_cancel_a_running_utterance(fake_server: Make, fakes: Fakes) -> None:
    fakes.llm.steps = [
        FakeLLMStep("Talking. And talking forever", hang_after_tokens=2),
        FakeLLMStep("Fine."),
    ]
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    await client.send_json({"type": "user_text", "text": "go on"})
    ack = await client.expect("ack")
    await client.expect("tts_chunk")
    await client.send_json({"type": "cancel", "utterance_id": ack.utterance_id})
    result = await client.collect(ack.utterance_id, timeout=10)
    types = [r.frame.type for r in result.frames]
    assert types[-1] == "utterance_complete" and "utterance_cancelled" in types
    assert result.status == "cancelled" and fakes.llm.cancelled.is_set()
    after = await client.ask("next")
    assert after.status == "completed"
    await client.close()


async def test_cancel_a_queued_utterance(fake_server: Make, fakes: Fakes) -> None:
    fakes.llm.steps = [FakeLLMStep("Busy", hang_after_tokens=1)]
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    await client.send_json({"type": "user_text", "text": "one"})
    first = await client.expect("ack")
    await client.send_json({"type": "user_text", "text": "two"})
    second = await client.expect("ack")
    await client.send_json({"type": "cancel", "utterance_id": second.utterance_id})
    result = await client.collect(second.utterance_id, timeout=10)
    assert result.status == "cancelled"
    await client.send_json({"type": "cancel", "utterance_id": first.utterance_id})
    assert (await client.collect(first.utterance_id, timeout=10)).status == "cancelled"
    assert len(fakes.llm.calls) == 1  # the queued one never reached the LLM
    await client.close()


async def test_queue_limit_answers_busy(fake_server: Make, fakes: Fakes) -> None:
    fakes.llm.steps = [FakeLLMStep("Busy", hang_after_tokens=1)]
    srv = fake_server(max_queued_utterances=2)
    async with connect(srv.ws_url) as ws:
        await recv(ws)
        for text in ("a", "b", "c"):
            await ws.send(json.dumps({"type": "user_text", "text": text}))
        answers: list[ServerFrame] = []
        while len(answers) < 3:
            frame = await recv(ws)
            if frame.type in ("ack", "error"):
                answers.append(frame)
        assert [f.type for f in answers] == ["ack", "ack", "error"]
        assert answers[2].code == "busy"  # type: ignore[attr-defined]


async def test_disconnect_mid_turn_leaves_no_task_behind(fake_server: Make, fakes: Fakes) -> None:
    fakes.llm.steps = [FakeLLMStep("Never ending", hang_after_tokens=1)]
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    await client.send_json({"type": "user_text", "text": "hang"})
    await client.expect("llm_streaming")
    await client.close()
    assert await asyncio.to_thread(fakes.llm.cancelled.wait, 10), "the turn kept running"
    async with httpx.AsyncClient(base_url=srv.base) as http:
        deadline = time.monotonic() + 10
        while True:  # the worker finishes unwinding right after the cancellation
            metrics = (await http.get("/metrics")).json()
            if metrics["active_utterances"] == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        assert metrics["active_utterances"] == 0 and metrics["sessions"]["connected"] == 0
        session = (await http.get(f"/session/{client.session_id}")).json()
        assert session["connected"] is False
        # cut by the lost connection: interrupted, and told to the client if it resumes
        assert session["utterances"][0]["status"] == "interrupted"


async def test_llm_failure_is_one_utterance_not_the_session(
    fake_server: Make, fakes: Fakes
) -> None:
    fakes.llm.steps = [FakeLLMStep("Oops", fail_after_tokens=0), FakeLLMStep("Recovered.")]
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    failed = await client.ask("first")
    error = failed.first("error")
    assert failed.status == "failed" and error is not None and error.code == "llm_failed"  # type: ignore[attr-defined]
    assert (await client.ask("second")).status == "completed"
    await client.close()


async def test_ping(fake_server: Make) -> None:
    srv = fake_server()
    async with connect(srv.ws_url) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "ping", "ref": "p"}))
        pong = await recv(ws)
        assert pong.type == "pong" and pong.ref == "p"  # type: ignore[attr-defined]


async def test_rest_endpoints(fake_server: Make) -> None:
    srv = fake_server()
    client = await Client.connect(srv.ws_url)
    result = await client.ask("hello")
    async with httpx.AsyncClient(base_url=srv.base) as http:
        health = await http.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ready"
        assert health.json()["models"]["llm"] == "fake:llm"
        assert health.json()["sessions"]["connected"] == 1
        state = (await http.get(f"/session/{client.session_id}")).json()
        assert state["utterances"][0]["id"] == result.utterance_id
        assert state["utterances"][0]["status"] == "completed"
        assert state["history"][0] == {"role": "user", "content": "hello"}
        assert state["utterances"][0]["timings"]["ttfa_ms"] > 0
        assert (await http.get("/session/s_unknown")).status_code == 404
        metrics = (await http.get("/metrics")).json()
        assert metrics["turns"] == {"completed": 1}
        assert metrics["performance"]["ttfa_ms"]["count"] == 1
        assert metrics["performance"]["ttfa_ms"]["p95"] >= metrics["performance"]["ttfa_ms"]["min"]
        wav = encode_wav(b"\x01\x00" * 16000, 16000)
        stt = await http.post("/stt-test", files={"file": ("a.wav", wav, "audio/wav")})
        assert stt.status_code == 200 and stt.json()["text"] == "hello"
        assert stt.json()["audio_ms"] == 1000
        bad = await http.post("/stt-test", files={"file": ("a.txt", b"hello", "text/plain")})
        assert bad.status_code == 415 and "WAV" in bad.json()["detail"]
        assert (await http.post("/stt-test")).status_code == 422
        assert (await http.get("/docs")).status_code == 200
    await client.close()


async def test_idle_sessions_are_closed_then_forgotten(fake_server: Make) -> None:
    srv = fake_server(idle_timeout_s=1.0, session_ttl_s=1.0)
    async with connect(srv.ws_url) as ws:
        init = await recv(ws)
        error = await recv(ws, timeout=10)  # nothing sent: the sweeper closes the connection
        assert error.type == "error" and error.code == "idle_timeout"  # type: ignore[attr-defined]
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 1000
    async with httpx.AsyncClient(base_url=srv.base) as http:
        deadline = time.monotonic() + 10
        status = 200
        while status == 200 and time.monotonic() < deadline:  # kept for the TTL, then forgotten
            status = (await http.get(f"/session/{init.session_id}")).status_code
            await asyncio.sleep(0.05)
        assert status == 404


async def test_a_busy_session_is_not_closed_as_idle(fake_server: Make, fakes: Fakes) -> None:
    fakes.llm.steps = [FakeLLMStep("Thinking", hang_after_tokens=1)]
    srv = fake_server(idle_timeout_s=0.5)
    client = await Client.connect(srv.ws_url)
    await client.send_json({"type": "user_text", "text": "a long task"})
    await client.expect("llm_streaming")
    # the elapsed silence is the input under test: three idle timeouts, several sweeps
    await asyncio.sleep(1.5)
    await client.send_json({"type": "ping", "ref": "later"})
    while (frame := (await client.next_frame(10)).frame).type != "pong":
        assert frame.type != "error", frame
    await client.close()


async def test_health_says_starting_until_the_models_are_ready(fakes: Fakes) -> None:
    import threading

    from tests.conftest import start_server
    from voicewire.config import Settings
    from voicewire.providers.runner import ModelRunner

    release = threading.Event()

    def slow_models(settings: Settings, runner: ModelRunner) -> Providers:
        release.wait(30)  # "loading": held until the test has seen /health say so
        return fakes.providers

    srv = start_server(slow_models)  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(base_url=srv.base) as http:
            starting = await http.get("/health")
            assert starting.status_code == 503 and starting.json()["status"] == "starting"
            assert starting.json()["models"] is None
            release.set()
            client = await Client.connect(srv.ws_url)  # init comes once the models are ready
            ready = await http.get("/health")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            await client.close()
    finally:
        release.set()
        srv.stop()


async def test_web_pages_of_other_origins_cannot_open_the_socket(fake_server: Make) -> None:
    """A page on another site must not drive the server (and spend its cloud credits)."""
    from websockets.exceptions import InvalidStatus

    srv = fake_server(allowed_origins="https://app.example.com")
    host = srv.base.removeprefix("http://")
    with pytest.raises(InvalidStatus) as refused:
        await connect(srv.ws_url, additional_headers={"Origin": "https://evil.example"})
    assert refused.value.response.status_code == 403
    for origin in (f"http://{host}", "https://app.example.com"):  # its own page; configured
        async with connect(srv.ws_url, additional_headers={"Origin": origin}) as ws:
            assert parse_server_frame(await ws.recv()).type == "init"
    async with connect(srv.ws_url) as ws:  # no Origin: not a browser, not asked
        assert parse_server_frame(await ws.recv()).type == "init"


async def test_websocket_paths_and_query_flags_are_checked(fake_server: Make) -> None:
    """The WebSocket endpoints are served past FastAPI's router (serving.WebSocketRoutes): an
    unknown path is still refused, and a query flag that is not a boolean gets HTTP 400."""
    from websockets.exceptions import InvalidStatus

    srv = fake_server()
    base = srv.ws_url.rsplit("/ws/", 1)[0]
    with pytest.raises(InvalidStatus) as refused:
        await connect(base + "/ws/nothing-here")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        await connect(base + "/v1/realtime?voicewire_events=maybe")
    assert refused.value.response.status_code == 400
    assert b"voicewire_events" in refused.value.response.body
    async with connect(base + "/v1/realtime?voicewire_events=yes&model=m") as ws:
        created = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert created["type"] == "session.created" and created["session"]["model"] == "m"


async def test_websocket_routes_match_as_starlette_does_under_a_root_path() -> None:
    from voicewire.server.serving import WebSocketRoutes

    called: list[str] = []

    async def endpoint(ws: Any) -> None:
        called.append("endpoint")

    async def rest_of_app(scope: Any, receive: Any, send: Any) -> None:
        called.append("app")

    routes = WebSocketRoutes(rest_of_app, {"/ws/multimodal": endpoint})
    scope = {"type": "websocket", "path": "/vw/ws/multimodal", "root_path": "/vw", "headers": []}
    await routes(scope, None, None)  # behind a proxy that mounts the server under /vw
    await routes({**scope, "path": "/ws/multimodal", "root_path": ""}, None, None)
    await routes({**scope, "path": "/vw/ws/other"}, None, None)
    await routes({**scope, "type": "http"}, None, None)
    assert called == ["endpoint", "endpoint", "app", "app"]
