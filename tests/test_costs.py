"""Cost accounting: exact prices, projections, recommendations, the ledger, cost frames, metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import start_server
from voicewire.client import Client
from voicewire.costs.analysis import Volume, project, recommend, summarize
from voicewire.costs.ledger import Entry, Ledger
from voicewire.costs.prices import PriceTable, money
from voicewire.costs.report import build, write
from voicewire.monitor import ResourceMonitor
from voicewire.providers.base import Usage


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


def test_llm_tokens_priced_exactly(prices: PriceTable) -> None:
    usage = Usage(input_tokens=1000, cached_tokens=200, output_tokens=500)
    # (800 x 0.15 + 200 x 0.075 + 500 x 0.60) / 1M = 435 / 1M
    assert prices.cost("llm", "openai:gpt-4o-mini", usage) == Decimal("0.000435")


def test_audio_minutes_and_characters_priced_exactly(prices: PriceTable) -> None:
    assert prices.cost("stt", "openai:whisper-1", Usage(audio_seconds=90)) == Decimal("0.009")
    assert prices.cost("stt", "openai:whisper-1", Usage(audio_seconds=0.1)) == Decimal("0.00001")
    assert prices.cost("tts", "elevenlabs:eleven_flash_v2_5", Usage(characters=2500)) == Decimal(
        "0.125"
    )
    assert prices.cost("tts", "openai:tts-1", Usage(characters=1)) == Decimal("0.000015")


def test_local_models_cost_their_cpu(prices: PriceTable) -> None:
    # 36 CPU seconds at $0.045 per core-hour = 0.01 h x 0.045
    assert prices.cost(
        "stt", "local:faster-whisper/tiny.en", Usage(audio_seconds=60, cpu_seconds=36)
    ) == Decimal("0.00045")
    custom = PriceTable.load(usd_per_core_hour=Decimal("0.09"))
    assert custom.cost("tts", "local:piper/x", Usage(characters=999, cpu_seconds=36)) == Decimal(
        "0.0009"
    )


def test_simulated_providers_are_priced_like_a_cloud_stack(prices: PriceTable) -> None:
    assert prices.cost("llm", "simulated:realistic", Usage(output_tokens=1_000_000)) == Decimal(
        "0.60"
    )


def test_user_file_overrides_and_extends_prices(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(
        '[compute]\nusd_per_core_hour = "0.10"\n'
        '[[llm]]\nprovider = "openai"\nmodel = "gpt-4o-mini"\n'
        'input = "1"\ncached = "0.5"\noutput = "2"\n'
        '[[tts]]\nprovider = "acme"\nmodel = "voice-1"\nper_1k_chars = "0.02"\n'
    )
    table = PriceTable.load(override)
    assert table.cost("llm", "openai:gpt-4o-mini", Usage(output_tokens=1_000_000)) == Decimal(2)
    assert table.cost("tts", "acme:voice-1", Usage(characters=1000)) == Decimal("0.02")
    assert table.usd_per_core_hour == Decimal("0.10")
    assert table.cost("llm", "openai:gpt-4o", Usage(output_tokens=1_000_000)) == Decimal(10)  # kept
    bad = tmp_path / "bad.toml"
    bad.write_text('[[stt]]\nprovider = "x"\nmodel = "y"\n')
    with pytest.raises(ValueError, match="lacks"):
        PriceTable.load(bad)


def test_projection_arithmetic() -> None:
    result = project(Decimal("0.01"), Volume(sessions_per_day=1000, minutes_per_session=Decimal(3)))
    assert result == {
        "day": Decimal("30.00"),
        "month": Decimal("900.00"),
        "year": Decimal("10950.00"),
    }


def _entries(tts_provider: str, tts_chars: int, llm_out: int, prices: PriceTable) -> list[Entry]:
    t = 1_800_000_000.0
    out = []
    for i in range(4):
        tts = Usage(characters=tts_chars)
        llm = Usage(input_tokens=300, output_tokens=llm_out)
        tts_cost = prices.cost("tts", tts_provider, tts)
        llm_cost = prices.cost("llm", "openai:gpt-4o", llm)
        out.append(Entry(t + i * 30, "s1", f"u{i}", "tts", tts_provider, tts, cost_usd=tts_cost))
        out.append(Entry(t + i * 30, "s1", f"u{i}", "llm", "openai:gpt-4o", llm, cost_usd=llm_cost))
    return out


def test_recommendations_follow_usage_and_prices(prices: PriceTable, tmp_path: Path) -> None:
    volume = Volume(sessions_per_day=500)
    tts_heavy = summarize(_entries("elevenlabs:eleven_multilingual_v2", 2000, 20, prices))
    tips = recommend(tts_heavy, prices, volume)
    assert tips[0].startswith(
        f"TTS is {tts_heavy['share']['tts']:.0%} of cost; tts-1 would cost 15%"
    )
    llm_heavy = summarize(_entries("elevenlabs:eleven_multilingual_v2", 10, 5000, prices))
    assert recommend(llm_heavy, prices, volume)[0].startswith("LLM is")
    assert "gpt-4.1-nano" in recommend(llm_heavy, prices, volume)[0]
    cheap = tmp_path / "cheap.toml"
    cheap.write_text(
        '[[tts]]\nprovider = "elevenlabs"\nmodel = "eleven_multilingual_v2"\n'
        'per_1k_chars = "0.001"\n'
    )
    repriced = PriceTable.load(cheap)
    assert (
        "already the cheapest"
        in recommend(
            summarize(_entries("elevenlabs:eleven_multilingual_v2", 2000, 20, repriced)),
            repriced,
            volume,
        )[0]
    )


def test_ledger_and_report(tmp_path: Path, prices: PriceTable, ledger_target: str) -> None:
    ledger = Ledger(ledger_target)
    entries = _entries("elevenlabs:eleven_flash_v2_5", 500, 100, prices)
    asyncio.run(ledger.record(entries))
    stored = list(ledger.entries())
    assert stored == entries  # Decimals come back exact
    assert [e.utterance_id for e in ledger.entries(session_id="s1")][:2] == ["u0", "u0"]
    report = build(ledger, prices, Volume())
    assert report["summary"]["total_usd"] == sum((e.cost_usd for e in entries), Decimal(0))
    assert report["summary"]["turns"] == 4
    html_path, json_path = write(report, tmp_path / "report.html")
    data = json.loads(json_path.read_text())
    assert Decimal(data["summary"]["total_usd"]) == report["summary"]["total_usd"]
    page = html_path.read_text()
    assert "Cost by component" in page and "Plotly.newPlot" in page and "Recommendations" in page
    ledger.close()


MONEY = re.compile(r"-?\d+(?:\.\d{1,10})?")


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**9), max_value=10**9))
def test_money_is_fixed_point_with_at_most_ten_decimals(value: Decimal) -> None:
    text = money(value)
    assert MONEY.fullmatch(text), text  # never "0E+31" or 28 digits
    assert Decimal(text) == value.quantize(Decimal("1e-10"))
    assert text == "0" or not text.endswith("0") or "." not in text


async def test_cost_frames_and_metrics_match_the_turns() -> None:
    srv = start_server(None, profile="zero")
    try:
        table = PriceTable.load()
        client = await Client.connect(srv.ws_url)
        totals = []
        for _ in range(2):
            result = await client.ask("hello")
            cost = result.first("cost_update")
            types = [r.frame.type for r in result.frames]
            assert types[-3:] == ["metrics_update", "cost_update", "utterance_complete"]
            chars = sum(len(f.text) for f in result.of_type("assistant_text"))  # type: ignore[attr-defined]
            tts = table.cost("tts", "simulated:zero", Usage(characters=chars))
            assert Decimal(cost.utterance["tts"]) == tts  # type: ignore[union-attr]
            parts = sum(Decimal(cost.utterance[c]) for c in ("stt", "llm", "tts"))  # type: ignore[union-attr]
            assert Decimal(cost.utterance["total_usd"]) == parts  # type: ignore[union-attr]
            totals.append(Decimal(cost.utterance["total_usd"]))  # type: ignore[union-attr]
            assert Decimal(cost.session_total_usd) == sum(totals)  # type: ignore[union-attr]
            if len(totals) == 1:  # "hello" is 1 token in (chars / 4), the reply 60 tokens out
                llm = (1 * Decimal("0.15") + 60 * Decimal("0.60")) / 1_000_000
                assert Decimal(cost.utterance["llm"]) == llm == Decimal("0.00003615")  # type: ignore[union-attr]
        async with httpx.AsyncClient(base_url=srv.base) as http:
            metrics = (await http.get("/metrics")).json()
            prom = (await http.get("/metrics/prometheus")).text
        assert metrics["turns"] == {"completed": 2}
        assert metrics["performance"]["ttfa_ms"]["count"] == 2
        assert Decimal(metrics["costs"]["total_usd"]) == sum(totals)
        amounts = [
            metrics["costs"]["total_usd"],
            metrics["costs"]["usd_per_turn"],  # 1/2 of a sum: had 28 digits before issue 12
            *metrics["costs"]["by_component"].values(),
            cost.usd_per_minute,  # type: ignore[union-attr]
        ]
        assert all(MONEY.fullmatch(a) for a in amounts), amounts
        assert metrics["features"]["tools"] == [
            "generate_chart",
            "analyze_sentiment",
            "get_realtime_data",
        ]
        resources = metrics["resources"]
        assert resources["rss_mb"]["now"] > 10 and resources["open_fds"] > 0
        assert resources["capacity"]["by_memory"] is None or resources["capacity"]["by_memory"] > 0
        families = {f.name: f for f in text_string_to_metric_families(prom)}
        turns = {
            s.labels["status"]: s.value
            for s in families["voicewire_turns"].samples
            if s.name.endswith("_total")
        }
        assert turns == {"completed": 2.0}
        ttfa_count = [s.value for s in families["voicewire_stage_latency_seconds"].samples
                      if s.name.endswith("_count") and s.labels["stage"] == "ttfa"]  # fmt: skip
        assert ttfa_count == [2.0]
        cost = {s.labels["component"]: s.value for s in families["voicewire_cost_usd"].samples}
        assert sum(cost.values()) == pytest.approx(float(sum(totals)))
        assert families["voicewire_sessions_connected"].samples[0].value == 1
        await client.close()
    finally:
        srv.stop()


def test_ledger_survives_a_crash(tmp_path: Path) -> None:
    """Kill -9 the server mid-session: every completed utterance is in the ledger."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "VOICEWIRE_PROFILE": "realistic", "VOICEWIRE_DATA_DIR": str(tmp_path),
           "VOICEWIRE_PORT": str(port), "VOICEWIRE_LOG_LEVEL": "warning"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "voicewire.cli", "serve"], env=env)
    try:
        url = f"ws://127.0.0.1:{port}/ws/multimodal"
        completed = asyncio.run(_talk_then_start_one_more(url, turns=3))
        proc.send_signal(signal.SIGKILL)  # mid-session, with a turn in flight
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    recorded = {e.utterance_id for e in ledger.entries()}
    ledger.close()
    assert set(completed) <= recorded, (completed, recorded)


