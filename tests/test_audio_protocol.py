"""Audio decoding and the protocol's typed frames and binary audio framing."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from voicewire.audio import AudioError, decode_wav, encode_wav, resample_pcm16, to_input_pcm
from voicewire.protocol import (
    SERVER_FRAME_TYPES,
    LlmStreaming,
    TtsChunk,
    client_frame_adapter,
    decode_audio_frame,
    encode_audio_frame,
    parse_server_frame,
)


def wav_bytes(samples: np.ndarray, rate: int, width: int, channels: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def test_wav_widths_and_channels_decode_to_mono_s16() -> None:
    ramp16 = np.array([0, 1000, -1000, 32767, -32768], dtype="<i2")
    assert decode_wav(wav_bytes(ramp16, 8000, 2, 1)) == (ramp16.tobytes(), 8000)
    stereo = np.stack([ramp16, ramp16], axis=1).astype("<i2")
    assert decode_wav(wav_bytes(stereo, 8000, 2, 2))[0] == ramp16.tobytes()
    as32 = ramp16.astype("<i4") << 16
    assert decode_wav(wav_bytes(as32, 8000, 4, 1))[0] == ramp16.tobytes()
    as24 = b"".join(int(v << 8).to_bytes(4, "little", signed=True)[:3] for v in ramp16.tolist())
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(8000)
        w.writeframes(as24)
    assert decode_wav(buf.getvalue())[0] == ramp16.tobytes()


@pytest.mark.parametrize("data", [b"", b"not a wav at all", b"RIFF\x00\x00\x00\x00WAVEjunk"])
def test_non_wav_is_rejected_clearly(data: bytes) -> None:
    with pytest.raises(AudioError, match="WAV"):
        decode_wav(data)


def test_resampling_keeps_duration() -> None:
    tone = (np.sin(np.arange(22050) / 10) * 10000).astype(np.int16).tobytes()
    out = resample_pcm16(tone, 22050, 16000)
    assert len(out) // 2 == 16000
    assert to_input_pcm(encode_wav(tone, 22050), "wav", 0, 16000) == out
    with pytest.raises(AudioError, match="even"):
        to_input_pcm(b"\x00\x01\x02", "pcm_s16le", 16000, 16000)


def test_audio_frame_round_trip() -> None:
    header = TtsChunk(
        utterance_id="u_1", seq=7, chunk_index=3, offset_ms=300.0, samples=2, sample_rate=22050
    )
    decoded, pcm = decode_audio_frame(encode_audio_frame(header, b"\x01\x00\x02\x00"))
    assert decoded == header and pcm == b"\x01\x00\x02\x00"
    with pytest.raises(ValueError):
        decode_audio_frame(b"\x00\x00\x10\x00{}")


def test_every_server_frame_type_parses_back() -> None:
    frame = LlmStreaming(session_id="s", utterance_id="u", seq=1, ts=2, delta="hi")
    assert parse_server_frame(frame.to_json()) == frame
    assert len(SERVER_FRAME_TYPES) == len(set(SERVER_FRAME_TYPES))


def test_client_frames_are_validated() -> None:
    assert client_frame_adapter.validate_python({"type": "user_text", "text": "hi"}).text == "hi"
    with pytest.raises(ValueError):
        client_frame_adapter.validate_python({"type": "user_text", "text": 5})
