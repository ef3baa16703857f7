"""Command line: ``voicewire serve``, ``voicewire talk``, ``voicewire config``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from voicewire.config import Settings

DEFAULT_URL = "ws://127.0.0.1:8000/ws/multimodal"
app = typer.Typer(add_completion=False, no_args_is_help=True, help="voicewire voice agent server")
console = Console()


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, TOML and ``overrides``; a bad value exits 2 with one
    clear line, the same for every command."""
    from pydantic import ValidationError

    from voicewire.config import describe_validation_error

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        Console(stderr=True).print(
            f"[red]configuration error:[/red] {describe_validation_error(exc)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000]", min=1, max=65535)] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Server processes on this port [default: VOICEWIRE_WORKERS or 1]", min=1),
    ] = None,
) -> None:
    """Serve the WebSocket and REST API (embedded offline models by default)."""

    from voicewire import logs
    from voicewire.providers import ConfigError
    from voicewire.server.app import create_app
    from voicewire.server.lifecycle import DrainingServer
    from voicewire.server.serving import uvicorn_config

    overrides: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v
    }
    settings = load_settings(**overrides)
    logs.configure(settings.log_level, settings.log_format)
    try:
        application = create_app(settings)  # a bad setting stops here, before any worker
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if settings.workers > 1:
        from voicewire.server.workers import Supervisor

        application.state.runtime.shutdown()
        raise typer.Exit(Supervisor(settings, overrides, settings.workers).run())
    server = DrainingServer(uvicorn_config(application, settings), application.state.runtime)
    server.run()


@app.command()
def config() -> None:
    """Print the effective configuration (API keys masked); exit 2 if it cannot serve."""
    from voicewire.providers import ConfigError, validate

    settings = load_settings()
    console.print_json(json.dumps(settings.model_dump(mode="json")))
    try:
        validate(settings)
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def talk(
    text: Annotated[
        list[str] | None, typer.Option(help="Say this as typed text (repeat for follow-ups)")
    ] = None,
    wav: Annotated[
        list[Path] | None, typer.Option(help="Stream this WAV file as microphone audio (repeat)")
    ] = None,
    chat: Annotated[
        bool, typer.Option(help="Then keep the session open: type follow-ups, /wav FILE, /quit")
    ] = False,
    frames: Annotated[
        bool, typer.Option(help="Print every frame with its timing instead of the conversation")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Save the spoken replies here (WAV)")] = None,
    url: Annotated[str, typer.Option(help="Server WebSocket URL")] = DEFAULT_URL,
    realtime: Annotated[bool, typer.Option(help="Pace --wav audio like a microphone")] = True,
) -> None:
    """Talk to a running server in one session: --text and --wav in the order given on the
    command line kind by kind (texts first), then, with --chat, whatever you type."""
    from voicewire.talk import Said, TalkError, run

    inputs = [Said(text=t) for t in text or []] + [Said(wav=w) for w in wav or []]
    if not inputs and not chat:
        raise typer.BadParameter("give --text, --wav or --chat")
    try:
        asyncio.run(
            run(url, inputs, console=console, frames=frames, chat=chat, realtime=realtime, out=out)
        )
    except TalkError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="HTML report path (a .json goes beside it)")] = Path(
        "cost-report.html"
    ),
    sessions_per_day: Annotated[int, typer.Option(help="Projected sessions per day")] = 1000,
    minutes_per_session: Annotated[float, typer.Option(help="Projected minutes per session")] = 3.0,
) -> None:
    """Write the cost report (HTML with charts, and JSON) from the ledger."""
    from decimal import Decimal

    from voicewire.costs.analysis import Volume
    from voicewire.costs.ledger import Ledger, ledger_target
    from voicewire.costs.prices import PriceTable
    from voicewire.costs.report import build, write

    settings = load_settings()
    target = ledger_target(settings)
    if isinstance(target, Path) and not target.exists():
        console.print(
            f"[red]no ledger at {target}[/red]: run the server first (VOICEWIRE_DATA_DIR, "
            "or VOICEWIRE_LEDGER_URL for PostgreSQL)"
        )
        raise typer.Exit(1)
    ledger = Ledger(target)
    prices = PriceTable.load(settings.prices_file, settings.core_hour_usd)
    volume = Volume(sessions_per_day, Decimal(str(minutes_per_session)))
    html_path, json_path = write(build(ledger, prices, volume), out)
    ledger.close()
    console.print(f"wrote {html_path} and {json_path}")


