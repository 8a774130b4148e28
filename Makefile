# revurb: build, run, test. `make run` serves a development app on 127.0.0.1:8080.
PREFIX ?= /usr/local
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl
ARM_TARGET := aarch64-unknown-linux-musl
# The aarch64 binary is cross-built with Debian's gcc-aarch64-linux-gnu: it
# compiles ring's C and assembly and links (Rust's musl target brings its own
# libc and start files).
ARM_GCC ?= aarch64-linux-gnu-gcc
ARM_ENV := CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=$(ARM_GCC) \
	CC_aarch64_unknown_linux_musl=$(ARM_GCC) \
	AR_aarch64_unknown_linux_musl=$(ARM_GCC:gcc=ar)

# The development app `make run` serves (pusher-js: key app-key, host 127.0.0.1, port 8080).
DEV_ENV := REVERB_APP_ID=app-id REVERB_APP_KEY=app-key REVERB_APP_SECRET=app-secret

.PHONY: build run test unit interop lint static static-x86_64 static-aarch64 install clean bench bench-instructions bench-webhooks bench-drain counts-bench soak fuzz

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

# Static binaries for x86-64 and aarch64 Linux (needs musl-tools and
# gcc-aarch64-linux-gnu); `make static-x86_64` or `make static-aarch64` builds one.
static: static-x86_64 static-aarch64

static-x86_64:
	rustup target add $(MUSL_TARGET)
	$(CARGO) build --release --bin revurb --target $(MUSL_TARGET)
	@file target/$(MUSL_TARGET)/release/revurb
	@ls -l target/$(MUSL_TARGET)/release/revurb

static-aarch64:
	rustup target add $(ARM_TARGET)
	$(ARM_ENV) $(CARGO) build --release --bin revurb --target $(ARM_TARGET)
	@file target/$(ARM_TARGET)/release/revurb
	@ls -l target/$(ARM_TARGET)/release/revurb

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
# standard set (TLS rows: issue 15) with the server pinned to CPU 0 and the generator to CPU 1 (when taskset
# exists and there are two CPUs), and write the table to benches/RESULTS.md.
# a comma inside $(call ...) arguments
, := ,
BENCH_PIN := $(shell command -v taskset >/dev/null 2>&1 && [ "$$(nproc)" -ge 2 ] && echo "--server-cpu 0 --cpu 1")
BENCH_RUN = ./target/release/loadgen $(1) --spawn ./target/release/revurb $(BENCH_PIN) | tee -a benches/results.jsonl

bench:
	$(CARGO) build --release --workspace
	@rm -f benches/results.jsonl
	$(call BENCH_RUN,conns --n 10000 --rate 5000 --channels 10 --hold 5)
	$(call BENCH_RUN,conns --n 19000 --rate 5000 --channels 10 --hold 5)
	$(call BENCH_RUN,fanout --n 10000 --channels 1 --rate 5 --duration 10)
	$(call BENCH_RUN,fanout --n 1000 --channels 10 --rate 200 --duration 10)
	$(call BENCH_RUN,conns --tls --n 10000 --rate 5000 --channels 10 --hold 5)
	$(call BENCH_RUN,conns --tls --n 19000 --rate 5000 --channels 10 --hold 5)
	$(call BENCH_RUN,fanout --tls --n 10000 --channels 1 --rate 5 --duration 10)
	$(call BENCH_RUN,api --connections 4 --duration 5)
	$(call BENCH_RUN,clientevents --n 1000 --group 2 --rate 1000 --duration 10)
	$(call BENCH_RUN,clientevents --n 1000 --group 2 --rate 1000 --duration 10 --webhook client_event$(,)member_added)
	$(call BENCH_RUN,slowconsumer --n 100 --channels 1 --rate 200 --payload 4000 --duration 8 --slow 5)
	@{ echo "# revurb benchmark results"; echo; \
	  echo "Written by \`make bench\` on $$(date -u +%Y-%m-%d) ($$(nproc) CPUs, $$(uname -sr)); one JSON line per run in benches/results.jsonl."; \
	  echo "Server: \`revurb start\` with the dev app, spawned by the generator; \`--server-cpu 0 --cpu 1\` pin the server (taskset) and the generator to one CPU each."; \
	  echo; ./target/release/loadgen table < benches/results.jsonl; \
	  if [ -f benches/instructions.md ]; then echo; cat benches/instructions.md; fi; \
	  for f in benches/memory.md benches/webhooks.md benches/counts.md benches/soak.md benches/upgrade.md; do \
	    if [ -f $$f ]; then echo; cat $$f; fi; done; } > benches/RESULTS.md
	@cat benches/RESULTS.md

