"""Process-wide state: settings, providers, sessions, metrics, and the model-loading lifecycle.

Models load once, in a thread, after the server starts listening, so ``/health`` can say
"starting" while they load; a warm-up turn makes the first real turn as fast as the rest.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from voicewire.config import Settings
from voicewire.costs.accounting import Accountant
from voicewire.costs.ledger import Ledger, ledger_target
from voicewire.costs.prices import PriceTable
from voicewire.costs.retention import roll_up
from voicewire.metrics import TurnMetrics
from voicewire.monitor import ResourceMonitor
from voicewire.pipeline import silero
from voicewire.pipeline.turn_types import Tools, TurnConfig
from voicewire.providers import build_providers, endpoint_key, parse
from voicewire.providers.base import Providers, redact
from voicewire.providers.runner import ModelRunner
from voicewire.server.lifecycle import Admission
from voicewire.server.limits import KeyLimits, Quotas
from voicewire.server.prom import RuntimeCollector
from voicewire.server.redis_store import RedisSessions
from voicewire.session import SessionStore
from voicewire.tools import default_tools, warm_tools

if TYPE_CHECKING:
    from voicewire.pipeline.turn import Turn
    from voicewire.pipeline.turn_types import TurnRequest
    from voicewire.protocol import CostUpdate
    from voicewire.realtime.connection import RealtimeConnection
    from voicewire.server.connection import Connection
    from voicewire.session import Session

log = logging.getLogger(__name__)
Status = Literal["starting", "ready", "failed"]
ProviderFactory = Callable[[Settings, ModelRunner], Providers]


class Runtime:
    def __init__(
        self,
        settings: Settings,
        providers: Providers | ProviderFactory | None = None,
        tools: Tools | None = None,
    ) -> None:
        self.settings = settings
        self.runner = ModelRunner(settings.model_workers)
        self._factory: ProviderFactory = (
            providers if callable(providers) else build_providers  # type: ignore[assignment]
        )
        self.providers: Providers | None = providers if isinstance(providers, Providers) else None
        self.tools: Tools = tools if tools is not None else default_tools(self.server_stats)
        self.prices = PriceTable.load(settings.prices_file, settings.core_hour_usd)
        self.ledger = Ledger(ledger_target(settings)) if settings.ledger else None
        self.accountant = Accountant(self.prices, self.ledger)
        self.monitor = ResourceMonitor(settings.monitor_interval_s)
        self.cpu_at_ready = 0.0
        self._background: set[asyncio.Task[Any]] = set()
        self.store = (
            SessionStore()
            if settings.redis_url is None
            else RedisSessions(
                settings.redis_url.get_secret_value(), settings.session_ttl_s, self.superseded
            )
        )
        self.metrics = TurnMetrics()
        self.connections: dict[str, Connection | RealtimeConnection] = {}  # by session id
        self.turn_config = TurnConfig(
            tts_chunk_ms=settings.tts_chunk_ms,
            tts_max_chunk_ms=settings.tts_max_chunk_ms,
            max_tool_rounds=settings.max_tool_rounds,
            tool_timeout_s=settings.tool_timeout_s,
            max_reply_chars=settings.max_reply_chars,
            max_reply_audio_s=settings.max_reply_audio_s,
        )
        self.loaded = asyncio.Event()  # set when start() has finished, ready or failed
        self.loop: asyncio.AbstractEventLoop | None = None  # the serving loop, once it runs
        self.status: Status = "starting"
        self.error: str | None = None
        self.endpoint_checks: dict[str, str] = {}  # network providers: "ok" or why not
        self._checked_at = 0.0
        self.started_at = time.monotonic()
        self.metrics.registry.register(RuntimeCollector(self))  # reads the state above
        self.admission = Admission(self)
        self.quotas = Quotas(lambda key: KeyLimits())  # per-key limits, set by create_app
        self.leases: dict[str, str] = {}  # open connections counted against a key: id -> key
        self.worker = f"{socket.gethostname()}:{os.getpid()}"  # this process, in a cluster
        self.cluster: dict[str, Any] | None = None  # every worker's totals, via Redis

    def require_providers(self) -> Providers:
        if self.providers is None:
            raise RuntimeError("providers are not loaded yet")
        return self.providers

    async def start(self) -> None:
        """Load and warm the providers off the event loop, then open for turns."""
        log.info("loading the models (this takes a few seconds)...")
        try:
            if self.providers is None:
                settings = self.settings
                if settings.stt_vocabulary is None:  # the words the tools act on
                    words = getattr(self.tools, "vocabulary", lambda: "")()
                    settings = settings.model_copy(update={"stt_vocabulary": words})
                self.providers = await asyncio.to_thread(self._factory, settings, self.runner)
            if self.settings.vad == "silero":  # the first session that speaks waits not
                await asyncio.to_thread(silero.load)
            if self.settings.warmup:
                await asyncio.to_thread(warm_tools)
                checks = asyncio.create_task(self.providers.check_endpoints())
                await self._warm_up(self.providers)
                self.endpoint_checks = await checks
                self._checked_at = time.monotonic()
                for endpoint, result in self.endpoint_checks.items():
                    if result != "ok":  # not fatal: a chain may fall back, the network may heal
                        log.error("%s does not answer as it should: %s", endpoint, result)
        except Exception as exc:
            self.status, self.error = "failed", redact(f"{type(exc).__name__}: {exc}")
            log.exception("could not start the providers")
        else:
            self.status = "ready"
            self.cpu_at_ready = self.monitor.sample().cpu_s  # baseline RSS: no session yet
            log.info("ready: %s", self.providers.describe())
            log.info("%s", self.ready_message())
        finally:
            self.loaded.set()

    def ready_message(self) -> str:
        s = self.settings
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
        host = f"[{host}]" if ":" in host else host
        talk = "voicewire talk --chat"
        if (host, s.port) != ("127.0.0.1", 8000):
            talk += f" --url ws://{host}:{s.port}/ws/multimodal"
        return f"voicewire is ready: open http://{host}:{s.port}/ in a browser, or run `{talk}`"

    def unusable_stages(self) -> dict[str, str]:
        """Stages none of whose providers can serve now: every member of the chain is a network
        endpoint whose last check failed. Why, per member."""
        problems: dict[str, str] = {}
        for stage in ("stt", "llm", "tts"):
            reasons = []
            for spec in parse(self.settings, stage):
                key = endpoint_key(spec.kind, stage)
                result = self.endpoint_checks.get(key) if key else None
                if result is None or result == "ok":
                    break
                reasons.append(f"{spec.kind}: {result}")
            else:
                problems[stage] = "; ".join(reasons)
        return problems

    async def readiness(self, recheck_after_s: float = 5.0) -> dict[str, str]:
        """``unusable_stages``, checking the failed endpoints again when the last check is
        older than ``recheck_after_s`` (a network or a key that was fixed shows up)."""
        problems = self.unusable_stages()
        stale = time.monotonic() - self._checked_at > recheck_after_s
        if problems and stale and self.providers is not None:
            self._checked_at = time.monotonic()
            self.endpoint_checks = await self.providers.check_endpoints()
            problems = self.unusable_stages()
        return problems

    async def _warm_up(self, providers: Providers) -> None:
        """Load the embedded models' caches with one tiny turn. Network providers are not
        called: a warm-up must not cost money nor fail start-up when a cloud is down."""
        from voicewire.audio import resample_pcm16
        from voicewire.protocol import INPUT_SAMPLE_RATE

        start = time.perf_counter()
        tts, stt, llm = (_embedded(p) for p in (providers.tts, providers.stt, providers.llm))
        pcm = bytes(INPUT_SAMPLE_RATE * 2)  # one second of silence
        if tts is not None:
            said = [c async for c in tts.synthesize("Hello there.") if isinstance(c, bytes)]
            pcm = resample_pcm16(b"".join(said), tts.sample_rate, INPUT_SAMPLE_RATE)
        if stt is not None:
            await stt.transcribe(pcm, INPUT_SAMPLE_RATE)
        if llm is not None:
            async for _ in llm.stream([{"role": "user", "content": "hello"}], []):
                pass
            # a language model's fixed prompt prefix, evaluated once: turns find it cached
            if (warm := getattr(getattr(llm, "model", llm), "warm", None)) is not None:
                await asyncio.to_thread(warm, self.tools.specs())
        log.info("warm-up took %.0f ms", (time.perf_counter() - start) * 1000)

    def server_stats(self) -> dict[str, Any]:
        """The server's own live figures, for the ``get_realtime_data`` tool."""
        ttfa = self.metrics.stages["ttfa_ms"].summary()
        return {
            "sessions": {
                "value": self.store.connected(),
                "unit": "sessions",
                "known": len(self.store),
                "turns": sum(self.metrics.turns.values()),
            },
            "latency": {"value": ttfa.get("p50"), "unit": "ms", "ttfa_ms": ttfa},
        }

    async def account(self, session: Session, request: TurnRequest, turn: Turn) -> CostUpdate:
        """Price and persist what this utterance used (whatever became of it)."""
        u = turn.usage
        return await self.accountant.account(
            session, request.record.id, u.calls, u.tool_calls, request.record.created_at
        )

    def account_later(self, session: Session, request: TurnRequest, turn: Turn) -> None:
        """Account for a turn whose connection is gone: the money was spent all the same."""
        task = asyncio.create_task(self.account(session, request, turn))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def sweep(self) -> None:
        """Close idle connections and forget old disconnected sessions, forever."""
        s = self.settings
        interval = max(0.5, min(30.0, s.idle_timeout_s / 4, s.session_ttl_s / 4 or 30.0))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for session in self.store.idle_connected(now, s.idle_timeout_s):
                conn = self.connections.get(session.id)
                if conn is not None and conn.idle():
                    await conn.close_idle()
            self.store.expire(now, s.session_ttl_s)
            self.store.refresh()
            self.quotas.heartbeat(self.leases)
            mine = {
                "sessions_connected": self.store.connected(),
                "turns": sum(self.metrics.turns.values()),
            }
            self.cluster = await self.store.publish(self.worker, mine, 3 * interval)

    async def hand_over(self, session_id: str) -> None:
        """Another worker resumes this session: close this worker's connection to it (often
        half-open after a network change) and wait until its turns have unwound."""
        conn = self.connections.get(session_id)
        if (close := getattr(conn, "close_for_resume", None)) is not None:
            await close()

    def superseded(self, session_id: str) -> None:
        """The session was resumed through another worker: this copy's connection is stale."""
        if session_id in self.connections:
            task = asyncio.get_running_loop().create_task(self.hand_over(session_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def capacity(self) -> dict[str, Any]:
        """The resource monitor's estimate of the sessions this host could hold, from the
        CPU per turn and memory per session measured so far."""
        turns = sum(self.metrics.turns.values())
        total_ms = self.metrics.stages["total_ms"].summary()
        avg_turn_s = total_ms["avg"] / 1000 if "avg" in total_ms else None
        cpu = (self.monitor.samples[-1].cpu_s if self.monitor.samples else 0) - self.cpu_at_ready
        return {
            **self.monitor.capacity(self.store.connected(), turns, cpu, avg_turn_s),
            "turns_measured": turns,
        }

    async def flush(self) -> None:
        """Wait for the accounting still running in the background (the ledger's writes)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def retain(self, every_s: float = 3600.0) -> None:
        """Roll up the ledger's old sessions now and then every hour, forever."""
        days = self.settings.ledger_retention_days
        if self.ledger is None or days is None:
            return
        while True:
            try:
                rolled = await asyncio.to_thread(
                    roll_up, self.ledger.db, time.time() - days * 86_400
                )
                if rolled:
                    log.info("ledger: %d sessions older than %g days rolled up", rolled, days)
            except Exception:  # a locked or damaged file must not stop the server
                log.exception("ledger retention failed; retrying in %g s", every_s)
            await asyncio.sleep(every_s)

    def shutdown(self) -> None:
        self.runner.shutdown()
        if self.ledger is not None:
            self.ledger.close()


def _embedded(provider: Any) -> Any:
    """The provider itself, or the member of its fallback chain, that runs in this process."""
    members = getattr(getattr(provider, "chain", None), "members", [provider])
    inner = [getattr(m, "inner", m) for m in members]
    return next((m for m in inner if m.name.split(":")[0] in ("local", "simulated", "fake")), None)
