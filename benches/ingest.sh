#!/usr/bin/env bash
# The ingest benchmark of upcache, in one command:
#
#   benches/ingest.sh                  # 1 GiB per scenario, 8 MiB blocks, 4 streams
#   benches/ingest.sh --size 256MiB    # a quicker look
#   benches/ingest.sh --runs 3         # each scenario three times, with medians
#   benches/ingest.sh --help           # every option
#
# Builds the server and the benchmark in release mode, makes sure curl is
# there, and runs the `ingest` binary with the arguments given. Inputs and
# server data go to a temporary directory in the cargo target dir — on the
# repository's filesystem, since fsync is part of what is measured — and are
# removed at the end, also when the run fails or is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p upcache-server -p upcache-benches

if ! command -v curl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq curl
    else
        echo "ingest.sh: curl is needed (apt-get install curl)" >&2
        exit 1
    fi
fi

target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d "$target/ingest-work.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A --work-dir among the arguments overrides this one.
"$target/release/ingest" --work-dir "$work" "$@"
