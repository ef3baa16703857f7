#!/usr/bin/env bash
# Workload W1 on voicewire, driven by the Pipecat anchor's own load client (same client for
# both servers). Mirrors shared/bench/pipecat_anchor/run.sh: a fresh server per level, server
# pinned to SERVER_CPUS, client to CLIENT_CPUS, one JSON line per level.
#
#   PROFILE=zero benchmarks/w1_same_client.sh 1 10        # -> benchmarks/results/w1-voicewire-<profile>-<date>.jsonl
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
ANCHOR="${ANCHOR:-$ROOT/../shared/bench/pipecat_anchor}"
ANCHOR_PY="${ANCHOR_PY:-${XDG_CACHE_HOME:-$HOME/.cache}/pipecat-anchor-venv/bin/python}"
PROFILE="${PROFILE:-zero}" DURATION="${DURATION:-30}" PORT="${PORT:-8770}"
SERVER_CPUS="${SERVER_CPUS:-0}" CLIENT_CPUS="${CLIENT_CPUS:-1}" LOADGEN_ARGS="${LOADGEN_ARGS:-}"
OUT="${OUT:-$HERE/results/w1-voicewire-$PROFILE-$(date +%Y-%m-%d).jsonl}"
LEVELS=("$@"); [ ${#LEVELS[@]} -gt 0 ] || LEVELS=(1 10 100 500)
ulimit -n "$(ulimit -Hn)"
mkdir -p "$(dirname "$OUT")"
ADAPTER_DIR="$(mktemp -d)"; cp "$HERE/pipecat_adapter.py" "$ADAPTER_DIR/voicewire_adapter.py"
for C in "${LEVELS[@]}"; do
  VOICEWIRE_PROFILE="$PROFILE" VOICEWIRE_PORT="$PORT" VOICEWIRE_LOG_LEVEL=warning \
    taskset -c "$SERVER_CPUS" "$ROOT/.venv/bin/voicewire" serve &
  PID=$!
  trap 'kill $PID 2>/dev/null || true' EXIT
  until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
  PYTHONPATH="$ADAPTER_DIR:$ANCHOR" taskset -c "$CLIENT_CPUS" "$ANCHOR_PY" "$ANCHOR/loadgen.py" \
    --adapter voicewire_adapter:ADAPTER --url "ws://127.0.0.1:$PORT/ws/multimodal" \
    -c "$C" -d "$DURATION" --server-pid "$PID" --out "$OUT" $LOADGEN_ARGS > /dev/null
  kill "$PID"; wait "$PID" 2>/dev/null || true
done
echo "wrote $OUT"
