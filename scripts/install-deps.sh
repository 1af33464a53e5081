#!/bin/sh
# Installs the Debian packages the end-to-end tests need, if any is missing.
# Needs root (CI and our dev machines run as root). Starts nothing.
set -eu
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing Debian packages:$missing (run as root, or apt-get install them)" >&2
  exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# Postfix asks which kind of mail system to set up; the tests write their own config.
case " $missing " in
  *" postfix "*) echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections ;;
esac
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
