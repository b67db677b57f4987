#!/usr/bin/env bash
# HTTP receiver on 127.0.0.1 (http_sink.py) for the plugin tests and benchmarks:
# records each request as a JSON line, verifies the shop plugin's HMAC signature.
#
#   http-sink.sh start STATE_DIR PORT [http_sink.py options]   # prints "PID PORT" once the port answers
#   http-sink.sh stop  STATE_DIR                               # SIGTERM to the recorded PID
#   http-sink.sh count STATE_DIR                               # requests in STATE_DIR/requests.jsonl
# The interpreter is $REKINDLE_PYTHON (default python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${REKINDLE_PYTHON:-python3}"
cmd="${1:-}"; shift || true
case "$cmd" in
start)
  state="${1:?state dir}"; port="${2:?port}"; shift 2
  mkdir -p "$state"; state="$(cd "$state" && pwd)"
  "$python" "$here/http_sink.py" --port "$port" --out "$state/requests.jsonl" "$@" >"$state/http.log" 2>&1 &
  echo $! >"$state/http.pid"
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$(cat "$state/http.pid") $port"; exit 0; fi
    kill -0 "$(cat "$state/http.pid")" 2>/dev/null || break
    sleep 0.05
  done
  echo "http sink did not start" >&2; cat "$state/http.log" >&2; exit 1
  ;;
stop)
  state="${1:?state dir}"
  [ -f "$state/http.pid" ] || exit 0
  pid="$(cat "$state/http.pid")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$state/http.pid"
  ;;
count)
  state="${1:?state dir}"; [ -f "$state/requests.jsonl" ] && wc -l <"$state/requests.jsonl" || echo 0 ;;
*) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
