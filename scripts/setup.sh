#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, which has only the Rust toolchain:
#   - the wasm target the channel plugins build for (rustup target add)
#   - the Debian packages listed in scripts/apt-*.txt (test servers: SMTP, SMS gateway)
#   - a Python virtualenv in .venv with the packages of scripts/requirements-*.txt
#     (the independent implementations the cross-check tests compare against)
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ls plugins/*/Cargo.toml >/dev/null 2>&1; then
  rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
fi

shopt -s nullglob
apt_lists=(scripts/apt-*.txt)
if [ ${#apt_lists[@]} -gt 0 ]; then
  missing=()
  for p in $(grep -hv '^\s*#' "${apt_lists[@]}" | sort -u); do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    # keep package scripts from starting system-wide daemons (kannel, postfix)
    [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

req=(scripts/requirements-*.txt)
if [ ${#req[@]} -gt 0 ]; then
  stamp=".venv/.requirements.sha256"
  want=$(cat "${req[@]}" | sha256sum | cut -d' ' -f1)
  if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: creating .venv with ${req[*]}"
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    for r in "${req[@]}"; do .venv/bin/pip install -q -r "$r"; done
    echo "$want" >"$stamp"
  fi
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
fi
