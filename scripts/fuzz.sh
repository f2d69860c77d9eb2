#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (cargo-fuzz: libFuzzer with AddressSanitizer)
# for FUZZ_TIME seconds each, every target or the ones named, then prints
# per target the executions, executions per second and corpus size from
# libFuzzer's final stats.
#
# fuzz/ is a member of the workspace: the targets' code is its library
# (fuzz/src/targets/), which `cargo test -p fuzz` runs on every committed
# input without libFuzzer. The libFuzzer binaries need the crate's
# `libfuzzer` feature, so every cargo-fuzz command here passes
# `--features libfuzzer`; they are built in the workspace's target folder
# (target/x86_64-unknown-linux-gnu/release/TARGET).
#
#   scripts/fuzz.sh                       # every target, 300 s each
#   FUZZ_TIME=20 scripts/fuzz.sh          # the short pass of scripts/test.sh
#   FUZZ_TIME=3600 scripts/fuzz.sh parse  # one target, an hour
#
# Each run reads the committed seeds (fuzz/corpus/TARGET) and the kept
# crashing inputs (fuzz/regressions/TARGET) first, so a regression that comes
# back fails at once, and grows a working corpus in fuzz/work/TARGET
# (git-ignored), which the next run starts from. A crash leaves its input in
# fuzz/artifacts/TARGET/; minimize it (`cargo fuzz tmin --features libfuzzer
# TARGET FILE`, with the two variables below) and keep it in
# fuzz/regressions/TARGET/ once the bug is understood. Logs: fuzz/work/logs/.
#
# Exits non-zero when any target failed. Needs cargo-fuzz (scripts/setup.sh
# --with-fuzz installs it); its nightly-only -Z flags work on the stable
# toolchain with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export RUSTC_BOOTSTRAP=1
# The workspace's release profile has `lto = "thin"` (for the server);
# cargo-fuzz's sanitizer-coverage instrumentation and cross-crate LTO do not
# mix (rust-fuzz/cargo-fuzz#384: undefined __sancov_gen_ symbols at link),
# so the fuzz build keeps cargo's default, as when fuzz/ was its own
# workspace.
export CARGO_PROFILE_RELEASE_LTO=false

FUZZ_TIME=${FUZZ_TIME:-300}
ALL_TARGETS=(parse encode last_event_id publish_body token http_request)
log() { printf '[fuzz] %s\n' "$*" >&2; }

case "$FUZZ_TIME" in
    '' | *[!0-9]*) echo "FUZZ_TIME must be a number of seconds, not '$FUZZ_TIME'" >&2; exit 2 ;;
esac
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for target in "${targets[@]}"; do
    if [[ ! " ${ALL_TARGETS[*]} " =~ " $target " ]]; then
        echo "usage: $0 [TARGET...]   (targets: ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: scripts/setup.sh --with-fuzz installs it" >&2
    exit 1
fi

dictionary() {
    case "$1" in
        parse | encode) echo fuzz/sse.dict ;;
        publish_body | token) echo fuzz/json.dict ;;
        *) echo fuzz/http.dict ;;
    esac
}

# One build for all, so cargo compiles the shared dependencies once.
started=$SECONDS
if [ "${#targets[@]}" -eq "${#ALL_TARGETS[@]}" ]; then
    log "cargo fuzz build (every target)"
    cargo fuzz build --features libfuzzer
else
    for target in "${targets[@]}"; do
        log "cargo fuzz build $target"
        cargo fuzz build --features libfuzzer "$target"
    done
fi
log "built in $((SECONDS - started)) s"

mkdir -p fuzz/work/logs
summary=()
failed=()
for target in "${targets[@]}"; do
    work="fuzz/work/$target"
    mkdir -p "$work"
    # New inputs go to the first folder: the working corpus, never the seeds.
    corpora=("$work" "fuzz/corpus/$target")
    [ -d "fuzz/regressions/$target" ] && corpora+=("fuzz/regressions/$target")
    logfile="fuzz/work/logs/$target.log"
    log "$target: ${FUZZ_TIME} s (log: $logfile)"
    status=0
    cargo fuzz run --features libfuzzer "$target" "${corpora[@]}" -- \
        -max_total_time="$FUZZ_TIME" \
        -timeout=30 \
        -dict="$PWD/$(dictionary "$target")" \
        -print_final_stats=1 >"$logfile" 2>&1 || status=$?

    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logfile" | tail -1)
    per_second=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logfile" | tail -1)
    # "#N DONE cov: C ft: F corp: UNITS/BYTES ...": coverage and the corpus
    # libFuzzer held at the end (the last status line, after a crash).
    status_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$logfile" | tail -1 || true)
    corpus=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$status_line")
    coverage=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status_line")
    if [ "$status" -eq 0 ]; then
        result=ok
    else
        failed+=("$target")
        if grep -qE '^#[0-9]+[[:space:]]+INITED' "$logfile"; then
            result="FAILED: new crashing input"
        else
            result="FAILED on a corpus input (seed, regression or working corpus)"
        fi
        grep -m1 -A2 -E "panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)" "$logfile" >&2 || true
        grep -m1 -o "Test unit written to .*" "$logfile" >&2 || true
        log "$target: full output in $logfile"
    fi
    summary+=("$(printf '%-14s %10s %8s %20s %7s   %s' "$target" "${executions:--}" \
        "${per_second:--}" "${corpus:--}" "${coverage:--}" "$result")")
done

printf '\n%-14s %10s %8s %20s %7s   %s\n' target executions "exec/s" "corpus (units/size)" cov result
printf '%s\n' "${summary[@]}"
printf '(%s s per target; whole run %s s)\n' "$FUZZ_TIME" "$((SECONDS - started))"
if [ "${#failed[@]}" -gt 0 ]; then
    log "failed: ${failed[*]}"
    exit 1
fi
