#!/usr/bin/env bash
# The soak test of upcache, in one command: 100 clients mixing every kind of
# request against one server on loopback; errors must be 0 and the server's
# RSS, fds and sled database flat once warm (exit code 1 otherwise).
#
#   benches/soak.sh                          # 10 minutes, 100 clients
#   benches/soak.sh --duration 90s           # a quicker look
#   benches/soak.sh --duration 1h --clients 200
#   benches/soak.sh --help                   # every option
#
# See benches/common.sh for what it builds and where it works.
set -euo pipefail
source "$(dirname "$0")/common.sh"
run_bench soak "$@"
