#!/usr/bin/env bash
# The daemon benchmark of issue 6 (figures in BENCHMARKS.md, "Daemon"):
#   1. a campaign of MESSAGES messages (`rekindle run --once`) through the email plugin to
#      Postfix smtp-sink on 127.0.0.1 with rate limits off ([dispatch] rate_per_second = 0);
#      dispatch messages/s = messages / (process end - "run written to the outbox");
#   2. the same server fed without rekindle in the same run: examples/smtp_blast.rs (lettre
#      connections with TCP_NODELAY, as the plugin host uses) and Postfix smtp-source (C);
#   3. the daemon's resident memory at rest (`rekindle run`, nothing due) with that member
#      base loaded, and with BENCH_RSS_MEMBERS generated members when that is set.
# Every phase's arrivals are counted from the sink's dump files; rekindle's by distinct
# Message-ID too.
#
#   scripts/bench_daemon.sh [MESSAGES] [CONCURRENCY]     default 100000 32
#   BENCH_RSS_MEMBERS=1000000 scripts/bench_daemon.sh    adds the RSS at rest with 1M members
# Needs Debian postfix (scripts/apt-plugins.txt; scripts/setup.sh installs it). Scratch
# files go to a temporary folder under ${TMPDIR:-/tmp}, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
messages="${1:-100000}"
concurrency="${2:-32}"
at="2026-01-05T12:00:00Z"

echo "== build (release)"
cargo build --release --quiet --bin rekindle --example smtp_blast
scripts/build-plugins.sh email >/dev/null 2>&1
bin="$repo/target/release/rekindle"

work="$(mktemp -d "${TMPDIR:-/tmp}/rekindle-bench-daemon.XXXXXX")"
# The sink's dump files go to memory (/dev/shm) when it is there: on this machine's disk,
# writing 100,000 small files held every client below 2,000 messages/s.
sink_root="$work"
[ -d /dev/shm ] && [ -w /dev/shm ] && sink_root="$(mktemp -d /dev/shm/rekindle-bench-sink.XXXXXX)"
chmod 755 "$work" "$sink_root"   # smtp-sink runs as nobody and writes below it
sink="$sink_root/sink"
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null || true
  scripts/smtp-sink.sh stop "$sink" || true
  rm -rf "$work" "$sink_root"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
log_time() { # the UTC timestamp of the first log line matching $2 in file $1, as epoch seconds
  date -d "$(sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -m1 "$2" | cut -d' ' -f1)" +%s.%N
}
rate() { # messages start end
  python3 -c "import sys; n, s = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'{n} in {s:.2f} s, {n / s:,.0f} messages/s')" "$@"
}
rss_at_rest() { # dir: starts the daemon there, waits until it runs, prints VmRSS, stops it
  (cd "$1" && REKINDLE_LOG=info REKINDLE_CONFIG="$1/config.toml" "$bin" run >"$1/daemon.log" 2>&1) &
  daemon_pid=$!
  for _ in $(seq 1200); do grep -q "daemon running" "$1/daemon.log" 2>/dev/null && break; sleep 0.1; done
  sleep 3
  local pid; pid="$(pgrep -P "$daemon_pid" -x rekindle || echo "$daemon_pid")"
  local rss; rss="$(awk '/^VmRSS/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$pid/status")"
  local loaded; loaded="$(sed 's/\x1b\[[0-9;]*m//g' "$1/daemon.log" | grep -m1 'member base loaded' | grep -o 'members=[0-9]* seconds=[0-9.]*')"
  kill -TERM "$pid"; wait "$daemon_pid" || true; daemon_pid=""
  echo "$rss ($loaded)"
}
write_config() { # dir port
  cat >"$1/config.toml" <<EOF
[store]
path = "store"

[campaigns]
rules_dir = "rules"
catch_up = false

[api]
listen = "127.0.0.1:0"

[dispatch]
rate_per_second = 0
concurrency = $concurrency

[channels.email]
plugin = "$repo/target/plugins/email.wasm"
settings = { from_address = "news@shop.example", from_name = "Shop" }

[channels.email.smtp]
host = "127.0.0.1"
port = $2
tls = "none"
pool_size = $concurrency
EOF
  mkdir -p "$1/rules"
  cat >"$1/rules/bench.toml" <<EOF
name = "Benchmark campaign"

[audience]
consent = ["email"]

[message]
channels = ["email"]

[message.email]
subject = "Hello {{ member.name }}"
text = "Dear {{ member.name }}, this message is the benchmark campaign's. Thank you for shopping with us."

[limits]
quiet_hours = false
max_audience = $messages
EOF
}
# generated members with email consent are about 70%: 1.5 members per message
members_for() { echo $(($1 * 3 / 2)); }

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
port="$(free_port)"
scripts/smtp-sink.sh start "$sink" "$port" --engine postfix >/dev/null
echo "== Postfix smtp-sink on 127.0.0.1:$port, dumping to $sink_root"

