#!/usr/bin/env bash
# Rebuilds upcache_hash.wasm, the SDK's hashing core, from this crate:
#   client-js/wasm/build.sh
# Reproducible: the lock file pins every crate, paths are remapped out of the
# binary, no debug info, one codegen unit. Needs the Rust toolchain with the
# wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown);
# installing the npm package does not (the built file is committed).
# `build.sh --check` rebuilds into the target directory and fails if the
# committed file differs; it skips (saying so) where the toolchain is not the
# one TOOLCHAIN records or the wasm32 target is missing, as another compiler
# may emit other bytes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
toolchain=$(rustc -V)
if [ "${1:-}" = "--check" ]; then
    if [ "$toolchain" != "$(cat "$here/TOOLCHAIN")" ]; then
        echo "skipped: upcache_hash.wasm was built with $(cat "$here/TOOLCHAIN"), this is $toolchain"
        exit 0
    fi
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
        echo "skipped: the wasm32-unknown-unknown target is not installed"
        exit 0
    fi
fi
# A target directory of its own: other RUSTFLAGS must not invalidate the
# native build's artifacts.
export CARGO_TARGET_DIR="$root/target/wasm"
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_STRIP=true
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_OPT_LEVEL=3
export CARGO_PROFILE_RELEASE_PANIC=abort
export RUSTFLAGS="-C target-feature=+simd128 --remap-path-prefix=$root=/upcache --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
cargo build --locked --release --target wasm32-unknown-unknown -p upcache-hash-wasm
built="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/upcache_hash_wasm.wasm"
if [ "${1:-}" = "--check" ]; then
    cmp "$built" "$here/upcache_hash.wasm" || { echo "upcache_hash.wasm is stale: run client-js/wasm/build.sh" >&2; exit 1; }
    echo "upcache_hash.wasm is up to date"
else
    install -m 644 "$built" "$here/upcache_hash.wasm"
    echo "$toolchain" > "$here/TOOLCHAIN"
    echo "wrote client-js/wasm/upcache_hash.wasm ($(wc -c < "$here/upcache_hash.wasm") bytes, sha256 $(sha256sum "$here/upcache_hash.wasm" | cut -c1-16)…)"
fi
