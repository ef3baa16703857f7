"""The FastAPI application: ``create_app`` wires the runtime, the REST routes and the WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fastapi_offline
from fastapi import FastAPI, WebSocket
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter, ValidationError

from voicewire import __version__, tracing
from voicewire.config import Settings
from voicewire.conversation import ConversationConfig, Deps
from voicewire.pipeline.turn_types import Tools
from voicewire.protocol import BargeIn, ErrorCode, Limits, RateLimits
from voicewire.providers import validate
from voicewire.providers.base import Providers
from voicewire.realtime.config import RealtimeConfig
from voicewire.realtime.connection import RealtimeConnection
from voicewire.server import rest, viz
from voicewire.server.auth import (
    TOKEN_PREFIX,
    Authenticator,
    AuthError,
    Guard,
    Keyring,
    Tokens,
    chosen_protocol,
    credential,
    redact_server_logs,
)
from voicewire.server.connection import Connection, init_frame
from voicewire.server.limits import quotas_for
from voicewire.server.redis_store import check_reachable
from voicewire.server.runtime import ProviderFactory, Runtime
from voicewire.server.serving import (
    BodyLimit,
    WebSocketEndpoint,
    WebSocketRoutes,
    max_body_bytes,
)
from voicewire.session import Session

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    providers: Providers | ProviderFactory | None = None,
    tools: Tools | None = None,
) -> FastAPI:
    """Build the app. ``providers`` overrides configuration (tests inject fakes this way)."""
    settings = settings or Settings()
    if providers is None:
        validate(settings)  # a bad provider name fails now, not at the first turn
    runtime = Runtime(settings, providers, tools)
    if settings.otel:
        tracing.enable()
    auth = Authenticator(
        Keyring(settings.api_keys.get_secret_value() if settings.api_keys else None),
        Tokens(settings.token_secret.get_secret_value() if settings.token_secret else None),
    )
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    if redis_url is not None:
        check_reachable(redis_url)  # a clear error, now
    runtime.quotas = quotas_for(settings.key_limits, auth.keyring, redis_url)
    redact_server_logs()
    if not auth.enabled and not _loopback(settings.host):
        log.warning(
            "serving on %s with no API keys: anyone who can reach the port can use this "
            "server and spend its credit; set VOICEWIRE_API_KEYS (docs/deploy.md)",
            settings.host,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.loaded = asyncio.Event()  # bind to the serving loop
        runtime.loop = asyncio.get_running_loop()
        await runtime.store.serve_handoffs(runtime.hand_over)  # listening before serving
        tasks = [
            asyncio.create_task(runtime.start()),
            asyncio.create_task(runtime.sweep()),
            asyncio.create_task(runtime.monitor.run()),
            asyncio.create_task(runtime.retain()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for conn in list(runtime.connections.values()):
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=1001, reason="server shutting down")
            with contextlib.suppress(Exception):
                await runtime.store.aclose()
            with contextlib.suppress(Exception):
                await runtime.quotas.aclose()
            if runtime.providers is not None:
                with contextlib.suppress(Exception):
                    await runtime.providers.aclose()
            runtime.shutdown()

    app = FastAPI(
        title="voicewire",
        version=__version__,
        description="Real-time voice agent server. WebSocket protocol: docs/protocol.md.",
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: the CDN pages are blank offline
        redoc_url=None,  # ReDoc's page loads its logo from a CDN
    )
    app.state.runtime = runtime
    app.state.auth = auth
    ws_routes: dict[str, WebSocketEndpoint] = {}  # the endpoints below
    app.add_middleware(WebSocketRoutes, routes=ws_routes)  # innermost: after guard and limit
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes(settings))
    app.add_middleware(Guard, auth=auth)  # outermost: nothing runs for a refused caller
    app.include_router(rest.router)
    app.include_router(viz.router)
    web = Path(__file__).parent.parent / "web"
    app.mount("/web", StaticFiles(directory=web), name="web")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        """The browser client."""
        return FileResponse(web / "index.html")

    _mount_api_docs(app)

    deps = conversation_deps(runtime)
    limits = Limits(
        max_text_chars=settings.max_text_chars,
        max_frame_bytes=settings.max_frame_bytes,
        max_audio_s=settings.max_audio_s,
        max_queued_utterances=settings.max_queued_utterances,
        max_reply_chars=settings.max_reply_chars,
        max_reply_audio_s=settings.max_reply_audio_s,
    )

    barge_in = BargeIn(  # the same for every session: one object, not one each
        enabled=settings.barge_in,
        min_speech_ms=settings.interrupt_min_speech_ms,
        audio_lead_ms=settings.audio_lead_ms or None,
    )

    async def multimodal(ws: WebSocket) -> None:
        """``?session_id=&resume_token=`` (from a previous ``init``): continue that session,
        on whichever worker it was; a wrong pair gets a new session."""
        if not await _admitted(ws, settings, runtime):
            return
        session_id = ws.query_params.get("session_id")
        resume_token = ws.query_params.get("resume_token")
        session = None
        if session_id and resume_token and len(session_id) <= 64 and len(resume_token) <= 128:
            session = await runtime.store.resume(session_id, resume_token, _owner(ws))
            if session is None:
                log.info("resume of %s refused: a new session instead", session_id[:40])
            elif (old := runtime.connections.get(session.id)) is not None:
                await old.close_for_resume()  # the same client, on a new connection
        resumed = session is not None
        if session is None:
            session = Session(settings.turn_detection, settings.silence_ms, settings.history_turns)
            session.owner = _owner(ws)
            runtime.store.add(session)
            resume_token = session.new_resume_token()
            await runtime.store.save(session)  # before `init`: its token must resume anywhere
        session.connected = True
        session.touch()
        runtime.metrics.connections_total += 1
        conn = Connection(ws, session, deps, limits, settings.send_timeout_s)
        runtime.connections[session.id] = conn
        try:
            await runtime.loaded.wait()  # a client may connect while the models still load
            if runtime.status != "ready":
                await conn.error(ErrorCode.INTERNAL, f"server failed to start: {runtime.error}")
                await ws.close(code=1011, reason="server failed to start")
                await conn.conversation.aclose()
                return
            providers = runtime.require_providers()
            await conn.serve(
                init_frame(
                    session, __version__, providers.tts.sample_rate, providers.describe(), limits,
                    barge_in, resume_token, resumed,
                )
            )  # fmt: skip
        finally:
            if runtime.connections.get(session.id) is conn:  # not taken over by a resume
                session.connected = False
                session.touch()
                runtime.connections.pop(session.id, None)
                await runtime.store.save(session)
            await _release(ws, runtime)

    async def realtime(ws: WebSocket) -> None:
        """The OpenAI Realtime protocol (docs/realtime.md); ``?model=``; ``voicewire_events``:
        also send the server's tool calls and charts as ``voicewire.*`` events."""
        model = ws.query_params.get("model") or "voicewire"
        try:
            voicewire_events = _BOOL.validate_python(
                ws.query_params.get("voicewire_events", "false")
            )
        except ValidationError:
            why = "voicewire_events must be true or false\n"
            await ws.send_denial_response(PlainTextResponse(why, status_code=400))
            return
        if not await _admitted(ws, settings, runtime):
            return
        await runtime.loaded.wait()  # a client may connect while the models still load
        if runtime.status != "ready":
            why = f"server failed to start: {runtime.error}"
            error = {"type": "server_error", "code": "internal", "message": why}
            await ws.send_text(json.dumps({"type": "error", "event_id": "event_0", "error": error}))
            await ws.close(code=1011, reason="server failed to start")
            await _release(ws, runtime)
            return
        session = Session("server_vad", settings.silence_ms, settings.history_turns)
        session.owner = _owner(ws)
        runtime.store.add(session)
        runtime.metrics.connections_total += 1
        config = RealtimeConfig(
            model=model, silence_ms=settings.silence_ms, max_silence_ms=settings.max_silence_ms
        )
        if (preset := _secret_session(ws, app.state.auth)) is not None:
            config.update(preset)  # checked when the client secret was made
        conn = RealtimeConnection(
            ws, session, deps, config, settings.max_frame_bytes, voicewire_events,
            settings.send_timeout_s,
        )  # fmt: skip
        runtime.connections[session.id] = conn
        try:
            await conn.serve()
        finally:
            session.connected = False
            session.touch()
            runtime.connections.pop(session.id, None)
            await _release(ws, runtime)

    ws_routes.update({"/ws/multimodal": multimodal, "/v1/realtime": realtime})
    return app