@app.command()
def migrate() -> None:
    """Bring the ledger's database schema up to date (the server also does it at start; run
    this as a deployment step to control when DDL runs)."""
    from voicewire.costs.db import open_database
    from voicewire.costs.ledger import ledger_target
    from voicewire.providers import ConfigError

    db = open_database(ledger_target(load_settings()))
    try:
        before, now = db.migrate()
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    done = "up to date" if before == now else f"migrated from {before}"
    console.print(f"ledger {db.describe()}: schema version {now} ({done})")


bench_app = typer.Typer(
    no_args_is_help=True, help="Load-test a server: turns, latency, CPU, memory."
)
app.add_typer(bench_app, name="bench")


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


@bench_app.command("run")
def bench_run(
    levels: Annotated[str, typer.Option(help="Concurrency levels")] = "1,5,10,25,50",
    duration: Annotated[float, typer.Option(help="Measured seconds per level")] = 30.0,
    turns: Annotated[
        int | None, typer.Option(help="Measured turns per level instead (duration still caps it)")
    ] = None,
    think_time: Annotated[float, typer.Option(help="Seconds between a session's turns")] = 0.0,
    input_kind: Annotated[str, typer.Option("--input", help="text or audio")] = "text",
    protocol: Annotated[
        str, typer.Option(help="multimodal (/ws/multimodal) or realtime (/v1/realtime)")
    ] = "multimodal",
    profile: Annotated[
        str, typer.Option(help="Simulated profile of a started server")
    ] = "realistic",
    url: Annotated[str | None, typer.Option(help="Use a running server instead")] = None,
    server_pid: Annotated[int | None, typer.Option(help="Its pid, for CPU and RSS")] = None,
    server_cpus: Annotated[
        str | None, typer.Option(help="taskset CPUs for a started server")
    ] = None,
    restart_per_level: Annotated[bool, typer.Option(help="A fresh server per level")] = False,
    env: Annotated[list[str] | None, typer.Option(help="VAR=VALUE for a started server")] = None,
    turn_timeout: Annotated[
        float, typer.Option(help="Seconds before a turn counts as failed")
    ] = 60.0,
    api_key: Annotated[
        str | None,
        typer.Option(help="The server's API key, if it needs one", envvar="VOICEWIRE_API_KEY"),
    ] = None,
    token_frames: Annotated[
        bool, typer.Option(help="Ask for llm_streaming frames (off: the client shows no tokens)")
    ] = False,
    arrivals: Annotated[
        str,
        typer.Option(help="spread: sessions start over one think time; together: all at once"),
    ] = "spread",
    out: Annotated[Path, typer.Option(help="JSON results (an .html report goes beside it)")] = Path(
        "bench-results.json"
    ),
) -> None:
    """Run concurrency levels and write JSON and HTML results."""
    from voicewire.bench.runner import run, write_report

    if arrivals not in ("spread", "together"):
        raise typer.BadParameter("expected spread or together", param_hint="--arrivals")
    server_env = dict(item.split("=", 1) for item in env or [])
    result = run(
        _levels(levels), duration, think_time, input_kind, profile, url, server_pid,
        server_cpus, restart_per_level, server_env, turn_timeout, turns, protocol, api_key,
        token_frames, arrivals,
    )  # fmt: skip
    html = write_report(result, out)
    console.print(f"wrote {out} and {html}")


@bench_app.command("idle")
def bench_idle(
    sessions: Annotated[int, typer.Option(help="Idle connections to open")] = 1000,
    settle: Annotated[float, typer.Option(help="Seconds to settle before measuring")] = 5.0,
    measure: Annotated[float, typer.Option(help="Seconds of idle CPU to measure")] = 20.0,
    profile: Annotated[
        str, typer.Option(help="Simulated profile of the started server")
    ] = "realistic",
    server_cpus: Annotated[str | None, typer.Option(help="taskset CPUs for the server")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON")] = None,
) -> None:
    """What idle connected sessions cost the server: RSS per session and CPU."""
    from voicewire.bench.runner import run_idle

    result = run_idle(sessions, settle, measure, profile, server_cpus)
    console.print_json(json.dumps(result))
    if out is not None:
        out.write_text(json.dumps(result, indent=2))


@bench_app.command("compare")
def bench_compare(first: Path, second: Path) -> None:
    """Ratios of two result files, level by level (second / first)."""
    from voicewire.bench.runner import print_compare

    print_compare(json.loads(first.read_text()), json.loads(second.read_text()))


if __name__ == "__main__":
    app()
