#!/usr/bin/env bash
# The SDK benchmark of upcache, in one command:
#
#   benches/sdk.sh                     # 1 GiB per scenario, 8 MiB blocks, 1, 2, 4 and 8 streams
#   benches/sdk.sh --size 256MiB       # a quicker look
#   benches/sdk.sh --streams 4 --runs 3  # one stream count, three times, with medians
#   benches/sdk.sh --help              # every option
#
# See benches/common.sh for what it builds and where it works.
set -euo pipefail
source "$(dirname "$0")/common.sh"
run_bench sdk "$@"
