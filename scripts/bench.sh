#!/usr/bin/env bash
# Reproduces BENCHMARKS.md and bench/results/latency.svg: installs the
# missing peers (nginx + nchan, Pushpin + zurl and redis-server from Debian;
# sse-starlette + uvicorn from PyPI into a venv and better-sse from npm, both
# under target/bench-peers), builds the release binaries, runs every workload
# against every server on loopback (the topic workloads against the servers
# with topics: ours, nchan, Pushpin and the warp baseline; the fan-out and
# publishing alone against our server with its log on disk, and publishing
# alone against it on a Redis of its own and in memory, and against nchan,
# Pushpin and the warp baseline; publishing in batches against ours in
# memory, on disk and on a Redis of its own; the heavy fan-out, 10,000
# subscribers at 50 events/s, against ours, nchan and the warp baseline),
# and writes the report. Takes about 45 minutes on 2 cores.
#
# The servers run on CPU 0 and the load generator on CPU 1 (taskset); the
# two-server target (ours-redis-pair: two of our servers sharing a Redis that
# the suite starts itself) runs on CPU 0 as a whole, Redis included, and so
# does Pushpin with its services (condure, zurl, pushpin-proxy,
# pushpin-handler) and the GRIP backend it proxies subscribes to. Other
# busy processes skew the numbers, so the script first waits (at most
# BENCH_QUIET_WAIT seconds, default 600) until the machine is nearly idle.
#
# Environment:
#   BENCH_SERVERS=ours,nchan       only these servers (names in bench/configs/suite.toml)
#   BENCH_WORKLOADS=fanout,storm   only these workloads (fanout, saturation, storm, slow,
#                                  bystanders, per-user, rooms, retention, prefix,
#                                  publish, batch, heavy, https; topics = bystanders
#                                  to prefix; https, HTTPS and HTTP/2 against ours and
#                                  nchan, runs only when named)
#   BENCH_CONFIG=path.toml         another suite configuration
#   BENCH_QUIET_WAIT=0             do not wait for an idle machine
#   BENCH_MERGE=0|1                keep the earlier results and add this run next to
#                                  them (default: 1 with BENCH_SERVERS or
#                                  BENCH_WORKLOADS, 0 for a full run, which replaces them)
set -euo pipefail
cd "$(dirname "$0")/.."

config=${BENCH_CONFIG:-bench/configs/suite.toml}
results=bench/results/results.json

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# nginx with the nchan module, from the distribution.
if ! command -v nginx >/dev/null 2>&1 || [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
    echo "installing nginx and libnginx-mod-nchan" >&2
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx libnginx-mod-nchan
fi
# Pushpin, and zurl (one of the services its runner starts here: see
# bench/configs/pushpin.conf). The suite runs its own instance, with ports
# and paths of its own, beside the system one Debian may start.
if ! command -v pushpin >/dev/null 2>&1 || ! command -v zurl >/dev/null 2>&1; then
    echo "installing pushpin and zurl" >&2
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pushpin zurl
fi
# Redis, for the two-server target and the one server on a Redis of its own
# (the suite starts its own redis-server).
if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing redis-server" >&2
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server
fi
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }

# The optional peers: skipped (with a warning) when Python or Node is missing.
servers="ours,ours-redis-pair,ours-disk-always,ours-disk-batch,ours-redis-always,ours-redis-everysec,nchan,pushpin,warp-broadcast"
peers=target/bench-peers
if [ ! -x "$peers/venv/bin/uvicorn" ] && command -v python3 >/dev/null; then
    echo "installing sse-starlette and uvicorn into $peers/venv" >&2
    python3 -m venv "$peers/venv" &&
        "$peers/venv/bin/pip" install -q "sse-starlette==3.7.0" "uvicorn[standard]==0.54.0" ||
        echo "warning: could not install sse-starlette" >&2
fi
if [ -x "$peers/venv/bin/uvicorn" ]; then servers="$servers,sse-starlette"; else
    echo "warning: skipping sse-starlette (needs python3 with venv)" >&2; fi
if [ ! -d "$peers/node/node_modules/better-sse" ] && command -v npm >/dev/null; then
    echo "installing better-sse into $peers/node" >&2
    mkdir -p "$peers/node" &&
        npm install --prefix "$peers/node" --no-audit --no-fund --silent better-sse@0.16.1 ||
        echo "warning: could not install better-sse" >&2
fi
if [ -d "$peers/node/node_modules/better-sse" ] && command -v node >/dev/null; then
    servers="$servers,better-sse"; else
    echo "warning: skipping better-sse (needs node and npm)" >&2; fi
if [ "$(nproc)" -lt 2 ]; then
    echo "warning: fewer than 2 CPUs; server and load generator will share one" >&2
fi

cargo build --release -p server -p bench

# Subscribers need many file descriptors: take the hard limit.
ulimit -n "$(ulimit -Hn)"

# Wait until the machine is quiet: less than 10% of all CPUs busy over 2 s.
busy_share() {
    local a b
    a=($(head -1 /proc/stat)); sleep 2; b=($(head -1 /proc/stat))
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) ))
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
deadline=$(( SECONDS + ${BENCH_QUIET_WAIT:-600} ))
while :; do
    busy=$(busy_share)
    [ "$busy" -lt 10 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "warning: the machine is still ${busy}% busy; running anyway (see 'other CPU' in the results)" >&2
        break
    fi
    echo "machine ${busy}% busy; waiting for it to settle" >&2
    sleep 10
done

args=(suite --config "$config" --out "$results" --servers "${BENCH_SERVERS:-$servers}")
[ -n "${BENCH_WORKLOADS:-}" ] && args+=(--workloads "$BENCH_WORKLOADS")
# A run of a subset is kept next to the earlier results instead of replacing
# them (the report's main tables stay on the last full run).
merge=0
[ -n "${BENCH_SERVERS:-}${BENCH_WORKLOADS:-}" ] && merge=1
[ "${BENCH_MERGE:-$merge}" = 1 ] && args+=(--merge)
taskset -c 1 target/release/bench "${args[@]}"
target/release/bench report --results "$results" \
    --template bench/configs/BENCHMARKS.md.in --out BENCHMARKS.md \
    --svg bench/results/latency.svg --reference nchan
echo "wrote BENCHMARKS.md and bench/results/latency.svg" >&2
