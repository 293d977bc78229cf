#!/bin/sh
# Fetches the reference etcd (3.5.16 from Debian 13 "trixie") into $1 without touching
# the system's apt state: a private sources list, lists and cache, then dpkg -x.
# The differential tests and `make bench` compare uetcd with this binary.
set -e
dest=${1:-build/etcd-ref}
[ -x "$dest/usr/bin/etcd" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/dl" "$dest"
echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main' > "$work/sources.list"
# private lists and package cache (the system's pkgcache.bin stays Debian 12's), no locks:
# this may run while tools/deps.sh installs packages
apt="-o Dir::State::Lists=$work/lists -o Dir::Cache=$work/cache -o Dir::Etc::SourceList=$work/sources.list -o Dir::Etc::SourceParts=/dev/null -o Debug::NoLocking=1 -o APT::Sandbox::User=root"
apt-get $apt update -qq
(cd "$work/dl" && apt-get $apt download etcd-server etcd-client >/dev/null 2>&1)
for f in "$work"/dl/*.deb; do dpkg -x "$f" "$dest"; done
"$dest/usr/bin/etcd" --version | head -1
