#!/usr/bin/env bash
# Every test of the project, in order: the tools, formatting, the page's
# release build, one build of every test that is also the lint pass
# (clippy), then every test of the workspace through cargo-nextest (the
# server over real TCP, Redis as real redis-server processes, the load
# generator's smoke and fault runs, the page's logic, the page in headless
# Chromium, every committed fuzz input replayed), and, when FUZZ_TIME is
# set, a coverage-guided fuzz pass of FUZZ_TIME seconds per target (CI sets
# 20; scripts/fuzz.sh alone runs longer passes).
#
# Each step prints its time when it ends; the last lines are a table of
# every step's time and how many tests ran.
#
#   scripts/test.sh                 # every test
#   FUZZ_TIME=20 scripts/test.sh    # and 20 s of fuzzing per target (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

FUZZ_TIME=${FUZZ_TIME:-0}
case "$FUZZ_TIME" in
    '' | *[!0-9]*) echo "FUZZ_TIME must be a number of seconds, not '$FUZZ_TIME'" >&2; exit 2 ;;
esac

step_names=()
step_seconds=()
tests_ran=""
all_started=$SECONDS

summary() {
    local status=$?
    printf '\n[test] %-34s %6s\n' step seconds >&2
    local i
    for i in "${!step_names[@]}"; do
        printf '[test] %-34s %6s\n' "${step_names[$i]}" "${step_seconds[$i]}" >&2
    done
    printf '[test] %-34s %6s\n' "all" "$((SECONDS - all_started))" >&2
    [ -n "$tests_ran" ] && printf '[test] %s\n' "$tests_ran" >&2
    if [ "$status" -eq 0 ]; then
        printf '[test] all checks passed\n' >&2
    else
        printf '[test] FAILED (exit %s) in the step after the last one listed\n' "$status" >&2
    fi
}
trap 'summary; [ -z "${page_pid:-}" ] || kill "$page_pid" 2>/dev/null || true' EXIT

# run_step NAME COMMAND...: runs the command, then records and prints how
# long it took.
run_step() {
    local name=$1
    shift
    printf '\n[test] %s\n' "$name" >&2
    local started=$SECONDS
    "$@"
    step_names+=("$name")
    step_seconds+=("$((SECONDS - started))")
    printf '[test] %s: %s s\n' "$name" "$((SECONDS - started))" >&2
}

# The test build is compiled by clippy-driver, which is rustc with Clippy's
# lints: one build is both the lint pass and the tests' build, instead of a
# `cargo clippy` check of the whole dependency tree and then a build of it
# again. Only the workspace's own crates go through it (cargo's
# RUSTC_WORKSPACE_WRAPPER), so dependencies are built once, as usual.
# nextest's own build below sees the same variable and finds everything
# fresh. Every warning of the workspace fails the step, as
# `cargo clippy --workspace --all-targets -- -D warnings` does; cargo replays
# the warnings of crates it does not recompile, so a warm run fails alike.
export RUSTC_WORKSPACE_WRAPPER=clippy-driver

build_and_lint() {
    local messages
    messages=$(mktemp)
    local status=0
    cargo test --workspace --no-run --message-format=json-diagnostic-rendered-ansi \
        >"$messages" || status=$?
    python3 scripts/diagnostics.py "$messages" || status=$?
    rm -f "$messages"
    return "$status"
}

run_tests() {
    local log
    log=$(mktemp)
    local status=0
    cargo nextest run --workspace 2>&1 | tee "$log" || status=$?
    tests_ran=$(grep -E '^ *Summary \[' "$log" | tail -1 | sed 's/^ *//')
    rm -f "$log"
    return "$status"
}

# The page's release build runs beside the test build, in the page's own
# target folder (cargo builds in one target folder one at a time; see
# scripts/page.sh): on two cores each has idle stretches (the page's LTO,
# the tests' links) that the other fills. The browser tests wait for it.
page_dir=$(mktemp -d)
start_page_build() {
    (
        status=0
        started=$(date +%s)
        env -u RUSTC_WORKSPACE_WRAPPER bash scripts/page.sh >"$page_dir/log" 2>&1 || status=$?
        echo "$(($(date +%s) - started))" >"$page_dir/seconds"
        echo "$status" >"$page_dir/status"
    ) &
    page_pid=$!
}
wait_page_build() {
    wait "$page_pid" || true
    if [ "$(cat "$page_dir/status" 2>/dev/null)" != 0 ]; then
        cat "$page_dir/log" >&2
        return 1
    fi
    tail -3 "$page_dir/log" >&2
}

run_step "setup (scripts/setup.sh --for-tests)" bash scripts/setup.sh --for-tests
run_step "cargo fmt --all --check" cargo fmt --all --check
start_page_build
run_step "build every test, with clippy's lints" build_and_lint
run_step "page: wait for trunk build --release" wait_page_build
printf '[test] (the page build took %s s, beside the test build)\n' "$(cat "$page_dir/seconds")" >&2
run_step "tests: cargo nextest run --workspace" run_tests
if [ "$FUZZ_TIME" -gt 0 ]; then
    # The fuzz build is its own (release, sanitizers): no lint pass in it.
    run_step "fuzzing, $FUZZ_TIME s per target" \
        env -u RUSTC_WORKSPACE_WRAPPER FUZZ_TIME="$FUZZ_TIME" bash scripts/fuzz.sh
fi
