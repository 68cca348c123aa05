#!/usr/bin/env bash
# The tus benchmark of upcache, in one command: upcache's /files/ vs
# @tus/server + @tus/file-store (npm), each with tus-js-client and with curl.
#
#   benches/tus.sh                      # 1 GiB per scenario, both servers, both clients
#   benches/tus.sh --size 256MiB        # a quicker look
#   benches/tus.sh --runs 3             # each scenario three times, with medians
#   benches/tus.sh --chunk-size 64MiB   # also tus-js-client with 64 MiB PATCHes
#   benches/tus.sh --help               # every option
#
# Installs the Node side first — @tus/server, @tus/file-store and
# tus-js-client at the versions pinned in benches/tus/package-lock.json — with
# `npm ci` (Node.js 20.19 or later and npm needed). See benches/common.sh for
# what else it builds and where it works.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "tus.sh: Node.js 20.19 or later and npm are needed" >&2
    exit 1
fi
case " $* " in
    *" --help "* | *" -h "*) ;;
    *) npm ci --prefix benches/tus --no-audit --no-fund --loglevel=error ;;
esac
source benches/common.sh
run_bench tus "$@"
