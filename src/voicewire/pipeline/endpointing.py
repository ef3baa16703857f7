"""Endpointing: when does the user's turn start, pause and end?

Pure logic over (is_speech, time) pairs: the caller passes each VAD frame's decision and its
position in the input audio, so this is tested without clocks, sleeps or audio. Times are audio
time (ms of input received), which keeps behaviour identical whether audio arrives in real time
or faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

RESUME_GAP_MS = 120.0  # silence after which speech must be confirmed again (min_speech_ms)
RESUME_MAX_DIP_MS = 80.0  # non-speech inside such speech that does not break it


class EndpointEvent(Enum):
    SPEECH_START = "speech_start"  # enough consecutive speech: the user is talking
    PAUSE = "pause"  # silence long enough to start transcribing speculatively
    RESUME = "resume"  # speech again after a pause: drop the speculation
    END = "end"  # silence long enough: the turn is over
    CHECK = "check"  # silence enough for a finished turn: is it? (``decide`` answers)


@dataclass(slots=True)
class EndpointingConfig:
    silence_ms: float = 300.0  # silence that ends a turn
    min_speech_ms: float = 60.0  # consecutive speech that starts one (filters clicks)
    pause_ms: float = 120.0  # silence that triggers speculative transcription (0: never)
    # silence that ends a turn judged unfinished by what was said (``turn_end.py``); at or
    # below ``silence_ms``: every turn ends at ``silence_ms``, nothing is asked
    max_silence_ms: float = 0.0


class Endpointer:
    def __init__(self, config: EndpointingConfig | None = None) -> None:
        self.config = config or EndpointingConfig()
        self.speaking = False
        self.speech_start_ms = 0.0
        self.last_speech_ms = 0.0
        self._run_start: float | None = None  # start of the current speech run before onset
        self._paused = False
        self._verdict: str | None = None  # None, "asked" (CHECK sent) or "wait" (unfinished)
        self._resuming = False  # speech after a gap, not yet long enough to count
        self._resume_speech_ms = 0.0  # ... how much of it so far
        self._resume_last = 0.0  # ... and where its latest speech frame ended

    def update(self, is_speech: bool, t_ms: float, frame_ms: float) -> EndpointEvent | None:
        """Feed one VAD frame that starts at ``t_ms`` and lasts ``frame_ms``."""
        cfg = self.config
        if not self.speaking:
            if not is_speech:
                self._run_start = None
                return None
            if self._run_start is None:
                self._run_start = t_ms
            if t_ms + frame_ms - self._run_start >= cfg.min_speech_ms:
                self.speaking = True
                self.speech_start_ms = self._run_start
                self.last_speech_ms = t_ms + frame_ms
                self._paused = False
                return EndpointEvent.SPEECH_START
            return None
        if is_speech:
            # after a real gap, min_speech_ms of speech (short dips allowed) must come before
            # it counts, as at the onset: a click or a gust of noise does not restart the
            # end-of-turn silence
            if not self._resuming and t_ms - self.last_speech_ms >= RESUME_GAP_MS:
                self._resuming, self._resume_speech_ms = True, 0.0
            if self._resuming:
                self._resume_speech_ms += frame_ms
                self._resume_last = t_ms + frame_ms
                if self._resume_speech_ms < cfg.min_speech_ms:
                    return None
                self._resuming = False
            self.last_speech_ms = t_ms + frame_ms
            self._verdict = None  # whatever was judged, the user went on
            if self._paused:
                self._paused = False
                return EndpointEvent.RESUME
            return None
        if self._resuming:
            if t_ms + frame_ms - self._resume_last <= RESUME_MAX_DIP_MS:
                return None  # perhaps the user going on: decide nothing yet
            self._resuming = False  # it was not
        silence = t_ms + frame_ms - self.last_speech_ms
        if silence >= cfg.silence_ms:
            if cfg.max_silence_ms <= cfg.silence_ms:
                self.reset()
                return EndpointEvent.END
            if self._verdict is None:
                self._verdict = "asked"
                return EndpointEvent.CHECK
            if self._verdict == "wait" and silence >= cfg.max_silence_ms:
                self.reset()
                return EndpointEvent.END
            return None
        if cfg.pause_ms > 0 and not self._paused and silence >= cfg.pause_ms:
            self._paused = True
            return EndpointEvent.PAUSE
        return None

    def decide(self, finished: bool) -> bool:
        """Answer the CHECK just returned: a finished turn ends now (True is returned: reset,
        as on END); an unfinished one waits for ``max_silence_ms`` of silence, or more speech."""
        if self._verdict != "asked":
            return False
        if finished:
            self.reset()
            return True
        self._verdict = "wait"
        return False

    def reset(self) -> None:
        self.speaking = False
        self._run_start = None
        self._paused = False
        self._verdict = None
        self._resuming = False


class SpeechRun:
    """How long the user has been talking without a real pause: the gaps between words (up
    to ``max_gap_ms``) do not break a run. Barge-in waits for a run long enough to be a
    person taking the floor, not a cough or a door."""

    def __init__(self, max_gap_ms: float = 100.0) -> None:
        self.max_gap_ms = max_gap_ms
        self.ms = 0.0
        self._gap_ms = 0.0

    def update(self, is_speech: bool, frame_ms: float) -> float:
        if is_speech:
            self.ms += frame_ms
            self._gap_ms = 0.0
        else:
            self._gap_ms += frame_ms
            if self._gap_ms > self.max_gap_ms:
                self.ms = 0.0
        return self.ms
