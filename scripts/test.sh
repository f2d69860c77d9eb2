#!/usr/bin/env bash
# Everything CI checks, in order: tools, formatting, lints, the page build,
# then every test of the workspace (server over real TCP, the benchmark's
# smoke test, the page's logic, and the page in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n[test] %s\n' "$*" >&2; }

step "setup"
bash scripts/setup.sh --for-tests
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "trunk build --release --offline (the page, into dist/)"
trunk build --release --offline

step "cargo test --workspace"
cargo test --workspace

step "all checks passed"
