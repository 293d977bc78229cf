#!/bin/sh
# Installs the Debian packages a target needs, only when one is missing, so that every make
# target works on a fresh Debian 12 (or newer) machine as root, with any -j.
# Usage: tools/deps.sh build|run|test|fuzz|bench
#   build  compiler, libraries, protoc-c          run  build + etcdctl (Debian's etcd-client)
#   test   run + criterion, python clients, curl  fuzz build + clang and its libFuzzer runtime
#   bench  test + the load generator's libraries
# Several make jobs may call this at once: the check runs unlocked (nothing to do is the
# common case), the install under one lock, so only one apt-get ever runs. Debian's
# etcd-server is never installed: it enables a system etcd on 127.0.0.1:2379; the reference
# etcd the tests use is unpacked into build/ by tools/fetch-etcd-ref.sh.
set -e
LOCK=/run/lock/uetcd-deps.lock
build="gcc make pkg-config liburing-dev libwolfssl-dev libprotobuf-c-dev protobuf-c-compiler libxxhash-dev libcrypt-dev"
run="$build etcd-client"
test="$run libcriterion-dev python3-etcd3 python3-etcd3gw python3-pytest curl openssl"
fuzz="$build clang"
bench="$test libnghttp2-dev libssl-dev gnuplot-nox valgrind"
case "$1" in
build) want=$build ;;
run) want=$run ;;
test) want=$test ;;
fuzz) want=$fuzz ;;
bench) want=$bench ;;
*) echo "usage: $0 build|run|test|fuzz|bench" >&2; exit 2 ;;
esac

missing_of() {
	missing=""
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
}

# libFuzzer and the sanitizer runtimes come with the installed clang's version
clang_rt() {
	[ "$1" = fuzz ] && command -v clang >/dev/null && echo "libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
	return 0
}

missing_of $want $(clang_rt "$1")
[ -z "$missing" ] && { [ "$1" != fuzz ] || command -v clang >/dev/null; } && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: need root to apt-get install:$missing" >&2
	exit 1
fi
if [ -z "$UETCD_DEPS_LOCKED" ]; then
	# one installer at a time; the locked run checks again (another may have installed them)
	[ -d /run/lock ] || LOCK=/tmp/uetcd-deps.lock
	UETCD_DEPS_LOCKED=1 exec flock "$LOCK" "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
updated=""
install() {
	missing_of "$@"
	[ -z "$missing" ] && return 0
	echo "installing:$missing" >&2
	# a booted machine's own apt (unattended-upgrades) may hold dpkg's lock for a while
	[ -n "$updated" ] || apt-get -o DPkg::Lock::Timeout=600 update -qq
	updated=1
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
}
install $want
install $(clang_rt "$1")
