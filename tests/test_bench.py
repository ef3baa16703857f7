"""The load benchmark: its statistics, and a short real run (C=5, zero profile, loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voicewire.bench.stats import LevelStats, TurnSample, compare, summary
from voicewire.metrics import percentile


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50 and percentile(values, 95) == 95
    assert percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([7.0], 95) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    assert summary([]) == {"avg": None, "p50": None, "p95": None, "p99": None, "max": None}
    assert summary([1.0, 2.0, 3.0, 4.0]) == {
        "avg": 2.5,
        "p50": 2.0,
        "p95": 4.0,
        "p99": 4.0,
        "max": 4.0,
    }


def test_success_accounting_counts_every_attempt() -> None:
    stats = LevelStats(concurrency=4, window_s=2.0, server_cpu_s=0.5)
    for ms in (100.0, 200.0, 300.0):
        stats.add_turn(TurnSample(ttfa_ms=ms / 10, turn_ms=ms, audio_bytes=96_000, cost_usd=0.001))
    stats.add_error("timeout")
    row = stats.to_json()
    assert (row["turns"], row["errors"], row["success_rate"]) == (3, 1, 0.75)
    assert row["errors_by_kind"] == {"timeout": 1}
    assert row["turns_per_s"] == 1.5 and row["server_cpu_ms_per_turn"] == pytest.approx(166.667)
    assert row["server_cores_used"] == 0.25 and row["audio_bytes_per_turn"] == 96_000
    assert row["ttfa_ms"]["p50"] == 20.0 and row["cost_usd_per_turn"] == 0.001
    empty = LevelStats(concurrency=1).to_json()
    assert empty["success_rate"] == 0.0 and empty["turns_per_s"] is None


def test_compare_gives_ratios_per_level() -> None:
    def row(cpu: float, tps: float, ttfa: float, turn: float) -> dict[str, object]:
        timing = {"ttfa_ms": {"p95": ttfa}, "turn_ms": {"p95": turn}}
        return {"concurrency": 10, "server_cpu_ms_per_turn": cpu, "turns_per_s": tps,
                "success_rate": 1.0, **timing}  # fmt: skip

    base = [row(40.0, 25.0, 80.0, 400.0)]
    ours = [row(4.0, 250.0, 40.0, 50.0), {"concurrency": 99, "server_cpu_ms_per_turn": 1.0}]
    rows = compare(base, ours)
    assert rows == [
        {"concurrency": 10, "server_cpu_ms_per_turn": 0.1, "turns_per_s": 10.0, "success_rate": 1.0,
         "ttfa_ms_p95": 0.5, "turn_ms_p95": 0.125}
    ]  # fmt: skip


def test_bench_smoke_run_every_turn_succeeds(tmp_path: Path) -> None:
    out = tmp_path / "results" / "smoke.json"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cmd = [sys.executable, "-m", "voicewire.cli", "bench", "run", "--profile", "zero",
           "--levels", "5", "--duration", "2", "--out", str(out),
           "--env", "OPENAI_API_KEY=sk-never-in-a-report"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "100"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    (level,) = result["levels"]
    assert level["concurrency"] == 5 and level["turns"] > 5
    assert level["errors"] == 0 and level["success_rate"] == 1.0
    assert level["audio_bytes_per_turn"] == pytest.approx(96_000, abs=10)
    assert level["server_cpu_ms_per_turn"] > 0 and level["server_rss_peak_kb"] > 0
    # the report is one file that opens offline; nothing is written into the working directory
    assert list(cwd.iterdir()) == [] and sorted(p.name for p in out.parent.iterdir()) == [
        "smoke.html",
        "smoke.json",
    ]
    page = out.with_suffix(".html").read_text()
    assert "<title>voicewire bench: profile zero" in page and len(page) > 1_000_000
    assert f"<td>{level['turns']}</td>" in page and "<th>TTFA p95 ms</th>" in page
    assert '"rangemode":"tozero"' in page
    assert result["settings"]["server_env"]["OPENAI_API_KEY"] == "**********"
    assert "sk-never-in-a-report" not in out.read_text() + page
    # the terminal table fits 100 columns, every figure whole
    lines = done.stderr.splitlines()  # the progress and the table go to stderr
    assert max(len(line) for line in lines) <= 100, done.stderr
    row = next(line for line in lines if line.strip().startswith("5 "))
    assert f"{level['ttfa_ms']['p50']:.0f}/" in row and "…" not in done.stderr


async def test_a_turn_budget_ends_the_level() -> None:
    from tests.conftest import start_server
    from voicewire.bench.loadgen import LevelConfig, run_level

    srv = start_server(None, profile="zero")
    try:
        cfg = LevelConfig(url=srv.ws_url, concurrency=3, duration_s=60, turns=7)
        stats = await run_level(cfg)
    finally:
        srv.stop()
    assert stats.turns == 7 and not stats.errors and stats.window_s < 60


def test_bench_runs_against_a_server_with_keys(tmp_path: Path) -> None:
    out = tmp_path / "keys.json"
    cmd = [sys.executable, "-m", "voicewire.cli", "bench", "run", "--profile", "zero",
           "--levels", "2", "--duration", "2", "--out", str(out),
           "--env", "VOICEWIRE_API_KEYS=bench:vw-bench-key-123456",
           "--env", "VOICEWIRE_KEY_LIMITS=turns_per_min=100000"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "100", "VOICEWIRE_API_KEY": "vw-bench-key-123456"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    (level,) = json.loads(out.read_text())["levels"]
    assert level["turns"] >= 2 and level["success_rate"] == 1.0 and level["errors"] == 0
    assert "vw-bench-key-123456" not in out.read_text() + out.with_suffix(".html").read_text()
