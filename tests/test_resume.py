"""Sessions in Redis, resumed on another worker: two real servers sharing a real Redis, real
WebSocket clients. The conversation goes on where it stopped, a forged token gets a new
session, and Redis going away degrades sessions to memory without failing a turn."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio

from tests.conftest import RunningServer, start_server
from tests.engines import RedisServer, Worker, free_port
from voicewire.client import Client
from voicewire.providers import ConfigError
from voicewire.providers.base import Providers, ToolCallRequest
from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT, FakeTTS

CHART = ToolCallRequest(
    "c1", "generate_chart", {"chart_type": "bar", "labels": ["Jan", "Feb"], "values": [120, 90]}
)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.start()
    yield server
    server.stop()


def worker(redis_url: str, llm: FakeLLM, **overrides: Any) -> RunningServer:
    return start_server(Providers(FakeSTT(), llm, FakeTTS()), redis_url=redis_url, **overrides)


def said(llm: FakeLLM) -> list[str]:
    """The user and assistant words of the LLM's last request."""
    messages, _ = llm.calls[-1]
    return [str(m.get("content")) for m in messages if m.get("role") in ("user", "assistant")]


async def test_a_session_resumes_on_another_worker_with_its_history_and_charts(
    redis_server: RedisServer,
) -> None:
    llm_a = FakeLLM([FakeLLMStep("", tool_calls=[CHART]), FakeLLMStep("Here are your sales.")])
    llm_b = FakeLLM([FakeLLMStep("February was lower.")])
    a, b = worker(redis_server.url, llm_a), worker(redis_server.url, llm_b)
    try:
        client = await Client.connect(a.ws_url)
        token = client.init.resume_token
        assert token and not client.init.resumed
        first = await client.ask("chart my sales for January and February")
        assert first.status == "completed" and first.of_type("visualization_data")
        await client.close()  # the socket drops

        query = f"?session_id={client.session_id}&resume_token={token}"
        again = await Client.connect(b.ws_url + query)
        assert again.init.resumed and again.session_id == client.session_id
        second = await again.ask("which month was lower?")
        assert second.status == "completed"
        history = said(llm_b)
        assert history[0] == "chart my sales for January and February"
        assert "Here are your sales." in history and history[-1] == "which month was lower?"
        async with httpx.AsyncClient(base_url=b.base) as http:
            viz = (await http.get(f"/data-viz/{client.session_id}")).json()
            session = (await http.get(f"/session/{client.session_id}")).json()
        stored = await redis.asyncio.Redis.from_url(redis_server.url).hkeys(
            f"vw:s:{{{client.session_id}}}"
        )
        assert len(viz["charts"]) == 1, (stored, session["charts"], first.frames)
        assert viz["charts"][0]["figure"]["data"][0]["y"] == [120, 90]
        statuses = [u["status"] for u in session["utterances"]]
        assert statuses == ["completed", "completed"]
        await again.close()
    finally:
        a.stop()
        b.stop()


async def test_a_forged_or_foreign_token_gets_a_new_session(redis_server: RedisServer) -> None:
    a = worker(redis_server.url, FakeLLM())
    try:
        victim = await Client.connect(a.ws_url)
        await victim.ask("my secret plans")
        other = await Client.connect(a.ws_url)
        for token in ("forged-token", other.init.resume_token):
            query = f"?session_id={victim.session_id}&resume_token={token}"
            intruder = await Client.connect(a.ws_url + query)
            assert not intruder.init.resumed
            assert intruder.session_id not in (victim.session_id, other.session_id)
            await intruder.close()
        await victim.close()
        await other.close()
    finally:
        a.stop()


