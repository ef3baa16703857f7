"""How the app is put on a socket: uvicorn's limits chosen deliberately, not left at defaults.

uvicorn holds a connection that never finishes its request headers for ever (its keep-alive
timer only runs between requests), so 1,000 silent or half-sent handshakes were held for
minutes and, at the usual 1,024 descriptors, locked every new client out. Here:

- a connection must finish its request headers (HTTP request or WebSocket handshake) within
  ``handshake_timeout_s``, or it is closed;
- at most ``max_connections`` are served at once; past that uvicorn answers 503;
- request bodies larger than the biggest upload we accept are refused from ``Content-Length``
  and while they stream (:class:`BodyLimit`), before anything is written to disk;
- the process may open as many descriptors as its hard limit allows;
- the WebSocket endpoints are served past FastAPI's router (:class:`WebSocketRoutes`), which
  would hold ~10 KB per connection for its whole life.

The CLI and the tests build their server with :func:`uvicorn_config`, so both run with these.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from starlette.exceptions import HTTPException
from starlette.websockets import WebSocket
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from voicewire.config import Settings

log = logging.getLogger(__name__)

# multipart framing around an uploaded file: boundaries, part headers
MULTIPART_OVERHEAD = 64 * 1024
FD_RESERVE = 256  # descriptors kept for everything but client connections


class _HeaderDeadline(HttpToolsProtocol):
    """httptools' protocol with a deadline for each request's headers, and the connection cap
    applied to WebSocket handshakes too (uvicorn's ``limit_concurrency`` check is skipped for
    upgrades, so without this the cap held only plain HTTP requests)."""

    header_timeout_s: float = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        limit = self.limit_concurrency
        if limit is not None and len(self.connections) - 1 >= limit:  # others, not this one
            self.logger.warning("refused a WebSocket: %d connections are served", limit)
            body = b"server is at its connection limit; retry later\n"
            self.transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
                b"retry-after: 1\r\nconnection: close\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            self.transport.close()
            return
        super().handle_websocket_upgrade()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def http_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    attrs = {"header_timeout_s": header_timeout_s}
    return type("HeaderDeadlineProtocol", (_HeaderDeadline,), attrs)


class BodyTooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException, so a route's body parsing passes it on (it
    turns other errors into 400) and the app answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds {max_bytes} bytes")


WebSocketEndpoint = Callable[[WebSocket], Awaitable[None]]

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - an older uvicorn: its default protocol then
    WebSocketsSansIOProtocol = None


if WebSocketsSansIOProtocol is not None:

    class LeanWebSocketProtocol(WebSocketsSansIOProtocol):  # type: ignore[misc,valid-type]
        """uvicorn's WebSocket protocol (what ``ws="auto"`` picks), forgetting the handshake
        once it is answered: it keeps the request and the response, headers and all, for the
        connection's life (~2 KB of an idle session, measured), and reads neither after the
        accept. Hooked where uvicorn starts the keep-alive, once, just after it sent the
        accept: not on ``send``, which every frame goes through."""

        def start_keepalive(self) -> None:
            super().start_keepalive()
            self.request = self.response = None


class WebSocketRoutes:
    """ASGI middleware serving the WebSocket endpoints itself, past FastAPI's router.

    Why: a FastAPI route holds its dependency results, exception wrappers and three exit
    stacks for as long as its handler runs: for a WebSocket that is the whole connection,
    ~10 KB of an idle session's ~40 (docs/performance.md). The endpoints read their query
    parameters themselves; everything else (the guard, other paths) is unchanged."""

    def __init__(self, app: Any, routes: dict[str, WebSocketEndpoint]) -> None:
        self.app = app
        self.routes = routes  # path -> endpoint (filled once the endpoints are defined)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):  # mounted under a prefix, as Starlette routes
                path = path[len(root) :]
            if (route := self.routes.get(path)) is not None:
                await route(WebSocket(scope, receive, send))
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: refuse HTTP request bodies over ``max_bytes`` with 413, by the declared
    ``Content-Length`` before reading and by counting while the body streams."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, 400, "Content-Length is not a number")
                    return
                if declared > self.max_bytes:
                    await self._refuse(send, 413, self._message())
                    return
        received = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watching_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, 413, self._message())

    def _message(self) -> str:
        return f"request body exceeds {self.max_bytes} bytes"

    @staticmethod
    async def _refuse(send: Any, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def max_body_bytes(settings: Settings) -> int:
    return settings.max_frame_bytes + MULTIPART_OVERHEAD


def raise_fd_limit() -> int | None:
    """Raise the soft descriptor limit to the hard one (each connection costs one and the usual
    soft 1,024 is low); return the limit now in force, None where there is none to read."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def connection_cap(settings: Settings, fd_limit: int | None) -> int:
    """``max_connections``, lowered so that the cap is reached before descriptors run out
    (models, the ledger, logs and outgoing provider connections need some too)."""
    cap = settings.max_connections
    if fd_limit is not None and cap > fd_limit - FD_RESERVE:
        cap = max(1, fd_limit - FD_RESERVE)
        log.warning(
            "max_connections lowered from %d to %d: the process may open %d descriptors",
            settings.max_connections,
            cap,
            fd_limit,
        )
    return cap


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "http": http_protocol(settings.handshake_timeout_s),
        "limit_concurrency": connection_cap(settings, raise_fd_limit()),
        "timeout_keep_alive": 5,
        # Frames up to twice our limit still get a clear error frame; larger ones close the
        # socket (1009).
        "ws_max_size": settings.max_frame_bytes * 2,
        "ws_per_message_deflate": False,
        "ws": "auto" if WebSocketsSansIOProtocol is None else LeanWebSocketProtocol,
        "lifespan": "on",
        "log_config": None,  # uvicorn's lines go through our logging (voicewire.logs)
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
