# revurb: build, run, test. `make run` serves a development app on 127.0.0.1:8080.
PREFIX ?= /usr/local
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl

# The development app `make run` serves (pusher-js: key app-key, host 127.0.0.1, port 8080).
DEV_ENV := REVERB_APP_ID=app-id REVERB_APP_KEY=app-key REVERB_APP_SECRET=app-secret

.PHONY: build run test unit interop lint static install clean

build:
	$(CARGO) build --release

run: build
	$(DEV_ENV) ./target/release/revurb start --host 127.0.0.1 --port 8080

# Every test: unit, scenario and integration tests (cargo), then the interop
# tests with the official Pusher clients (node).
test: unit interop

unit:
	$(CARGO) test --workspace --all-targets

interop:
	$(CARGO) build
	REVURB_BIN=$(CURDIR)/target/debug/revurb tests/interop/run.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

static:
	rustup target add $(MUSL_TARGET)
	$(CARGO) build --release --target $(MUSL_TARGET)
	@file target/$(MUSL_TARGET)/release/revurb
	@ls -l target/$(MUSL_TARGET)/release/revurb

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 target/release/revurb $(DESTDIR)$(PREFIX)/bin/revurb
	install -m 0644 man/revurb.1 $(DESTDIR)$(PREFIX)/share/man/man1/revurb.1

clean:
	$(CARGO) clean
	rm -rf tests/interop/node_modules
