#!/usr/bin/env bash
# SMTP sink on 127.0.0.1 (smtp_sink.py, aiosmtpd) for the email plugin tests.
#
#   smtp-sink.sh start STATE_DIR PORT [--tls starttls|implicit] [--auth USER:PASS] [--require-auth]
#                [--unknown-users FILE]   # refuse these recipients at RCPT: 550 5.1.1
#   smtp-sink.sh start STATE_DIR PORT --engine postfix
#   smtp-sink.sh stop  STATE_DIR
#   smtp-sink.sh count STATE_DIR       # messages stored so far
#   smtp-sink.sh ids   STATE_DIR       # distinct Message-IDs stored so far
# The default engine is aiosmtpd: each message a file in STATE_DIR/maildir/new
# with X-Sink-* envelope headers. With --tls, a throwaway CA and a leaf for
# localhost/127.0.0.1 are made under STATE_DIR/tls; clients trust
# STATE_DIR/tls/ca.pem (rustls refuses a lone self-signed certificate that is
# its own CA) and connect to `localhost`. `implicit` wraps the listener in TLS
# (SMTPS, port 465 style); `starttls` requires STARTTLS.
# The interpreter is $REKINDLE_PYTHON (default python3), with aiosmtpd installed
# (scripts/requirements-plugins.txt).
# --engine postfix runs Postfix's smtp-sink(1) (Debian `postfix`, used only as a
# binary; no Postfix daemon), a C sink fast enough for throughput benchmarks (the
# SMTP and daemon benchmarks; aiosmtpd tops out near 1,000-2,000 messages/s): each
# transaction a file in STATE_DIR/dump. It takes no TLS and no AUTH. Run as root it
# drops to `nobody`, so STATE_DIR is made traversable (mode 711) and its parents must be.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${REKINDLE_PYTHON:-python3}"
cmd="${1:-}"; shift || true
case "$cmd" in
start)
  state="${1:?state dir}"; port="${2:?port}"; shift 2
  mkdir -p "$state"; state="$(cd "$state" && pwd)"
  args=(--port "$port" --dir "$state/maildir")
  if [ "${1:-}" = --engine ] && [ "${2:-}" = postfix ]; then
    command -v smtp-sink >/dev/null || { echo "smtp-sink not found: install Debian postfix (scripts/setup.sh)" >&2; exit 1; }
    mkdir -p "$state/dump"
    runas=()
    if [ "$(id -u)" = 0 ]; then runas=(-u nobody); chmod 711 "$state"; chown nobody "$state/dump"; fi
    # -4: IPv4 only; -m 512: concurrent sessions; -d: one file per transaction
    smtp-sink -4 "${runas[@]}" -h sink.localhost -m 512 -d "$state/dump/%Y%m%d%H%M%S." \
      "127.0.0.1:$port" 512 >"$state/smtp.log" 2>&1 &
    echo $! >"$state/smtp.pid"
    for _ in $(seq 200); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$(cat "$state/smtp.pid") $port"; exit 0; fi
      kill -0 "$(cat "$state/smtp.pid")" 2>/dev/null || break
      sleep 0.05
    done
    echo "smtp-sink did not start" >&2; cat "$state/smtp.log" >&2; exit 1
  fi
  while [ $# -gt 0 ]; do
    case "$1" in
      --tls)
        t="$state/tls"; mkdir -p "$t"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=rekindle test CA" \
          -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$t/key.pem" -out "$t/leaf.csr" 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$t/leaf.ext"
        openssl x509 -req -in "$t/leaf.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
          -days 2 -extfile "$t/leaf.ext" -out "$t/cert.pem" 2>/dev/null
        args+=(--tls "$2" --cert "$t/cert.pem" --key "$t/key.pem"); shift 2 ;;
      --auth) args+=(--auth "$2"); shift 2 ;;
      --require-auth) args+=(--require-auth); shift ;;
      --unknown-users) args+=(--unknown-users "$2"); shift 2 ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  "$python" "$here/smtp_sink.py" "${args[@]}" >"$state/smtp.log" 2>&1 &
  echo $! >"$state/smtp.pid"
  for _ in $(seq 200); do
    if grep -q READY "$state/smtp.log" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$(cat "$state/smtp.pid") $port"; exit 0
    fi
    kill -0 "$(cat "$state/smtp.pid")" 2>/dev/null || break
    sleep 0.05
  done
  echo "smtp sink did not start" >&2; cat "$state/smtp.log" >&2; exit 1
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
  state="${1:?state dir}"
  if [ -d "$state/dump" ]; then find "$state/dump" -type f | wc -l
  else find "$state/maildir/new" -type f 2>/dev/null | wc -l; fi ;;
ids)
  state="${1:?state dir}"
  dir="$state/maildir/new"; [ -d "$state/dump" ] && dir="$state/dump"
  find "$dir" -type f -print0 | xargs -0 -r grep -hi '^message-id:' | sort -u | wc -l ;;
*) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
