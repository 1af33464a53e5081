# The Makefile is the interface: CI runs `make test` (see .ci/run).
GO ?= go
export GOTOOLCHAIN := local
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 20s
# Debian packages the end-to-end tests run against (the harness also
# installs them itself when missing).
DEBS := dovecot-imapd dovecot-pop3d mariadb-server nginx libnginx-mod-mail postfix fail2ban swaks nftables iproute2 socat

.PHONY: all build run deps check unit e2e test fuzz bench clean

all: build

build:
	$(GO) build -o bin/mailgate ./cmd/mailgate

# Runs the daemon on built-in defaults (database ./mailgate.db) or on
# /etc/mailgate/mailgate.toml when it exists.
run: build
	./bin/mailgate serve

deps:
	./scripts/install-deps.sh $(DEBS)

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

unit:
	$(GO) test -race -count=1 ./internal/... ./cmd/...

e2e: deps
	$(GO) test -count=1 -timeout 15m ./test/...

# Everything: static checks, unit tests with the race detector, and the
# end-to-end tests against the real Dovecot (and friends).
test: deps check unit e2e

# Every fuzz target for FUZZTIME each (go test runs one target at a time),
# in every package, cmd/ included; FUZZFLAGS adds flags (e.g. -parallel 1).
# A package whose tests do not build stops the loop instead of being
# skipped silently.
FUZZFLAGS ?=
fuzz:
	@n=0; for pkg in $$($(GO) list ./...); do \
	  list=$$($(GO) test -list '^Fuzz' $$pkg) || { echo "$$list"; exit 1; }; \
	  for f in $$(echo "$$list" | grep '^Fuzz'); do \
	    n=$$((n+1)); echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg || exit 1; \
	  done; \
	done; echo "== $$n fuzz targets, $(FUZZTIME) each"

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