async def cut_and_resume(redis_a: str, redis_b: str) -> None:
    """A client drops while worker A speaks its reply and resumes on worker B at once: B
    resumes the session and reports the cut turn as interrupted."""
    gate_llm = FakeLLM([FakeLLMStep("One. Two. Three. " * 20, token_s=0.05)])
    a = worker(redis_a, gate_llm, audio_lead_ms=0)
    b = worker(redis_b, FakeLLM([FakeLLMStep("Go on.")]))
    try:
        client = await Client.connect(a.ws_url)
        await client.send_json({"type": "user_text", "text": "count for me"})
        ack = await client.expect("ack")
        await client.expect("tts_chunk")  # it is speaking
        await client.close()
        query = f"?session_id={client.session_id}&resume_token={client.init.resume_token}"
        again = await Client.connect(b.ws_url + query)
        assert again.init.resumed  # a failure below is then the report, not the resume
        done = await again.expect("utterance_complete")
        assert done.utterance_id == ack.utterance_id and done.status == "interrupted"  # type: ignore[attr-defined]
        await again.close()
    finally:
        a.stop()
        b.stop()


async def test_a_turn_cut_by_the_disconnect_is_reported_interrupted_on_resume(
    redis_server: RedisServer,
) -> None:
    await cut_and_resume(redis_server.url, redis_server.url)


class SlowWritesProxy:
    """Redis behind a link that delays the session writes (the store's script calls) by
    ``delay_s``: a worker whose writes lag behind what its client already saw. Its own thread
    and loop (the server checks Redis synchronously at start)."""

    def __init__(self, redis_port: int, delay_s: float) -> None:
        self.redis_port, self.delay_s = redis_port, delay_s
        self.loop = asyncio.new_event_loop()
        listening = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(listening,), daemon=True)
        self.thread.start()
        listening.wait(10)

    def _run(self, listening: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        listening.set()
        self.loop.run_forever()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if slow and b"EVAL" in data:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        await asyncio.gather(
            self._pipe(reader, up_writer, True), self._pipe(up_reader, writer, False)
        )

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


async def test_what_the_client_saw_resumes_though_its_worker_had_not_written_it_yet(
    redis_server: RedisServer,
) -> None:
    """A client that drops and resumes on another worker at once, while its first worker's
    writes lag (a loaded Redis, a slow link): the session it was told of resumes, and the
    request it was told was accepted is reported. CI caught both going missing: the session's
    first write and the accepted utterance's were made in the background, after `init` and
    `ack` had gone out."""
    proxy = SlowWritesProxy(redis_server.port, delay_s=0.4)
    try:
        await cut_and_resume(f"redis://127.0.0.1:{proxy.port}/0", redis_server.url)
    finally:
        proxy.stop()


def test_redis_unreachable_at_start_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="cannot reach Redis"):
        worker(f"redis://127.0.0.1:{free_port()}/0", FakeLLM())


async def test_redis_lost_mid_session_degrades_to_memory(caplog: pytest.LogCaptureFixture) -> None:
    redis_server = RedisServer.start()
    a = worker(redis_server.url, FakeLLM([FakeLLMStep("Noted.")] * 5))
    try:
        client = await Client.connect(a.ws_url)
        assert (await client.ask("first")).status == "completed"
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="voicewire.server.redis_store"):
            for text in ("second", "third"):
                assert (await client.ask(text)).status == "completed"
        assert any("sessions carry on in this worker's memory" in r.message for r in caplog.records)
        async with httpx.AsyncClient(base_url=a.base) as http:
            session = (await http.get(f"/session/{client.session_id}")).json()
        assert [u["transcript"] for u in session["utterances"]] == ["first", "second", "third"]
        await client.close()
    finally:
        a.stop()


