#!/usr/bin/env bash
# The system packages the build and the tests need, installed from Debian's
# repositories when missing (as root, which CI is):
#   nasm      rav1e's assembly (the AVIF encoder), at build time
#   chromium  the demo page's browser test (tests drive the system browser)
# Run by .ci/test.sh, and by .ci/run before its lint build.
set -euo pipefail

need=()
command -v nasm >/dev/null 2>&1 || need+=(nasm)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
    echo "error: ${need[*]} needed: install Debian's package(s) (apt-get install ${need[*]})" >&2
    exit 1
fi
