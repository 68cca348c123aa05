#!/usr/bin/env bash
# The ingest benchmark of upcache, in one command:
#
#   benches/ingest.sh                  # 1 GiB per scenario, 8 MiB blocks, 4 streams
#   benches/ingest.sh --size 256MiB    # a quicker look
#   benches/ingest.sh --runs 3         # each scenario three times, with medians
#   benches/ingest.sh --help           # every option
#
# See benches/common.sh for what it builds and where it works.
set -euo pipefail
source "$(dirname "$0")/common.sh"
run_bench ingest "$@"
