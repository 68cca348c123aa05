# Shared by the benchmark scripts: `source benches/common.sh; run_bench NAME "$@"`.
#
# Builds the server (with its command-line client) and the benchmarks in
# release mode, makes sure curl is there, and runs the benchmark binary NAME
# with the arguments given. Inputs and server data go to a temporary
# directory in the cargo target dir — on the repository's filesystem, since
# fsync is part of what is measured — removed at the end, also when the run
# fails or is interrupted. A --work-dir among the arguments overrides it.
run_bench() {
    local name=$1
    shift
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    cargo build --release -p upcache -p upcache-benches

    if ! command -v curl >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && apt-get install -y -qq curl
        else
            echo "$name.sh: curl is needed (apt-get install curl)" >&2
            exit 1
        fi
    fi

    local target=${CARGO_TARGET_DIR:-target}
    work=$(mktemp -d "$target/$name-work.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    "$target/release/$name" --work-dir "$work" "$@"
}
