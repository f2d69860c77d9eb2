#!/usr/bin/env bash
# Builds the page and runs the server, which serves it at /.
#
#   scripts/dev.sh                           # http://127.0.0.1:3000/
#   scripts/dev.sh --addr 127.0.0.1:8000     # any server option (see --help)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# The page (in its own target folder, scripts/page.sh) and the server
# build side by side.
echo "[dev] building the page into dist/ and the server" >&2
mkdir -p target
bash scripts/page.sh >target/page-build.log 2>&1 &
page=$!
cargo build --release -p server
if ! wait "$page"; then
    cat target/page-build.log >&2
    exit 1
fi
echo "[dev] starting the server; open the address it prints below in a browser (Ctrl-C stops it)" >&2
exec cargo run --release -q -p server -- "$@"
