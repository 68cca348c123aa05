#!/usr/bin/env bash
# The image benchmark of upcache, in one command:
#
#   benches/images.sh                  # 3900×3900 JPEG and PNG to 400×400 WebP, AVIF, JPEG; 5 runs
#   benches/images.sh --runs 3 --side 2000   # a quicker look
#   benches/images.sh --help           # every option
#
# Installs vipsthumbnail (libvips-tools, as root with apt-get) if it is missing,
# the reference every figure is compared with. See benches/common.sh for what
# it builds and where it works.
set -euo pipefail
if ! command -v vipsthumbnail >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvips-tools
    else
        echo "images.sh: vipsthumbnail is needed (apt-get install libvips-tools)" >&2
        exit 1
    fi
fi
source "$(dirname "$0")/common.sh"
run_bench images "$@"
