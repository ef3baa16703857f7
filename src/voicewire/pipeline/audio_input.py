"""Streamed microphone audio: frame it for the VAD, keep what belongs to the turn, find its end.

One ``AudioInput`` exists per session only once the session sends audio, so text-only and idle
sessions pay nothing for it. Clients may send any chunk size; audio is re-framed into 20 ms
frames for the speech detector (Silero by default, ``silero.py``; or webrtcvad). Before speech
starts only a short pre-roll is kept, so a silent open microphone never grows memory.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from voicewire.pipeline.endpointing import (
    Endpointer,
    EndpointEvent,
    EndpointingConfig,
    SpeechRun,
)
from voicewire.pipeline.silero import SileroVad
from voicewire.protocol import INPUT_SAMPLE_RATE

FRAME_MS = 20
FRAME_BYTES = INPUT_SAMPLE_RATE * FRAME_MS // 1000 * 2
PREROLL_FRAMES = 25  # 500 ms kept before the detected onset: a short first word ("Book")
# followed by a micro-pause resets the onset run, so detection can come well after it
# Steady noise (a fan, a road, a hiss at 15 dB below the voice) fools webrtcvad into hearing
# speech without end. The background level is the quietest frame of the last second (minimum
# statistics: between words the room shows through); a frame must be ``noise_ratio`` times
# louder (RMS; 1.5x = 3.5 dB) to be speech. Quiet rooms keep the fixed floor.
NOISE_WINDOW_FRAMES = 50


@dataclass(slots=True)
class AudioEvent:
    kind: EndpointEvent
    offset_ms: float  # position in this session's input stream
    audio: bytes | None = None  # the finished turn's audio, on END when the VAD ends turns


class AudioInput:
    def __init__(
        self,
        config: EndpointingConfig,
        aggressiveness: int,
        vad_ends_turns: bool,
        energy_floor: float = 150.0,
        noise_ratio: float = 1.5,
        vad: str = "webrtc",  # or "silero"; the server's default is Silero (config.py)
    ) -> None:
        self._stateful = vad == "silero"
        self._vad: webrtcvad.Vad | SileroVad = (
            SileroVad(energy_floor) if self._stateful else webrtcvad.Vad(aggressiveness)
        )
        self._floor_ms = 0.0  # compared with sum of squares, not RMS: no square root per frame
        self.set_floor(energy_floor)
        self.endpointer = Endpointer(config)
        self.vad_ends_turns = vad_ends_turns
        self._pending = b""  # bytes not yet making a full VAD frame
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_FRAMES)
        self._turn = bytearray()  # audio of the turn in progress
        self.position_ms = 0.0  # total input audio seen
        self.has_speech = False  # the VAD heard speech in the current turn
        self.last_speech_at = 0.0  # caller's clock when the latest speech frame arrived
        self._run = SpeechRun()  # talking without a real pause, for barge-in
        self._quiet: deque[tuple[int, float]] = deque()  # (frame no., energy), rising energies
        self._frames = 0
        self._noise_gain = noise_ratio * noise_ratio  # in energy

    @property
    def turn_audio(self) -> bytes:
        return bytes(self._turn)

    @property
    def turn_bytes(self) -> int:
        return len(self._turn)

    def feed(self, pcm: bytes, now: float) -> list[AudioEvent]:
        """Add PCM s16le mono 16 kHz of any (even) length that arrived at ``now``.

        Returns the endpointing events it caused, in order.
        """
        data = self._pending + pcm
        usable = len(data) - len(data) % FRAME_BYTES
        self._pending = data[usable:]
        events: list[AudioEvent] = []
        for start in range(0, usable, FRAME_BYTES):
            frame = data[start : start + FRAME_BYTES]
            t = self.position_ms
            self.position_ms += FRAME_MS
            samples = np.frombuffer(frame, dtype=np.int16).astype(np.float32)
            energy = float(np.dot(samples, samples))
            loud = energy >= max(self._floor_ms, self._background(energy))
            # Silero carries state from window to window, so it hears every frame; webrtcvad
            # is asked only about frames loud enough to matter
            heard = (loud or self._stateful) and self._vad.is_speech(frame, INPUT_SAMPLE_RATE)
            speech = loud and heard
            if speech:
                self.last_speech_at = now
            self._run.update(speech, FRAME_MS)
            event = self.endpointer.update(speech, t, FRAME_MS)
            if self.has_speech or not self.vad_ends_turns:
                self._turn += frame
            else:
                self._preroll.append(frame)
            if event is EndpointEvent.SPEECH_START and not self.has_speech:
                self.has_speech = True
                if self.vad_ends_turns:
                    self._turn += b"".join(self._preroll)
                    self._preroll.clear()
            if event is EndpointEvent.CHECK:
                if self.vad_ends_turns:  # stop here until the caller has judged the words
                    self._pending = data[start + FRAME_BYTES :]
                    events.append(AudioEvent(event, t + FRAME_MS))
                    return events
                self.endpointer.decide(True)  # push-to-talk: the client ends turns
                event = EndpointEvent.END
            if event is EndpointEvent.END and self.vad_ends_turns:
                events.append(AudioEvent(event, t + FRAME_MS, audio=self._finish_turn()))
            elif event is not None:
                events.append(AudioEvent(event, t + FRAME_MS))
        return events

    def decide(self, finished: bool) -> AudioEvent | None:
        """Answer the CHECK that ``feed`` stopped at (call ``feed(b"")`` after, to go on): the
        END of a finished turn, or None for one that waits for more silence or speech."""
        if not self.endpointer.decide(finished):
            return None
        return AudioEvent(EndpointEvent.END, self.position_ms, audio=self._finish_turn())

    def take(self) -> bytes:
        """Hand over the turn's audio (with any partial frame) and start a new turn."""
        audio = self._finish_turn() + self._pending
        self._pending = b""
        self.endpointer.reset()
        return audio

    def _finish_turn(self) -> bytes:
        audio = bytes(self._turn)
        self._turn.clear()
        self._preroll.clear()
        self.has_speech = False
        return audio

    def _background(self, energy: float) -> float:
        """The energy a frame needs to stand above the room's noise (``noise_ratio``)."""
        n = self._frames = self._frames + 1
        quiet = self._quiet
        while quiet and quiet[-1][1] >= energy:  # a monotonic deque: O(1) sliding minimum
            quiet.pop()
        quiet.append((n, energy))
        if quiet[0][0] <= n - NOISE_WINDOW_FRAMES:
            quiet.popleft()
        if n < NOISE_WINDOW_FRAMES // 2:
            return 0.0  # too little heard yet to know the room
        return quiet[0][1] * self._noise_gain

    @property
    def speech_run_ms(self) -> float:
        """Milliseconds of speech without a real pause, up to now."""
        return self._run.ms

    def set_floor(self, energy_floor: float) -> None:
        """The RMS below which a frame is never speech: raised while the agent's own voice may
        come back through the microphone (echo the client's canceller left)."""
        self._floor_ms = energy_floor * energy_floor * (FRAME_BYTES // 2)

    def set_mode(
        self,
        vad_ends_turns: bool,
        silence_ms: float | None = None,
        max_silence_ms: float | None = None,
    ) -> None:
        self.vad_ends_turns = vad_ends_turns
        if silence_ms is not None:
            self.endpointer.config.silence_ms = silence_ms
        if max_silence_ms is not None:
            self.endpointer.config.max_silence_ms = max_silence_ms
