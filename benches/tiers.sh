#!/usr/bin/env bash
# Hits from each storage tier against nginx serving the same bytes, in one command:
#
#   benches/tiers.sh                           # 10 s per row, wrk -t2 -c32
#   benches/tiers.sh --duration 5              # a quicker look
#   benches/tiers.sh --baseline OLD_UPCACHE    # also rows for another upcache binary (before/after)
#   benches/tiers.sh --threads 4 --connections 64
#   benches/tiers.sh --no-build                # measure target/release/upcache as it is
#   benches/tiers.sh --rounds 5                # rows interleaved 5 times, medians reported
#   benches/tiers.sh --no-s3                   # leave out the S3-only rows
#   benches/tiers.sh --light-connections 4     # the latency columns with 4 in flight (default 2)
#   benches/tiers.sh --s3-objects 6000         # 10 KiB results in the bucket (a tenth as many 1 MiB)
#
# A 10 KiB and a 1 MiB result (the identity operation on pseudo-random
# inputs, so the result is exactly the input's bytes) are served by
# `GET /v1/ops/{key}/result` from
#   * memory — a server with the default memory tier (the result is in it);
#   * disk   — a server with `memory_cap = "0"` (every hit reads the file);
# and, in the same run with the same generator and settings, by nginx
# (`sendfile on`, no access log, `open_file_cache`: its strongest static
# setup; a config of its own on a free port) serving the same bytes as
# static files. Each row is one wrk run
# (`--latency`) after a short warm-up; the table gives requests per second,
# the p99 latency and the ratio of requests per second to nginx's for the
# same size. The machine is noisy, so the rows of a size are run
# interleaved, --rounds times, and each figure is the median of its rounds.
# Target (issue 10): memory and disk hits at least 0.8× nginx, p99 under 5 ms.
#
# Latency: at -c32 every row saturates the machine's CPUs, and its p99 is
# mostly time spent queued (Little's law: 32 requests in flight at 3000
# req/s of 1 MiB are 10 ms each on average, whoever serves them). So each
# row is also run with --light-connections (default 2, one per wrk thread)
# requests in flight: the CPUs stay busy, hardly anything queues, and the
# p99 is the time to serve. (Pacing with think time instead — wrk's
# delay() — measures this VM: its idle vCPUs take up to tens of ms to
# wake, and nginx's p99 grows with the pause as much as upcache's.) The
# last columns give that run's req/s and p99, medians of the rounds.
#
# S3-only: SeaweedFS (`weed mini`, installed by .ci/seaweedfs.sh from PyPI,
# anonymous access, on free ports) holds the bucket. A producer node with
# the S3 tier makes --s3-objects distinct 10 KiB results and a tenth as
# many 1 MiB ones and waits for its write-behind queue to drain; then a
# node with an empty data directory and `memory_cap = "0"` on the same
# bucket is asked for each result once (`walk`, benches/src/bin/walk.rs:
# wrk can only run for a time and would ask again once the list ran out), so
# every request is a cold hit: the object is read from S3, checked, filled
# into the disk and served). The reference row is `walk` reading the same
# objects from SeaweedFS's S3 endpoint directly.
#
# Installs wrk and nginx-light with apt-get when missing (as root), builds
# upcache in release mode, checks every server answers the input's bytes
# before it is measured, and that the memory server's hits came from memory
# (its /metrics). Everything runs on 127.0.0.1; the work directory (in the
# cargo target dir) is removed at the end, also after a failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
threads=2
connections=32
baseline=
build=1
rounds=3
s3=1
s3_objects_small=3000
s3_objects_large=300
light=2
while [ $# -gt 0 ]; do
    case $1 in
        --duration) duration=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --baseline) baseline=$(realpath "$2"); shift 2 ;;
        --no-build) build=; shift ;;
        --rounds) rounds=$2; shift 2 ;;
        --no-s3) s3=; shift ;;
        --light-connections) light=$2; shift 2 ;;
        --s3-objects) s3_objects_small=$2; s3_objects_large=$(( $2 / 10 > 0 ? $2 / 10 : 1 )); shift 2 ;;
        -h|--help) sed -n '2,54p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "tiers.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

