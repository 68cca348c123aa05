#!/usr/bin/env bash
# The JavaScript SDK benchmark of upcache, in one command:
#
#   benches/js.sh                          # 1 GiB input; Chromium hashes 512 MiB in memory and the 1 GiB File
#   benches/js.sh --size 256MiB            # a quicker look
#   benches/js.sh --runs 3                 # each figure three times, with medians
#
# The Node SDK's put (1 and 4 streams) against curl's PATCH and the Rust SDK
# (`upcache put`), and the WebAssembly BLAKE3 hasher's MiB/s in Node and in
# headless Chromium with 1 and N workers (client-js/bench/js-bench.js says
# what each row is). Builds `upcache` in release mode, installs the npm
# packages (`npm ci` in client-js/), and Chromium and curl with apt-get when
# missing (as root). Inputs and server data go to a temporary directory in
# the cargo target dir, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p upcache

for tool in curl chromium; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
        else
            echo "js.sh: $tool is needed (apt-get install $tool)" >&2
            exit 1
        fi
    fi
done
js=client-js
if ! cmp -s "$js/package-lock.json" "$js/node_modules/.installed-from-lock"; then
    npm ci --prefix "$js" --no-audit --no-fund --loglevel=error >/dev/null
    cp "$js/package-lock.json" "$js/node_modules/.installed-from-lock"
fi
npm run --prefix "$js" --silent build

target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d "$target/js-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
node "$js/bench/js-bench.js" --upcache "$target/release/upcache" --work-dir "$work" "$@"