async def _talk_then_start_one_more(url: str, turns: int) -> list[str]:
    deadline = time.monotonic() + 60
    while True:
        try:
            client = await Client.connect(url)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)  # the subprocess is still starting
    done = [(await client.ask(f"question {i}")).utterance_id for i in range(turns)]
    await client.send_json({"type": "user_text", "text": "one more"})
    await client.expect("llm_streaming")
    return done


def test_monitor_is_cheap_and_reports() -> None:
    monitor = ResourceMonitor(interval_s=0.01)
    for _ in range(50):
        monitor.sample()
    snap = monitor.snapshot()
    assert snap["samples"] == 50 and snap["rss_mb"]["now"] > 0 and snap["threads"] >= 1
    cap = monitor.capacity(sessions=10, turns=100, cpu_s_since_start=0.5, avg_turn_s=1.0)
    assert cap["cpu_s_per_turn"] == 0.005 and "assumptions" in cap
    # 50 samples cost far less than a millisecond each
    assert monitor._own_cpu_s / 50 < 0.002


async def test_a_failing_ledger_never_breaks_the_conversation(tmp_path: Path) -> None:
    srv = start_server(None, profile="zero", data_dir=tmp_path)
    try:
        client = await Client.connect(srv.ws_url)
        ledger = srv.app.state.runtime.ledger

        async def broken(entries: list[Entry]) -> None:
            raise OSError("disk full")

        ledger.record = broken  # the disk fills up mid-session
        first = await client.ask("hello")
        second = await client.ask("hello again")
        assert first.status == second.status == "completed"
        assert first.first("cost_update") is not None  # still priced, just not persisted
        async with httpx.AsyncClient(base_url=srv.base) as http:
            metrics = (await http.get("/metrics")).json()
        assert metrics["costs"]["ledger_failures"] == 2
        await client.close()
    finally:
        srv.stop()