need() { # command package
    if ! command -v "$1" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$1" ]; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
        else
            echo "tiers.sh: $1 is needed (apt-get install $2)" >&2
            exit 1
        fi
    fi
}
need wrk wrk
need nginx nginx-light
need curl curl
nginx=$(command -v nginx || echo /usr/sbin/nginx)

if [ -n "$build" ]; then
    cargo build --release -p upcache
    cargo build --release -p upcache-benches --bin walk
fi
target=${CARGO_TARGET_DIR:-target}
upcache=$target/release/upcache

work=$(mktemp -d "$(realpath "$target")/tiers-work.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; kill -CONT "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_up() { # url
    for _ in $(seq 1 200); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "tiers.sh: nothing answers at $1" >&2
    exit 1
}

# nginx's workers run as an unprivileged user: they must reach the files.
chmod 755 "$work"
mkdir -p "$work/static"
head -c 10240 /dev/urandom >"$work/static/10KiB.bin"
head -c 1048576 /dev/urandom >"$work/static/1MiB.bin"
chmod 644 "$work"/static/*.bin
sizes=(10KiB 1MiB)

# start_upcache NAME BINARY [VAR=VALUE...]: a fresh server; sets $url.
start_upcache() {
    local name=$1 bin=$2
    shift 2
    local port
    port=$(free_port)
    mkdir -p "$work/$name"
    env "$@" "$bin" serve --listen "127.0.0.1:$port" --data "$work/$name/data" \
        >"$work/$name/log" 2>&1 &
    pids+=($!)
    url=http://127.0.0.1:$port
    wait_up "$url/healthz"
}

declare -A result_url
# produce NAME SIZE: the identity result of the input of SIZE on server NAME.
produce() {
    local name=$1 size=$2 u
    u=$("$upcache" put --server "$url" --op '{"op":"identity"}' "$work/static/$size.bin")
    case $u in http*) ;; *) u=$url$u ;; esac
    curl -fsS -o "$work/$name/check" "$u"
    cmp -s "$work/$name/check" "$work/static/$size.bin" || {
        echo "tiers.sh: $name serves other bytes than the $size input" >&2
        exit 1
    }
    result_url[$name/$size]=$u
}

start_upcache memory "$upcache"
memory_url=$url
for s in "${sizes[@]}"; do produce memory "$s"; done
start_upcache disk "$upcache" UPCACHE_MEMORY_CAP=0
for s in "${sizes[@]}"; do produce disk "$s"; done
if [ -n "$baseline" ]; then
    start_upcache baseline "$baseline"
    for s in "${sizes[@]}"; do produce baseline "$s"; done
fi

nport=$(free_port)
mkdir -p "$work/nginx/tmp"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    # The strongest static reference: no per-request log line (upcache
    # writes none for a hit either) and open files cached.
    access_log off;
    open_file_cache max=64;
    open_file_cache_valid 60s;
    default_type application/octet-stream;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$nport;
        root $work/static;
    }
}
EOF
"$nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
pids+=($!)
for s in "${sizes[@]}"; do
    wait_up "http://127.0.0.1:$nport/$s.bin"
    result_url[nginx/$s]=http://127.0.0.1:$nport/$s.bin
done

if [ -n "$s3" ]; then
    weed=$(.ci/seaweedfs.sh)
    mkdir -p "$work/weed/data"
    # Ten free ports; the admin port's gRPC one is port + 10000 (weed dials
    # that whatever -admin.port.grpc says).
    read -r -a wp <<<"$(python3 -c '
import socket
held = []
def free(port=0):
    s = socket.socket(); s.bind(("127.0.0.1", port)); held.append(s)
    return s.getsockname()[1]
ports = [free() for _ in range(8)]
while True:
    p = free()
    if p + 10000 < 65536:
        try:
            ports += [p, free(p + 10000)]
            break
        except OSError:
            pass
print(*ports)')"
    # No AWS_* credentials in its environment: SeaweedFS takes anonymous
    # requests, so wrk can read the objects directly.
    (cd "$work/weed" && exec env -i PATH="$PATH" HOME="$work/weed" "$weed" mini \
        -dir="$work/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.port="${wp[0]}" -s3.port.grpc="${wp[1]}" -master.port="${wp[2]}" \
        -master.port.grpc="${wp[3]}" -volume.port="${wp[4]}" -volume.port.grpc="${wp[5]}" \
        -filer.port="${wp[6]}" -filer.port.grpc="${wp[7]}" -admin.port="${wp[8]}" \
        -admin.port.grpc="${wp[9]}" -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -admin.ui=false -master.telemetry=false -bucket=bench \
        -filer.localSocket="$work/weed/filer.sock" -s3.localSocket="$work/weed/s3.sock") \
        >"$work/weed/log" 2>&1 &
    weed_pid=$!
    pids+=("$weed_pid")
    s3_url=http://127.0.0.1:${wp[0]}
    for _ in $(seq 1 600); do
        curl -fsS -o /dev/null -X PUT --data-binary probe "$s3_url/bench/probe" 2>/dev/null \
            && curl -fsS -o /dev/null "$s3_url/bench/probe" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS -o /dev/null "$s3_url/bench/probe" || {
        echo "tiers.sh: SeaweedFS did not come up; its log:" >&2
        cat "$work/weed/log" >&2
        exit 1
    }
    s3_env=(UPCACHE_S3_ENDPOINT="$s3_url" UPCACHE_S3_BUCKET=bench UPCACHE_S3_REGION=us-east-1
        UPCACHE_S3_PATH_STYLE=true AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench)

    start_upcache producer "$upcache" "${s3_env[@]}"
    producer_url=$url
    producer_pid=${pids[-1]}
    declare -A s3_count=([10KiB]=$s3_objects_small [1MiB]=$s3_objects_large)
    declare -A s3_bytes=([10KiB]=10240 [1MiB]=1048576)
    for s in "${sizes[@]}"; do
        mkdir -p "$work/producer/$s"
        python3 -c '
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    with open(os.path.join(d, f"{i}.bin"), "wb") as f:
        f.write(os.urandom(size))' "$work/producer/$s" "${s3_count[$s]}" "${s3_bytes[$s]}"
        echo "making ${s3_count[$s]} results of $s in the bucket..." >&2
        find "$work/producer/$s" -name '*.bin' -print0 \
            | xargs -0 -P4 -I{} "$upcache" put --server "$producer_url" --op '{"op":"identity"}' {} \
                2>/dev/null >"$work/producer/$s.urls"
        [ "$(wc -l <"$work/producer/$s.urls")" -eq "${s3_count[$s]}" ] || {
            echo "tiers.sh: the producer made $(wc -l <"$work/producer/$s.urls") of ${s3_count[$s]} $s results" >&2
            exit 1
        }
        # The paths alone (wrk's script asks the host it is given), and the
        # objects' names: an identity result is its input, named by BLAKE3 (the ETag).
        sed -e 's#^http://[^/]*##' "$work/producer/$s.urls" >"$work/producer/$s.paths"
        while read -r u; do
            curl -fsSI "$u" | awk 'tolower($1) == "etag:" { gsub(/[\r"]/, "", $2); print "/bench/inputs/" $2 }'
        done <"$work/producer/$s.urls" >"$work/producer/$s.objects"
    done
    echo "waiting for the producer's write-behind queue to drain..." >&2
    for _ in $(seq 1 1200); do
        depth=$(curl -fsS "$producer_url/metrics" | awk '$1 == "upcache_write_behind_depth" { print $2 }')
        [ "$depth" = 0 ] && break
        sleep 0.5
    done
    [ "$depth" = 0 ] || { echo "tiers.sh: the write-behind queue still holds $depth jobs" >&2; exit 1; }
    # A node that has never seen these results: every hit is a cold one.
    start_upcache cold "$upcache" "${s3_env[@]}" UPCACHE_MEMORY_CAP=0
    cold_url=$url
    cold_pid=${pids[-1]}
    kill "$producer_pid"
    # SeaweedFS and the cold node are paused while the other rows run: an
    # idle `weed mini` still takes CPU time the other servers would miss.
    s3_pause() { kill -STOP "$weed_pid" "$cold_pid"; }
    s3_resume() { kill -CONT "$weed_pid" "$cold_pid"; }
    s3_pause
fi

# cold NAME SIZE: one walk of every object of SIZE (s3ref: from SeaweedFS,
# s3: through the cold node), each read once, --connections in flight;
# sets $rps and $p99.
cold() {
    local list base out
    case $1 in
        s3ref) list=$work/producer/$2.objects base=$s3_url ;;
        s3) list=$work/producer/$2.paths base=$cold_url ;;
    esac
    out=$("$target/release/walk" --base "$base" --list "$list" --concurrency "$connections")
    rps=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$out")
    p99=$(sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p' <<<"$out")
}

# to_ms VALUE: wrk's latency (us, ms, s) in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.2f", n }'
}

# run_wrk CONNECTIONS URL [ARGS...]: one wrk run; sets $rps and $p99 (and $out).
run_wrk() {
    local c=$1 u=$2
    shift 2
    out=$(wrk -t"$((threads < c ? threads : c))" -c"$c" --latency "$@" "$u")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "tiers.sh: $u answered errors:" >&2
        echo "$out" >&2
        exit 1
    fi
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
}

# measure NAME SIZE CONNECTIONS: one warmed-up wrk run of a row; sets $rps and $p99.
measure() {
    local u=${result_url[$1/$2]}
    run_wrk "$3" "$u" -d1s >/dev/null # warm-up
    run_wrk "$3" "$u" -d"${duration}s"
}

median() { # numbers...
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

row() { # label size rps p99 ratio light-rps light-p99
    printf "| %-46s | %-6s | %10s | %9s | %8s | %12s | %12s |\n" "$@"
}

load=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "wrk -t$threads -c$connections -d${duration}s --latency, 127.0.0.1, $(nproc) CPUs, medians of $rounds interleaved rounds, load average before: $load"
echo "latency columns: the same rows with wrk -c$light (see --help)"
echo
rows=(nginx memory disk)
[ -n "$baseline" ] && rows+=(baseline)
declare -A label=(
    [nginx]="nginx (sendfile, no log, open_file_cache)"
    [memory]="upcache, memory hit"
    [disk]="upcache, disk hit (memory_cap = 0)"
    [baseline]="upcache before (--baseline)"
    [s3ref]="SeaweedFS S3 GET, same objects (reference)"
    [s3]="upcache, S3-only (cold node, fill-back)"
)
row tier size "req/s" "p99 ms" "× nginx" "req/s -c$light" "p99 ms -c$light"
printf "|%s|%s|%s|%s|%s|%s|%s|\n" "$(printf -- '-%.0s' {1..48})" "--------" "------------" "-----------" "----------" "--------------" "--------------"
for s in "${sizes[@]}"; do
    declare -A all_rps=() all_p99=() light_rps=() light_p99=()
    for _ in $(seq 1 "$rounds"); do
        for r in "${rows[@]}"; do
            measure "$r" "$s" "$connections"
            all_rps[$r]+=" $rps"
            all_p99[$r]+=" $p99"
            measure "$r" "$s" "$light"
            light_rps[$r]+=" $rps"
            light_p99[$r]+=" $p99"
        done
    done
    # shellcheck disable=SC2086 # the lists are words on purpose
    nginx_rps=$(median ${all_rps[nginx]})
    for r in "${rows[@]}"; do
        # shellcheck disable=SC2086
        rps=$(median ${all_rps[$r]})
        # shellcheck disable=SC2086
        p99=$(median ${all_p99[$r]})
        # shellcheck disable=SC2086
        row "${label[$r]}" "$s" "$(printf %.0f "$rps")" "$(printf %.2f "$p99")" \
            "$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2f", a / b }')" \
            "$(printf %.0f "$(median ${light_rps[$r]})")" "$(printf %.2f "$(median ${light_p99[$r]})")"
    done
    if [ -n "$s3" ]; then
        # Each object is read once per run, so these rows are one run each.
        s3_resume
        for r in s3ref s3; do
            cold "$r" "$s"
            row "${label[$r]}" "$s" "$rps" "$p99" \
                "$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2f", a / b }')" "-" "-"
        done
        s3_pause
    fi
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

hits=$(curl -fsS "$memory_url/metrics" | awk '$1 == "upcache_memory_hits_total" { print $2 }')
if [ -z "$hits" ] || [ "$hits" -eq 0 ]; then
    echo "tiers.sh: the memory server counted no memory hits" >&2
    exit 1
fi
echo "memory server: $hits memory hits"
