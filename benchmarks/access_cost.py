"""What keys, tokens and per-key limits cost per turn (issue 17), in CPU microseconds.

A session pays the credential check once, at its handshake (key lookup among the keys, or a
token's signature); every turn pays the limit check and the ``rate_limits`` frame (its model
and JSON). Each is timed over many calls in this process (``time.thread_time``), then set
against a whole turn's server CPU at the zero profile (docs/performance.md).

    python -m benchmarks.access_cost --keys 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from voicewire.protocol import RateLimits
from voicewire.server.auth import Authenticator, Keyring, Tokens
from voicewire.server.limits import Quotas, parse_limits


def per_call_us(fn: Callable[[], object], calls: int = 20_000, runs: int = 5) -> list[float]:
    """CPU µs per call, one figure per run."""
    out = []
    for _ in range(runs):
        start = time.thread_time()
        for _ in range(calls):
            fn()
        out.append((time.thread_time() - start) / calls * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=100, help="keys in the keys file")
    parser.add_argument("--turn-cpu-ms", type=float, default=2.6, help="a turn's CPU, to compare")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp()) / "keys.txt"
    path.write_text("".join(f"k{i}:vw-key-{i:06d}-0123456789abcdef\n" for i in range(args.keys)))
    auth = Authenticator(Keyring(f"@{path}"), Tokens("secret"))
    last_key = f"vw-key-{args.keys - 1:06d}-0123456789abcdef"
    token, _ = auth.tokens.mint("k0", ttl_s=3600)
    quotas = Quotas(lambda key: parse_limits("sessions=1000,turns_per_min=1000000000"))
    figures = {
        "handshake: API key (file re-checked)": per_call_us(
            lambda: auth.caller(last_key, websocket=True), calls=2_000
        ),
        "handshake: client token": per_call_us(lambda: auth.caller(token, websocket=True)),
        "turn: limit check": per_call_us(lambda: quotas.start_turn("k0", 2.0)),
        "turn: rate_limits frame (status, model, JSON)": per_call_us(
            lambda: RateLimits(limits=quotas.status("k0")).to_json(), calls=5_000
        ),
    }
    turn_us = args.turn_cpu_ms * 1000
    per_turn = sum(statistics.median(v) for k, v in figures.items() if k.startswith("turn:"))
    rows = {
        name: {"median_us": round(statistics.median(v), 2), "runs_us": [round(x, 2) for x in v]}
        for name, v in figures.items()
    }
    summary = {
        "keys": args.keys,
        "per_turn_us": round(per_turn, 1),
        "share_of_a_turn": round(per_turn / turn_us, 4),
        "rows": rows,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
