"""The command line as a user runs it: talk to a live server, print the configuration."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import RunningServer, Speaker, start_server
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
    done = voicewire("talk", "--url", srv.ws_url, "--text", "hello", "--out", str(out), "--frames")
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
    assert "you said: hello" in done.stdout and "completed" in done.stdout  # FakeSTT's words


def test_talk_needs_something_to_say() -> None:
    done = voicewire("talk")
    assert done.returncode != 0 and "give --text, --wav or --chat" in done.stderr


def test_talk_prints_a_readable_conversation_with_links() -> None:
    from voicewire.providers.base import Providers
    from voicewire.providers.fake import FakeSTT, FakeTTS
    from voicewire.providers.local.agent import RulesAgent

    srv = start_server(Providers(stt=FakeSTT(), llm=RulesAgent(), tts=FakeTTS()))
    try:
        chart = "Show me a bar chart of sales: January 120, February 150, March 90."
        done = voicewire("talk", "--url", srv.ws_url, "--text", chart, "--text", "make it a pie")
    finally:
        srv.stop()
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"you said: {chart}" in out and "you said: make it a pie" in out
    assert "agent: Here's the bar chart" in out and "agent: Here's the pie chart" in out
    assert "tool generate_chart(chart_type=bar" in out
    sid = out.split("session ", 1)[1].split(":", 1)[0]
    assert f"{srv.base}/session/{sid}" in out  # one session for both turns
    assert f"charts: {srv.base}/data-viz/{sid}?format=html" in out
    assert "tts_chunk" not in out  # the frame timeline only with --frames


def test_talk_chat_keeps_one_session_for_follow_ups(fake_server: Make) -> None:
    srv = fake_server()
    done = subprocess.run(
        [sys.executable, "-m", "voicewire.cli", "talk", "--url", srv.ws_url, "--chat"],
        input="first question\n\nsecond question\n/wav missing.wav\n/quit\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "you said: first question" in done.stdout
    assert "you said: second question" in done.stdout
    assert "missing.wav: No such file" in done.stdout  # said, and the session goes on
    sid = done.stdout.split("session ", 1)[1].split(":", 1)[0]
    history = httpx.get(f"{srv.base}/session/{sid}").json()["history"]
    assert [m["content"] for m in history if m["role"] == "user"] == [
        "first question",
        "second question",
    ]


def test_talk_errors_are_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/ws/multimodal"
    done = voicewire("talk", "--url", url, "--text", "hi")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"error: cannot connect to {url} (connection refused): is the server running (`make run`)?"
    )
    text = tmp_path / "q.wav"
    text.write_text("hello")
    done = voicewire("talk", "--url", url, "--wav", str(text))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{text}: not a readable PCM WAV file (no RIFF header" in done.stderr


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


def test_bad_settings_get_one_configuration_error_line_everywhere() -> None:
    """A port out of range or not a number, and a local model that does not ship, are refused
    by every command the same way (issue 12: 99999 used to serve on 34463)."""
    cases = [
        ({"VOICEWIRE_PORT": "99999"}, "VOICEWIRE_PORT=99999: Input should be less than or equal"),
        ({"VOICEWIRE_PORT": "http"}, "VOICEWIRE_PORT=http: Input should be a valid integer"),
        ({"VOICEWIRE_STT": "local:whisper-large"}, "unknown local stt model 'whisper-large'"),
    ]
    for env, message in cases:
        for command in ("serve", "config"):
            done = voicewire(command, env=env)
            assert done.returncode == 2, (command, env, done.stdout)
            assert "configuration error:" in done.stderr + done.stdout
            assert message in done.stderr + done.stdout, done.stderr
            assert "Traceback" not in done.stderr
    assert voicewire("config", env={"VOICEWIRE_STT": "local:tiny.en"}).returncode == 0


def test_serve_says_where_to_go_when_ready() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "VOICEWIRE_PROFILE": "zero", "VOICEWIRE_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicewire.cli", "serve"],
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "VOICEWIRE_DATA_DIR": tempfile.mkdtemp()},
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # bounded by pytest's timeout if the line never comes
            if "voicewire is ready" in line:
                break
        assert f"open http://127.0.0.1:{port}/ in a browser" in line
        assert f"voicewire talk --chat --url ws://127.0.0.1:{port}/ws/multimodal" in line
    finally:
        proc.terminate()
        proc.wait(20)
