"""API keys and client tokens on a real server: every route and both WebSockets refused
without a credential (HTTP 401 before any upgrade, no session made), accepted with a key or a
fresh token, refused with a wrong, revoked, expired or forged one; secrets never in logs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import RunningServer, start_server
from voicewire.client import Client
from voicewire.config import Settings
from voicewire.providers import ConfigError
from voicewire.providers.base import Providers
from voicewire.providers.fake import FakeLLM, FakeLLMStep, FakeSTT, FakeTTS
from voicewire.server.auth import Tokens, parse_keys

KEY = "vw-test-key-0123456789abcdef"
OTHER = "vw-other-key-fedcba9876543210"


def providers() -> Providers:
    return Providers(FakeSTT(), FakeLLM([FakeLLMStep("Hello there.")] * 50), FakeTTS())


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text(f"# who may use the server\nalice:{KEY}\nbob:{OTHER}\n")
    return path


@pytest.fixture
def server(keys_file: Path) -> Iterator[RunningServer]:
    srv = start_server(providers(), api_keys=f"@{keys_file}", token_secret="s3cret")
    yield srv
    srv.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def refused(url: str, **kwargs: object) -> tuple[int, dict[str, object]]:
    """The HTTP status and JSON body a WebSocket handshake was refused with."""
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, **kwargs):  # type: ignore[arg-type]
            pass
    response = caught.value.response
    return response.status_code, json.loads(response.body or b"{}")


def sessions(srv: RunningServer) -> int:
    return len(srv.app.state.runtime.store)


async def test_rest_routes_need_a_key_but_health_and_the_page_do_not(
    server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.base) as http:
        for path in ("/metrics", "/metrics/prometheus", "/session/s_x", "/data-viz/s_x"):
            missing = await http.get(path)
            assert missing.status_code == 401, path
            assert missing.headers["www-authenticate"].startswith("Bearer")
            assert "API key is required" in missing.json()["error"]["message"]
            wrong = await http.get(path, headers=bearer("nope"))
            assert (
                wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid API key"
            )
        assert (await http.get("/metrics", headers=bearer(KEY))).status_code == 200
        assert (await http.post("/stt-test")).status_code == 401  # before the body is read
        for public in ("/health", "/", "/docs", "/openapi.json", "/web/main.js"):
            assert (await http.get(public)).status_code in (200, 503), public


async def test_websockets_are_refused_before_the_upgrade_without_a_key(
    server: RunningServer,
) -> None:
    realtime = server.base.replace("http", "ws", 1) + "/v1/realtime"
    for url in (server.ws_url, realtime):
        status, body = await refused(url)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        status, body = await refused(url, additional_headers=bearer("wrong"))
        assert status == 401 and body["error"]["message"] == "invalid API key"
    assert sessions(server) == 0  # nothing was made for them
    client = await Client.connect(server.ws_url, api_key=KEY)
    assert (await client.ask("hi")).status == "completed"
    await client.close()
    assert sessions(server) == 1


async def test_a_browser_connects_with_a_client_token(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base) as http:
        assert (await http.post("/v1/client_tokens")).status_code == 401
        minted = (await http.post("/v1/client_tokens", headers=bearer(KEY))).json()
        assert minted["key"] == "alice" and minted["expires_at"] > time.time() + 50
        token = minted["token"]
        # a token opens WebSockets only: it is no API key
        assert (await http.get("/metrics", headers=bearer(token))).status_code == 401
    async with connect(f"{server.ws_url}?token={token}") as ws:
        assert '"type":"init"' in str(await ws.recv()).replace(" ", "")
    # as a browser sends it: a subprotocol; the server picks the protocol that is not the token
    async with connect(server.ws_url, subprotocols=["voicewire", f"voicewire-token.{token}"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "voicewire"
        assert "init" in str(await ws.recv())


def revoke_bob(keys_file: Path) -> None:
    keys_file.write_text(f"alice:{KEY}\n")
    later = time.time() + 5
    os.utime(keys_file, (later, later))  # a new mtime even on a coarse clock


async def test_expired_forged_and_revoked_credentials_are_refused(
    server: RunningServer, keys_file: Path
) -> None:
    expired, _ = Tokens("s3cret").mint("alice", ttl_s=10, now=time.time() - 60)
    status, body = await refused(f"{server.ws_url}?token={expired}")
    assert status == 401 and body["error"]["code"] == "token_expired"
    forged, _ = Tokens("another secret").mint("alice", ttl_s=60)
    status, body = await refused(f"{server.ws_url}?token={forged}")
    assert status == 401 and body["error"]["message"] == "invalid client token"
    tampered = forged.replace("vwt_", "vwt_x", 1)
    assert (await refused(f"{server.ws_url}?token={tampered}"))[0] == 401
    async with httpx.AsyncClient(base_url=server.base) as http:
        bobs = (await http.post("/v1/client_tokens", headers=bearer(OTHER))).json()["token"]
        await asyncio.to_thread(revoke_bob, keys_file)
        assert (await http.get("/metrics", headers=bearer(OTHER))).status_code == 401
        assert (await http.get("/metrics", headers=bearer(KEY))).status_code == 200
    status, body = await refused(f"{server.ws_url}?token={bobs}")
    assert status == 401 and "revoked" in body["error"]["message"]


async def test_the_openai_sdk_connects_with_the_key(server: RunningServer) -> None:
    sdk = AsyncOpenAI(base_url=server.base + "/v1", api_key=KEY)
    async with sdk.realtime.connect(model="gpt-realtime") as conn:
        event = await asyncio.wait_for(conn.recv(), 10)
        assert event.type == "session.created"
    wrong = AsyncOpenAI(base_url=server.base + "/v1", api_key="sk-not-ours")
    with pytest.raises(Exception, match="401"):
        async with wrong.realtime.connect(model="gpt-realtime") as conn:
            await conn.recv()


SECRET_SESSION = {
    "type": "realtime",
    "instructions": "You are the front desk of a small hotel.",
    "audio": {"output": {"voice": "marin"}},
}


async def test_an_openai_client_secret_opens_a_session_with_its_configuration(
    server: RunningServer,
) -> None:
    """The ephemeral-key flow as OpenAI documents it: the backend makes a client secret with
    its API key and a session configuration; the browser connects with the secret alone."""
    backend = AsyncOpenAI(base_url=server.base + "/v1", api_key=KEY)
    secret = await backend.realtime.client_secrets.create(
        session=SECRET_SESSION,  # type: ignore[arg-type]
        expires_after={"anchor": "created_at", "seconds": 120},
    )
    assert secret.value.startswith("vwt_")
    assert 110 <= secret.expires_at - time.time() <= 121
    assert secret.session.instructions == SECRET_SESSION["instructions"]
    browser = AsyncOpenAI(base_url=server.base + "/v1", api_key=secret.value)
    async with browser.realtime.connect(model="gpt-realtime") as conn:
        event = await asyncio.wait_for(conn.recv(), 10)
        assert event.type == "session.created"
        assert event.session.instructions == SECRET_SESSION["instructions"]
        assert event.session.audio.output.voice == "marin"
    async with httpx.AsyncClient(base_url=server.base) as http:
        # a secret is a WebSocket credential: it cannot make more secrets
        assert (
            await http.post("/v1/realtime/client_secrets", headers=bearer(secret.value))
        ).status_code == 401
        bad = await http.post(
            "/v1/realtime/client_secrets",
            headers=bearer(KEY),
            json={"session": {"type": "realtime", "audio": {"output": {"speed": 9}}}},
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"
        assert "speed" in (bad.json()["error"]["param"] or bad.json()["error"]["message"])


async def test_client_secrets_work_with_keys_off() -> None:
    """An app written for OpenAI makes a secret even when this server runs without keys: it
    must still get one, and the session must still start configured."""
    srv = start_server(providers())
    try:
        backend = AsyncOpenAI(base_url=srv.base + "/v1", api_key="anything")
        secret = await backend.realtime.client_secrets.create(session=SECRET_SESSION)  # type: ignore[arg-type]
        browser = AsyncOpenAI(base_url=srv.base + "/v1", api_key=secret.value)
        async with browser.realtime.connect(model="gpt-realtime") as conn:
            event = await asyncio.wait_for(conn.recv(), 10)
            assert event.session.instructions == SECRET_SESSION["instructions"]
    finally:
        srv.stop()


async def test_secrets_never_reach_logs_or_metrics(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    uvicorn_log = logging.getLogger("uvicorn.error")  # does not propagate to caplog's handler
    uvicorn_log.addHandler(caplog.handler)
    uvicorn_log.setLevel(logging.INFO)
    async with httpx.AsyncClient(base_url=server.base) as http:
        await http.get("/metrics", headers=bearer(KEY[:-1] + "X"))  # a near miss
        token = (await http.post("/v1/client_tokens", headers=bearer(KEY))).json()["token"]
        metrics = (await http.get("/metrics", headers=bearer(KEY))).text
        prom = (await http.get("/metrics/prometheus", headers=bearer(KEY))).text
    await refused(f"{server.ws_url}?token={token}x")
    async with connect(f"{server.ws_url}?token={token}") as ws:  # uvicorn logs it "accepted"
        await ws.recv()
    uvicorn_log.removeHandler(caplog.handler)
    ours = ("voicewire", "uvicorn")  # the clients' own debug lines show what they send
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(ours))
    assert "[accepted]" in logged and "token=[redacted]" in logged
    assert "refused" in logged  # refusals are logged ...
    for secret in (KEY, KEY[:-1] + "X", token, "s3cret"):
        assert secret not in logged and secret not in metrics and secret not in prom  # ... not keys


def test_keys_parse_from_lines_or_commas_and_keep_no_secret() -> None:
    keys = parse_keys("alice:aaa sessions=2, bbb  # a comment\n\n")
    assert [k.name for k in keys] == ["alice", keys[1].name] and keys[1].name.startswith("key-")
    assert keys[0].options == {"sessions": "2"}
    assert "aaa" not in repr(keys) and "bbb" not in repr(keys)


def test_serving_beyond_loopback_without_keys_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    from voicewire.server.app import create_app

    caplog.set_level(logging.WARNING)
    create_app(Settings(host="0.0.0.0", warmup=False), providers=providers())
    assert "no API keys" in caplog.text
    caplog.clear()
    create_app(Settings(host="0.0.0.0", api_keys=KEY, warmup=False), providers=providers())
    create_app(Settings(host="127.0.0.1", warmup=False), providers=providers())
    assert "no API keys" not in caplog.text


def test_a_bad_keys_setting_stops_the_start(tmp_path: Path) -> None:
    from voicewire.providers import ConfigError
    from voicewire.server.auth import Keyring

    for setting, why in (
        (f"@{tmp_path}/none.txt", "no keys file"),
        (" , ", "no key"),
        ("a:", "empty"),
    ):
        with pytest.raises(ConfigError, match=why):
            Keyring(setting)


# ------------------------------------------------------------------ per-key limits


def test_quota_arithmetic_with_time_passed_in() -> None:
    from voicewire.server.limits import KeyLimits, Quotas, parse_limits

    limits = parse_limits("sessions=1, turns_per_min=2 audio_s_per_day=10")
    assert limits == KeyLimits(sessions=1, turns_per_min=2, audio_s_per_day=10)
    quotas = Quotas(lambda key: limits)
    t = 86_400 * 1000 + 50.0  # 50 s into a UTC day
    assert quotas.open_session("a", t) is None
    assert quotas.open_session("a", t) is not None  # one at a time
    quotas.close_session("a")
    assert quotas.open_session("a", t) is None
    assert quotas.start_turn("a", 4.0, t) is None and quotas.start_turn("a", 4.0, t + 1) is None
    refused = quotas.start_turn("a", 0.0, t + 30)
    assert refused is not None and refused.retry_after_s == 30  # the first turn leaves at t+60
    assert quotas.start_turn("a", 4.0, t + 60) is None  # a minute on: room again (audio 12 s)
    over = quotas.start_turn("a", 1.0, t + 200)
    assert over is not None and "audio" in over.message and over.retry_after_s == 86_400 - 250
    assert quotas.start_turn("a", 1.0, t + 86_400) is None  # a new day
    status = {s["name"]: s for s in quotas.status("a", t + 86_400)}
    assert status["audio_s_per_day"]["remaining"] == 9.0 and status["sessions"]["remaining"] == 0
    with pytest.raises(ConfigError, match="bad limit"):
        parse_limits("turns=3")


async def test_limits_per_key_on_a_real_server(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"alice:{KEY} sessions=1\nbob:{OTHER} turns_per_min=100\n")
    srv = start_server(providers(), api_keys=f"@{keys}", key_limits="turns_per_min=2")
    try:
        alice = await Client.connect(srv.ws_url, api_key=KEY)
        status, body = await refused(srv.ws_url, additional_headers=bearer(KEY))
        assert status == 429 and "1 sessions at once" in body["error"]["message"]
        bob = await Client.connect(srv.ws_url, api_key=OTHER)  # another key is not affected
        remaining = []
        for _ in range(2):
            turn = await alice.ask("hello")
            assert turn.status == "completed"
            limits = {x.name: x for x in turn.first("rate_limits").limits}  # type: ignore[union-attr]
            remaining.append(limits["turns_per_min"].remaining)
        assert remaining == [1, 0]
        await alice.send_json({"type": "user_text", "text": "one more", "ref": "r3"})
        error = await alice.expect("error")
        assert error.code == "rate_limited" and "retry in" in error.message  # type: ignore[attr-defined]
        await alice.send_json({"type": "ping", "ref": "p"})
        assert (await alice.expect("pong")).type == "pong"  # the session lives on
        assert (await bob.ask("hello")).status == "completed"
        async with httpx.AsyncClient(base_url=srv.base) as http:
            path = f"/session/{alice.session_id}"
            assert (await http.get(path, headers=bearer(KEY))).status_code == 200
            assert (await http.get(path, headers=bearer(OTHER))).status_code == 404  # not bob's
            viz = f"/data-viz/{alice.session_id}"
            assert (await http.get(viz, headers=bearer(OTHER))).status_code == 404
        await alice.close()
        await bob.close()
    finally:
        srv.stop()


def test_the_deploy_guide_names_only_settings_that_exist_and_its_example_parses() -> None:
    import re

    doc = (Path(__file__).parent.parent / "docs" / "deploy.md").read_text()
    named = set(re.findall(r"VOICEWIRE_([A-Z_]+)", doc))
    fields = {name.upper() for name in Settings.model_fields}
    assert named and named <= fields, named - fields
    example = re.search(r"cat > keys.txt <<'EOF'\n(.*?)\nEOF", doc, re.S)
    assert example is not None
    keys = parse_keys(example.group(1))
    assert [k.name for k in keys] == ["web", "batch"]
    from voicewire.server.limits import parse_limits

    limits = re.search(r'VOICEWIRE_KEY_LIMITS="([^"]+)"', doc)
    assert limits is not None and parse_limits(limits.group(1)).sessions == 5


def test_rate_limits_are_reported_first_then_now_and_then_then_every_turn_when_low() -> None:
    from voicewire.server.limits import Quotas, parse_limits

    quotas = Quotas(lambda key: parse_limits("turns_per_min=10"))
    t = 1_000_000.0
    told = []
    for i in range(10):
        assert quotas.start_turn("a", 0.0, t + i) is None
        told.append(bool(quotas.report("a", "s_1", t + i)))
    # first turn; nothing new for 10 s; then every turn once 2 or fewer of 10 are left
    assert told == [True, False, False, False, False, False, False, True, True, True]
    assert quotas.report("a", "s_2", t + 9)  # another session is told on its own first turn