camp="$work/campaign"; mkdir -p "$camp"
members="$(members_for "$messages")"
echo "== generate and import $members members with their orders"
"$bin" generate "$camp/data" --members "$members" >/dev/null
write_config "$camp" "$port"
(cd "$camp" && REKINDLE_CONFIG="$camp/config.toml" "$bin" import data/members.csv data/orders.csv | sed 's/^/   /')

echo "== rekindle run --once: $messages messages, concurrency $concurrency, no rate limit"
start="$(now)"
(cd "$camp" && REKINDLE_LOG=info REKINDLE_CONFIG="$camp/config.toml" "$bin" run --once --at "$at" >"$camp/once.out" 2>"$camp/once.log")
end="$(now)"
sed 's/^/   /' "$camp/once.out"
written="$(log_time "$camp/once.log" 'run written to the outbox')"
planned="$(grep -o 'run [0-9]*: [0-9]* messages planned' "$camp/once.out" | awk '{print $3}')"
arrived="$(scripts/smtp-sink.sh count "$sink")"
distinct="$(scripts/smtp-sink.sh ids "$sink")"
echo "   start to run written (load the member base, plan, write the outbox): $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f} s')" "$start" "$written")"
echo "   dispatch:             $(rate "$planned" "$written" "$end")"
echo "   arrived: $arrived transactions, $distinct distinct Message-IDs, $planned planned"
find "$sink/dump" -mindepth 1 -delete

echo "== plain client without rekindle (examples/smtp_blast.rs, lettre + TCP_NODELAY), $concurrency connections"
"$repo/target/release/examples/smtp_blast" "$port" "$messages" "$concurrency" | sed 's/^/   /'
echo "   arrived: $(scripts/smtp-sink.sh count "$sink") transactions"
find "$sink/dump" -mindepth 1 -delete

echo "== Postfix smtp-source (C), $concurrency sessions, 600-byte messages"
start="$(now)"
smtp-source -s "$concurrency" -m "$messages" -l 600 -f news@shop.example -t member@example.com "127.0.0.1:$port"
end="$(now)"
echo "   smtp-source: $(rate "$messages" "$start" "$end")"
echo "   arrived: $(scripts/smtp-sink.sh count "$sink") transactions"
find "$sink/dump" -mindepth 1 -delete

echo "== daemon at rest, nothing due: RSS $(rss_at_rest "$camp")"
rm -rf "$camp"

if [ -n "${BENCH_RSS_MEMBERS:-}" ]; then
  big="$work/big"; mkdir -p "$big"
  echo "== generate and import $BENCH_RSS_MEMBERS members with their orders"
  "$bin" generate "$big/data" --members "$BENCH_RSS_MEMBERS" >/dev/null
  write_config "$big" "$port"
  (cd "$big" && REKINDLE_CONFIG="$big/config.toml" "$bin" import data/members.csv data/orders.csv | sed 's/^/   /')
  echo "== daemon at rest with $BENCH_RSS_MEMBERS members, nothing due: RSS $(rss_at_rest "$big")"
fi
