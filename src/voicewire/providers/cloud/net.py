"""What every network provider shares: timeouts, one retry policy, and failures as reasons.

One policy for every adapter, so OpenAI, ElevenLabs and any OpenAI-compatible server fail the
same way (the OpenAI client's own retries are switched off in favour of this one):

- retry 408/409/429/5xx, timeouts, dropped connections and malformed replies, with
  exponential backoff and full jitter, at most ``retries`` times;
- honour ``Retry-After`` (and OpenAI's ``retry-after-ms``), but a wait longer than
  ``max_wait_s`` is not worth a voice turn: fail at once so a fallback provider can answer;
- never retry a 429 that means the quota is spent, nor 400/401/403/404/422;
- streams are retried only while they have yielded nothing: once the user has heard or seen
  part of a reply, a retry would repeat it.
"""

from __future__ import annotations

import email.utils
import json
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2
import openai
from openai import DefaultAioHttpClient
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from voicewire.providers.base import ProviderError, redact

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRIABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class NetPolicy:
    """Timeouts and retries for one stage's network provider."""

    connect_s: float = 3.0
    read_s: float = 10.0  # the longest wait for the first or the next byte
    retries: int = 2
    max_wait_s: float = 2.0  # longest backoff or Retry-After worth waiting in a voice turn
    base_wait_s: float = 0.25

    def timeout(self) -> httpx2.Timeout:
        return httpx2.Timeout(self.read_s, connect=self.connect_s)


def http_client(
    policy: NetPolicy, base_url: str = "", headers: dict[str, str] | None = None
) -> httpx2.AsyncClient:
    """The HTTP client of every network provider: httpx's API on aiohttp's C-accelerated
    transport (the OpenAI SDK's own ``DefaultAioHttpClient``), which costs ~30 % less CPU per
    turn than the pure-Python transport (docs/performance.md). One per endpoint, shared by
    every session: its keep-alive pool saves a TLS handshake per request."""
    return DefaultAioHttpClient(
        base_url=base_url,
        headers=headers or {},
        timeout=policy.timeout(),
        limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=100),
    )


class HTTPStatusFailure(Exception):
    """A non-2xx answer from a provider called without an SDK (status, headers, its message)."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.message, self.code = error_message(body)
        super().__init__(f"HTTP {status}: {self.message}")


@dataclass(frozen=True, slots=True)
class Failure:
    retriable: bool
    reason: str  # for the user's error frame and the log: short, no secrets
    retry_after_s: float | None = None


def error_message(body: bytes | Any) -> tuple[str, str | None]:
    """(message, code) from an error body: OpenAI ``{"error": {...}}`` or ElevenLabs
    ``{"detail": {...}}`` / ``{"detail": [...]}``; raw text otherwise."""
    data = body
    if isinstance(body, bytes | str):
        try:
            data = json.loads(body)
        except ValueError:
            text = body.decode(errors="replace") if isinstance(body, bytes) else body
            return (text.strip()[:200] or "no details"), None
    if isinstance(data, dict):
        inner = data.get("error", data.get("detail", data))
        if isinstance(inner, dict):
            code = inner.get("code") or inner.get("status") or inner.get("type")
            return str(inner.get("message") or inner)[:300], (str(code) if code else None)
        if isinstance(inner, list) and inner:
            first = inner[0]
            msg = first.get("msg") if isinstance(first, dict) else None
            return str(msg or first)[:300], None
        return str(inner)[:300], None
    return str(data)[:300], None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if ms := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _status_failure(
    status: int, headers: Mapping[str, str], message: str, code: str | None
) -> Failure:
    wait = retry_after(headers)
    quota = status == 429 and code in ("insufficient_quota", "quota_exceeded")
    kind = {401: "unauthorised (check the API key)", 403: "forbidden", 404: "not found",
            429: "rate limited" if not quota else "quota exhausted"}.get(status, "")  # fmt: skip
    reason = f"HTTP {status}" + (f" {kind}" if kind else "") + f": {message}"
    if wait is not None:
        reason += f" (retry after {wait:g} s)"
    return Failure(status in RETRIABLE_STATUS and not quota, reason, wait)


def classify(exc: BaseException) -> Failure:
    """Whether a failure is worth retrying, and why it happened, in a sentence (redacted:
    upstream text may quote a key)."""
    f = _classify(exc)
    return Failure(f.retriable, redact(f.reason), f.retry_after_s)


def _classify(exc: BaseException) -> Failure:
    if isinstance(exc, ProviderError):
        return Failure(False, exc.reason)
    if isinstance(exc, openai.APIStatusError):
        message, code = error_message(exc.body if exc.body is not None else exc.message)
        return _status_failure(exc.status_code, exc.response.headers, message, code)
    if isinstance(exc, HTTPStatusFailure):
        return _status_failure(exc.status, exc.headers, exc.message, exc.code)
    if (unreachable := _unreachable(exc)) is not None:
        return Failure(True, unreachable)
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return Failure(True, "timed out waiting for the provider")
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        cause = exc.__cause__ or exc
        return Failure(True, f"connection failed: {type(cause).__name__}: {cause}".rstrip(": "))
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        return Failure(True, f"provider error: {exc.message}")
    if isinstance(exc, ValueError | KeyError | TypeError):  # JSON or shape we cannot read
        return Failure(True, f"malformed response: {type(exc).__name__}: {exc}"[:300])
    return Failure(False, f"{type(exc).__name__}: {exc}"[:300])


def _unreachable(exc: BaseException) -> str | None:
    """Why a connection could not be made, from the root of the exception chain: the SDK and
    its transport report a refused port or an unknown host as a "timeout"."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    peer = next(
        (f"{c.host}:{c.port}" for c in chain if isinstance(getattr(c, "host", None), str)),
        "the provider",
    )  # aiohttp's connector errors name the peer
    for c in chain:
        if isinstance(c, socket.gaierror):
            return f"cannot reach {peer}: name resolution failed"
        if isinstance(c, ConnectionRefusedError):
            return f"cannot reach {peer}: connection refused"
        if isinstance(c, ssl.SSLError | ssl.CertificateError):
            return f"cannot reach {peer}: TLS failed ({c})"[:300]
    if any(isinstance(c, httpx2.ConnectTimeout) for c in chain):
        return f"cannot reach {peer}: timed out connecting"
    return None