# ------------------------------------------------------------------ retention (issue 17)


def _ten_days(now: float) -> list[Entry]:
    """Sessions over ten days: some end long ago, one spans the cut, some are recent."""
    out = []
    for i, (start, length) in enumerate([(9.5, 300), (8.2, 30), (3.1, 4000), (0.01, 3600 * 5)]):
        sid = f"s_{i}"
        for turn in range(4):
            ts = now - start * 86_400 + turn * length / 4
            for component, provider, usage, cost in (
                ("stt", "openai:gpt-4o-mini-transcribe", Usage(audio_seconds=2.5), "0.00075"),
                (
                    "llm",
                    "openai:gpt-4o-mini",
                    Usage(input_tokens=500, cached_tokens=100, output_tokens=40),
                    "0.0001035",
                ),
                ("tts", "local:piper/joe", Usage(characters=80, cpu_seconds=0.21), "0.0000021"),
            ):
                out.append(
                    Entry(ts, sid, f"u_{i}_{turn}", component, provider, usage, 0, Decimal(cost))
                )
        out.append(
            Entry(
                now - start * 86_400,
                sid,
                f"u_{i}_0",
                "tools",
                "local:tools",
                Usage(),
                2,
                Decimal(0),
            )
        )
    return out


async def test_a_rollup_leaves_the_report_totals_unchanged(ledger_target: str) -> None:
    from voicewire.costs.retention import roll_up, rolled_days

    now = time.time()
    ledger = Ledger(ledger_target)
    await ledger.record(_ten_days(now))
    before = summarize(ledger.entries(), rolled_days(ledger.db))
    assert roll_up(ledger.db, now - 7 * 86_400) == 2  # the sessions that ended 8+ days ago
    assert {e.session_id for e in ledger.entries()} == {"s_2", "s_3"}
    after = summarize(ledger.entries(), rolled_days(ledger.db))
    for key in (
        "total_usd",
        "turns",
        "sessions",
        "conversation_minutes",
        "by_component",
        "efficiency",
    ):
        assert after[key] == before[key], key
    assert after["usage"] == before["usage"]
    assert roll_up(ledger.db, now - 7 * 86_400) == 0  # nothing more to fold: idempotent
    assert roll_up(ledger.db, now - 1 * 86_400) == 1  # a later cut adds to the stored days
    again = summarize(ledger.entries(), rolled_days(ledger.db))
    assert again["total_usd"] == before["total_usd"] and again["turns"] == before["turns"]
    assert again["conversation_minutes"] == before["conversation_minutes"]
    ledger.close()


