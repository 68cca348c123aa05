#!/usr/bin/env bash
# The whole test suite, on a fresh machine: `./.ci/test.sh`
#
# Builds the workspace (the server binary the end-to-end tests start), then
# runs every unit, property and end-to-end test with cargo-nextest when it is
# installed, or cargo test otherwise. Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --workspace --all-targets
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --workspace --no-fail-fast
    # nextest does not run doctests.
    cargo test --locked --workspace --doc
else
    cargo test --locked --workspace --no-fail-fast
fi
