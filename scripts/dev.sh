#!/usr/bin/env bash
# Builds the page and runs the server, which serves it at /.
#
#   scripts/dev.sh                           # http://127.0.0.1:3000/
#   scripts/dev.sh --addr 127.0.0.1:8000     # any server option (see --help)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

echo "[dev] building the page into dist/" >&2
trunk build --release --offline
echo "[dev] building the server" >&2
cargo build --release -p server
echo "[dev] starting the server; open the address it prints below in a browser (Ctrl-C stops it)" >&2
exec cargo run --release -q -p server -- "$@"
