#!/usr/bin/env bash
# The main job on the embedded default, on a fresh machine: builds the channel plugins
# (adding the wasm target if needed) and rekindle, generates sample data, imports it into
# the sled store (data/rekindle.sled), prints the member base, runs the sample rules of
# rules/ once and sends their messages through the file plugin into data/outbox/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh
cargo run --release -- demo "$@"
echo
echo "a sample email:"
f="$(find data/outbox/email -name '*.eml' -print -quit)"
if [ -n "$f" ]; then head -c 1500 "$f"; echo; fi
