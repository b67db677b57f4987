#!/usr/bin/env bash
# Build every channel plugin under plugins/ for wasm32-unknown-unknown and put
# the modules in target/plugins/NAME.wasm, where config.toml points. The host
# turns these core modules into components (wit-component) when it loads them
# and caches the compiled code.
#
# usage: scripts/build-plugins.sh [PLUGIN...]   (default: every plugin crate)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

plugins=("$@")
if [ ${#plugins[@]} -eq 0 ]; then
    for manifest in plugins/*/plugin.toml tests/plugins/*/plugin.toml; do
        plugins+=("$(basename "$(dirname "$manifest")")")
    done
fi

packages=()
for plugin in "${plugins[@]}"; do
    packages+=(-p "rekindle-plugin-$plugin")
done

# No debug info in plugins: it only makes them larger.
CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo build --release --target wasm32-unknown-unknown "${packages[@]}"

mkdir -p target/plugins
for plugin in "${plugins[@]}"; do
    cp "target/wasm32-unknown-unknown/release/rekindle_plugin_${plugin//-/_}.wasm" "target/plugins/$plugin.wasm"
    echo "target/plugins/$plugin.wasm"
done
