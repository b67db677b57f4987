#!/usr/bin/env bash
# Postfix's smtp-sink(1) on 127.0.0.1 (Debian `postfix`, used only as a binary; no
# Postfix daemon is configured or started): a C SMTP server that keeps up with several
# thousand messages/s, for the daemon benchmark (aiosmtpd tops out near 1,400-2,100/s).
#
#   postfix-sink.sh start STATE_DIR PORT   # prints "PID PORT" once the port answers
#   postfix-sink.sh stop  STATE_DIR        # SIGTERM to the recorded PID
#   postfix-sink.sh count STATE_DIR        # transactions dumped so far
#   postfix-sink.sh ids   STATE_DIR        # distinct Message-IDs dumped so far
# Each transaction becomes one file under STATE_DIR/dump (smtp-sink's dump format: a
# few X-* envelope lines, then the message). Started as root it drops to `nobody`, so
# STATE_DIR and its parents must be traversable by nobody.
set -euo pipefail
cmd="${1:-}"; shift || true
case "$cmd" in
start)
  state="${1:?state dir}"; port="${2:?port}"
  command -v smtp-sink >/dev/null || { echo "smtp-sink not found: install Debian postfix (scripts/apt-bench.txt, scripts/setup.sh)" >&2; exit 1; }
  mkdir -p "$state/dump"; state="$(cd "$state" && pwd)"
  chmod 755 "$state"
  runas=()
  if [ "$(id -u)" = 0 ]; then runas=(-u nobody); chown nobody "$state/dump"; fi
  # -4: IPv4 only; -m 512: sessions at once; -d: one file per transaction; backlog 512
  smtp-sink -4 "${runas[@]}" -h sink.localhost -m 512 -d "$state/dump/%H%M%S." "127.0.0.1:$port" 512 >"$state/smtp.log" 2>&1 &
  echo $! >"$state/smtp.pid"
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$(cat "$state/smtp.pid") $port"; exit 0; fi
    kill -0 "$(cat "$state/smtp.pid")" 2>/dev/null || break
    sleep 0.05
  done
  echo "smtp-sink did not start" >&2; cat "$state/smtp.log" >&2; exit 1
  ;;
stop)
  state="${1:?state dir}"
  [ -f "$state/smtp.pid" ] || exit 0
  pid="$(cat "$state/smtp.pid")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$state/smtp.pid"
  ;;
count)
  state="${1:?state dir}"; find "$state/dump" -type f 2>/dev/null | wc -l ;;
ids)
  state="${1:?state dir}"
  find "$state/dump" -type f -print0 | xargs -0 -r grep -hi '^message-id:' | sort -u | wc -l ;;
*) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
