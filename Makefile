# The Makefile is the interface: CI runs `make test` (see .ci/run).
GO ?= go
export GOTOOLCHAIN := local
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 20s
# Debian packages the end-to-end tests run against (the harness also
# installs them itself when missing; systemd and man-db: systemd-analyze
# verify and man(1) for the package test; nsd and dig for the DNSBL tests).
DEBS := dovecot-imapd dovecot-pop3d mariadb-server nginx libnginx-mod-mail postfix fail2ban swaks nftables iproute2 socat systemd man-db util-linux nsd bind9-dnsutils systemd-journal-remote php-cli postgresql-15 postgresql-client-15 python3 openssl prometheus-alertmanager redis-server chromium

.PHONY: all build run deps check unit e2e test warn fuzz bench clean install deb

all: build

# The version comes from git: `mailgate version` prints it and the commit.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/mailgate ./cmd/mailgate

# make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc]: the
# binary, the man page, the bash completion, the systemd unit (its
# ExecStart pointed at PREFIX), logrotate, the docs, and the short config
# unless one is there already (docs/install.md). It creates no user and
# starts nothing.
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/mailgate
MANGZ ?=
install: build
	install -D -m 0755 bin/mailgate $(DESTDIR)$(PREFIX)/bin/mailgate
	install -d $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)/examples
	if [ -n "$(MANGZ)" ]; then gzip -9n <docs/mailgate.8 >$(DESTDIR)$(PREFIX)/share/man/man8/mailgate.8.gz; \
	  else install -m 0644 docs/mailgate.8 $(DESTDIR)$(PREFIX)/share/man/man8/mailgate.8; fi
	bin/mailgate help --bash-completion >$(DESTDIR)$(PREFIX)/share/bash-completion/completions/mailgate
	sed 's|/usr/bin/mailgate|$(PREFIX)/bin/mailgate|' etc/systemd/mailgate.service >$(DESTDIR)$(UNITDIR)/mailgate.service
	install -D -m 0644 packaging/logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/mailgate
	[ -e $(DESTDIR)$(SYSCONFDIR)/mailgate/mailgate.toml ] || install -D -m 0640 packaging/mailgate.toml $(DESTDIR)$(SYSCONFDIR)/mailgate/mailgate.toml
	install -m 0644 etc/mailgate.toml $(DESTDIR)$(DOCDIR)/mailgate.toml.example
	install -m 0644 README.md CHANGELOG.md docs/*.md $(DESTDIR)$(DOCDIR)/
	cp -R etc/dovecot etc/postfix etc/nginx etc/fail2ban $(DESTDIR)$(DOCDIR)/examples/
	chmod -R u=rwX,go=rX $(DESTDIR)$(DOCDIR)

# mailgate_<version>_<arch>.deb in DEBDIR, built with dpkg-deb (nothing
# is downloaded); see docs/install.md.
DEBDIR ?= .
deb:
	./scripts/mkdeb.sh $(VERSION) $(DEBDIR)

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

# MAILGATE_ARTIFACTS: where end-to-end tests save what a human may want to
# look at afterwards (the console test's screenshots, in console/).
MAILGATE_ARTIFACTS ?= $(CURDIR)/artifacts
e2e: deps
	MAILGATE_ARTIFACTS=$(MAILGATE_ARTIFACTS) $(GO) test -count=1 -timeout 30m ./test/...

# Everything: static checks, unit tests with the race detector, and the
# end-to-end tests against the real Dovecot (and friends).
# It is meant for a test machine: it installs Debian packages, starts
# Dovecot, nginx and Postfix in temporary directories, and installs,
# starts and purges the mailgate package itself (test/package_test.go).
test: warn deps check unit e2e

warn:
	@echo "make test: installs Debian packages and starts and purges mailgate's own package: meant for a test machine, not a mail server" >&2

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
	rm -rf bin artifacts mailgate_*.deb
