"""Several workers as one service: per-key limits counted across workers in a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis.asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import RunningServer, start_server
from tests.engines import RedisServer
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
