# edgevideo: the two commands of the README, and the steps behind them.
.PHONY: run test bench test-browser setup build build-worker check deploy-dry-run clean build-spin run-spin spin-component spin-host spin-check fuzz
# Recipes source scripts/env.sh, which is bash.
SHELL := bash

## Set up (if needed), build, apply the D1 migrations locally and start on 127.0.0.1.
run: build
	bash scripts/dev.sh

## Every benchmark, one table (see README "Performance").
bench:
	bash bench/run.sh

## Set up (if needed) and run all tests.
test:
	bash scripts/test.sh

## Only the browser tests (Chromium + playwright-core against wrangler dev).
test-browser: build-worker
	cargo build --quiet -p edgevideo-transcoder --bin transcoder
	cargo build --quiet -p edgevideo-gateway --bin gateway
	. scripts/env.sh && node --test --test-reporter=spec tests/browser/*.test.mjs

## The set-up; skipped under `make test`'s offline run (EDGEVIDEO_OFFLINE=1), which did it first.
setup:
	[ "$${EDGEVIDEO_OFFLINE:-}" = 1 ] || bash scripts/setup.sh

## The Cloudflare worker (workers/cloudflare/build) and the web assets.
build-worker: setup
	bash scripts/build-worker.sh

build: build-worker
	cargo build --release --quiet -p edgevideo-transcoder --bin transcoder
	cargo build --profile gateway --quiet -p edgevideo-gateway --bin gateway

check: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## Fuzzing (cargo fuzz): installs cargo-fuzz if needed, runs every target for FUZZ_SECONDS
## (default 30) each, or only FUZZ_TARGETS. See fuzz/README.md.
fuzz:
	FUZZ_SECONDS=$${FUZZ_SECONDS:-30} bash scripts/fuzz.sh $(FUZZ_TARGETS)

## `wrangler deploy --dry-run` of the configuration and the built worker, into DRY_RUN_OUT.
DRY_RUN_OUT ?= target/deploy-dry-run
deploy-dry-run: build-worker
	. scripts/env.sh && wrangler deploy --dry-run --containers-rollout=none --outdir $(DRY_RUN_OUT)

clean:
	rm -rf target workers/cloudflare/build .wrangler

# --- Spin ----------------------------------------------------------------------------------
SPIN_WASM = target/spin/edgevideo_spin.wasm
SPIN_HOST_DIR = tests/spin-host
SPIN_HOST = target/spin-host/release/edgevideo-spin-host

## Set up (if needed), build the Spin component and the Spin test host.
build-spin: setup
	$(MAKE) --no-print-directory spin-component spin-host

## Serve the Spin component in the Spin test host on 127.0.0.1 (PORT, STATE as for `run`).
run-spin: build-spin
	$(SPIN_HOST) --manifest spin.toml --state $${STATE:-target/spin-state} \
	  --listen 127.0.0.1:$${PORT:-3000} --env-file config/dev.env

## The Spin component (wasm32-wasip2, the workspace's size profile) at $(SPIN_WASM); this is
## the build command of spin.toml. Uses the Wasm toolchain chosen by scripts/setup.sh.
spin-component:
	@bash -ec '. scripts/env.sh; . "$$CACHE/wasm-env.sh"; \
	CARGO_PROFILE_RELEASE_STRIP=symbols \
	  cargo build --quiet --release --target wasm32-wasip2 -p edgevideo-spin; \
	mkdir -p target/spin; \
	cp "$${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/edgevideo_spin.wasm" $(SPIN_WASM); \
	printf "[build] spin component: %s bytes raw, %s bytes gzip\n" \
	  "$$(stat -c %s $(SPIN_WASM))" "$$(gzip -9c $(SPIN_WASM) | wc -c)"'

## The Spin test host (native; its own workspace and lockfile). Built in the cache
## (SPIN_HOST_TARGET_DIR, set by scripts/env.sh) so that clones share it, and linked at
## $(SPIN_HOST).
spin-host:
	. scripts/env.sh && cd $(SPIN_HOST_DIR) && cargo build --quiet --release --locked \
	  --target-dir "$$SPIN_HOST_TARGET_DIR"
	@. scripts/env.sh && mkdir -p target/spin-host/release && \
	  { [ "$$SPIN_HOST_TARGET_DIR" -ef target/spin-host ] || \
	    ln -sfn "$$SPIN_HOST_TARGET_DIR/release/edgevideo-spin-host" $(SPIN_HOST); }

## Formatting, lints and unit tests of the Spin test host (the component is in the
## workspace's `check` and `cargo test`), plus clippy of the component for its Wasm target.
spin-check:
	cd $(SPIN_HOST_DIR) && cargo fmt -- --check
	. scripts/env.sh && cd $(SPIN_HOST_DIR) && cargo clippy --quiet --locked --all-targets \
	  --target-dir "$$SPIN_HOST_TARGET_DIR" -- -D warnings
	. scripts/env.sh && cd $(SPIN_HOST_DIR) && cargo test --quiet --release --locked \
	  --target-dir "$$SPIN_HOST_TARGET_DIR"
	@bash -ec '. scripts/env.sh; . "$$CACHE/wasm-env.sh"; \
	cargo clippy --quiet --target wasm32-wasip2 -p edgevideo-spin -- -D warnings'
