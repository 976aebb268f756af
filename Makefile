# One entry point for newcomers and CI. Everything the targets need is installed by the targets themselves:
# the dev toolchain (forge, anvil, cast, solc-js, OpenZeppelin) comes from npm, pinned in package-lock.json.
SHELL := /bin/bash
.DEFAULT_GOAL := test

FORGE := node_modules/.bin/forge
NPM_STAMP := node_modules/.installed-from-lock

.PHONY: deps demo test test-long test-contracts test-contracts-deep test-rust check-fmt check-abi check-package abi fmt gas bench build clean

## deps: install the pinned toolchain (npm ci) when node_modules is missing or older than the lock file
deps: $(NPM_STAMP)
$(NPM_STAMP): package-lock.json package.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## demo: the whole system on an embedded devnet: provider behind the paywall, paying consumer, settlement daemon
demo: deps
	cargo run --locked --quiet -p actp-cli --bin actp -- --data-dir target/demo demo

## build: compile the contracts
build: deps
	$(FORGE) build

## test: every test (contracts: unit, fuzz, invariant; Rust: unit, property, golden, anvil-backed, differential,
## the CLI and settlement daemon as processes, the demo in short form) plus format, lint, ABI-freshness and
## packaging checks
test: deps check-fmt check-abi test-contracts test-rust check-package

test-rust: deps
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked

test-contracts: deps
	$(FORGE) test

## test-long: the limited-RPC history test at full length (20,000 blocks through a 500-block limit; minutes,
## because anvil mines empty blocks in time that grows with the chain)
test-long: deps
	ACTP_LONG_HISTORY=1 cargo test --locked -p actp-e2e --test rpc_limits

## test-contracts-deep: long fuzz and invariant runs (profile `deep`)
test-contracts-deep: deps
	FOUNDRY_PROFILE=deep $(FORGE) test

check-fmt: deps
	$(FORGE) fmt --check
	cargo fmt --all -- --check

# The crates published to crates.io: every crate under crates/ (cli, examples and tests are `publish = false`).
LIBRARY_CRATES := $(notdir $(wildcard crates/*))

## check-package: the library crates as crates.io would get them: each rust-version covers what its dependencies
## need (scripts/check-msrv.mjs), each ships the LICENSE, and `cargo package` packs them (path dependencies become
## the packed versions) and builds each from its .crate alone (about 10 s with a warm target/)
check-package:
	node scripts/check-msrv.mjs
	@for crate in $(LIBRARY_CRATES); do \
	  test -f crates/$$crate/LICENSE || { echo "crates/$$crate/LICENSE missing (a link to ../../LICENSE)"; exit 1; }; \
	done
# --offline: the index entries are already cached by `cargo metadata` above (which downloads what the lock file
# names), and asking the index again for each crate costs about 5 s apiece for nothing. --allow-dirty: this checks
# that the crates pack and build, so it must also pass on the uncommitted work `make test` is run on before a
# commit; `cargo publish` still refuses a dirty tree by itself.
# The verification builds each crate against the others' packed versions, which cargo serves from a temporary
# registry: it unpacks them into $CARGO_HOME/registry/src/-<hash>/ once and never checks a registry crate's
# files again (registry crates are immutable), so after a change under the same version it would build against
# the stale copy and its stale build (a crate would pass or fail for code it does not contain). Both are removed
# first: the unpacked copies, and the builds whose dep-info lists no source file (only registry builds do), in
# the target directory cargo uses ($CARGO_TARGET_DIR when set).
	rm -rf "$${CARGO_HOME:-$$HOME/.cargo}"/registry/src/-*/actp-*
	@for f in "$${CARGO_TARGET_DIR:-target}"/debug/.fingerprint/actp-*/dep-lib-*; do \
	  [ -f "$$f" ] && [ "$$(stat -c %s "$$f")" -le 16 ] && rm -rf "$$(dirname "$$f")"; \
	done; true
	cargo package --locked --offline --allow-dirty $(addprefix -p ,$(LIBRARY_CRATES))

## abi: regenerate crates/actp-client/abi/*.json (read by the Rust bindings) from a fresh forge build
abi: build
	node scripts/export-abi.mjs

## check-abi: fail when the committed ABI differs from a fresh build
check-abi: build
	node scripts/export-abi.mjs --check

fmt: deps
	$(FORGE) fmt
	cargo fmt --all

## gas: gas of each happy-path step as real transactions on anvil; table on stdout, JSON in target/gas.json
gas: deps
	scripts/gas.sh

## bench: hashing, client pipelining, paywall throughput (per call and session; the crypto floor), batch vs
## single settlement, 100 sequential calls with an escrow each vs one session, the paywall on sled vs
## PostgreSQL (1 and 4 replicas) and ledger reservations on both (release builds); figures on stdout, JSON in
## target/bench/
bench: deps
	cargo bench --locked -p actp-core --bench hashing
	cargo bench --locked -p actp-client --bench pipelining
	cargo bench --locked -p actp-axum --bench paywall
	cargo bench --locked -p actp-settler --bench settle
	cargo bench --locked -p actp-e2e --bench sequential
	cargo bench --locked -p actp-e2e --bench fleet

clean:
	rm -rf out cache target broadcast
