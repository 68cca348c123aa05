#!/usr/bin/env bash
# The ingest benchmark of upcache, in one command:
#
#   benches/ingest.sh                  # 1 GiB per scenario, 8 MiB blocks, 4 streams, 3 runs
#   benches/ingest.sh --size 256MiB    # a quicker look
#   benches/ingest.sh --runs 5         # each scenario five times
#   benches/ingest.sh --patch-only     # only the curl PATCH and its dd reference
#   benches/ingest.sh --help           # every option
#
# Method: the disk's reference, `dd oflag=direct conv=fdatasync` of the same
# input to the same filesystem, runs just before and just after every curl
# PATCH, and every run repeats that bracket (3 runs by default, each on a
# fresh server). This disk's rate swings by 2x between consecutive runs, so
# the summary reports medians: `(a) / dd` is the median PATCH rate over the
# median dd rate, shown with each PATCH against the mean of its own two dds.
#
# See benches/common.sh for what it builds and where it works.
set -euo pipefail
source "$(dirname "$0")/common.sh"
run_bench ingest "$@"
