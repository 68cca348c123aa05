#!/usr/bin/env bash
# The SDK benchmark of upcache, in one command:
#
#   benches/sdk.sh                     # 1 GiB per scenario, 8 MiB blocks, 1, 2, 4 and 8 streams
#   benches/sdk.sh --size 256MiB       # a quicker look
#   benches/sdk.sh --streams 4 --runs 3  # one stream count, three times, with medians
#   benches/sdk.sh --help              # every option
#
# Builds the server (and its command-line client, the SDK's `upcache put`)
# and the benchmark in release mode, makes sure curl is there, and runs the
# `sdk` binary with the arguments given. Inputs and server data go to a
# temporary directory in the cargo target dir — on the repository's
# filesystem, since fsync is part of what is measured — and are removed at
# the end, also when the run fails or is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p upcache-server -p upcache-benches

if ! command -v curl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq curl
    else
        echo "sdk.sh: curl is needed (apt-get install curl)" >&2
        exit 1
    fi
fi

target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d "$target/sdk-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A --work-dir among the arguments overrides this one.
"$target/release/sdk" --work-dir "$work" "$@"
