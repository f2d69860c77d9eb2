#!/usr/bin/env bash
# Remakes docs/inspector.png, the README's picture of the page as a stream
# inspector: builds the page, then runs the real server with the ticker and
# a few publishers behind the test proxy (one cut connection, one burst held
# back and released), opens an event's details in headless Chromium and
# saves a 1280x900 screenshot. Takes about a minute and a half once built.
#
#   scripts/screenshot.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --with-browser
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

bash scripts/page.sh
# The screenshot starts the server binary built beside it.
cargo build -q -p e2e --bins
cargo run -q -p e2e --bin screenshot -- "${1:-docs/inspector.png}"
