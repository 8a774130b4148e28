# revurb: build, run, test. `make run` serves a development app on 127.0.0.1:8080.
PREFIX ?= /usr/local
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl

# The development app `make run` serves (pusher-js: key app-key, host 127.0.0.1, port 8080).
DEV_ENV := REVERB_APP_ID=app-id REVERB_APP_KEY=app-key REVERB_APP_SECRET=app-secret

.PHONY: build run test unit interop lint static install clean bench bench-instructions soak fuzz

build:
	$(CARGO) build --release

run: build
	$(DEV_ENV) ./target/release/revurb start --host 127.0.0.1 --port 8080

# Every test: unit, scenario and integration tests (cargo), then the interop
# tests with the official Pusher clients and SDKs (node, and the Python SDK in
# tests/interop/.venv; tests/interop/run.sh installs both when missing).
test: unit interop

unit:
	$(CARGO) test --workspace --all-targets

interop:
	$(CARGO) build
	REVURB_BIN=$(CURDIR)/target/debug/revurb tests/interop/run.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

static:
	rustup target add $(MUSL_TARGET)
	$(CARGO) build --release --target $(MUSL_TARGET)
	@file target/$(MUSL_TARGET)/release/revurb
	@ls -l target/$(MUSL_TARGET)/release/revurb

# The binary and the man pages: revurb(1), revurb.json(5), revurb-protocol(7),
# revurb-scaling(7). The contrib/ files expect the default PREFIX: /usr/local/bin/revurb.
MAN_DIR = $(DESTDIR)$(PREFIX)/share/man

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(MAN_DIR)/man1 $(MAN_DIR)/man5 $(MAN_DIR)/man7
	install -m 0755 target/release/revurb $(DESTDIR)$(PREFIX)/bin/revurb
	install -m 0644 man/*.1 $(MAN_DIR)/man1/
	install -m 0644 man/*.5 $(MAN_DIR)/man5/
	install -m 0644 man/*.7 $(MAN_DIR)/man7/

clean:
	$(CARGO) clean
	rm -rf tests/interop/node_modules tests/interop/.venv

# Benchmarks (issue 5): build the server and the load generator in release, run the
# standard set with the server pinned to CPU 0 and the generator to CPU 1 (when taskset
# exists and there are two CPUs), and write the table to benches/RESULTS.md.
BENCH_PIN := $(shell command -v taskset >/dev/null 2>&1 && [ "$$(nproc)" -ge 2 ] && echo "--server-cpu 0 --cpu 1")
BENCH_RUN = ./target/release/loadgen $(1) --spawn ./target/release/revurb $(BENCH_PIN) | tee -a benches/results.jsonl

bench:
	$(CARGO) build --release --workspace
	@rm -f benches/results.jsonl
	$(call BENCH_RUN,conns --n 10000 --rate 5000 --channels 10 --hold 5)
	$(call BENCH_RUN,conns --n 19000 --rate 5000 --channels 10 --hold 5)
	$(call BENCH_RUN,fanout --n 10000 --channels 1 --rate 5 --duration 10)
	$(call BENCH_RUN,fanout --n 1000 --channels 10 --rate 200 --duration 10)
	$(call BENCH_RUN,api --connections 4 --duration 5)
	$(call BENCH_RUN,clientevents --n 1000 --group 2 --rate 1000 --duration 10)
	$(call BENCH_RUN,slowconsumer --n 100 --channels 1 --rate 200 --payload 4000 --duration 8 --slow 5)
	@{ echo "# revurb benchmark results"; echo; \
	  echo "Written by \`make bench\` on $$(date -u +%Y-%m-%d) ($$(nproc) CPUs, $$(uname -sr)); one JSON line per run in benches/results.jsonl."; \
	  echo "Server: \`revurb start\` with the dev app, spawned by the generator; \`--server-cpu 0 --cpu 1\` pin the server (taskset) and the generator to one CPU each."; \
	  echo; ./target/release/loadgen table < benches/results.jsonl; \
	  if [ -f benches/instructions.md ]; then echo; cat benches/instructions.md; fi; \
	  if [ -f benches/soak.md ]; then echo; cat benches/soak.md; fi; } > benches/RESULTS.md
	@cat benches/RESULTS.md

# Cross-node fanout over Redis (needs redis-server): 3 nodes, subscribers on nodes 2-3,
# publishes through node 1; prints the JSON line.
bench-cluster:
	$(CARGO) build --release --workspace
	./target/release/loadgen cluster --spawn ./target/release/revurb --nodes 3 --n 1000 --channels 10 --rate 200 --duration 10

# Instructions per unit of work under callgrind, old binary against new (needs valgrind):
# make bench-instructions OLD=/path/to/old/revurb; writes benches/instructions.md,
# which `make bench` appends to benches/RESULTS.md.
bench-instructions:
	$(CARGO) build --release --workspace
	benches/instructions.sh $(OLD) ./target/release/revurb ./target/release/loadgen

# Soak (issue 11): SOAK_DURATION (default 60m) of churning connections (public, private,
# presence and cache channels, client events, sign-in, clean and abrupt ends) beside steady
# subscribers receiving a steady publish rate, with the server's RSS and open fds sampled.
# Writes benches/soak.json (the JSON line) and benches/soak.md (which `make bench` appends
# to benches/RESULTS.md) and copies soak.md into RESULTS.md now; fails when the run is not ok.
SOAK_DURATION ?= 60m
SOAK_ARGS ?= --n 500 --channels 10 --rate 20 --churn 200 --sample 5

soak:
	$(CARGO) build --release --workspace
	./target/release/loadgen soak --spawn ./target/release/revurb $(BENCH_PIN) --duration $(SOAK_DURATION) $(SOAK_ARGS) > benches/soak.json
	@{ echo "## Soak"; echo; \
	  echo "Written by \`make soak\` on $$(date -u +%Y-%m-%d) ($$(nproc) CPUs, $$(uname -sr)) against a release build of $$(git rev-parse --short HEAD 2>/dev/null || echo '?'); the JSON line is benches/soak.json. Flat: the run is cut in quarters by time, the first one is warm-up, drift = last-quarter mean minus second-quarter mean, and RSS and fds are flat when |drift| is within the bound shown."; \
	  echo; ./target/release/loadgen soakmd < benches/soak.json; } > benches/soak.md
	@if [ -f benches/RESULTS.md ]; then \
	  sed -i '/^## Soak$$/,$$d' benches/RESULTS.md; \
	  sed -i -e :a -e '/^\n*$$/{$$d;N;ba' -e '}' benches/RESULTS.md; \
	  { echo; cat benches/soak.md; } >> benches/RESULTS.md; fi
	@cat benches/soak.md
	@grep -q '"ok":true' benches/soak.json

# Fuzzing (issue 11; needs the nightly toolchain and cargo-fuzz:
# `cargo +nightly install cargo-fuzz --locked`): run each target of fuzz/ for
# FUZZ_SECONDS, starting from its seeds in fuzz/corpus/<target>/ (what it
# finds there is kept locally, not committed). A crash stops the run and
# leaves its input in fuzz/artifacts/<target>/; each one found becomes a
# regression test in the normal test suite. FUZZ_TARGETS picks some.
# -len_control=0: the structured targets reach far more of the core with
# inputs of full length from the start (cluster_remote: 6578 edges in 150 s
# with it, 5091 in 60 s without).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(shell sed -n 's/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml | grep -v '^revurb-fuzz$$')

fuzz:
	cargo +nightly fuzz build
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -len_control=0 -print_final_stats=1 || exit 1; \
	done
