#!/usr/bin/env bash
# The topology of deploy/compose.yml without Docker, on loopback: Redis, PostgreSQL, N voicewire
# workers and nginx in front, from Debian's packages (apt-get install redis-server postgresql
# nginx-light) and the voicewire on PATH.
#
#   deploy/run-local.sh start     # serves http://127.0.0.1:$VW_PORT/ (8080)
#   deploy/run-local.sh stop      # drains the workers (SIGTERM), stops the rest
#
# Settings (environment): VW_PORT (8080), VW_WORKERS (3), VW_STATE (directory for data, logs
# and pid files: .run-local), VW_BASE_PORT (first worker port: 8101). Every VOICEWIRE_*
# variable reaches the workers (VOICEWIRE_PROFILE=realistic serves simulated providers).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PORT="${VW_PORT:-8080}"
WORKERS="${VW_WORKERS:-3}"
BASE="${VW_BASE_PORT:-8101}"
STATE="$(mkdir -p "${VW_STATE:-.run-local}" && cd "${VW_STATE:-.run-local}" && pwd)"
REDIS_PORT="${VW_REDIS_PORT:-$((BASE + 90))}"
PG_PORT="${VW_PG_PORT:-$((BASE + 91))}"
PG_BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"
VOICEWIRE="${VOICEWIRE:-voicewire}"
AS_PG=()  # PostgreSQL refuses to run as root: as root, run it as the package's user
if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); fi

wait_for() {  # URL: until it answers 200 (a worker has loaded its models), at most 180 s
  for _ in $(seq 1 900); do
    if curl -fs -o /dev/null "$1"; then return 0; fi
    sleep 0.2
  done
  echo "run-local: $1 never became ready" >&2
  return 1
}

start() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$STATE" --daemonize yes --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log"

  if [ ! -d "$STATE/pg" ]; then
    mkdir -p "$STATE/pg"
    if [ "$(id -u)" = 0 ]; then chmod a+x "$STATE"; chown postgres:postgres "$STATE/pg"; fi
    "${AS_PG[@]}" "$PG_BIN/initdb" -D "$STATE/pg" -U voicewire --auth=trust -E UTF8 >/dev/null
  fi
  "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$STATE/pg" -l "$STATE/pg/server.log" -w start \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$STATE/pg" >/dev/null
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U voicewire voicewire 2>/dev/null || true

  export VOICEWIRE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  export VOICEWIRE_LEDGER_URL="postgresql://voicewire@127.0.0.1:$PG_PORT/voicewire"
  if [ ! -f "$STATE/token-secret" ]; then head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$STATE/token-secret"; fi
  export VOICEWIRE_TOKEN_SECRET="$(cat "$STATE/token-secret")"  # one secret: tokens hold on every worker
  "$VOICEWIRE" migrate

  upstreams=""
  for i in $(seq 0 $((WORKERS - 1))); do
    port=$((BASE + i))
    VOICEWIRE_PORT="$port" VOICEWIRE_DATA_DIR="$STATE/worker-$i" \
      nohup "$VOICEWIRE" serve > "$STATE/worker-$i.log" 2>&1 &
    echo $! > "$STATE/worker-$i.pid"
    upstreams+="server 127.0.0.1:$port max_fails=1 fail_timeout=5s; "
  done
  for i in $(seq 0 $((WORKERS - 1))); do wait_for "http://127.0.0.1:$((BASE + i))/health/ready"; done

  sed -e "s|\${VOICEWIRE_UPSTREAMS}|$upstreams|" -e "s|\${LISTEN}|127.0.0.1:$PORT|" \
    "$HERE/nginx.conf.template" > "$STATE/voicewire.conf"
  cat > "$STATE/nginx.conf" <<EOF
daemon on;
pid $STATE/nginx.pid;
error_log $STATE/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log $STATE/nginx-access.log;
    client_body_temp_path $STATE/nginx-body;
    proxy_temp_path $STATE/nginx-proxy;
    include $STATE/voicewire.conf;
}
EOF
  nginx -c "$STATE/nginx.conf" -p "$STATE" -e "$STATE/nginx-error.log"
  wait_for "http://127.0.0.1:$PORT/health/ready"
  echo "voicewire: http://127.0.0.1:$PORT/ ($WORKERS workers, Redis :$REDIS_PORT, PostgreSQL :$PG_PORT)"
}

stop() {
  if [ -f "$STATE/nginx.pid" ]; then nginx -c "$STATE/nginx.conf" -p "$STATE" -s quit || true; fi
  for pidfile in "$STATE"/worker-*.pid; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true  # each drains: turns finish, clients are told
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    rm -f "$pidfile"
  done
  if [ -f "$STATE/pg/postmaster.pid" ]; then
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$STATE/pg" -m fast -w stop >/dev/null || true
  fi
  if [ -f "$STATE/redis.pid" ]; then kill "$(cat "$STATE/redis.pid")" 2>/dev/null || true; rm -f "$STATE/redis.pid"; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
