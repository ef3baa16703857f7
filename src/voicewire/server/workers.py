"""``voicewire serve --workers N``: N server processes sharing one listening socket.

Each worker is a whole server (its own models, sessions and event loop); the kernel hands each
new connection to one of them. Nothing ties a client to a worker: with ``VOICEWIRE_REDIS_URL``
a session resumes on any of them and per-key limits are counted across them (without it, each
worker keeps its own sessions and counts).

The supervisor is small on purpose (uvicorn's own runs plain uvicorn servers, which would cut
running turns on SIGTERM): it starts the workers, starts a new one when one dies (a crash, the
OOM killer), and on SIGTERM/SIGINT passes the signal on so that every worker drains (finishes
its turns, tells its clients, flushes its ledger) and waits for them; a second signal kills
them at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from typing import Any

from voicewire.config import Settings

log = logging.getLogger("voicewire.workers")

RESTART_WINDOW_S = 60.0  # a worker that dies within this of its start, twice over: give up
_spawn = multiprocessing.get_context("spawn")
multiprocessing.allow_connection_pickling()  # the listening socket goes to each worker


def _worker(sock: socket.socket, overrides: dict[str, Any], index: int) -> None:
    """One worker: the same server ``voicewire serve`` runs, on the shared socket."""
    from voicewire import logs
    from voicewire.server.app import create_app
    from voicewire.server.lifecycle import DrainingServer
    from voicewire.server.serving import uvicorn_config

    settings = Settings(**overrides)  # checked by the supervisor already
    logs.configure(settings.log_level, settings.log_format)
    application = create_app(settings)
    server = DrainingServer(uvicorn_config(application, settings), application.state.runtime)
    server.run(sockets=[sock])


def bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, settings: Settings, overrides: dict[str, Any], workers: int) -> None:
        self.settings = settings
        self.overrides = overrides
        self.count = workers
        self.sock = bind(settings)
        self.procs: list[BaseProcess] = []
        self.started_at: list[float] = []
        self.quick_deaths = 0
        self.stopping = False
        self.signals = 0
        self._told: set[int] = set()  # pids sent SIGTERM

    def _start(self, index: int) -> BaseProcess:
        proc = _spawn.Process(
            target=_worker, args=(self.sock, self.overrides, index), name=f"voicewire-{index}"
        )
        proc.start()
        log.info("worker %d started (pid %s)", index, proc.pid)
        return proc

    def _signal(self, sig: int, frame: Any) -> None:
        self.signals += 1
        self.stopping = True
        hard = self.signals > 1
        log.info("%s: %s the workers", signal.Signals(sig).name, "killing" if hard else "draining")
        self._forward()

    def _forward(self) -> None:
        """Pass the stop on to each worker that has not had it (after a second signal: kill
        them all). Called again once the loop ends: a signal that came while a worker was
        being started, before it joined ``procs``, did not reach it, and the supervisor
        waited for it for ever."""
        hard = self.signals > 1
        for proc in self.procs:
            if proc.is_alive() and proc.pid is not None and (hard or proc.pid not in self._told):
                os.kill(proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
                self._told.add(proc.pid)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        for i in range(self.count):
            self.procs.append(self._start(i))
        self.started_at = [time.monotonic()] * self.count
        while not self.stopping:
            for i, proc in enumerate(self.procs):
                proc.join(timeout=0.25 / self.count)
                if proc.exitcode is None or self.stopping:
                    continue
                log.warning("worker %d (pid %s) exited with %s", i, proc.pid, proc.exitcode)
                if time.monotonic() - self.started_at[i] < RESTART_WINDOW_S:
                    self.quick_deaths += 1
                    if self.quick_deaths >= 2 * self.count:  # it cannot start: do not spin
                        log.error("workers keep dying at start; stopping")
                        self._signal(signal.SIGTERM, None)
                        break
                self.procs[i], self.started_at[i] = self._start(i), time.monotonic()
        self._forward()
        for proc in self.procs:
            proc.join()
        self.sock.close()
        codes = [p.exitcode for p in self.procs]
        log.info("workers stopped: exit codes %s", codes)
        # a worker still starting when our SIGTERM came dies of it: its server (which drains,
        # then exits 0) was not running yet, so it held no session: a clean stop too
        clean = (0, -signal.SIGTERM) if self.signals == 1 else (0,)
        return 0 if all(c in clean for c in codes) else 1
