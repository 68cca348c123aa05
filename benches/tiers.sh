#!/usr/bin/env bash
# Hits from each storage tier against nginx serving the same bytes, in one command:
#
#   benches/tiers.sh                           # 10 s per row, wrk -t2 -c32
#   benches/tiers.sh --duration 5              # a quicker look
#   benches/tiers.sh --baseline OLD_UPCACHE    # also rows for another upcache binary (before/after)
#   benches/tiers.sh --threads 4 --connections 64
#   benches/tiers.sh --no-build                # measure target/release/upcache as it is
#
# A 10 KiB and a 1 MiB result (the identity operation on pseudo-random
# inputs, so the result is exactly the input's bytes) are served by
# `GET /v1/ops/{key}/result` from
#   * memory — a server with the default memory tier (the result is in it);
#   * disk   — a server with `memory_cap = "0"` (every hit reads the file);
# and, in the same run with the same generator and settings, by nginx
# (`sendfile on`, its default access log, a config of its own on a free
# port) serving the same bytes as static files. Each row is one wrk run
# (`--latency`) after a short warm-up; the table gives requests per second,
# the p99 latency and the ratio of requests per second to nginx's for the
# same size. Target (issue 10): memory and disk hits at least 0.8× nginx,
# p99 under 5 ms. The S3-only tier is not measured here.
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
while [ $# -gt 0 ]; do
    case $1 in
        --duration) duration=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --baseline) baseline=$(realpath "$2"); shift 2 ;;
        --no-build) build=; shift ;;
        -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

if [ -n "$build" ]; then cargo build --release -p upcache; fi
target=${CARGO_TARGET_DIR:-target}
upcache=$target/release/upcache

work=$(mktemp -d "$(realpath "$target")/tiers-work.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
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
    access_log $work/nginx/access.log;
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

# to_ms VALUE: wrk's latency (us, ms, s) in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.2f", n }'
}

# measure NAME SIZE: one wrk run; sets $rps and $p99.
measure() {
    local u=${result_url[$1/$2]} out
    wrk -t"$threads" -c"$connections" -d1s "$u" >/dev/null # warm-up
    out=$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "$u")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "tiers.sh: $1 answered errors to $2:" >&2
        echo "$out" >&2
        exit 1
    fi
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
}

load=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "wrk -t$threads -c$connections -d${duration}s --latency, 127.0.0.1, $(nproc) CPUs, load average before: $load"
echo
rows=(nginx memory disk)
[ -n "$baseline" ] && rows+=(baseline)
declare -A label=(
    [nginx]="nginx (sendfile, static file)"
    [memory]="upcache, memory hit"
    [disk]="upcache, disk hit (memory_cap = 0)"
    [baseline]="upcache before (--baseline)"
)
printf "| %-36s | %-6s | %10s | %9s | %8s |\n" tier size "req/s" "p99 ms" "× nginx"
printf "|%s|%s|%s|%s|%s|\n" "$(printf -- '-%.0s' {1..38})" "--------" "------------" "-----------" "----------"
for s in "${sizes[@]}"; do
    nginx_rps=
    for r in "${rows[@]}"; do
        measure "$r" "$s"
        [ "$r" = nginx ] && nginx_rps=$rps
        ratio=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2f", a / b }')
        printf "| %-36s | %-6s | %10s | %9s | %8s |\n" "${label[$r]}" "$s" "$rps" "$p99" "$ratio"
    done
    printf "| %-36s | %-6s | %10s | %9s | %8s |\n" "upcache, S3-only" "$s" "—" "—" "not measured here"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

hits=$(curl -fsS "$memory_url/metrics" | awk '$1 == "upcache_memory_hits_total" { print $2 }')
if [ -z "$hits" ] || [ "$hits" -eq 0 ]; then
    echo "tiers.sh: the memory server counted no memory hits" >&2
    exit 1
fi
echo "memory server: $hits memory hits"
