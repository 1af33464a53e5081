#!/bin/sh
# mkdeb.sh VERSION OUTDIR: builds OUTDIR/mailgate_<version>_amd64.deb with
# dpkg-deb from `make install` into a staging directory. Run by `make deb`.
# Nothing is downloaded.
set -eu
version=$1
outdir=$2
# A Debian version starts with a digit and has no "-" (that would start a
# Debian revision): v1.2.0-3-gabc-dirty -> 1.2.0+3+gabc+dirty; a bare
# commit (no tag yet) -> 0.0.0+gabc.
debver=$(printf '%s' "$version" | sed 's/^v//; s/-/+/g')
case $debver in
[0-9]*) ;;
*) debver="0.0.0+g$debver" ;;
esac
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
make --no-print-directory install DESTDIR="$stage" PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/lib/systemd/system MANGZ=1 >/dev/null

mkdir -p "$stage/DEBIAN"
cp packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
printf '/etc/mailgate/mailgate.toml\n/etc/logrotate.d/mailgate\n' >"$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: mailgate
Version: $debver
Architecture: $arch
Maintainer: mailgate developers <root@localhost>
Installed-Size: $size
Depends: libc6
Recommends: adduser
Suggests: dovecot-core, postfix, nginx, logrotate
Section: mail
Priority: optional
Description: login and relay policy for Dovecot, Postfix and nginx
 mailgate decides, for every mail login and every relay attempt, whether
 it may proceed: per-account IP and country rules, brute-force bans,
 relay permits (POP/IMAP-before-SMTP) and sending limits, answered to
 Dovecot's auth policy API, nginx's mail auth_http and Postfix's policy
 delegation. Built from git $version.
CONTROL
mkdir -p "$outdir"
deb="$outdir/mailgate_${debver}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "$deb"
