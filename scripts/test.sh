#!/usr/bin/env bash
# The test command (README.md): sets the machine up, then runs every test.
#   scripts/test.sh          unit and integration tests (a few minutes)
#   scripts/test.sh --long   also the long tests: crash loops, 1M-member runs
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export REKINDLE_PYTHON="$PWD/.venv/bin/python"
long=()
if [ "${1:-}" = "--long" ]; then long=(-- --include-ignored); fi
if [ -x scripts/build-plugins.sh ]; then scripts/build-plugins.sh; fi
cargo test --workspace "${long[@]}"
