#!/usr/bin/env bash
# Instructions per delivery on the fan-out path, counted by valgrind's
# callgrind: repeatable on a shared machine (it counts instructions, not
# seconds), for our server and the warp broadcast baseline.
#
# Each target runs twice under callgrind with the same subscribers and two
# lengths of publishing; the difference of the instruction totals over the
# difference of the deliveries is the marginal cost of one delivery
# (connecting, start-up and shutdown cancel out). Then the same for
# `POST /publish` with no subscriber: wrk (Debian's package) publishes on 8
# connections for two lengths of time, and the difference of the totals over
# the difference of the publishes answered is one publish's instructions.
#
#   scripts/profile.sh                 # both targets, 100 subscribers
#   PROFILE_SUBSCRIBERS=1000 scripts/profile.sh
#   PROFILE_KEEP=1 scripts/profile.sh  # keep the callgrind files (target/profile)
#
# Annotate a kept file with: callgrind_annotate target/profile/ours-long.out
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || {
    echo "valgrind is needed (apt-get install valgrind)" >&2
    exit 1
}
subscribers=${PROFILE_SUBSCRIBERS:-100}
rate=${PROFILE_RATE:-20}
short=${PROFILE_SHORT_S:-2}
long=${PROFILE_LONG_S:-6}
out=target/profile
mkdir -p "$out"

# Release code with line tables, so that callgrind names functions.
cargo build -q --profile profiling -p server -p bench
bin=target/profiling

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# total_ir FILE: the instruction total callgrind wrote.
total_ir() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

# run NAME SECONDS PUBLISH_ONLY: one callgrind run; prints "instructions deliveries events".
run() {
    local name=$1 seconds=$2 subs=$3 port file pid
    port=$(free_port)
    file="$out/$name.out"
    local -a server
    case "$name" in
        ours*) server=("$bin/server" --addr "127.0.0.1:$port" --ticker-interval off --dist /nonexistent) ;;
        baseline*) server=("$bin/baseline" --addr "127.0.0.1:$port") ;;
    esac
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$file" \
        "${server[@]}" >"$out/$name.stdout" 2>"$out/$name.stderr" &
    pid=$!
    for _ in $(seq 1 300); do
        grep -q "listening on" "$out/$name.stdout" 2>/dev/null && break
        curl -m 2 -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    local format=server-event
    [[ "$name" == baseline* ]] && format=raw
    "$bin/bench" run --workload fanout \
        --subscribe "http://127.0.0.1:$port/stream" --publish "http://127.0.0.1:$port/publish" \
        --data-format "$format" --subscribers "$subs" --rate "$rate" --seconds "$seconds" \
        --out "$out/$name.json" >/dev/null 2>"$out/$name.bench.log"
    # Ours shuts down on SIGINT; the baseline has no handler, and under
    # valgrind it does not die of SIGINT either: SIGTERM, which callgrind
    # still writes its counts for.
    case "$name" in
        ours*) kill -INT "$pid" ;;
        *) kill -TERM "$pid" ;;
    esac
    wait "$pid" || true
    python3 - "$out/$name.json" "$(total_ir "$file")" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
step = r.get("steps", [r])[0] if isinstance(r, dict) else r[0]
def find(o, key):
    if isinstance(o, dict):
        if key in o and not isinstance(o[key], (dict, list)):
            return o[key]
        for v in o.values():
            x = find(v, key)
            if x is not None:
                return x
    if isinstance(o, list):
        for v in o:
            x = find(v, key)
            if x is not None:
                return x
    return None
print(sys.argv[2], find(r, "delivered"), find(r, "events"))
EOF
}

report() {
    local target=$1
    read -r ir1 d1 e1 < <(run "$target-short" "$short" "$subscribers")
    read -r ir2 d2 e2 < <(run "$target-long" "$long" "$subscribers")
    python3 - "$target" "$ir1" "$d1" "$e1" "$ir2" "$d2" "$e2" <<'EOF'
import sys
t, ir1, d1, e1, ir2, d2, e2 = sys.argv[1], *map(float, sys.argv[2:])
per_delivery = (ir2 - ir1) / (d2 - d1)
print(f"{t}: {per_delivery:,.0f} instructions per delivery "
      f"({int(d2 - d1):,} more deliveries of {int(e2 - e1):,} more events)")
EOF
}

# publish_run NAME SECONDS: one callgrind run of our server under wrk;
# prints "instructions publishes".
publish_run() {
    local name=$1 seconds=$2 port file pid script answered
    port=$(free_port)
    file="$out/$name.out"
    script="$out/publish.lua"
    cat >"$script" <<'LUA'
wrk.method = "POST"
wrk.body = '{"message":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'
wrk.headers["Content-Type"] = "application/json"
LUA
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$bin/server" --addr "127.0.0.1:$port" --ticker-interval off --dist /nonexistent \
        >"$out/$name.stdout" 2>"$out/$name.stderr" &
    pid=$!
    for _ in $(seq 1 300); do
        curl -m 2 -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    answered=$(wrk -t1 -c8 -d"${seconds}s" -s "$script" "http://127.0.0.1:$port/publish" |
        awk '/requests in/ { print $1 }')
    kill -INT "$pid"
    wait "$pid" || true
    echo "$(total_ir "$file") $answered"
}

report_publish() {
    read -r ir1 n1 < <(publish_run publish-short "$short")
    read -r ir2 n2 < <(publish_run publish-long "$long")
    python3 - "$ir1" "$n1" "$ir2" "$n2" <<'EOF'
import sys
ir1, n1, ir2, n2 = map(float, sys.argv[1:])
print(f"ours: {(ir2 - ir1) / (n2 - n1):,.0f} instructions per publish "
      f"({int(n2 - n1):,} more publishes answered)")
EOF
}

echo "[profile] $subscribers subscribers, $rate events/s, ${short}s and ${long}s of publishing" >&2
report ours
report baseline
if command -v wrk >/dev/null; then
    report_publish
else
    echo "[profile] wrk not found (apt-get install wrk): no publish figure" >&2
fi
[ -n "${PROFILE_KEEP:-}" ] || rm -f "$out"/*.out
