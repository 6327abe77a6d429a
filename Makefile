# pg_oauth — `make demo` shows it working, `make test` runs everything CI runs.
PG_VERSION ?= 15
PG_CONFIG  ?= /usr/lib/postgresql/$(PG_VERSION)/bin/pg_config
FEATURES   := pg$(PG_VERSION)
HARNESS    := --manifest-path tests/harness/Cargo.toml
export PG_VERSION

# PostgreSQL will not run as root: as root, pgrx's test server runs as `postgres`.
ifeq ($(shell id -u),0)
PGRX_TEST_DATA := /tmp/pg_oauth-pgrx-test
PGRX_TEST_FLAGS := --runas postgres --pgdata $(PGRX_TEST_DATA)/data
SUDO_FLAG :=
else
PGRX_TEST_FLAGS :=
SUDO_FLAG := --sudo
endif

.PHONY: test setup lint unit install e2e regress demo bench fuzz soak clean

## Everything CI runs: lint, in-database unit tests, pg_regress, end-to-end tests.
test: setup lint unit install e2e

## Prerequisites: PostgreSQL server + headers, libclang, cargo-pgrx (skipped when present).
setup:
	@bash .ci/setup

lint:
	cargo fmt --check
	cargo fmt $(HARNESS) --check
	cargo clippy --all-targets --no-default-features --features "$(FEATURES) pg_test" -- -D warnings
	cargo clippy $(HARNESS) --all-targets -- -D warnings

## #[pg_test] and #[test] unit tests inside a pgrx-managed server.
unit:
ifeq ($(shell id -u),0)
	mkdir -p $(PGRX_TEST_DATA) && chown postgres:postgres $(PGRX_TEST_DATA)
endif
	cargo pgrx test $(FEATURES) $(PGRX_TEST_FLAGS)

## Build and install the extension into $(PG_CONFIG)'s PostgreSQL.
install:
	cargo pgrx install --no-default-features --features $(FEATURES) --pg-config $(PG_CONFIG) $(SUDO_FLAG)

## pg_regress suite and end-to-end tests against throwaway clusters (needs `install`).
e2e:
	cargo test $(HARNESS)

regress:
	cargo test $(HARNESS) --test regress

## A throwaway cluster, a client, a token issued, verified and revoked.
demo: setup install
	cargo run -q $(HARNESS) --bin demo

## Benchmarks (not part of `make test`): release build, throwaway cluster, BENCHMARKS.md.
bench:
	@bash .ci/setup --bench
	cargo pgrx install --release --no-default-features --features $(FEATURES) --pg-config $(PG_CONFIG) $(SUDO_FLAG)
	cargo run -q $(HARNESS) --bin bench

## Long runs (not part of `make test`, which runs short ones): >1.5 million fuzzed parser
## inputs plus 20,000 rounds of random SQL/HTTP input, and a 60 s eight-connection soak.
fuzz: setup install
ifeq ($(shell id -u),0)
	mkdir -p $(PGRX_TEST_DATA) && chown postgres:postgres $(PGRX_TEST_DATA)
endif
	PG_OAUTH_FUZZ_CASES=220000 cargo pgrx test $(FEATURES) fuzz $(PGRX_TEST_FLAGS)
	PG_OAUTH_FUZZ_SQL_CASES=20000 cargo test $(HARNESS) --test fuzz_sql -- --nocapture

soak: setup install
	PG_OAUTH_SOAK_SECONDS=60 cargo test $(HARNESS) --test soak -- --nocapture

clean:
	cargo clean
	cargo clean $(HARNESS)
