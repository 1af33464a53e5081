#!/bin/sh
# bench-maillog.sh: the mail log parser's benchmark of docs/performance.md.
# Generates the one-million-line mixed mail log (seed 1), then, in one run:
# the parser alone (go test -bench), the parser reading the file
# (mailgate-loggen count, with its RSS), and fail2ban-regex with Debian's
# stock dovecot filter on the same file (with its RSS).
# Usage: scripts/bench-maillog.sh [LINES]   (default 1000000)
set -eu
lines=${1:-1000000}
dir=$(mktemp -d /tmp/bench-maillog.XXXXXX)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/mailgate-loggen" ./cmd/mailgate-loggen
"$dir/mailgate-loggen" gen -lines "$lines" -seed 1 "$dir/mail.log"
ls -l "$dir/mail.log"
echo "== parser alone"
go test ./internal/maillog -run '^$' -bench 'ParseLine' -benchmem -count 3
echo "== mailgate-loggen count (parser reading the file)"
for i in 1 2 3; do
	/usr/bin/time -f 'wall %es  user %Us  maxrss %MkB' "$dir/mailgate-loggen" count "$dir/mail.log"
done
echo "== fail2ban-regex, stock dovecot filter"
/usr/bin/time -f 'wall %es  user %Us  maxrss %MkB' \
	fail2ban-regex "$dir/mail.log" /etc/fail2ban/filter.d/dovecot.conf |
	grep -E '^\|   [0-9]+\) \[|^Lines:|processed in'
