#!/usr/bin/env bash
# Prints the path of a PgBouncer that keeps prepared statements working in transaction mode
# (1.21 or later), installing one first if needed:
#   1. Debian's `pgbouncer` package, if the release's is new enough (Debian 13 has 1.24);
#   2. otherwise (Debian 12 ships 1.18) Debian 13's `pgbouncer` source package, built into
#      target/pgbouncer/ (about 15 s on 2 cores; its checksum is the one Debian publishes).
# Everything but the final path goes to stderr. Usage: LATCHKEY_TEST_PGBOUNCER=$(.ci/pgbouncer.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Debian 13's source package; the checksum is from its Sources index (dists/trixie).
VERSION=1.24.1
SHA256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
PREFIX="$PWD/target/pgbouncer/$VERSION"

new_enough() {
  local v
  v=$("$1" --version 2>/dev/null | awk 'NR==1 {print $2}') || return 1
  [ -n "$v" ] && [ "$(printf '%s\n1.21\n' "$v" | sort -V | head -n1)" = "1.21" ]
}

export DEBIAN_FRONTEND=noninteractive
if ! command -v /usr/sbin/pgbouncer >/dev/null 2>&1; then
  echo "== installing Debian's pgbouncer" >&2
  apt-get install -y -qq pgbouncer >&2 || { apt-get update -qq >&2 && apt-get install -y -qq pgbouncer >&2; } || true
fi
if [ -x /usr/sbin/pgbouncer ] && new_enough /usr/sbin/pgbouncer; then
  echo /usr/sbin/pgbouncer
  exit 0
fi
if [ -x "$PREFIX/bin/pgbouncer" ] && new_enough "$PREFIX/bin/pgbouncer"; then
  echo "$PREFIX/bin/pgbouncer"
  exit 0
fi

echo "== Debian's pgbouncer is $(/usr/sbin/pgbouncer --version 2>/dev/null | head -n1 || echo missing):" \
  "building Debian 13's source package $VERSION" >&2
apt-get install -y -qq gcc make pkg-config libevent-dev libssl-dev libc-ares-dev curl >&2 \
  || { apt-get update -qq >&2 && apt-get install -y -qq gcc make pkg-config libevent-dev libssl-dev libc-ares-dev curl >&2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball="pgbouncer_${VERSION}.orig.tar.gz"
curl -fsS --retry 3 -o "$work/$tarball" "$MIRROR/pool/main/p/pgbouncer/$tarball" >&2
echo "$SHA256  $work/$tarball" | sha256sum -c --quiet - >&2
tar -xzf "$work/$tarball" -C "$work"
(
  cd "$work/pgbouncer-$VERSION"
  ./configure --prefix="$PREFIX" --with-cares --without-pam --without-systemd >/dev/null
  make -j2 >/dev/null
  make install >/dev/null
) >&2
new_enough "$PREFIX/bin/pgbouncer"
echo "$PREFIX/bin/pgbouncer"
