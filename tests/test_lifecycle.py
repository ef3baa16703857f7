"""Admission and drain: a full server refuses the next session at the handshake and keeps the
ones it has; SIGTERM lets running turns finish, tells every client, closes with 1001, leaves
every turn in the ledger and exits 0."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import RunningServer, start_server
from voicewire.client import Client
from voicewire.protocol import SessionClosing, parse_server_frame
from voicewire.providers.base import Providers
from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT, FakeTTS

Make = Callable[..., RunningServer]


async def refused_with(url: str) -> tuple[int, dict[str, str], dict[str, object]]:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url):
            pass
    response = caught.value.response
    return response.status_code, dict(response.headers), json.loads(response.body or b"{}")


async def test_at_capacity_the_next_session_gets_503_and_the_others_keep_working(
    fake_server: Make,
) -> None:
    srv = fake_server(max_sessions=2)
    first, second = await Client.connect(srv.ws_url), await Client.connect(srv.ws_url)
    status, headers, body = await refused_with(srv.ws_url)
    assert status == 503 and int(headers["retry-after"]) > 0
    assert "capacity (2 sessions)" in body["error"]["message"]  # type: ignore[index]
    async with httpx.AsyncClient(base_url=srv.base) as http:
        ready = await http.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["max_sessions"] == 2
        assert (await http.get("/health")).status_code == 200  # alive, only full
        for client in (first, second):  # nobody was dropped to make room
            assert (await client.ask("still there?")).status == "completed"
    await first.close()
    await second.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigterm_drains_running_turns_then_exits_0() -> None:
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="voicewire-drain-"))
    env = {
        **os.environ,
        "VOICEWIRE_PROFILE": "realistic",  # turns of ~2 s: under way when the signal comes
        "VOICEWIRE_PORT": str(port),
        "VOICEWIRE_DATA_DIR": str(data),
        "VOICEWIRE_LOG_LEVEL": "info",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicewire.cli", "serve"], stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if "voicewire is ready" in line:
                break
        url = f"ws://127.0.0.1:{port}/ws/multimodal"
        uids, closings, codes = asyncio.run(talk_through_a_drain(proc, url, port))
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(uids) == 20 and all(closings) and set(codes) == {1001}
    with sqlite3.connect(data / "ledger.sqlite3") as db:
        ledgered = {row[0] for row in db.execute("SELECT DISTINCT utterance_id FROM entries")}
    assert set(uids) <= ledgered  # every turn that ran is in the ledger


async def talk_through_a_drain(
    proc: subprocess.Popen[str], url: str, port: int
) -> tuple[list[str], list[bool], list[int]]:
    clients = [await Client.connect(url) for _ in range(20)]
    for client in clients:
        await client.send_json({"type": "user_text", "text": "Tell me something."})
    for client in clients:
        await client.expect("llm_start", timeout=30)  # every turn is running
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    for line in proc.stderr:  # the server says when it has begun to drain
        if "draining:" in line:
            break
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        ready = await http.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["draining"] is True
    status, _, body = await refused_with(url)  # no new session while draining
    assert status == 503 and "shutting down" in body["error"]["message"]  # type: ignore[index]
    uids, closings, codes = [], [], []
    for client in clients:
        done = await client.expect("utterance_complete", timeout=60)
        assert done.status == "completed"  # type: ignore[attr-defined]  # finished, not cut
        uids.append(done.utterance_id or "")
        closing = await client.expect("session_closing", timeout=60)
        closings.append(isinstance(closing, SessionClosing))
        await asyncio.wait_for(client.ws.wait_closed(), 30)
        codes.append(client.ws.close_code or 0)
    return uids, closings, codes


def test_the_session_closing_frame_parses() -> None:
    frame = parse_server_frame(json.dumps({"type": "session_closing", "seq": 1, "ts": 1}))
    assert isinstance(frame, SessionClosing) and frame.reason == "server_shutdown"


# ------------------------------------------------------------------ back-pressure


class _Seen(logging.Handler):
    """Sets an event when a log line containing ``needle`` is emitted (the server's own word
    that something happened, so the test waits for it instead of sleeping)."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.event.set()


ASK = {
    "multimodal": [{"type": "user_text", "text": "talk to me"}],
    "realtime": [
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "talk to me"}],
            },
        },
        {"type": "response.create"},
    ],
}


