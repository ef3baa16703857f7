"""REST endpoints: health, metrics, session state and a one-shot transcription test."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from voicewire import __version__
from voicewire.audio import AudioError, AudioTooLong, EmptyAudio, duration_ms, to_input_pcm
from voicewire.costs.prices import money
from voicewire.protocol import INPUT_SAMPLE_RATE, PROTOCOL_VERSION
from voicewire.providers.base import ProviderError
from voicewire.providers.runner import model_owner
from voicewire.server.prom import exposition_registry
from voicewire.server.runtime import Runtime
from voicewire.session import Session

router = APIRouter()


def _rt(request: Request) -> Runtime:
    return request.app.state.runtime


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors a route answers, all ``{"detail": "..."}``."""
    return {code: {"description": _ERROR_TEXT[code], "model": ErrorBody} for code in codes}


class ErrorBody(BaseModel):
    detail: str


_ERROR_TEXT = {
    400: "Not applicable to this server's configuration",
    404: "Unknown id",
    413: "Upload or audio over the configured limit",
    415: "Not a PCM WAV file",
    422: "Missing or empty file",
    502: "The speech-to-text provider failed",
    503: "Models still loading or failed, or a stage cannot reach any of its providers",
}


@router.head("/health", include_in_schema=False)
@router.get("/health", responses=_errors(503))
async def health(request: Request) -> JSONResponse:
    """Liveness and readiness: 200 when ready for turns; 503 while models load, if they failed,
    or while a stage has no provider it can reach ("degraded", with the reasons)."""
    rt = _rt(request)
    status: str = rt.status
    unusable = await rt.readiness() if status == "ready" else {}
    if unusable:
        status = "degraded"
    body: dict[str, Any] = {
        "status": status,
        "version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "uptime_s": round(time.monotonic() - rt.started_at, 3),
        "models": rt.providers.describe() if rt.providers else None,
        "endpoints": rt.endpoint_checks,
        "sessions": {"connected": rt.store.connected(), "known": len(rt.store)},
        "auth": "api_key" if request.app.state.auth.enabled else "none",
        "worker": rt.worker,
    }
    if unusable:
        body["unusable"] = unusable
    if rt.error:
        body["error"] = rt.error
    return JSONResponse(body, status_code=200 if status == "ready" else 503)


@router.get("/health/ready", responses=_errors(503))
async def ready(request: Request) -> JSONResponse:
    """Readiness, for a load balancer: 200 while new sessions are welcome; 503 while the
    models load, while draining, at capacity or overloaded (``reason``, ``Retry-After``)."""
    rt = _rt(request)
    verdict = rt.admission.check()
    reason = verdict.reason if rt.status == "ready" else f"models {rt.status}"
    ok = rt.status == "ready" and verdict.ok
    body = {
        "ready": ok,
        "draining": rt.admission.draining,
        "sessions": rt.store.connected(),
        "max_sessions": rt.admission.session_cap(),
        **({} if ok else {"reason": reason}),
    }
    headers = {} if ok else {"Retry-After": str(verdict.retry_after_s or 5)}
    return JSONResponse(body, status_code=200 if ok else 503, headers=headers)


@router.get("/metrics")
async def metrics(request: Request) -> dict[str, Any]:
    """Sessions, per-stage performance, costs, features and resources, as JSON."""
    rt = _rt(request)
    snap = rt.metrics.snapshot()
    turns = sum(snap["turns"].values())
    totals = rt.accountant.totals
    cost = sum(totals.values(), Decimal(0))
    resources = rt.monitor.snapshot()
    return {
        "worker": rt.worker,
        # every worker sharing the Redis, as of the last sweep (None: one worker, no Redis)
        "cluster": rt.cluster,
        "sessions": {"connected": rt.store.connected(), "known": len(rt.store)},
        "store": rt.store.stats(),  # Redis: writes and their average time
        "active_utterances": sum(1 for c in rt.connections.values() if c.busy()),
        "model_queue": rt.runner.pending,
        "turns": snap["turns"],
        "interruptions": snap["interruptions"],
        "turn_waits": snap["turn_waits"],
        # the embedded hybrid agent: turns the rules answered, and turns the model did
        "llm_paths": dict(getattr(rt.providers and rt.providers.llm, "handled", {})),
        "errors": snap["errors"],
        "fallbacks": snap["fallbacks"],
        "connections_total": snap["connections_total"],
        "performance": snap["latency_ms"],
        "costs": {
            "total_usd": money(cost),
            "by_component": {k: money(v) for k, v in totals.items()},
            "usd_per_turn": money(cost / turns) if turns else None,
            "ledger": str(rt.ledger.path) if rt.ledger else None,
            "ledger_failures": rt.accountant.ledger_failures,
        },
        "features": {
            "providers": rt.providers.describe() if rt.providers else None,
            "tools": [s.name for s in rt.tools.specs()],
            "turn_detection": rt.settings.turn_detection,
            "speculative_stt_ms": rt.settings.speculative_stt_ms,
            "stt_window_s": rt.settings.stt_window_s,
        },
        "resources": {
            **resources,
            "capacity": rt.capacity(),
        },
    }


