#!/usr/bin/env bash
# Installs what building the page (and, with --for-tests, every test) needs,
# skipping whatever is already there: the wasm32 target, rustfmt and clippy,
# trunk, the wasm-bindgen CLI matching Cargo.lock, and for the tests Debian's
# chromium, chromium-driver and curl (the page's browser tests) and
# redis-server (the tests of servers sharing a Redis stream), nginx (the
# deployment test runs deploy/nginx.conf in front of them), python3 and
# cargo-nextest (scripts/test.sh), and for the fuzz targets cargo-fuzz. Then downloads the
# crates so later builds can run with --offline.
#
# Idempotent and quick when everything is present. Works unattended as root
# on a fresh Debian machine with a Rust toolchain (rustup) installed; as
# another user, apt-get runs through sudo.
#
#   scripts/setup.sh                 # build tools only
#   scripts/setup.sh --with-browser  # also chromium + chromedriver, curl
#   scripts/setup.sh --with-fuzz     # also cargo-fuzz (scripts/fuzz.sh)
#   scripts/setup.sh --for-tests     # all of the above, redis-server,
#                                    # nginx, python3 and cargo-nextest
set -euo pipefail
cd "$(dirname "$0")/.."

TRUNK_VERSION=0.21.14
with_browser=0
with_redis=0
with_fuzz=0
with_runner=0
for arg in "$@"; do
    case "$arg" in
        --with-browser) with_browser=1 ;;
        --with-fuzz) with_fuzz=1 ;;
        --for-tests) with_browser=1; with_redis=1; with_fuzz=1; with_runner=1 ;;
        *) echo "usage: $0 [--with-browser] [--with-fuzz] | --for-tests" >&2; exit 2 ;;
    esac
done

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
log() { printf '[setup] %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
    echo "[setup] cargo and rustup are needed first: https://rustup.rs" >&2
    exit 1
fi

# --- Debian packages (one apt-get update, only when something is missing) ---
apt_packages=()
command -v cc >/dev/null || apt_packages+=(build-essential)
command -v pkg-config >/dev/null || apt_packages+=(pkg-config)
if [ "$with_browser" = 1 ]; then
    [ -x /usr/bin/chromium ] || apt_packages+=(chromium)
    [ -x /usr/bin/chromedriver ] || apt_packages+=(chromium-driver)
    # A browser test runs the page's copied resume command.
    command -v curl >/dev/null || apt_packages+=(curl)
fi
if [ "$with_redis" = 1 ]; then
    command -v redis-server >/dev/null || apt_packages+=(redis-server)
    # The deployment test runs nginx itself, in the foreground: the
    # package's service is never needed.
    [ -x /usr/sbin/nginx ] || apt_packages+=(nginx)
fi
if [ "$with_runner" = 1 ]; then
    # scripts/test.sh reads the build's diagnostics with it.
    command -v python3 >/dev/null || apt_packages+=(python3)
fi
if [ "$with_fuzz" = 1 ]; then
    # libfuzzer-sys compiles libFuzzer (C++); the AddressSanitizer runtime
    # comes with the Rust toolchain, so no clang is needed.
    command -v c++ >/dev/null || apt_packages+=(g++)
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    log "apt-get install ${apt_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" </dev/null
fi

# --- Rust components and the wasm target ---
installed_targets=$(rustup target list --installed)
if ! grep -qx wasm32-unknown-unknown <<<"$installed_targets"; then
    log "rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi
for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
        log "rustup component add $component"
        rustup component add "$component"
    fi
done

# --- the tools cargo builds from source (nothing prebuilt can be fetched) ---
# They are built quickly rather than made fast: no LTO, parallel code
# generation and light optimization (trunk's own release profile asks for
# fat LTO and one codegen unit, which took most of its build), and trunk
# without its TLS and update check, which only matter for downloading tools
# (`--offline` never does). Each does in a fraction of a second what the
# project asks of it.
quick_install() {
    CARGO_PROFILE_RELEASE_LTO=false \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
        CARGO_PROFILE_RELEASE_DEBUG=false \
        cargo install --quiet "$@"
}

# --- trunk ---
if [ "$(trunk --version 2>/dev/null || true)" != "trunk $TRUNK_VERSION" ]; then
    log "cargo install trunk $TRUNK_VERSION (takes a few minutes)"
    quick_install trunk --version "$TRUNK_VERSION" --locked --no-default-features
fi

# --- wasm-bindgen CLI, exactly the version the page links against ---
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$bindgen_version" ]; then
    log "generating Cargo.lock"
    cargo generate-lockfile
    bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
fi
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $bindgen_version" ]; then
    log "cargo install wasm-bindgen-cli $bindgen_version (takes a minute or two)"
    quick_install wasm-bindgen-cli --version "$bindgen_version" --force
fi

# --- cargo-nextest, the test runner of scripts/test.sh ---
if [ "$with_runner" = 1 ] && ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo install cargo-nextest (takes a few minutes)"
    quick_install cargo-nextest --locked
fi

# --- cargo-fuzz, for the fuzz targets in fuzz/ ---
if [ "$with_fuzz" = 1 ] && ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo install cargo-fuzz (takes about a minute)"
    quick_install cargo-fuzz --locked
fi

# --- crates, for every target (the page's wasm-only dependencies too) ---
cargo fetch --quiet

log "ready"