async def test_resuming_while_the_old_connection_lingers_takes_the_session_over(
    redis_server: RedisServer,
) -> None:
    """A phone that switched networks: its old socket is still open (half-open) when it
    resumes. The old connection is closed at once, on the same worker as on another (which
    asks the worker holding the session to let it go)."""
    a = worker(redis_server.url, FakeLLM([FakeLLMStep("Fine.")] * 5))
    b = worker(redis_server.url, FakeLLM([FakeLLMStep("Fine.")] * 5))
    try:
        old = await Client.connect(a.ws_url)
        query = f"?session_id={old.session_id}&resume_token={old.init.resume_token}"
        same = await Client.connect(a.ws_url + query)
        assert same.init.resumed
        await old.ws.wait_closed()
        assert old.ws.close_code == 4001
        elsewhere = await Client.connect(b.ws_url + query)
        assert elsewhere.init.resumed
        await asyncio.wait_for(same.ws.wait_closed(), 10)
        assert same.ws.close_code == 4001
        assert (await elsewhere.ask("and now?")).status == "completed"
        await elsewhere.close()
    finally:
        a.stop()
        b.stop()


async def test_a_session_back_on_a_worker_it_left_has_the_turns_taken_elsewhere(
    redis_server: RedisServer,
) -> None:
    """A to B and back to A: A had kept its copy of the session after B resumed it, and
    resumed from that copy, without B's turn (and wrote it over B's state)."""
    llm_a = FakeLLM([FakeLLMStep("One.")] * 3)
    b = worker(redis_server.url, FakeLLM([FakeLLMStep("Two.")] * 3))
    a = worker(redis_server.url, llm_a)
    try:
        client = await Client.connect(a.ws_url)
        query = f"?session_id={client.session_id}&resume_token={client.init.resume_token}"
        assert (await client.ask("first")).status == "completed"
        await client.close()
        on_b = await Client.connect(b.ws_url + query)
        assert on_b.init.resumed and (await on_b.ask("second")).status == "completed"
        await on_b.close()
        back = await Client.connect(a.ws_url + query)
        assert back.init.resumed and (await back.ask("third")).status == "completed"
        assert said(llm_a) == ["first", "One.", "second", "Two.", "third"]
        await back.close()
    finally:
        a.stop()
        b.stop()


async def test_a_reply_cut_by_a_network_change_is_remembered_on_another_worker(
    redis_server: RedisServer,
) -> None:
    """The agent is speaking when the phone changes networks: the old socket stays open
    (half-open), the client resumes on another worker. That worker claims the session; the
    old one closes its connection, the turn unwinds, and what had been said of the reply is
    written before the new worker loads the session: it reports the turn interrupted and its
    agent remembers those words (they were lost: the old worker's later write was refused)."""
    llm_a = FakeLLM([FakeLLMStep("One. Two. Three. " * 20, token_s=0.05)])
    llm_b = FakeLLM([FakeLLMStep("Go on.")])
    a = worker(redis_server.url, llm_a, audio_lead_ms=0)
    b = worker(redis_server.url, llm_b)
    try:
        old = await Client.connect(a.ws_url)
        await old.send_json({"type": "user_text", "text": "count for me"})
        ack = await old.expect("ack")
        await old.expect("tts_chunk")  # it is speaking
        query = f"?session_id={old.session_id}&resume_token={old.init.resume_token}"
        again = await Client.connect(b.ws_url + query)  # the old socket is still open
        assert again.init.resumed
        done = await again.expect("utterance_complete", timeout=10)
        assert done.utterance_id == ack.utterance_id and done.status == "interrupted"  # type: ignore[attr-defined]
        await asyncio.wait_for(old.ws.wait_closed(), 10)
        assert old.ws.close_code == 4001
        assert (await again.ask("go on")).status == "completed"
        heard = said(llm_b)
        assert heard[0] == "count for me" and heard[-1] == "go on"
        assert any(words.startswith("One.") for words in heard[1:-1]), heard
        await again.close()
    finally:
        a.stop()
        b.stop()


