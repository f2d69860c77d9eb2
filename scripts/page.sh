#!/usr/bin/env bash
# Builds the release page into dist/ (trunk, offline), in its own cargo
# target folder, target/page, so that it can build while another cargo
# build uses target/ (cargo builds in one target folder one at a time):
# scripts/dev.sh builds the server beside it, scripts/test.sh the tests.
# Arguments go to `trunk build`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
CARGO_TARGET_DIR="$PWD/target/page" exec trunk build --release --offline "$@"
