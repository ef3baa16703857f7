"""Audio helpers: decode what clients send into PCM s16le mono at the input rate, encode WAV.

Decoding is strict: anything that is not what it claims raises :class:`AudioError` with a
message fit for an ``error`` frame or a 4xx response.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import soxr


class AudioError(ValueError):
    """Audio that cannot be used, with a reason a user can act on."""


def resample_pcm16(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample PCM s16le mono with soxr; a no-op when the rates agree."""
    if src_rate == dst_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16)
    out = soxr.resample(samples, src_rate, dst_rate)
    return np.asarray(out, dtype=np.int16).tobytes()


def decode_wav(data: bytes) -> tuple[bytes, int]:
    """Return (PCM s16le mono, sample rate) from an integer-PCM WAV file of any width/channels."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"not a readable PCM WAV file ({exc})") from exc
    if rate <= 0 or channels <= 0:
        raise AudioError("WAV header has no sample rate or channels")
    if width == 1:
        samples = (np.frombuffer(frames, np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        samples = np.frombuffer(frames, "<i2").astype(np.int32)
    elif width == 3:
        raw = np.frombuffer(frames[: len(frames) // 3 * 3], np.uint8).reshape(-1, 3)
        # little-endian 24-bit: keep the top 16 bits, sign from the high byte
        samples = raw[:, 1].astype(np.int32) | (raw[:, 2].astype(np.int8).astype(np.int32) << 8)
    elif width == 4:
        samples = np.frombuffer(frames, "<i4") >> 16
    else:
        raise AudioError(f"unsupported WAV sample width {width}")
    samples = samples[: len(samples) // channels * channels]
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return np.clip(samples, -32768, 32767).astype(np.int16).tobytes(), rate


def encode_wav(pcm: bytes, sample_rate: int) -> bytes:
    """Wrap PCM s16le mono in a WAV container."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def to_input_pcm(data: bytes, fmt: str, sample_rate: int, target_rate: int) -> bytes:
    """Decode a client clip (``wav`` or ``pcm_s16le``) to PCM s16le mono at ``target_rate``."""
    if fmt == "wav":
        pcm, sample_rate = decode_wav(data)
    else:
        if len(data) % 2:
            raise AudioError("pcm_s16le audio must have an even number of bytes")
        pcm = data
    if not pcm:
        raise AudioError("the audio clip is empty")
    return resample_pcm16(pcm, sample_rate, target_rate)


def duration_ms(pcm: bytes, sample_rate: int) -> float:
    return len(pcm) / 2 / sample_rate * 1000.0
