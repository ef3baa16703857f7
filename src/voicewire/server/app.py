"""The FastAPI application: ``create_app`` wires the runtime, the REST routes and the WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from voicewire import __version__
from voicewire.config import Settings
from voicewire.pipeline.turn import Tools
from voicewire.providers import validate
from voicewire.providers.base import Providers
from voicewire.server import rest, viz
from voicewire.server.connection import Connection
from voicewire.server.runtime import ProviderFactory, Runtime


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

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.loaded = asyncio.Event()  # bind to the serving loop
        tasks = [
            asyncio.create_task(runtime.start()),
            asyncio.create_task(runtime.sweep()),
            asyncio.create_task(runtime.monitor.run()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for conn in list(runtime.connections.values()):
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=1001, reason="server shutting down")
            if runtime.providers is not None:
                with contextlib.suppress(Exception):
                    await runtime.providers.aclose()
            runtime.shutdown()

    app = FastAPI(
        title="voicewire",
        version=__version__,
        description="Real-time voice agent server. WebSocket protocol: docs/protocol.md.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.include_router(rest.router)
    app.include_router(viz.router)
    web = Path(__file__).parent.parent / "web"
    app.mount("/web", StaticFiles(directory=web), name="web")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        """The browser client."""
        return FileResponse(web / "index.html")

    @app.websocket("/ws/multimodal")
    async def multimodal(ws: WebSocket) -> None:
        await Connection(ws, runtime).serve()

    return app