# Webhooks (issue 12): the cost to the loop (the client-event run of `make bench` with and
# without a webhook on client_event and member_added, alternating, three times each) and
# the throughput of one webhook to a loopback receiver (unbatched at 5 000/s, batched at
# 5 000/s and 20 000/s). Writes benches/webhooks.jsonl and benches/webhooks.md (which
# `make bench` keeps in benches/RESULTS.md) and puts webhooks.md into RESULTS.md now.
# A throughput run offered more than one webhook carries reports not ok: its queue
# overflowed (counted in revurb_webhook_dropped_total).
WEBHOOK_RUN = ./target/release/loadgen clientevents --spawn ./target/release/revurb $(BENCH_PIN) --group 2 --duration 10

bench-webhooks:
	$(CARGO) build --release --workspace
	@rm -f benches/webhooks.jsonl
	@for i in 1 2 3; do \
	  $(WEBHOOK_RUN) --n 1000 --rate 1000 >> benches/webhooks.jsonl || exit 1; \
	  $(WEBHOOK_RUN) --n 1000 --rate 1000 --webhook client_event,member_added >> benches/webhooks.jsonl || exit 1; \
	done
	-$(WEBHOOK_RUN) --n 200 --rate 5000 --webhook client_event >> benches/webhooks.jsonl
	-$(WEBHOOK_RUN) --n 200 --rate 5000 --webhook client_event --webhook-batching >> benches/webhooks.jsonl
	-$(WEBHOOK_RUN) --n 200 --rate 20000 --webhook client_event --webhook-batching >> benches/webhooks.jsonl
	@{ echo "## Webhooks"; echo; \
	  echo "Written by \`make bench-webhooks\` on $$(date -u +%Y-%m-%d) ($$(nproc) CPUs, $$(uname -sr)) against a release build of $$(git rev-parse --short HEAD 2>/dev/null || echo '?'); the JSON lines are benches/webhooks.jsonl. The receiver (loadgen \`--webhook\`) checks every request's key and signature and answers 200 at once. First the client-event run with and without a webhook, alternating (one request per event); then one webhook's throughput: unbatched, one request is in flight at a time (order kept); rows not ok offered more than the webhook carries, and its 1000-event queue dropped the rest, counted."; \
	  echo; ./target/release/loadgen table < benches/webhooks.jsonl; } > benches/webhooks.md
	$(RESULTS_TAIL)
	@cat benches/webhooks.md

# A drain from the clients' side (issue 14): 5 000 WebSockets, SIGTERM with a
# 5 s drain_window; when each gets its 4200, /up and an upgrade half-way.
bench-drain:
	$(CARGO) build --release
	benches/drain.py 5000 5 ./target/release/revurb

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

# The sections `make bench-webhooks`, `make counts-bench` and `make soak` write at the end of benches/RESULTS.md,
# put back after either changed (the rest of the file is `make bench`'s).
define RESULTS_TAIL
	@if [ -f benches/RESULTS.md ]; then \
	  sed -i '/^## \(Webhooks\|Subscription counts\|Soak\)$$/,$$d' benches/RESULTS.md; \
	  sed -i -e :a -e '/^\n*$$/{$$d;N;ba' -e '}' benches/RESULTS.md; \
	  for f in benches/webhooks.md benches/counts.md benches/soak.md; do \
	    if [ -f $$f ]; then { echo; cat $$f; } >> benches/RESULTS.md; fi; done; fi
endef

# Subscription counts (issue 13): a storm of 10 000 subscribes to one channel, three times
# with counts off and three times on, alternating; the server's CPU of each run and the
# ratio of the means. Writes benches/counts.jsonl and benches/counts.md (which `make bench`
# keeps in benches/RESULTS.md) and puts counts.md into RESULTS.md now.
COUNTS_RUN = ./target/release/loadgen conns --n 10000 --rate 5000 --channels 1 --hold 5 --spawn ./target/release/revurb $(BENCH_PIN)

counts-bench:
	$(CARGO) build --release --workspace
	@rm -f benches/counts.jsonl
	@for i in 1 2 3; do \
	  $(COUNTS_RUN) >> benches/counts.jsonl || exit 1; \
	  $(COUNTS_RUN) --env REVERB_APP_ENABLE_SUBSCRIPTION_COUNT=true >> benches/counts.jsonl || exit 1; \
	done
	@{ echo "## Subscription counts"; echo; \
	  echo "Written by \`make counts-bench\` on $$(date -u +%Y-%m-%d) ($$(nproc) CPUs, $$(uname -sr)) against a release build of $$(git rev-parse --short HEAD 2>/dev/null || echo '?'); the JSON lines are benches/counts.jsonl. Each run opens 10 000 connections at 5 000/s, each subscribing to the same channel, and holds them 5 s; server CPU is from the first connect to the end of the hold. Counts on, the channel's counts up to 100 go to its subscribers (at most 5 050 frames, fewer when several subscribes share a loop turn) and then one count per 30 s at most (none within the run)."; \
	  echo; ./target/release/loadgen countsmd < benches/counts.jsonl; } > benches/counts.md
	$(RESULTS_TAIL)
	@cat benches/counts.md

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
	$(RESULTS_TAIL)
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
