# edgevideo: the two commands of the README, and the steps behind them.
.PHONY: run test test-browser setup build check deploy-dry-run clean

## Set up (if needed), build, apply the D1 migrations locally and start on 127.0.0.1.
run: build
	bash scripts/dev.sh

## Set up (if needed) and run all tests.
test:
	bash scripts/test.sh

## Only the browser tests (Chromium + playwright-core against wrangler dev).
test-browser: build
	. scripts/env.sh && node --test --test-reporter=spec tests/browser/*.test.mjs

setup:
	bash scripts/setup.sh

build: setup
	bash scripts/build-worker.sh
	cargo build --release --quiet -p edgevideo-transcoder --bin transcoder

check: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

deploy-dry-run: build
	. scripts/env.sh && wrangler deploy --dry-run --containers-rollout=none --outdir target/deploy-dry-run

clean:
	rm -rf target workers/cloudflare/build .wrangler