_BOOL = TypeAdapter(bool)  # query flags read as FastAPI reads them: true/false, 1/0, yes/no, on/off


async def _admitted(ws: WebSocket, settings: Settings, runtime: Runtime) -> bool:
    """Accept a WebSocket, unless it comes from a page that may not connect or the server
    takes no new session now (HTTP 503 with Retry-After: draining, full, overloaded)."""
    origin = ws.headers.get("origin")
    if origin and not origin_allowed(origin, ws.scope.get("server"), settings):
        log.warning("refused a WebSocket from origin %s", origin)
        await ws.close(code=1008, reason="origin not allowed")  # before accept: HTTP 403
        return False
    verdict = runtime.admission.check()
    if not verdict.ok:
        log.warning("refused a session: %s", verdict.reason)
        body = {"error": {"code": "unavailable", "message": verdict.reason}}
        headers = {"Retry-After": str(verdict.retry_after_s)}
        await ws.send_denial_response(JSONResponse(body, status_code=503, headers=headers))
        return False
    key, lease = _owner(ws), f"{runtime.worker}:{secrets.token_hex(6)}"
    if key is not None and (no := await runtime.quotas.acquire_session(key, lease)) is not None:
        log.warning("refused a session of key %s: %s", key, no.message)
        body = {"error": {"code": "rate_limited", "message": no.message}}
        headers = {"Retry-After": str(no.retry_after_s)}
        await ws.send_denial_response(JSONResponse(body, status_code=429, headers=headers))
        return False
    if key is not None:
        runtime.leases[lease] = key
        ws.scope.setdefault("state", {})["lease"] = lease
    await ws.accept(subprotocol=chosen_protocol(ws.scope))
    return True


