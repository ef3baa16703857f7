"""Audio helpers: decode what clients send into PCM s16le mono at the input rate, encode WAV.

Decoding is strict: anything that is not what it claims raises :class:`AudioError` with a
message fit for an ``error`` frame or a 4xx response.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import soxr

# Rates a real recording has. The header is checked before any sample is touched: a WAV that
# claims 1 Hz would otherwise be resampled 16,000-fold (a 100 KB file became gigabytes).
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 16


class AudioError(ValueError):
    """Audio that cannot be used, with a reason a user can act on."""


class EmptyAudio(AudioError):
    """A well-formed clip with no samples."""


class AudioTooLong(AudioError):
    """Audio longer than the configured limit (known from the header, before decoding)."""

    def __init__(self, seconds: float, limit_s: float) -> None:
        super().__init__(f"audio of {seconds:.1f} s exceeds the limit of {limit_s:g} s")
        self.seconds = seconds


def resample_pcm16(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample PCM s16le mono with soxr; a no-op when the rates agree."""
    if src_rate == dst_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16)
    out = soxr.resample(samples, src_rate, dst_rate)
    return np.asarray(out, dtype=np.int16).tobytes()


def check_rate(rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")


def decode_wav(data: bytes, max_seconds: float | None = None) -> tuple[bytes, int]:
    """Return (PCM s16le mono, sample rate) from an integer-PCM WAV file of any width/channels.

    The header is checked (rate, channels, duration against ``max_seconds``) before the samples
    are read; anything the ``wave`` module trips over is an :class:`AudioError`.
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            if channels <= 0 or channels > MAX_CHANNELS:
                raise AudioError(f"WAV header says {channels} channels")
            check_rate(rate)
            # the data actually present bounds the duration as much as the header's claim
            nframes = min(w.getnframes(), len(data) // max(1, channels * width))
            if max_seconds is not None and nframes / rate > max_seconds:
                raise AudioTooLong(nframes / rate, max_seconds)
            frames = w.readframes(nframes)
    except AudioError:
        raise
    except (wave.Error, EOFError) as exc:
        why = str(exc) or "the file ends inside its header"
        if not data.startswith(b"RIFF"):
            why = "no RIFF header: not a WAV file"
        raise AudioError(f"not a readable PCM WAV file ({why})") from exc
    except Exception as exc:  # wave raises RuntimeError, struct.error... on broken chunks
        raise AudioError(f"not a readable PCM WAV file ({type(exc).__name__}: {exc})") from exc
    frames = frames[: len(frames) // (width * channels) * (width * channels)]
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


def to_input_pcm(
    data: bytes, fmt: str, sample_rate: int, target_rate: int, max_seconds: float | None = None
) -> bytes:
    """Decode a client clip (``wav`` or ``pcm_s16le``) to PCM s16le mono at ``target_rate``.

    CPU-bound for long clips: call it off the event loop. The rate and the duration are checked
    before any resampling, so the work is bounded by ``max_seconds`` whatever the input claims.
    """
    if fmt == "wav":
        pcm, sample_rate = decode_wav(data, max_seconds)
    else:
        if len(data) % 2:
            raise AudioError("pcm_s16le audio must have an even number of bytes")
        check_rate(sample_rate)
        pcm = data
        seconds = len(pcm) / 2 / sample_rate
        if max_seconds is not None and seconds > max_seconds:
            raise AudioTooLong(seconds, max_seconds)
    if not pcm:
        raise EmptyAudio("the audio clip is empty")
    return resample_pcm16(pcm, sample_rate, target_rate)


def duration_ms(pcm: bytes, sample_rate: int) -> float:
    return len(pcm) / 2 / sample_rate * 1000.0