def test_migrations_are_versioned_and_run_once(ledger_target: str) -> None:
    """Two workers starting at once migrate under a lock; a second run changes nothing."""
    from concurrent.futures import ThreadPoolExecutor

    from voicewire.costs.db import MIGRATIONS, open_database

    db = open_database(ledger_target)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: open_database(ledger_target).migrate(), range(4)))
    latest = MIGRATIONS[db.kind][-1][0]
    assert sorted(results) == [(0, latest)] + [(latest, latest)] * 3  # one did the work
    assert db.migrate() == (latest, latest)


def test_a_worker_opening_a_new_ledger_file_while_another_writes_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite refuses the switch to WAL at once (no busy wait) when another connection holds
    the write lock; the opener tries again instead of failing (it failed CI: four workers'
    migrations starting together on a new file)."""
    import sqlite3
    import threading

    from voicewire.costs import db as db_module

    path = tmp_path / "ledger.sqlite3"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")  # the write lock, in the rollback journal of a new file
    writer.execute("INSERT INTO t VALUES (1)")

    statements: list[str] = []
    retried = threading.Event()
    real_connect = sqlite3.connect

    def connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        connection = real_connect(*args, **kwargs)  # type: ignore[arg-type]

        def trace(statement: str) -> None:
            statements.append(statement)
            if statement == "PRAGMA journal_mode" and "PRAGMA journal_mode=WAL" in statements:
                retried.set()

        connection.set_trace_callback(trace)
        return connection

    monkeypatch.setattr(db_module.sqlite3, "connect", connect)
    outcome: list[object] = []

    def open_it() -> None:
        try:
            connection = db_module.SQLiteDatabase(path).connect()
            outcome.append(connection.execute("PRAGMA journal_mode").fetchone()[0])
            connection.close()
        except Exception as error:  # the test reports it
            outcome.append(error)

    opener = threading.Thread(target=open_it)
    opener.start()
    try:
        assert retried.wait(10), f"the opener gave up: {outcome}"
    finally:
        writer.execute("COMMIT")
        opener.join()
    assert outcome == ["wal"]
