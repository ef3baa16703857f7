"""The command line as a user runs it: talk to a live server, print the configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

from tests.conftest import RunningServer, Speaker
from voicewire.audio import encode_wav

Make = Callable[..., RunningServer]


def voicewire(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voicewire.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_talk_text_prints_the_timeline_and_saves_the_reply(
    fake_server: Make, tmp_path: Path
) -> None:
    srv = fake_server()
    out = tmp_path / "reply.wav"
    done = voicewire("talk", "--url", srv.ws_url, "--text", "hello", "--out", str(out))
    assert done.returncode == 0, done.stderr
    for frame in ("ack", "llm_start", "tts_chunk", "assistant_text", "utterance_complete"):
        assert frame in done.stdout
    assert "(completed)" in done.stdout
    uid = done.stdout.split("utterance ", 1)[1].split(" ", 1)[0]
    rows = [line for line in done.stdout.splitlines() if "tts_chunk" in line]
    assert rows and all(uid in row for row in rows)  # every row names its utterance
    with wave.open(str(out)) as w:
        assert w.getframerate() == 16000 and w.getnframes() > 1000


def test_talk_wav_streams_audio_and_commits(
    fake_server: Make, tmp_path: Path, speaker: Speaker
) -> None:
    srv = fake_server()
    question = tmp_path / "q.wav"
    question.write_bytes(encode_wav(speaker.say("Hello there."), 16000))
    done = voicewire("talk", "--url", srv.ws_url, "--wav", str(question), "--no-realtime")
    assert done.returncode == 0, done.stderr
    assert "stt_complete" in done.stdout and "(completed)" in done.stdout


def test_talk_needs_exactly_one_input() -> None:
    done = voicewire("talk")
    assert done.returncode != 0 and "exactly one of --text or --wav" in done.stderr


def test_config_prints_the_effective_settings() -> None:
    done = voicewire("config", env={"VOICEWIRE_SILENCE_MS": "450", "VOICEWIRE_PROFILE": "zero"})
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout)
    assert settings["silence_ms"] == 450
    assert settings["llm"] == "simulated:zero" and settings["stt"] == "simulated:zero"


def test_config_masks_keys_and_names_what_is_missing() -> None:
    done = voicewire(
        "config",
        env={"OPENAI_API_KEY": "sk-secret-123", "VOICEWIRE_LLM": "openai:gpt-4o-mini,local"},
    )
    assert done.returncode == 0, done.stderr
    assert "sk-secret-123" not in done.stdout + done.stderr
    settings = json.loads(done.stdout)
    assert settings["openai_api_key"] == "**********" and settings["speculative_stt_ms"] == 120
    missing = voicewire("config", env={"VOICEWIRE_TTS": "elevenlabs", "ELEVENLABS_API_KEY": ""})
    assert missing.returncode == 2 and "set ELEVENLABS_API_KEY" in missing.stderr


def test_serve_refuses_a_cloud_provider_without_its_key() -> None:
    done = voicewire(
        "serve", env={"VOICEWIRE_STT": "openai", "OPENAI_API_KEY": "", "VOICEWIRE_PORT": "1"}
    )
    assert done.returncode == 2
    assert "stt provider openai needs an API key: set OPENAI_API_KEY" in done.stdout + done.stderr


def test_serve_refuses_an_unknown_provider() -> None:
    done = voicewire("serve", env={"VOICEWIRE_LLM": "gpt-banana", "VOICEWIRE_PORT": "1"})
    assert done.returncode == 2
    assert "unknown llm provider 'gpt-banana'" in done.stdout + done.stderr
