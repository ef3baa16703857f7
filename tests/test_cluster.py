"""Several workers as one service: per-key limits counted across workers in a real Redis."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import psutil
import pytest
import redis.asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import RunningServer, start_server
from tests.engines import RedisServer, Worker, free_port
from voicewire.client import Client
from voicewire.costs.ledger import Ledger
from voicewire.providers.base import Providers
from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT, FakeTTS

KEY = "vw-cluster-key-0123456789abcdef"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.start()
    yield server
    server.stop()


def keyed_worker(redis_url: str, limits: str) -> RunningServer:
    llm = FakeLLM([FakeLLMStep("Sure.")] * 20)
    return start_server(
        Providers(FakeSTT(), llm, FakeTTS()),
        redis_url=redis_url,
        api_keys=f"team:{KEY}",
        key_limits=limits,
    )


HEADERS = {"Authorization": f"Bearer {KEY}"}


async def until_counted(server: RedisServer, sessions: int) -> None:
    """Until Redis counts this many sessions of the key (a release is asynchronous)."""
    client = redis.asyncio.Redis.from_url(server.url)
    try:
        for _ in range(200):
            if await client.zcard("vw:k:{team}:sessions") == sessions:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"Redis never counted {sessions} sessions")
    finally:
        await client.aclose()


async def test_a_keys_session_limit_holds_across_workers(redis_server: RedisServer) -> None:
    a = keyed_worker(redis_server.url, "sessions=2")
    b = keyed_worker(redis_server.url, "sessions=2")
    try:
        first = await Client.connect(a.ws_url, api_key=KEY)
        second = await Client.connect(b.ws_url, api_key=KEY)
        for srv in (a, b):  # each worker holds one: the key's two are taken all the same
            with pytest.raises(InvalidStatus) as refused:
                async with connect(srv.ws_url, additional_headers=HEADERS):
                    pass
            assert refused.value.response.status_code == 429
            assert (
                "2 sessions at once" in json.loads(refused.value.response.body)["error"]["message"]
            )
        await first.close()
        await until_counted(redis_server, 1)  # worker A has let the session go
        third = await Client.connect(b.ws_url, api_key=KEY)  # room again
        await second.close()
        await third.close()
    finally:
        a.stop()
        b.stop()


async def test_a_keys_turn_rate_holds_across_workers(redis_server: RedisServer) -> None:
    a = keyed_worker(redis_server.url, "turns_per_min=3")
    b = keyed_worker(redis_server.url, "turns_per_min=3")
    try:
        on_a = await Client.connect(a.ws_url, api_key=KEY)
        on_b = await Client.connect(b.ws_url, api_key=KEY)
        assert (await on_a.ask("one")).status == "completed"
        assert (await on_b.ask("two")).status == "completed"
        assert (await on_a.ask("three")).status == "completed"
        await on_b.send_json({"type": "user_text", "text": "four"})
        error = await on_b.expect("error")
        assert error.code == "rate_limited" and "3 turns a minute" in error.message  # type: ignore[attr-defined]
        await on_a.send_json({"type": "user_text", "text": "five"})
        assert (await on_a.expect("error")).code == "rate_limited"  # type: ignore[attr-defined]
        await on_a.close()
        await on_b.close()
    finally:
        a.stop()
        b.stop()


async def test_two_workers_ledger_into_one_postgresql(pg_url: str) -> None:
    """Entries of both workers in one database, every turn there, to the exact Decimal the
    clients were told (SQLite files are per machine; this is what PostgreSQL is for)."""
    ledger_target = pg_url
    workers = [start_server(None, profile="zero", ledger_url=ledger_target) for _ in range(2)]
    try:
        told: dict[str, Decimal] = {}
        for srv in workers:
            client = await Client.connect(srv.ws_url)
            for text in ("plan a trip", "somewhere warm", "with good food"):
                turn = await client.ask(text)
                cost = turn.first("cost_update")
                assert cost is not None
                told[turn.utterance_id or ""] = Decimal(cost.utterance["total_usd"])  # type: ignore[attr-defined]
            await client.close()
    finally:
        for srv in workers:
            srv.stop()
    ledger = Ledger(ledger_target)
    entries = list(ledger.entries())
    ledger.close()
    assert {e.utterance_id for e in entries} == set(told)
    assert len({e.session_id for e in entries}) == 2
    assert sum((e.cost_usd for e in entries), Decimal(0)) == sum(told.values(), Decimal(0)) > 0


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive ports free now (run-local.sh numbers its servers)."""
    for start in range(20_000, 60_000, size):
        try:
            for port in range(start, start + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
    raise RuntimeError("no free block of ports")


def workers_of(service: Worker) -> list[psutil.Process]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    children = psutil.Process(service.proc.pid).children()
    return [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]


async def until_cluster(service: Worker, workers: int) -> dict[str, int]:
    """Until a worker's /metrics counts ``workers`` in the cluster (they post every sweep)."""
    async with httpx.AsyncClient(base_url=service.base) as http:
        for _ in range(100):
            cluster = (await http.get("/metrics")).json()["cluster"]
            if cluster and cluster["workers"] == workers:
                return dict(cluster)
            await asyncio.sleep(0.1)
    raise AssertionError(f"the cluster never counted {workers} workers: {cluster}")


def serves(worker: psutil.Process, client: Client) -> bool:
    """Whether this worker holds the client's connection."""
    port = client.ws.local_address[1]
    return any(c.raddr and c.raddr.port == port for c in worker.net_connections("tcp"))


async def test_workers_share_a_port_survive_a_crash_and_drain_together(
    redis_server: RedisServer,
) -> None:
    """``voicewire serve --workers 2``: a worker killed by the kernel is replaced and its
    conversation resumes on the port; SIGTERM drains every worker and exits 0."""
    env = {
        "VOICEWIRE_PROFILE": "zero",
        "VOICEWIRE_REDIS_URL": redis_server.url,
        "VOICEWIRE_IDLE_TIMEOUT_S": "2",  # a sweep (and a post to Redis) every 0.5 s
    }
    service = Worker.start(env, ("--workers", "2"), ready=2)
    try:
        children = workers_of(service)
        assert len(children) == 2
        cluster = await until_cluster(service, workers=2)
        # Either worker may answer on the shared port, and each learns the count on its own
        # sweep: the gauge is asked for until the worker that answers has seen both.
        gauge = re.compile(r'^voicewire_cluster_workers\{worker="[^"]+:\d+"\} 2\.0$', re.M)
        async with httpx.AsyncClient(base_url=service.base) as http:
            for _ in range(100):
                series = (await http.get("/metrics/prometheus")).text
                if gauge.search(series):
                    break
                await asyncio.sleep(0.1)
        assert gauge.search(series), series
        assert cluster["sessions_connected"] == 0
        client = await Client.connect(service.ws_url)
        assert (await client.ask("remember the number 42")).status == "completed"
        victim = next(c for c in children if serves(c, client))
        victim.kill()  # the OOM killer, say
        await client.ws.wait_closed()
        query = f"?session_id={client.session_id}&resume_token={client.init.resume_token}"
        again = await Client.connect(service.ws_url + query)
        assert again.init.resumed
        assert (await again.ask("what was the number?")).status == "completed"
        async with httpx.AsyncClient(base_url=service.base) as http:
            session = (await http.get(f"/session/{client.session_id}")).json()
        assert [m["content"] for m in session["history"] if m["role"] == "user"] == [
            "remember the number 42",
            "what was the number?",
        ]
        await again.close()
        replaced = workers_of(service)
        assert len(replaced) == 2 and victim.pid not in {c.pid for c in replaced}
        service.proc.send_signal(signal.SIGTERM)
        assert service.proc.wait(60) == 0
    finally:
        service.stop()


async def test_run_local_serves_conversations_through_nginx() -> None:
    """deploy/run-local.sh: the compose topology on loopback (Redis, PostgreSQL, 3 workers,
    nginx). A conversation through the proxy outlives the worker that held it."""
    tmp_path = Path(tempfile.mkdtemp(prefix="vw-run-local-"))
    os.chmod(tmp_path, 0o755)  # PostgreSQL's user must reach its directory inside
    base = free_port_block(100)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "VW_STATE": str(tmp_path / "state"),
        "VW_PORT": str(base + 99),
        "VW_BASE_PORT": str(base),
        "VOICEWIRE_PROFILE": "zero",
    }
    script = Path(__file__).parent.parent / "deploy" / "run-local.sh"
    run = functools.partial(subprocess.run, env=env, check=True)
    try:
        await asyncio.to_thread(run, [str(script), "start"], timeout=600)
        url = f"ws://127.0.0.1:{base + 99}/ws/multimodal"
        client = await Client.connect(url)
        assert (await client.ask("my name is Ada")).status == "completed"
        async with httpx.AsyncClient() as http:
            holding = [
                i
                for i in range(3)
                if (await http.get(f"http://127.0.0.1:{base + i}/health")).json()["sessions"][
                    "connected"
                ]
            ]
        assert len(holding) == 1
        pid = int((tmp_path / "state" / f"worker-{holding[0]}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        await client.ws.wait_closed()
        query = f"?session_id={client.session_id}&resume_token={client.init.resume_token}"
        again = await Client.connect(url + query)
        assert again.init.resumed
        second = await again.ask("what is my name?")
        assert second.status == "completed"
        await again.close()
        # the ledger of every worker, in the one PostgreSQL
        ledger = Ledger(f"postgresql://voicewire@127.0.0.1:{base + 91}/voicewire")
        uids = {e.utterance_id for e in ledger.entries(session_id=client.session_id)}
        ledger.close()
        assert {second.utterance_id} <= uids and len(uids) == 2
    finally:
        await asyncio.to_thread(run, [str(script), "stop"], timeout=120)


_SIGNAL_WHILE_STARTING = """
import os, signal, sys
from voicewire.config import Settings
from voicewire.server.workers import Supervisor

class SignalledWhileStarting(Supervisor):
    def _start(self, index):
        proc = super()._start(index)
        if index == self.count - 1:  # the stop comes before the new worker joins the list
            os.kill(os.getpid(), signal.SIGTERM)
        return proc

settings = Settings()
sys.exit(SignalledWhileStarting(settings, {"profile": "zero"}, 2).run())
"""


def test_a_stop_that_comes_while_a_worker_is_started_reaches_it(tmp_path: Path) -> None:
    """SIGTERM between a worker's start and its joining the supervisor's list: that worker
    was never told and the supervisor waited for it for ever (CI-like load made the window
    wide enough for the test below to hang)."""
    env = {**os.environ, "VOICEWIRE_PORT": str(free_port()), "VOICEWIRE_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SIGNAL_WHILE_STARTING], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("the supervisor never stopped: a worker missed the signal") from None
    assert proc.returncode == 0, err


def test_stopped_while_its_workers_start_the_supervisor_exits_0(tmp_path: Path) -> None:
    """SIGTERM while the workers are still starting (a deploy rolled back at once, or a
    replacement worker still loading): nothing was being served, so the stop is clean."""
    env = {**os.environ, "VOICEWIRE_PROFILE": "zero", "VOICEWIRE_PORT": str(free_port()),
           "VOICEWIRE_DATA_DIR": str(tmp_path), "VOICEWIRE_LOG_LEVEL": "info"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicewire.cli", "serve", "--workers", "2"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if "worker 1 started" in line:  # both spawned, neither serving yet (imports take ~1 s)
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(60) == 0, rest
