"""``voicewire bench``: run levels against a server (started here, pinned if asked), report.

Results are JSON (one row per level, plus the run's settings) and an HTML report with Plotly
charts with plotly.js inside the page, so the report opens offline.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from voicewire import __version__
from voicewire.bench.loadgen import LevelConfig, idle_sessions, run_level
from voicewire.bench.stats import LevelStats, compare

# a report piped to a file gets the width of a wide terminal, not rich's 80 columns
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


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
    """Start ``voicewire serve`` in a subprocess; yield (ws url, pid); stop it after.

    Its cost ledger goes to a temporary directory (unless ``env`` names one): a load test's
    simulated turns do not belong in the user's ledger, nor in the working directory."""
    port = _free_port()
    data = tempfile.TemporaryDirectory(prefix="voicewire-bench-")
    full_env = {**os.environ, "VOICEWIRE_DATA_DIR": data.name, **env,
                "VOICEWIRE_PORT": str(port), "VOICEWIRE_LOG_LEVEL": "warning"}  # fmt: skip
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
        data.cleanup()


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
    protocol: str = "multimodal",
    api_key: str | None = None,
    token_frames: bool = False,
    arrivals: str = "spread",
) -> dict[str, Any]:
    raise_fd_limit()
    env = {"VOICEWIRE_PROFILE": profile, **server_env}
    rows: list[dict[str, Any]] = []

    def one(ws_url: str, pid: int | None, level: int) -> None:
        if protocol == "realtime":
            ws_url = ws_url.replace("/ws/multimodal", "/v1/realtime")
        cfg = LevelConfig(
            url=ws_url,
            protocol=protocol,
            concurrency=level,
            duration_s=duration_s,
            turns=turns,
            think_time_s=think_time_s,
            turn_timeout_s=turn_timeout_s,
            input=input_kind,
            server_pid=pid,
            api_key=api_key,
            token_frames=token_frames,
            arrivals=arrivals,
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
            "protocol": protocol,
            "token_frames": token_frames,
            "arrivals": arrivals,
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


def rows_table(rows: list[dict[str, Any]]) -> Table:
    """The results per level, narrow enough for a 100-column terminal."""
    table = Table(title="per level (ms unless noted)", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("C", "turns", "ok %", "TTFA p50/95/99", "turn p50/95", "turns/s",
                "CPU/turn", "cores", "RSS MB", "client s"):  # fmt: skip
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        t, u = r["ttfa_ms"], r["turn_ms"]
        rss = r["server_rss_peak_kb"]
        table.add_row(
            str(r["concurrency"]),
            str(r["turns"]),
            f"{r['success_rate'] * 100:.1f}",
            "/".join(_ms(t[q]) for q in ("p50", "p95", "p99")),
            "/".join(_ms(u[q]) for q in ("p50", "p95")),
            f"{r['turns_per_s']:.1f}",
            f"{r['server_cpu_ms_per_turn']:.2f}",
            f"{r['server_cores_used']:.2f}",
            "" if rss is None else f"{rss / 1024:.0f}",
            f"{r['client_cpu_s']:.1f}",
        )
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_rows(rows: list[dict[str, Any]]) -> None:
    console.print(rows_table(rows))


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


REPORT_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{padding:.3rem .7rem;text-align:right;
border-bottom:1px solid #ddd}th{background:#f4f4f4}code{background:#f4f4f4;padding:0 .2rem}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(28rem,1fr));gap:1rem}
"""
REPORT_COLUMNS = (
    ("concurrency", "sessions"), ("turns", "turns"), ("success_rate", "success"),
    ("ttfa_ms.p50", "TTFA p50 ms"), ("ttfa_ms.p95", "TTFA p95 ms"), ("ttfa_ms.p99", "TTFA p99 ms"),
    ("turn_ms.p50", "turn p50 ms"), ("turn_ms.p95", "turn p95 ms"),
    ("turns_per_s", "turns/s"), ("server_cpu_ms_per_turn", "server CPU ms/turn"),
    ("server_cores_used", "server cores"), ("server_rss_peak_kb", "server RSS peak KB"),
    ("client_cpu_s", "client CPU s"),
)  # fmt: skip


def _cell(row: dict[str, Any], path: str) -> str:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return "-"
    return f"{value:.1%}" if path == "success_rate" else str(value)


def write_report(result: dict[str, Any], json_path: Path) -> Path:
    """Write the JSON and, beside it, one self-contained HTML report (plotly.js inside it: it
    opens offline and writes nothing else): settings, a table of every figure, two charts."""
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
    fig.update_yaxes(rangemode="tozero")  # latencies and rates: zero is the honest baseline
    fig.update_layout(template="plotly_white", height=420, margin={"t": 40})
    settings = result["settings"]
    title = (
        f"voicewire bench: profile {settings['profile']}, think time {settings['think_time_s']} s"
    )
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in REPORT_COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_cell(r, p))}</td>" for p, _ in REPORT_COLUMNS)
        + "</tr>"
        for r in rows
    )
    shown = {k: v for k, v in settings.items() if v not in (None, "", {})}
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{REPORT_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>Run {html.escape(str(result.get('date', '')))}; settings: "
        f"<code>{html.escape(json.dumps(shown))}</code></p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<div class=charts>{fig.to_html(full_html=False, include_plotlyjs=True)}</div>"
        "</body></html>"
    )
    html_path = json_path.with_suffix(".html")
    html_path.write_text(page)
    return html_path


def _masked(env: dict[str, str]) -> dict[str, str]:
    """The server's environment as results record it: keys and tokens never reach a report."""
    secret = ("KEY", "TOKEN", "SECRET", "PASSWORD")
    return {k: "**********" if any(w in k.upper() for w in secret) else v for k, v in env.items()}
