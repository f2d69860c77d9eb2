#!/usr/bin/env bash
# Everything CI checks, in order: tools, formatting, lints, the page build,
# then every test of the workspace (server over real TCP, the benchmark's
# smoke test, the page's logic, and the page in headless Chromium), then a
# short pass of every fuzz target (FUZZ_TIME seconds each, default 20; the
# committed regression inputs are replayed first).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n[test] %s\n' "$*" >&2; }

step "setup"
bash scripts/setup.sh --for-tests
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

step "cargo fmt --all --check (and the fuzz crate, its own workspace)"
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "trunk build --release --offline (the page, into dist/)"
trunk build --release --offline

step "cargo test --workspace"
cargo test --workspace

step "fuzz targets, ${FUZZ_TIME:-20} s each (scripts/fuzz.sh)"
FUZZ_TIME="${FUZZ_TIME:-20}" bash scripts/fuzz.sh

step "all checks passed"