async def test_a_worker_killed_mid_conversation_loses_no_completed_turn(
    redis_server: RedisServer,
) -> None:
    """SIGKILL: nothing in the worker gets to run. Every turn the client saw complete was in
    Redis before it was told (the write precedes ``utterance_complete``); the turn that was
    running is reported interrupted by the worker that resumes the session."""
    env = {"VOICEWIRE_PROFILE": "realistic", "VOICEWIRE_REDIS_URL": redis_server.url}
    a, b = Worker.start(env), Worker.start(env)
    c: Worker | None = None
    try:
        client = await Client.connect(a.ws_url)
        for text in ("plan a weekend trip", "somewhere quiet"):
            assert (await client.ask(text)).status == "completed"
        await client.send_json({"type": "user_text", "text": "and the food?"})
        running = (await client.expect("ack")).utterance_id
        await client.expect("tts_chunk")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        query = f"?session_id={client.session_id}&resume_token={client.init.resume_token}"
        again = await Client.connect(b.ws_url + query)
        assert again.init.resumed
        cut = await again.expect("utterance_complete")
        assert cut.utterance_id == running and cut.status == "interrupted"  # type: ignore[attr-defined]
        async with httpx.AsyncClient(base_url=b.base) as http:
            session = (await http.get(f"/session/{client.session_id}")).json()
        users = [m["content"] for m in session["history"] if m["role"] == "user"]
        assert users == ["plan a weekend trip", "somewhere quiet"]
        statuses = [u["status"] for u in session["utterances"]]
        assert statuses == ["completed", "completed", "interrupted"]
        # killed the moment it reported a turn complete: that turn is not lost either
        assert (await again.ask("thanks")).status == "completed"
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(10)
        c = Worker.start(env)
        last = await Client.connect(c.ws_url + query)
        assert last.init.resumed
        async with httpx.AsyncClient(base_url=c.base) as http:
            session = (await http.get(f"/session/{client.session_id}")).json()
        assert [u["status"] for u in session["utterances"]][-1] == "completed"
        assert session["history"][-1]["role"] == "assistant"
        await last.close()
    finally:
        a.stop()
        b.stop()
        if c is not None:
            c.stop()


async def test_the_store_keeps_the_newest_charts_once_each(redis_server: RedisServer) -> None:
    """Charts past the cap drop out oldest first, across a resume, and a chart written twice
    (a timeout that hid a success, then a retry) is stored once."""
    from voicewire.server.redis_store import RedisSessions
    from voicewire.session import MAX_CHARTS, Session

    a, b = RedisSessions(redis_server.url, 60), RedisSessions(redis_server.url, 60)
    session = Session("server_vad", 300, 10)
    token = session.new_resume_token()
    a.add(session)
    for n in range(MAX_CHARTS + 5):
        session.add_visualization("u", f"c{n}", {"n": n})
        await a.save(session)
    a._charts_saved[session.id] -= 3  # as if the last write's success had not been heard
    await a.save(session)
    moved = await b.resume(session.id, token, None)
    assert moved is not None
    moved.add_visualization("u", "last", {"n": "last"})
    await b.save(moved)
    again = await RedisSessions(redis_server.url, 60).load(session.id)
    assert again is not None
    figures = [c["figure"]["n"] for c in again.charts]
    assert figures == [*range(6, MAX_CHARTS + 5), "last"]
    await a.aclose()
    await b.aclose()


async def test_a_chart_made_while_a_save_is_under_way_is_saved_next_time(
    redis_server: RedisServer,
) -> None:
    """A save writes the charts it saw; one added while it waited on Redis goes out with the
    next save (it was once counted as written: a resumed session had lost its chart)."""
    from voicewire.server.redis_store import RedisSessions
    from voicewire.session import Session

    store = RedisSessions(redis_server.url, 60)
    session = Session("server_vad", 300, 10)
    session.new_resume_token()
    store.add(session)
    saving = asyncio.create_task(store.save(session))
    await asyncio.sleep(0)  # the save has taken what to write and waits on Redis
    session.add_visualization("u", "c1", {"made": "meanwhile"})
    await saving
    await store.save(session)
    loaded = await RedisSessions(redis_server.url, 60).load(session.id)
    assert loaded is not None and [c["figure"] for c in loaded.charts] == [{"made": "meanwhile"}]
    await store.aclose()