@pytest.mark.parametrize("protocol", ["multimodal", "realtime"])
async def test_a_client_that_stops_reading_is_closed_and_its_turn_stopped(protocol: str) -> None:
    words = "word " * 290  # a long reply: ~10 MB of audio, more than any socket buffer holds
    llm = FakeLLM([FakeLLMStep(words)])
    srv = start_server(
        Providers(FakeSTT(), llm, FakeTTS(ms_per_char=220)),
        send_timeout_s=1.0,
        audio_lead_ms=0,  # audio as fast as it is made: the buffer fills at once
        max_reply_audio_s=600,
    )
    seen = _Seen("its client had stopped reading")
    loggers = [logging.getLogger(f"voicewire.{m}.connection") for m in ("server", "realtime")]
    for server_log in loggers:
        server_log.addHandler(seen)
        server_log.setLevel(logging.INFO)
    url = (
        srv.ws_url
        if protocol == "multimodal"
        else srv.ws_url.replace("/ws/multimodal", "/v1/realtime")
    )
    try:
        async with connect(url, max_queue=1) as ws:
            await ws.recv()  # init, or session.created
            for event in ASK[protocol]:
                await ws.send(json.dumps(event))
            # ... and read nothing more: the server must give up on us by itself
            assert await asyncio.to_thread(seen.event.wait, 30)
            async with httpx.AsyncClient(base_url=srv.base) as http:
                metrics = (await http.get("/metrics")).json()
            assert metrics["active_utterances"] == 0  # the turn was stopped, not left running
            received = 0
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    received += len(await ws.recv())
        # 1008 "client not reading" when the close frame fits behind the data the client never
        # read; else the connection is dropped without one (a client that does not read
        # cannot be told)
        assert closed.value.rcvd is None or closed.value.rcvd.code == 1008
        assert received < 9 * 2**20  # far from the whole reply was made and sent
    finally:
        for server_log in loggers:
            server_log.removeHandler(seen)
            server_log.setLevel(logging.NOTSET)
        srv.stop()


async def test_backpressure_drops_tokens_only_while_congested() -> None:
    from voicewire.server.backpressure import SLOW_WRITE_S, Backpressure

    bp = Backpressure(timeout_s=0.5)
    assert await bp.write(asyncio.sleep(0)) and not bp.drop(True)
    assert await bp.write(asyncio.sleep(SLOW_WRITE_S * 1.2))  # a slow write: congested
    assert bp.drop(True) and not bp.drop(False) and bp.dropped == 1
    assert await bp.write(asyncio.sleep(0)) and not bp.drop(True)  # flowing again
    assert not await bp.write(asyncio.sleep(5))  # stalled past the timeout


async def test_each_write_gets_its_whole_deadline_and_other_cancels_pass_through() -> None:
    """One timer per connection serves every write: a write that starts late in the timer's
    period still gets its full timeout, and a turn cancelled mid-write stays cancelled."""
    from voicewire.server.backpressure import Backpressure

    loop = asyncio.get_running_loop()
    bp = Backpressure(timeout_s=0.4)
    assert await bp.write(asyncio.sleep(0))  # arms the timer for t0 + 0.4
    assert await bp.write(asyncio.sleep(0.3))
    started = loop.time()  # t0 + 0.3: the timer fires 0.1 s into this write and re-arms
    assert not await bp.write(asyncio.sleep(5))
    assert 0.4 <= loop.time() - started < 2.0  # its own deadline, not the first write's
    assert await bp.write(asyncio.sleep(0))  # the connection's writes go on being timed

    async def writer() -> bool:
        return await bp.write(asyncio.sleep(5))

    task = asyncio.create_task(writer())
    await asyncio.sleep(0)
    task.cancel()  # the turn is cancelled (an interruption), not the client gone
    with pytest.raises(asyncio.CancelledError):
        await task
    bp.close()


def test_the_derived_session_cap_waits_until_sessions_have_taken_turns() -> None:
    """The capacity estimate divides CPU since start by turns: in a burst of new connections
    that is mostly the cost of opening them, and it refused sessions the server could hold
    (7 of 1,000 in the synchronized-wave benchmark). It applies only once the sessions have
    taken about a turn each."""
    from types import SimpleNamespace

    from voicewire.server.lifecycle import Admission

    estimate = {"turns_measured": 60, "sessions": 400}
    runtime = SimpleNamespace(
        settings=SimpleNamespace(max_sessions=None, shed_loop_lag_ms=0),
        capacity=lambda: estimate,
        metrics=SimpleNamespace(connections_total=1000),
        store=SimpleNamespace(connected=lambda: 600),
        monitor=SimpleNamespace(recent_loop_lag_ms=lambda: 0.0),
    )
    admission = Admission(runtime)  # type: ignore[arg-type]
    assert admission.session_cap() is None and admission.check().ok  # 1,000 opened, 60 turns
    estimate["turns_measured"] = 1200
    assert admission.session_cap() == 400 and not admission.check().ok
    runtime.settings.max_sessions = 5000  # set by the operator: always applies
    estimate["turns_measured"] = 0
    assert admission.session_cap() == 5000
