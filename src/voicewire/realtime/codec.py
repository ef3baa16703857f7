"""The OpenAI Realtime audio formats at the edge: 24 kHz PCM, and G.711 mu-law / A-law at 8 kHz.

The conversation core hears 16 kHz PCM and the TTS speaks at its own rate; these classes
convert a stream chunk by chunk (soxr's streaming resampler keeps its state between chunks, so
chunk boundaries make no clicks). G.711 is a fixed table; the standard library's ``audioop``
that had it is gone from Python 3.13, so it is done here with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import soxr

FormatType = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
RATES: dict[str, int] = {"audio/pcm": 24_000, "audio/pcmu": 8_000, "audio/pcma": 8_000}


@dataclass(frozen=True, slots=True)
class AudioFormat:
    type: FormatType = "audio/pcm"

    @property
    def rate(self) -> int:
        return RATES[self.type]

    def describe(self) -> dict[str, object]:
        """As the Realtime session object shows it."""
        return (
            {"type": self.type, "rate": self.rate}
            if self.type == "audio/pcm"
            else {"type": self.type}
        )

    def bytes_per_ms(self) -> float:
        return self.rate / 1000 * (2 if self.type == "audio/pcm" else 1)


# ----------------------------------------------------------------------------- G.711


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


_ULAW = _ulaw_table()
_ALAW = _alaw_table()


def _segment(v: np.ndarray, first_end_bits: int) -> np.ndarray:
    """The G.711 segment of a magnitude: 0 up to ``2**first_end_bits - 1``, one per octave."""
    bits = np.floor(np.log2(np.maximum(v, 1))).astype(np.int32) + 1
    return np.clip(bits - first_end_bits, 0, 8)


def _encode_ulaw(samples: np.ndarray) -> np.ndarray:
    """As ITU-T G.711 (Sun's reference ``g711.c``) on 14-bit input."""
    v = samples.astype(np.int32) >> 2
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), 8159) + 0x21
    seg = _segment(v, 6)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((v >> (seg + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8)


def _encode_alaw(samples: np.ndarray) -> np.ndarray:
    """As ITU-T G.711 (Sun's reference ``g711.c``) on 13-bit input."""
    v = samples.astype(np.int32) >> 3
    mask = np.where(v >= 0, 0xD5, 0x55)
    v = np.where(v >= 0, v, -v - 1)
    seg = _segment(v, 5)
    shift = np.where(seg < 2, 1, seg)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((v >> shift) & 0x0F))
    return (code ^ mask).astype(np.uint8)


def decode_g711(data: bytes, kind: FormatType) -> np.ndarray:
    table = _ULAW if kind == "audio/pcmu" else _ALAW
    return table[np.frombuffer(data, dtype=np.uint8)]


def encode_g711(samples: np.ndarray, kind: FormatType) -> bytes:
    encode = _encode_ulaw if kind == "audio/pcmu" else _encode_alaw
    return encode(samples).tobytes()


# ----------------------------------------------------------------------------- streams


class _Resampler:
    """A streaming int16 resampler; a pass-through when the rates agree."""

    def __init__(self, src: int, dst: int) -> None:
        self._stream = soxr.ResampleStream(src, dst, 1, dtype="int16") if src != dst else None

    def __call__(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)

    def clear(self) -> None:
        if self._stream is not None:
            self._stream.clear()


class InputDecoder:
    """Client audio in ``fmt`` -> PCM s16le at ``rate`` (the core's 16 kHz)."""

    def __init__(self, fmt: AudioFormat, rate: int) -> None:
        self.format = fmt
        self._resample = _Resampler(fmt.rate, rate)
        self._odd = b""  # half a PCM sample left from the last append

    def __call__(self, data: bytes) -> bytes:
        if self.format.type == "audio/pcm":
            data, self._odd = self._odd + data, b""
            if len(data) % 2:
                data, self._odd = data[:-1], data[-1:]
            samples = np.frombuffer(data, dtype="<i2")
        else:
            samples = decode_g711(data, self.format.type)
        return self._resample(samples).astype("<i2").tobytes()


class OutputEncoder:
    """The TTS's PCM s16le at ``rate`` -> the client's ``fmt``; ``clear`` between replies."""

    def __init__(self, fmt: AudioFormat, rate: int) -> None:
        self.format = fmt
        self.rate = rate
        self._resample = _Resampler(rate, fmt.rate)

    def clear(self) -> None:
        self._resample.clear()

    def __call__(self, pcm: bytes, last: bool = False) -> bytes:
        samples = self._resample(np.frombuffer(pcm, dtype="<i2"), last)
        if self.format.type == "audio/pcm":
            return samples.astype("<i2").tobytes()
        return encode_g711(samples, self.format.type)
