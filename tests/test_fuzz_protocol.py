"""Property test: whatever a client sends, the session answers and survives (issue 20)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import start_server
from voicewire.audio import encode_wav
from voicewire.client import Client
from voicewire.providers.base import Providers
from voicewire.providers.fake import FakeLLM, FakeSTT, FakeTTS

TYPES = ["user_text", "user_audio", "audio_commit", "session_update", "cancel", "ping", "bogus"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
GOOD_WAV = encode_wav(b"\x01\x00" * 1600, 16000)


@st.composite
def mutated_wav(draw: st.DrawFn) -> str:
    data = bytearray(GOOD_WAV)
    for _ in range(draw(st.integers(1, 6))):
        data[draw(st.integers(0, 43))] = draw(st.integers(0, 255))
    return base64.b64encode(bytes(data)).decode()


frames = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(TYPES)},
        optional={
            "text": json_values,
            "audio": json_values | mutated_wav(),
            "format": st.sampled_from(["wav", "pcm_s16le", "mp3", 3]),
            "sample_rate": json_values,
            "turn_detection": json_values,
            "silence_ms": json_values,
            "utterance_id": json_values,
            "ref": json_values,
        },
    ).map(json.dumps),
    st.text(max_size=50),
    st.binary(max_size=200),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(frames, min_size=1, max_size=6))
def test_any_frames_leave_the_session_answering(batch: list[Any]) -> None:
    srv = start_server(Providers(stt=FakeSTT(), llm=FakeLLM(), tts=FakeTTS()))
    try:
        asyncio.run(_exchange(srv.ws_url, batch))
    finally:
        srv.stop()


async def _exchange(url: str, batch: list[Any]) -> None:
    client = await Client.connect(url)
    for frame in batch:
        await client.ws.send(frame)
    await client.send_json({"type": "ping", "ref": "alive"})
    while True:  # every frame before the ping was answered or ignored; the session lives
        received = await client.next_frame(timeout=20)
        if received.frame.type == "pong" and received.frame.ref == "alive":  # type: ignore[attr-defined]
            break
        assert received.frame.type != "error" or received.frame.code != "internal", received.frame  # type: ignore[attr-defined]
    await client.close()
