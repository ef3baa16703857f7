"""Real Redis and PostgreSQL servers for the tests, started on loopback ports in temporary
directories (``make test`` installs Debian's ``redis-server`` and ``postgresql``)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    """Until the server accepts connections (it has no other way to say it is up)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on {port}")


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, port: int | None = None) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        port = port or free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", tempfile.mkdtemp(prefix="vw-redis-")]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        _wait_for_port(port, proc, "redis-server")
        return cls(port, proc)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError(f"{name} is not installed: apt-get install postgresql")
    return found


@dataclass
class PostgresServer:
    port: int
    datadir: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"postgresql://voicewire@127.0.0.1:{self.port}/voicewire"

    @classmethod
    def start(cls) -> PostgresServer:
        """initdb and postgres in a temporary directory; as root (CI), as the ``postgres``
        user the Debian package creates, since PostgreSQL refuses to run as root."""
        as_user: list[str] = []
        datadir = Path(tempfile.mkdtemp(prefix="vw-pg-"))
        if os.geteuid() == 0:
            as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(datadir, "postgres", "postgres")
        subprocess.run(
            [*as_user, _pg_bin("initdb"), "-D", str(datadir), "-U", "voicewire",
             "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        port = free_port()
        proc = subprocess.Popen(
            [*as_user, _pg_bin("postgres"), "-D", str(datadir), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={datadir}",
             "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_for_port(port, proc, "postgres")
        server = cls(port, datadir, proc)
        deadline = time.monotonic() + 30
        while True:  # accepting connections precedes accepting logins by a moment
            done = subprocess.run(
                [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "voicewire",
                 "voicewire"],
                capture_output=True,
            )  # fmt: skip
            if done.returncode == 0:
                return server
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {done.stderr.decode()}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


@dataclass
class Worker:
    """``voicewire serve`` in a subprocess, as a deployment runs it."""

    port: int
    proc: subprocess.Popen[str]
    log: list[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/multimodal"

    @classmethod
    def start(cls, env: dict[str, str], args: tuple[str, ...] = (), ready: int = 1) -> Worker:
        """Started and ready (``ready`` processes say so on stderr: one per worker); its later
        output is kept in ``log``."""
        import sys
        import threading

        port = free_port()
        full = {**os.environ, "VOICEWIRE_PORT": str(port), "VOICEWIRE_LOG_LEVEL": "info", **env}
        full.setdefault("VOICEWIRE_DATA_DIR", tempfile.mkdtemp(prefix="vw-worker-"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "voicewire.cli", "serve", *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=full,
        )  # fmt: skip
        assert proc.stderr is not None
        log: list[str] = []
        for line in proc.stderr:
            log.append(line)
            ready -= "voicewire is ready" in line
            if ready == 0:
                break
        else:
            raise RuntimeError("the worker exited before it was ready:\n" + "".join(log))
        stream = proc.stderr
        threading.Thread(target=lambda: log.extend(stream), daemon=True).start()
        return cls(port, proc, log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
