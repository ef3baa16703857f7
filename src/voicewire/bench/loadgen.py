"""The load generator behind ``voicewire bench``: C sessions, each taking turns, measured.

A level opens C connections (a bounded number of handshakes at a time), runs one warm-up turn
on each, then every session takes turns until the window closes, with ``think_time`` between
its turns (a person listening and answering). A turn in flight at the deadline finishes and
counts. Server CPU and RSS come from /proc of the server's pid; the client reports its own CPU,
so a client limit is never mistaken for a server limit.

The client is kept lean on purpose: it parses only the frames it needs (binary audio headers are
skipped by length, JSON only for ``utterance_complete``, ``error`` and ``cost_update``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect

from voicewire.bench.stats import LevelStats, TurnSample

CLK_TCK = os.sysconf("SC_CLK_TCK")
TEXT = "Can you help me plan a weekend trip to the coast?"


@dataclass
class LevelConfig:
    url: str
    concurrency: int
    duration_s: float = 30.0
    turns: int | None = None  # stop after this many measured turns instead (duration still caps)
    think_time_s: float = 0.0
    turn_timeout_s: float = 60.0
    warmup_turns: int = 1
    input: str = "text"  # text | audio
    protocol: str = "multimodal"  # multimodal (/ws/multimodal) | realtime (/v1/realtime)
    max_handshakes: int = 64
    server_pid: int | None = None
    api_key: str | None = None  # sent as Authorization: Bearer when the server has keys
    # llm_streaming frames: off by default, the load client shows no tokens (nor does the
    # Pipecat anchor's W1 client); /ws/multimodal only (OpenAI's protocol has no such option)
    token_frames: bool = False
    # "spread": sessions start over one think time (people arriving at their own pace);
    # "together": every session starts its first measured turn at once, as the Pipecat anchor
    # does (a broadcast prompt, the end of a meeting): the turns then come in waves
    arrivals: str = "spread"


def _tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (``voicewire serve --workers N``: the supervisor and
    its workers), so CPU and memory count the whole server."""
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def proc_cpu_s(pid: int) -> float:
    total = 0.0
    for one in _tree(pid):
        try:
            with open(f"/proc/{one}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # a worker that exited meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    return total


def proc_rss_kb(pid: int) -> int | None:
    found = [kb for one in _tree(pid) if (kb := _rss_kb(one)) is not None]
    return sum(found) if found else None


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class TurnFailed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _square(rate: int) -> bytes:
    """1 s of a 200 Hz square wave: the simulated STT does not listen, the VAD is not involved."""
    half = rate // 400
    return b"".join(
        int(3000 * ((i // half) % 2 * 2 - 1)).to_bytes(2, "little", signed=True)
        for i in range(rate)
    )


AUDIO_CLIP = _square(16_000)
AUDIO_CLIP_24K_B64 = [  # the same for /v1/realtime: 24 kHz, base64, in 100 ms appends
    base64.b64encode(chunk).decode()
    for pcm in [_square(24_000)]
    for chunk in (pcm[i : i + 4800] for i in range(0, len(pcm), 4800))
]
RT_ITEM = json.dumps(
    {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": TEXT}],
        },
    }
)


async def _recv(ws: ClientConnection, deadline: float) -> str | bytes:
    try:
        return await asyncio.wait_for(ws.recv(), max(0.001, deadline - time.perf_counter()))
    except TimeoutError:
        raise TurnFailed("timeout") from None


async def run_turn(ws: ClientConnection, cfg: LevelConfig) -> TurnSample:
    if cfg.protocol == "realtime":
        return await run_realtime_turn(ws, cfg)
    start = time.perf_counter()
    if cfg.input == "audio":
        for i in range(0, len(AUDIO_CLIP), 3200):
            await ws.send(AUDIO_CLIP[i : i + 3200])
        start = time.perf_counter()
        await ws.send('{"type":"audio_commit"}')
    else:
        await ws.send(json.dumps({"type": "user_text", "text": TEXT}))
    ttfa: float | None = None
    audio = 0
    cost: float | None = None
    deadline = start + cfg.turn_timeout_s
    while True:
        message = await _recv(ws, deadline)
        if isinstance(message, bytes):
            if ttfa is None:
                ttfa = (time.perf_counter() - start) * 1000
            audio += len(message) - 4 - int.from_bytes(message[:4], "big")
            continue
        if '"utterance_complete"' in message:
            status = json.loads(message)["status"]
            if status != "completed":
                raise TurnFailed(f"status_{status}")
            if not audio:
                raise TurnFailed("no_audio")
            return TurnSample(ttfa, (time.perf_counter() - start) * 1000, audio, cost)
        if '"cost_update"' in message:
            total = json.loads(message).get("utterance", {}).get("total_usd")
            cost = float(total) if total is not None else None
        elif '"type":"error"' in message:
            raise TurnFailed(f"error_{json.loads(message).get('code')}")


async def run_realtime_turn(ws: ClientConnection, cfg: LevelConfig) -> TurnSample:
    """One turn over the OpenAI Realtime protocol: the same work as ``run_turn``."""
    start = time.perf_counter()
    if cfg.input == "audio":
        for chunk in AUDIO_CLIP_24K_B64:
            await ws.send(f'{{"type":"input_audio_buffer.append","audio":"{chunk}"}}')
        start = time.perf_counter()
        await ws.send('{"type":"input_audio_buffer.commit"}')
    else:
        await ws.send(RT_ITEM)
    await ws.send('{"type":"response.create"}')
    ttfa: float | None = None
    audio = 0
    cost: float | None = None
    deadline = start + cfg.turn_timeout_s
    while True:
        message = await _recv(ws, deadline)
        head = message[:48]
        if '"response.output_audio.delta"' in head:
            if ttfa is None:
                ttfa = (time.perf_counter() - start) * 1000
            b64 = message[message.index('"delta":"') + 9 : -2]  # the last member: ..."}
            audio += len(b64) * 3 // 4 - b64.count("=")
        elif '"response.done"' in head:
            response = json.loads(message)["response"]
            if response["status"] != "completed":
                raise TurnFailed(f"status_{response['status']}")
            if not audio:
                raise TurnFailed("no_audio")
            total = response.get("voicewire", {}).get("cost_usd", {}).get("total_usd")
            cost = float(total) if total is not None else None
            return TurnSample(ttfa, (time.perf_counter() - start) * 1000, audio, cost)
        elif '"type":"error"' in head:
            raise TurnFailed(f"error_{json.loads(message)['error'].get('code')}")


async def open_session(cfg: LevelConfig, gate: asyncio.Semaphore) -> ClientConnection:
    async with gate:
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else None
        ws = await connect(
            cfg.url,
            max_size=None,
            compression=None,
            ping_interval=None,
            open_timeout=120,
            additional_headers=headers,
        )
        await asyncio.wait_for(ws.recv(), 120)  # init, or session.created
        if cfg.protocol == "realtime" and cfg.input == "audio":
            await ws.send(
                '{"type":"session.update","session":{"type":"realtime",'
                '"audio":{"input":{"turn_detection":null}}}}'
            )
            await asyncio.wait_for(ws.recv(), 120)  # session.updated
        elif cfg.protocol == "multimodal" and (cfg.input == "audio" or not cfg.token_frames):
            update: dict[str, Any] = {"type": "session_update", "token_frames": cfg.token_frames}
            if cfg.input == "audio":
                update["turn_detection"] = "manual"
            await ws.send(json.dumps(update))
            await asyncio.wait_for(ws.recv(), 120)  # ack
        return ws


async def run_level(
    cfg: LevelConfig, on_progress: Callable[[LevelStats], None] | None = None
) -> LevelStats:
    stats = LevelStats(concurrency=cfg.concurrency)
    gate = asyncio.Semaphore(cfg.max_handshakes)
    warm = asyncio.Barrier(cfg.concurrency + 1)
    window: dict[str, float] = {}
    started = [0]  # measured turns begun, for a turn budget
    setup_start = time.perf_counter()

    async def session(index: int) -> None:
        ws: ClientConnection | None = None
        try:
            ws = await open_session(cfg, gate)
            for _ in range(cfg.warmup_turns):
                await run_turn(ws, cfg)
        except Exception as exc:
            stats.add_error(f"warmup_{getattr(exc, 'kind', type(exc).__name__)}")
        await warm.wait()
        if cfg.think_time_s and cfg.arrivals == "spread":  # no thundering herd
            await asyncio.sleep(random.Random(index).uniform(0, cfg.think_time_s))
        while time.perf_counter() < window["end"]:
            if cfg.turns is not None:
                if started[0] >= cfg.turns:
                    break
                started[0] += 1
            try:
                if ws is None:
                    ws = await open_session(cfg, gate)
                stats.add_turn(await run_turn(ws, cfg))
            except Exception as exc:
                stats.add_error(getattr(exc, "kind", type(exc).__name__))
                if ws is not None:
                    await ws.close()
                ws = None
            if on_progress is not None:
                on_progress(stats)
            if cfg.think_time_s and time.perf_counter() < window["end"]:
                await asyncio.sleep(cfg.think_time_s)
        if ws is not None:
            await ws.close()

    tasks = [asyncio.create_task(session(i)) for i in range(cfg.concurrency)]
    window["end"] = float("inf")
    await warm.wait()
    stats.setup_s = time.perf_counter() - setup_start
    pid = cfg.server_pid
    cpu0 = proc_cpu_s(pid) if pid else None
    client0 = client_cpu_s()
    stats.server_rss_start_kb = proc_rss_kb(pid) if pid else None
    start = time.perf_counter()
    window["end"] = start + cfg.duration_s
    sampler = asyncio.create_task(_sample_rss(pid, stats)) if pid else None
    await asyncio.gather(*tasks)
    stats.window_s = time.perf_counter() - start
    if sampler is not None:
        sampler.cancel()
    if pid and cpu0 is not None:
        stats.server_cpu_s = proc_cpu_s(pid) - cpu0
    stats.client_cpu_s = client_cpu_s() - client0
    return stats


async def _sample_rss(pid: int, stats: LevelStats) -> None:
    while True:
        rss = proc_rss_kb(pid)
        if rss is not None:
            stats.server_rss_peak_kb = max(stats.server_rss_peak_kb or 0, rss)
        await asyncio.sleep(0.2)


async def idle_sessions(
    url: str, count: int, settle_s: float, measure_s: float, pid: int, max_handshakes: int = 64
) -> dict[str, float | int | None]:
    """Open ``count`` connections that never speak; measure what they cost the server."""
    cfg = LevelConfig(url=url, concurrency=count, max_handshakes=max_handshakes)
    gate = asyncio.Semaphore(max_handshakes)
    warm = await open_session(cfg, gate)  # first-connection lazy init is not the sessions' cost
    await warm.close()
    await asyncio.sleep(settle_s)
    rss_before = proc_rss_kb(pid)
    opened = time.perf_counter()
    cpu_open0 = proc_cpu_s(pid)
    sockets = await asyncio.gather(*(open_session(cfg, gate) for _ in range(count)))
    open_s = time.perf_counter() - opened
    cpu_open = proc_cpu_s(pid) - cpu_open0
    await asyncio.sleep(settle_s)
    rss_after = proc_rss_kb(pid)
    cpu0 = proc_cpu_s(pid)
    await asyncio.sleep(measure_s)
    idle_cpu = proc_cpu_s(pid) - cpu0
    await asyncio.gather(*(ws.close() for ws in sockets))
    growth = (rss_after or 0) - (rss_before or 0)
    return {
        "sessions": count,
        "open_s": round(open_s, 2),
        "server_cpu_ms_per_open": round(cpu_open / count * 1000, 3),
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "rss_kb_per_idle_session": round(growth / count, 2),
        "idle_window_s": measure_s,
        "server_cpu_s_idle": round(idle_cpu, 3),
        "server_cpu_ms_per_session_per_s": round(idle_cpu / measure_s / count * 1000, 5),
    }
