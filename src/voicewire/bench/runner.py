"""``voicewire bench``: run levels against a server (started here, pinned if asked), report.

Results are JSON (one row per level, plus the run's settings) and an HTML report with Plotly
charts whose plotly.js sits next to it, so the report opens offline.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from voicewire import __version__
from voicewire.bench.loadgen import LevelConfig, idle_sessions, run_level
from voicewire.bench.stats import LevelStats, compare

console = Console(stderr=True)


def _asyncio_run(coro: Any) -> Any:
    """Run on uvloop where installed: the load client must not be the bottleneck."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def raise_fd_limit() -> None:
    """Thousands of sessions need thousands of sockets, on both sides (the server inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(env: dict[str, str], cpus: str | None) -> Iterator[tuple[str, int]]:
    """Start ``voicewire serve`` in a subprocess; yield (ws url, pid); stop it after."""
    port = _free_port()
    full_env = {**os.environ, **env, "VOICEWIRE_PORT": str(port), "VOICEWIRE_LOG_LEVEL": "warning"}
    cmd = [sys.executable, "-m", "voicewire.cli", "serve"]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    proc = subprocess.Popen(cmd, env=full_env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready in 120 s")
            time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/ws/multimodal", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _run_levels(configs: list[LevelConfig]) -> list[LevelStats]:
    results = []
    with Progress(
        TextColumn("[bold]C={task.fields[c]}"),
        BarColumn(),
        TextColumn("{task.fields[turns]} turns, {task.fields[errors]} errors"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        for cfg in configs:
            task = progress.add_task("level", total=None, c=cfg.concurrency, turns=0, errors=0)

            def update(stats: LevelStats, task: Any = task) -> None:
                progress.update(task, turns=stats.turns, errors=sum(stats.errors.values()))

            stats = await run_level(cfg, update)
            update(stats)
            progress.update(task, total=1, completed=1)
            results.append(stats)
    return results


def run(
    levels: list[int],
    duration_s: float,
    think_time_s: float,
    input_kind: str,
    profile: str,
    url: str | None,
    server_pid: int | None,
    server_cpus: str | None,
    restart_per_level: bool,
    server_env: dict[str, str],
    turn_timeout_s: float,
    turns: int | None = None,
) -> dict[str, Any]:
    raise_fd_limit()
    env = {"VOICEWIRE_PROFILE": profile, **server_env}
    rows: list[dict[str, Any]] = []

    def one(ws_url: str, pid: int | None, level: int) -> None:
        cfg = LevelConfig(
            url=ws_url,
            concurrency=level,
            duration_s=duration_s,
            turns=turns,
            think_time_s=think_time_s,
            turn_timeout_s=turn_timeout_s,
            input=input_kind,
            server_pid=pid,
        )
        rows.append(_asyncio_run(_run_levels([cfg]))[0].to_json())
        print_rows(rows[-1:])

    if url is not None:
        for level in levels:
            one(url, server_pid, level)
    elif restart_per_level:
        for level in levels:
            with server(env, server_cpus) as (ws_url, pid):
                one(ws_url, pid, level)
    else:
        with server(env, server_cpus) as (ws_url, pid):
            for level in levels:
                one(ws_url, pid, level)
    return {
        "benchmark": "voicewire bench",
        "version": __version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "settings": {
            "profile": profile,
            "duration_s": duration_s,
            "turns": turns,
            "think_time_s": think_time_s,
            "input": input_kind,
            "server_cpus": server_cpus,
            "client_cpus": sorted(os.sched_getaffinity(0)),
            "server_env": _masked(env) if url is None else None,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "levels": rows,
    }


def run_idle(
    count: int, settle_s: float, measure_s: float, profile: str, server_cpus: str | None
) -> dict[str, Any]:
    raise_fd_limit()
    with server({"VOICEWIRE_PROFILE": profile}, server_cpus) as (ws_url, pid):
        return _asyncio_run(idle_sessions(ws_url, count, settle_s, measure_s, pid))


def print_rows(rows: list[dict[str, Any]]) -> None:
    table = Table()
    for col in (
        "C",
        "turns",
        "ok %",
        "TTFA p50/p95/p99 ms",
        "turn p50/p95 ms",
        "turns/s",
        "CPU ms/turn",
        "cores",
        "RSS MB",
        "client CPU s",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        t, u = r["ttfa_ms"], r["turn_ms"]
        rss = r["server_rss_peak_kb"]
        table.add_row(
            str(r["concurrency"]),
            str(r["turns"]),
            f"{r['success_rate'] * 100:.1f}",
            f"{t['p50']} / {t['p95']} / {t['p99']}",
            f"{u['p50']} / {u['p95']}",
            str(r["turns_per_s"]),
            str(r["server_cpu_ms_per_turn"]),
            str(r["server_cores_used"]),
            "" if rss is None else f"{rss / 1024:.0f}",
            str(r["client_cpu_s"]),
        )
    console.print(table)


def print_compare(base: dict[str, Any], other: dict[str, Any]) -> list[dict[str, Any]]:
    ratios = compare(base["levels"], other["levels"])
    table = Table(title="ratios: second / first (below 1 = second is lower)")
    for col in ("C", "CPU/turn", "turns/s", "success", "TTFA p95", "turn p95"):
        table.add_column(col, justify="right")
    for r in ratios:
        table.add_row(
            *(
                str(r[k])
                for k in (
                    "concurrency",
                    "server_cpu_ms_per_turn",
                    "turns_per_s",
                    "success_rate",
                    "ttfa_ms_p95",
                    "turn_ms_p95",
                )
            )
        )
    console.print(table)
    return ratios


def write_report(result: dict[str, Any], json_path: Path) -> Path:
    """Write the JSON and, beside it, an HTML report (plotly.js copied next to it)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2))
    rows = result["levels"]
    cs = [r["concurrency"] for r in rows]
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("Time to first audio (ms)", "Throughput (turns/s)")
    )
    for q in ("p50", "p95", "p99"):
        fig.add_trace(
            go.Scatter(
                x=cs, y=[r["ttfa_ms"][q] for r in rows], name=f"TTFA {q}", mode="lines+markers"
            ),
            1,
            1,
        )
    fig.add_trace(
        go.Scatter(x=cs, y=[r["turns_per_s"] for r in rows], name="turns/s", mode="lines+markers"),
        1,
        2,
    )
    fig.update_xaxes(type="log", title="concurrent sessions")
    settings = result["settings"]
    profile, think = settings["profile"], settings["think_time_s"]
    fig.update_layout(
        title=f"voicewire bench: profile {profile}, think time {think} s",
        template="plotly_white",
    )
    html_path = json_path.with_suffix(".html")
    fig.write_html(html_path, include_plotlyjs="directory", full_html=True)
    return html_path


def _masked(env: dict[str, str]) -> dict[str, str]:
    """The server's environment as results record it: keys and tokens never reach a report."""
    secret = ("KEY", "TOKEN", "SECRET", "PASSWORD")
    return {k: "**********" if any(w in k.upper() for w in secret) else v for k, v in env.items()}