def _owner(ws: WebSocket) -> str | None:
    """The name of the API key the connection came with (None: keys are off)."""
    caller = ws.scope.get("state", {}).get("caller")
    return caller.key if caller is not None else None


def _secret_session(ws: WebSocket, auth: Authenticator) -> dict[str, Any] | None:
    """The Realtime session configuration a client secret carries. With keys off the Guard
    checks nothing, so the token is read here (a bad one is only ignored: anyone may connect)."""
    caller = ws.scope.get("state", {}).get("caller")
    if caller is not None:
        return caller.session
    secret = credential(ws.scope)
    if auth.enabled or not secret or not secret.startswith(TOKEN_PREFIX):
        return None
    try:
        return auth.tokens.verify(secret).session
    except AuthError:
        return None


async def _release(ws: WebSocket, runtime: Runtime) -> None:
    if (lease := ws.scope.get("state", {}).get("lease")) is not None:
        key = runtime.leases.pop(lease, None)
        if key is not None:
            await runtime.quotas.release_session(key, lease)


def conversation_deps(runtime: Runtime) -> Deps:
    """What each conversation is handed: narrow parts of the process, not the process."""
    s = runtime.settings
    return Deps(
        providers=runtime.require_providers,
        tools=runtime.tools,
        turn_config=runtime.turn_config,
        config=ConversationConfig(
            max_text_chars=s.max_text_chars,
            max_audio_s=s.max_audio_s,
            max_queued_utterances=s.max_queued_utterances,
            vad=s.vad,
            vad_aggressiveness=s.vad_aggressiveness,
            vad_min_speech_ms=s.vad_min_speech_ms,
            vad_energy_floor=s.vad_energy_floor,
            speculative_stt_ms=s.speculative_stt_ms or 0,
            max_silence_ms=s.max_silence_ms,
            vad_noise_ratio=s.vad_noise_ratio,
            barge_in=s.barge_in,
            interrupt_min_speech_ms=s.interrupt_min_speech_ms,
            audio_lead_ms=s.audio_lead_ms,
            echo_energy_floor=s.echo_energy_floor,
            echo_level_ratio=s.echo_level_ratio,
            token_window_ms=s.token_window_ms,
            mic_stall_ms=s.mic_stall_ms,
        ),
        promote=runtime.runner.promote,
        take_discarded=runtime.runner.take_discarded,
        account=runtime.account,
        account_later=runtime.account_later,
        record_turn=runtime.metrics.record_turn,
        count=runtime.metrics.count,
        admit_turn=lambda session, audio_s: _admit_turn(runtime, session, audio_s),
        rate_limits=lambda session: _rate_limits(runtime, session),
        save=runtime.store.save,
        save_soon=runtime.store.save_soon,
    )


async def _admit_turn(runtime: Runtime, session: Session, audio_s: float) -> str | None:
    if session.owner is None:
        return None
    refusal = await runtime.quotas.admit_turn(session.owner, audio_s)
    return None if refusal is None else f"{refusal.message}; retry in {refusal.retry_after_s} s"


async def _rate_limits(runtime: Runtime, session: Session) -> RateLimits | None:
    if session.owner is None:
        return None
    status = await runtime.quotas.standing(session.owner, session.id)
    return RateLimits(limits=status) if status else None


def _mount_api_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its assets served here, never a CDN. (No ReDoc: its page
    fetches a logo from the vendor's CDN, so it would not be whole offline.)"""
    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/static/api-docs", StaticFiles(directory=assets), name="api-docs")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="voicewire API",
            swagger_js_url="/static/api-docs/swagger-ui-bundle.js",
            swagger_css_url="/static/api-docs/swagger-ui.css",
            swagger_favicon_url="/static/api-docs/favicon.png",
        )


def _loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def origin_allowed(
    origin: str, server: tuple[str, int | None] | list[Any] | None, settings: Settings
) -> bool:
    """Browsers send ``Origin``; other clients do not and are not asked. A page may connect if
    its origin is configured, or if it is this server's own page: the address the connection
    actually reached (``server``, from the socket, not from any header) or, for a loopback
    address, ``localhost``, on the same port.

    The request's ``Host`` header is not trusted: a DNS-rebinding page has its own name in
    both ``Host`` and ``Origin`` while its requests reach our socket.
    """
    allowed = {o.strip().rstrip("/") for o in settings.allowed_origins.split(",") if o.strip()}
    if "*" in allowed or origin.rstrip("/") in allowed:
        return True
    if not server:
        return False
    parts = urlsplit(origin)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return False
    name = (parts.hostname or "").lower()
    address, local_port = str(server[0]).lower(), server[1]
    if port != local_port:
        return False
    return name == address or (_loopback(name) and _loopback(address))