@router.get(
    "/metrics/prometheus",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def prometheus(request: Request) -> Response:
    """The same figures in the Prometheus text format."""
    rt = _rt(request)
    labelled = exposition_registry(rt.metrics.registry, rt.worker)
    return Response(generate_latest(labelled), media_type=CONTENT_TYPE_LATEST)


@router.get("/session/{session_id}", responses=_errors(404))
async def session(request: Request, session_id: str) -> dict[str, Any]:
    found = await visible_session(request, session_id)
    return found.snapshot()


async def visible_session(request: Request, session_id: str) -> Session:
    """The session, if the caller may see it: with keys on, only the key that opened it may
    (another key's session is as unknown as a made-up id). With several workers, one another
    worker serves is read from the session store."""
    store = _rt(request).store
    found = store.get(session_id) or await store.load(session_id[:64])
    caller = getattr(request.state, "caller", None)
    if found is None or (caller is not None and found.owner not in (None, caller.key)):
        raise HTTPException(404, f"unknown session {session_id!r}")
    return found


@router.post("/stt-test", responses=_errors(413, 415, 422, 502, 503))
async def stt_test(request: Request, file: UploadFile) -> dict[str, Any]:
    """Transcribe an uploaded WAV file with the server's STT, and time it.

    Bodies over the upload limit are refused before they are read (``BodyLimit``); the WAV
    header is checked before any sample is decoded, and decoding runs off the event loop.
    """
    rt = _rt(request)
    data = await file.read(rt.settings.max_frame_bytes + 1)
    if len(data) > rt.settings.max_frame_bytes:
        raise HTTPException(413, f"upload exceeds {rt.settings.max_frame_bytes} bytes")
    if rt.status != "ready":
        raise HTTPException(503, f"server is {rt.status}")
    try:
        pcm = await asyncio.to_thread(
            to_input_pcm, data, "wav", INPUT_SAMPLE_RATE, INPUT_SAMPLE_RATE, rt.settings.max_audio_s
        )
    except AudioTooLong as exc:
        raise HTTPException(413, str(exc)) from exc
    except EmptyAudio as exc:
        raise HTTPException(422, "the WAV file has no audio") from exc
    except AudioError as exc:
        raise HTTPException(415, f"expected a PCM WAV file: {exc}") from exc
    audio_ms = duration_ms(pcm, INPUT_SAMPLE_RATE)
    stt = rt.require_providers().stt
    start = time.perf_counter()
    model_owner.set(f"rest:{request.client.host if request.client else '?'}")
    try:
        transcript = await stt.transcribe(pcm, INPUT_SAMPLE_RATE)
    except ProviderError as exc:
        raise HTTPException(502, f"transcription failed: {exc}") from exc
    return {
        "text": transcript.text.strip(),
        "duration_ms": round((time.perf_counter() - start) * 1000, 2),
        "audio_ms": round(audio_ms, 2),
        "model": stt.name,
    }


class ClientTokenRequest(BaseModel):
    expires_in: float | None = Field(
        default=None, gt=0, le=3600, description="Seconds to connect; default token_ttl_s"
    )


class ClientToken(BaseModel):
    token: str = Field(description="Give it to the browser: ?token= or subprotocol")
    expires_at: int = Field(description="Unix time after which it no longer connects")
    key: str = Field(description="The name of the API key it acts for")


@router.post("/v1/client_tokens", responses=_errors(400))
async def client_token(request: Request, body: ClientTokenRequest | None = None) -> ClientToken:
    """A short-lived token that lets a browser open a WebSocket on behalf of the calling API
    key (a browser cannot set an Authorization header on a WebSocket). Needs the API key."""
    auth = request.app.state.auth
    if not auth.enabled:
        raise HTTPException(400, "API keys are not enabled (VOICEWIRE_API_KEYS): no token needed")
    caller = request.state.caller
    ttl = body.expires_in if body and body.expires_in else _rt(request).settings.token_ttl_s
    token, expires_at = auth.tokens.mint(caller.key, ttl)
    return ClientToken(token=token, expires_at=expires_at, key=caller.key)


MAX_SECRET_SESSION_BYTES = 6_000  # the token travels in a header: a browser's is a few KB


class SecretExpiry(BaseModel):
    anchor: str = Field(default="created_at", pattern="^created_at$")
    seconds: int = Field(default=600, ge=10, le=7200)


class ClientSecretRequest(BaseModel):
    expires_after: SecretExpiry | None = None
    session: dict[str, Any] | None = None


@router.post("/v1/realtime/client_secrets", responses=_errors(400))
async def client_secret(request: Request, body: ClientSecretRequest | None = None) -> Any:
    """OpenAI's ephemeral client secret (``client.realtime.client_secrets.create``): a token
    for ``/v1/realtime`` whose session starts with the configuration given here. Needs the
    API key when keys are on; default lifetime ``token_ttl_s``."""
    from voicewire.realtime.config import BadRequest, RealtimeConfig

    body = body or ClientSecretRequest()
    settings = _rt(request).settings
    model = (body.session or {}).get("model") or "voicewire"
    config = RealtimeConfig(str(model), settings.silence_ms, settings.max_silence_ms)
    try:
        if body.session is not None:
            config.update(body.session)
    except BadRequest as exc:
        error = {"type": "invalid_request_error", "code": exc.code, "message": exc.message}
        return JSONResponse({"error": {**error, "param": exc.param}}, status_code=400)
    if len(json.dumps(body.session or {})) > MAX_SECRET_SESSION_BYTES:
        raise HTTPException(400, f"session is over {MAX_SECRET_SESSION_BYTES} bytes as JSON")
    caller = getattr(request.state, "caller", None)
    ttl = body.expires_after.seconds if body.expires_after else settings.token_ttl_s
    token, expires_at = request.app.state.auth.tokens.mint(
        caller.key if caller else "", ttl, session=body.session or None
    )
    return {"value": token, "expires_at": expires_at, "session": config.describe("")}
