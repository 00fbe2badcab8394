#!/usr/bin/env bash
# One idempotent set-up for a fresh machine: system packages, the Wasm toolchain, the pinned
# build tools, the npm tools (wrangler, Node 22, esbuild, wasm-opt), the Python test
# environment, and every crate fetched so that builds and tests then run offline.
# Fast when everything is already there: each step checks before it installs.
#
# Tools are cached outside the work tree, in $EDGEVIDEO_CACHE (default ~/.cache/edgevideo),
# keyed by version, so fresh clones reuse them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${EDGEVIDEO_CACHE:-$HOME/.cache/edgevideo}
TOOLS=$CACHE/tools
WORKER_BUILD_VERSION=0.8.7   # same minor as the `worker` crate in Cargo.lock
mkdir -p "$TOOLS/bin"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
lock_version() { awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/"/, "", $3); print $3; exit }' "$ROOT/Cargo.lock"; }

apt_ready=0
apt_install() {
  if [ "$apt_ready" = 0 ]; then
    say "apt-get update"
    apt-get update -q >/dev/null
    apt_ready=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# --- 1. system packages -------------------------------------------------------------------
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v curl >/dev/null || missing+=(curl)
# The gateway tests make a self-signed certificate for RTMPS.
command -v openssl >/dev/null || missing+=(openssl)
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
# The browser tests: Debian's Chromium (driven by playwright-core; no browser download) and
# a colour emoji font so that reactions render in the screenshots.
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || missing+=(fonts-noto-color-emoji)
# A second RTMP client for the gateway's tests: GStreamer's rtmp2sink (-bad) with flvmux
# (-good), x264enc (-ugly) and voaacenc (-bad).
gst_pkgs=(gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
          gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly)
dpkg -s "${gst_pkgs[@]}" >/dev/null 2>&1 || missing+=("${gst_pkgs[@]}")
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# --- 2. Wasm toolchain ----------------------------------------------------------------------
# Prefer the installed rustup target; else try to add it; else build std from source with
# Debian's rustc-web (no toolchain download needed). The choice is written to wasm-env.sh,
# which the build sources.
WASM_ENV=$CACHE/wasm-env.sh
choice=${EDGEVIDEO_WASM_TOOLCHAIN:-auto}
# Targets: wasm32-unknown-unknown (Cloudflare) and wasm32-wasip2 (the Spin component).
WASM_TARGETS=(wasm32-unknown-unknown wasm32-wasip2)
has_rustup_target() {
  command -v rustup >/dev/null || return 1
  local installed; installed=$(rustup target list --installed 2>/dev/null)
  for t in "${WASM_TARGETS[@]}"; do grep -qx "$t" <<<"$installed" || return 1; done
}
if [ "$choice" = auto ] && ! has_rustup_target && command -v rustup >/dev/null; then
  say "rustup target add ${WASM_TARGETS[*]}"
  timeout 180 rustup target add "${WASM_TARGETS[@]}" >/dev/null 2>&1 || say "rustup could not add the targets; using Debian's toolchain"
fi
if [ "$choice" = auto ] && has_rustup_target; then
  echo "# Wasm builds use the rustup toolchain's ${WASM_TARGETS[*]} targets." > "$WASM_ENV"
else
  # Debian route: rustc-web + rust-web-src, std built with -Zbuild-std, a private sysroot so
  # that `rustc --target wasm32-unknown-unknown --print target-libdir` exists (worker-build
  # checks it), nothing under /usr/lib/rustlib changed.
  # wasi-libc: the C library of the WASI targets (wasm32-wasip2, for Spin).
  debian_pkgs=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc)
  dpkg -s "${debian_pkgs[@]}" >/dev/null 2>&1 || apt_install "${debian_pkgs[@]}"
  src=$(ls -d /usr/src/rustc-1.* | sort -V | tail -1)
  sysroot=$CACHE/debian-sysroot
  mkdir -p "$sysroot/lib/rustlib/src" "$sysroot/lib/rustlib/wasm32-unknown-unknown/lib" "$CACHE/debian-bin"
  ln -sfn /usr/lib/rustlib/x86_64-unknown-linux-gnu "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu"
  ln -sfn /usr/lib/rustlib/etc "$sysroot/lib/rustlib/etc"
  ln -sfn "$src" "$sysroot/lib/rustlib/src/rust"
  # wasm32-wasip2 (Spin): std from source too, Debian's wasi-libc as its self-contained libc.
  mkdir -p "$sysroot/lib/rustlib/wasm32-wasip2/lib/self-contained"
  for f in /usr/lib/wasm32-wasi/*.a /usr/lib/wasm32-wasi/*.o; do
    ln -sfn "$f" "$sysroot/lib/rustlib/wasm32-wasip2/lib/self-contained/"
  done
  printf '#!/bin/sh\nexec /usr/bin/rustc --sysroot %s "$@"\n' "$sysroot" > "$CACHE/debian-bin/rustc"
  chmod +x "$CACHE/debian-bin/rustc"
  cat > "$WASM_ENV" <<ENV
# Wasm builds use Debian's rustc-web with std built from source.
export PATH="$CACHE/debian-bin:/usr/bin:\$PATH"
export RUSTC="$CACHE/debian-bin/rustc"
export RUSTC_BOOTSTRAP=1
export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
export CARGO_TARGET_DIR="$ROOT/target/debian-wasm"
ENV
fi

# --- 3. npm tools: wrangler (+ workerd), Node 22 for it, esbuild, wasm-opt -----------------
stamp=$ROOT/node_modules/.edgevideo-lock
if [ ! -f "$stamp" ] || ! cmp -s "$ROOT/package-lock.json" "$stamp"; then
  say "npm ci"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$ROOT/package-lock.json" "$stamp"
fi

# --- 4. Rust tools that turn the cdylib into a Worker, pinned --------------------------------
version_of() { "$TOOLS/bin/$1" --version 2>/dev/null | awk '{print $NF}'; }
if [ "$(version_of worker-build)" != "$WORKER_BUILD_VERSION" ]; then
  say "cargo install worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install worker-build --version "=$WORKER_BUILD_VERSION" --locked --root "$TOOLS" --quiet
fi
WASM_BINDGEN_VERSION=$(lock_version wasm-bindgen)
if [ "$(version_of wasm-bindgen)" != "$WASM_BINDGEN_VERSION" ]; then
  # Not --locked: the CLI's own lockfile pins a crate version the registry no longer serves.
  say "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --root "$TOOLS" --quiet
fi

# --- 5. Python test environment ---------------------------------------------------------------
req=$ROOT/tests/requirements.txt
venv=$CACHE/venv-$(sha256sum "$req" | cut -c1-12)
if [ ! -x "$venv/bin/pytest" ]; then
  say "python venv with tests/requirements.txt"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
fi
ln -sfn "$venv" "$CACHE/venv"

# --- 6. crates, so that everything after this runs without a network -------------------------
(cd "$ROOT" && cargo fetch --quiet)
# The Spin test host is its own workspace (native, kept out of the Wasm size profile).
(cd "$ROOT/tests/spin-host" && cargo fetch --quiet --locked)
# Fuzzing only when asked for (EDGEVIDEO_FUZZ=1, or `make fuzz`): cargo-fuzz pinned into
# $CACHE/tools (about 1.5 minutes once) and the fuzz workspace's crates.
if [ "${EDGEVIDEO_FUZZ:-}" = 1 ]; then bash "$ROOT/scripts/fuzz.sh" --install-only; fi
say "ready"
