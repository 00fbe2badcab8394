# edgevideo: the two commands of the README, and the steps behind them.
.PHONY: run test setup build check deploy-dry-run clean

## Set up (if needed), build, apply the D1 migrations locally and start on 127.0.0.1.
run: build
	bash scripts/dev.sh

## Set up (if needed) and run all tests.
test:
	bash scripts/test.sh

setup:
	bash scripts/setup.sh

build: setup
	bash scripts/build-worker.sh

check: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

deploy-dry-run: build
	. scripts/env.sh && wrangler deploy --dry-run --outdir target/deploy-dry-run

clean:
	rm -rf target workers/cloudflare/build .wrangler
