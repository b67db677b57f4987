#!/usr/bin/env bash
# A real SMS gateway on 127.0.0.1 for the SMS plugin tests: Kannel's bearerbox and
# smsbox (Debian `kannel`) with a fake SMSC whose peer, fakesmsc (Debian
# `kannel-extras`), records every message delivered to it. No systemd; every process
# is a child started here and stopped by the PID recorded in STATE_DIR.
#
#   sms-gateway.sh start STATE_DIR BASE HOOK
#       ports: admin BASE, smsbox BASE+1, fake SMSC BASE+10, MO link BASE+11,
#       sendsms HTTP BASE+13; inbound SMS are forwarded to http://127.0.0.1:HOOK/sms/mo,
#       or to HOOK itself when it is a URL (rekindle's own .../callbacks/sms)
#   sms-gateway.sh stop  STATE_DIR
#   sms-gateway.sh sent  STATE_DIR                  # the messages fakesmsc received
#   sms-gateway.sh mo    STATE_DIR FROM TO TEXT     # inject one inbound SMS
# Install: apt-get install --no-install-recommends kannel kannel-extras (scripts/apt-plugins.txt),
# with a policy-rc.d that exits 101 so the package starts no system-wide Kannel.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fakesmsc=/usr/lib/kannel/test/fakesmsc
cmd="${1:-}"; shift || true

wait_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

stop_pid() { # pidfile
  [ -f "$1" ] || return 0
  local pid; pid="$(cat "$1")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$1"
}

stop_all() { # state: the processes of one gateway, newest first
  stop_pid "$1/smsbox.pid"
  stop_pid "$1/fakesmsc.pid"
  stop_pid "$1/bearerbox.pid"
}

case "$cmd" in
start)
  state="${1:?state dir}"; base="${2:?base port}"; hook="${3:?hook port or URL}"
  case "$hook" in *://*) mo_url="$hook" ;; *) mo_url="http://127.0.0.1:$hook/sms/mo" ;; esac
  mkdir -p "$state"; state="$(cd "$state" && pwd)"
  admin=$base smsbox=$((base + 1)) fake=$((base + 10)) fakemo=$((base + 11)) sendsms=$((base + 13))
  sed -e "s|@STATE@|$state|g" -e "s|@ADMIN_PORT@|$admin|g" -e "s|@SMSBOX_PORT@|$smsbox|g" \
      -e "s|@FAKE_PORT@|$fake|g" -e "s|@FAKE_MO_PORT@|$fakemo|g" -e "s|@SENDSMS_PORT@|$sendsms|g" \
      -e "s|@MO_URL@|$mo_url|g" "$here/kannel.conf.in" >"$state/kannel.conf"
  echo "$fakemo" >"$state/fakemo.port"
  /usr/sbin/bearerbox -v 2 "$state/kannel.conf" >"$state/bearerbox.out" 2>&1 &
  echo $! >"$state/bearerbox.pid"
  wait_port "$fake" 10 || { echo "bearerbox did not open $fake" >&2; tail -20 "$state/bearerbox.out" >&2; stop_all "$state"; exit 1; }
  # -m 0: fakesmsc sends nothing itself, it only prints what bearerbox delivers (line-buffered).
  stdbuf -oL -eL "$fakesmsc" -H 127.0.0.1 -r "$fake" -m 0 "x y text x" >"$state/fakesmsc.log" 2>&1 &
  echo $! >"$state/fakesmsc.pid"
  /usr/sbin/smsbox -v 2 "$state/kannel.conf" >"$state/smsbox.out" 2>&1 &
  echo $! >"$state/smsbox.pid"
  wait_port "$sendsms" 15 || { echo "smsbox did not open $sendsms" >&2; tail -20 "$state/smsbox.out" >&2; stop_all "$state"; exit 1; }
  # under a loaded machine (a parallel test run) the fake SMSC can take a while to connect
  for _ in $(seq 400); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$admin" && printf 'GET /status.txt?password=statuspw HTTP/1.0\r\n\r\n' >&3 && cat <&3) 2>/dev/null | grep -q "FAKE\[.*online"; then
      echo "sendsms http://127.0.0.1:$sendsms/cgi-bin/sendsms"; exit 0
    fi
    sleep 0.1
  done
  echo "the fake SMSC never came online" >&2; tail -20 "$state/bearerbox.out" "$state/fakesmsc.log" >&2; stop_all "$state"; exit 1
  ;;
stop)
  stop_all "${1:?state dir}"
  ;;
sent)
  state="${1:?state dir}"
  grep -a 'Got message' "$state/fakesmsc.log" || true
  ;;
mo)
  state="${1:?state dir}"; from="$2"; to="$3"; text="$4"
  timeout 3 "$fakesmsc" -H 127.0.0.1 -r "$(cat "$state/fakemo.port")" -m 1 -i 0.1 "$from $to text $text" \
    >>"$state/fakesmsc-mo.log" 2>&1 || true
  ;;
*) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