def _wait(policy: NetPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_random_exponential(multiplier=policy.base_wait_s, max=policy.max_wait_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = classify(exc).retry_after_s if exc else None
        return max(backoff(state), hinted or 0.0)

    return wait


def _retrying(policy: NetPolicy, provider: str) -> AsyncRetrying:
    def worth_retrying(exc: BaseException) -> bool:
        f = classify(exc)
        return f.retriable and (f.retry_after_s is None or f.retry_after_s <= policy.max_wait_s)

    def announce(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        reason = classify(exc).reason if exc else "?"
        log.warning("%s: %s; retry %d in %.2f s", provider, reason, state.attempt_number, wait)

    return AsyncRetrying(
        stop=stop_after_attempt(policy.retries + 1),
        retry=retry_if_exception(worth_retrying),
        wait=_wait(policy),
        before_sleep=announce,
        reraise=True,
    )


def _as_provider_error(provider: str, exc: BaseException, note: str = "") -> ProviderError:
    return ProviderError(provider, classify(exc).reason + note)


async def call(provider: str, policy: NetPolicy, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run one request with the retry policy; a final failure is a :class:`ProviderError`."""
    try:
        async for round_ in _retrying(policy, provider):
            with round_:
                return await attempt()
    except ProviderError:
        raise
    except Exception as exc:
        raise _as_provider_error(provider, exc) from exc
    raise AssertionError("unreachable: tenacity either returns or raises")


async def stream(
    provider: str, policy: NetPolicy, open_stream: Callable[[], AsyncIterator[T]]
) -> AsyncIterator[T]:
    """Iterate a streamed reply, retried while it has yielded nothing; then pass it through.

    A failure after the first item is final (a :class:`ProviderError` saying so): retrying
    would repeat what the user already has.
    """
    source: AsyncIterator[T] | None = None

    async def first_item() -> tuple[AsyncIterator[T], list[T]]:
        it = open_stream()
        try:
            return it, [await anext(it)]
        except StopAsyncIteration:
            return it, []
        except BaseException:
            await _close(it)
            raise

    try:
        source, first = await call(provider, policy, first_item)
        if not first:
            return
        yield first[0]
        try:
            async for item in source:
                yield item
        except ProviderError:
            raise
        except Exception as exc:
            raise _as_provider_error(provider, exc, " (the reply was cut short)") from exc
    finally:
        if source is not None:
            await _close(source)


async def _close(it: AsyncIterator[Any]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken stream may fail again; nothing left to save
            log.debug("closing a provider stream failed", exc_info=True)
