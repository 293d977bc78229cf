#!/bin/sh
# Installs the Debian packages a target needs, only when one is missing, so that
# `make run` and `make test` work on a fresh Debian 12 machine as root.
# Usage: tools/deps.sh build|test|bench
set -e
build="gcc make pkg-config liburing-dev libwolfssl-dev libprotobuf-c-dev protobuf-c-compiler libxxhash-dev libcrypt-dev"
test="$build libcriterion-dev clang libclang-rt-14-dev etcd-server etcd-client python3-etcd3 python3-etcd3gw python3-pytest curl openssl"
bench="$test libnghttp2-dev libssl-dev openssl gnuplot-nox valgrind"
case "$1" in
build) want=$build ;;
test) want=$test ;;
bench) want=$bench ;;
*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
if [ "$(id -u)" != 0 ]; then
	echo "deps: need root to apt-get install:$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
