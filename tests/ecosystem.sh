#!/usr/bin/env bash
# Ecosystem checks: vnet as the outside world consumes it.
#
#   bash tests/ecosystem.sh          (root; from anywhere)
#
# `make install` into a temp prefix (and a DESTDIR staging + uninstall), then:
# pkg-config consumer, strict C99/C++11 header, static link, dlopen/dlclose
# twice, export list, the Go package's tests, and the `vnet` CLI. Scratch
# namespaces are unique (vnh-eco-PID-*) and deleted on every path. Honors
# CARGO_TARGET_DIR. Set ECO_SKIP_GO=1 to skip the Go part. Prints
# "ecosystem: N passed, M failed" and exits non-zero on any failure.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/vnet-eco.XXXXXX)
PREFIX=$WORK/prefix
TAG=vnh-eco-$$
SEQ=0
NSES=()
PASS=0
FAIL=0

cleanup() {
    local n
    for n in "${NSES[@]}"; do ip netns del "$n" 2>/dev/null; done
    # Namespaces made by a CLI/Go run that was killed mid-way.
    for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$TAG-"); do
        ip netns del "$n" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# check NAME CMD...: run CMD, count it, show its output on failure.
check() {
    local name=$1
    shift
    if "$@" >"$WORK/out" 2>&1; then
        PASS=$((PASS + 1))
        echo "ok   $name"
    else
        FAIL=$((FAIL + 1))
        echo "FAIL $name"
        tail -n 40 "$WORK/out" | sed 's/^/     /'
    fi
}

# new_pod: a pod netns + host netns like the Rust fixture (eth0
# 42:a4:a6:22:80:2e 10.1.90.5/24, default via 10.1.90.1 = host veth0).
# Sets POD (name) and POD_PATH.
new_pod() {
    SEQ=$((SEQ + 1))
    POD=$TAG-$SEQ-p
    local host=$TAG-$SEQ-h
    NSES+=("$POD" "$host")
    ip netns add "$POD" && ip netns add "$host" &&
        ip -n "$POD" link set lo up &&
        ip -n "$host" link add veth0 type veth peer name eth0 netns "$POD" &&
        ip -n "$host" link set veth0 up &&
        ip -n "$host" addr add 10.1.90.1/24 dev veth0 &&
        ip -n "$POD" link set eth0 address 42:a4:a6:22:80:2e &&
        ip -n "$POD" link set eth0 up &&
        ip -n "$POD" addr add 10.1.90.5/24 dev eth0 &&
        ip -n "$POD" route add default via 10.1.90.1 || {
        echo "cannot build scratch namespaces" >&2
        exit 1
    }
    POD_PATH=/var/run/netns/$POD
}

# dump NS: the one settled dump (scripts/nsdump.sh) to compare before/after;
# a dump that fails prints a marker no other dump equals.
dump() {
    bash "$ROOT/scripts/nsdump.sh" "$1" || echo "dump of $1 failed $RANDOM$RANDOM"
}

if [ "$(id -u)" != 0 ]; then
    echo "ecosystem: must run as root (namespaces)" >&2
    exit 1
fi
cd "$ROOT" || exit 1

echo "# make install PREFIX=$PREFIX"
if ! make -s install PREFIX="$PREFIX" >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log"
    echo "ecosystem: 0 passed, 1 failed (make install)"
    exit 1
fi
VERSION=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
LIB=$PREFIX/lib
export PKG_CONFIG_PATH=$LIB/pkgconfig
export LD_LIBRARY_PATH=$LIB

t_installed() {
    [ -f "$LIB/libvnet.so.$VERSION" ] && [ ! -L "$LIB/libvnet.so.$VERSION" ] &&
        [ "$(readlink "$LIB/libvnet.so.0")" = "libvnet.so.$VERSION" ] &&
        [ "$(readlink "$LIB/libvnet.so")" = "libvnet.so.0" ] &&
        [ -f "$LIB/libvnet.a" ] && [ -f "$PREFIX/include/vnet.h" ] &&
        [ -x "$PREFIX/bin/vnet" ] && [ -x "$PREFIX/lib/cni/vnet-cni" ] && [ -f "$LIB/pkgconfig/vnet.pc" ] || return 1
    readelf -d "$LIB/libvnet.so.$VERSION" | grep -F 'SONAME' | grep -F '[libvnet.so.0]'
}
check "install: lib, symlinks, SONAME libvnet.so.0, .a, header, .pc, bin" t_installed

t_pc() {
    # echo $(...) drops the trailing blank pkg-config prints.
    [ "$(pkg-config --modversion vnet)" = "$VERSION" ] &&
        [ "$(echo $(pkg-config --cflags vnet))" = "-I$PREFIX/include" ] &&
        [ "$(echo $(pkg-config --libs vnet))" = "-L$LIB -lvnet" ] &&
        pkg-config --static --libs vnet | grep -q -- -lpthread
}
check "pkg-config: version $VERSION, cflags, libs, libs.private" t_pc

t_exports() {
    local syms header
    syms=$(nm -D --defined-only "$LIB/libvnet.so.0" | awk '{print $3}' | sort)
    echo "$syms"
    [ -n "$syms" ] && ! echo "$syms" | grep -v '^vnet_' || return 1
    header=$(grep -oE '\bvnet_[a-z_]+\(' "$PREFIX/include/vnet.h" | tr -d '(' | sort -u)
    [ "$syms" = "$header" ] || {
        echo "exports differ from vnet.h functions:"
        diff <(echo "$header") <(echo "$syms")
        return 1
    }
}
check "exports: only vnet_*, exactly the functions of vnet.h" t_exports

t_pkgconfig() {
    local before
    # shellcheck disable=SC2046
    cc -o "$WORK/pkgconfig" "$ROOT/c-tests/pkgconfig.c" $(pkg-config --cflags --libs vnet) || return 1
    new_pod
    before=$(dump "$POD")
    "$WORK/pkgconfig" "$POD_PATH" || return 1
    [ "$before" = "$(dump "$POD")" ] || {
        echo "namespace not restored"
        return 1
    }
}
check "pkg-config consumer: cc \$(pkg-config --cflags --libs vnet), setup/teardown" t_pkgconfig

t_c99() {
    # shellcheck disable=SC2046
    cc -std=c99 -Wall -Wextra -Werror -pedantic -o "$WORK/c99" "$ROOT/c-tests/pkgconfig.c" \
        $(pkg-config --cflags --libs vnet) && "$WORK/c99"
}
check "header: C99 -Wall -Wextra -Werror -pedantic, linked and run" t_c99

t_cxx() {
    # shellcheck disable=SC2046
    g++ -std=c++11 -Wall -Wextra -Werror -x c++ -o "$WORK/cxx" "$ROOT/c-tests/pkgconfig.c" \
        $(pkg-config --cflags --libs vnet) || return 1
    new_pod
    "$WORK/cxx" "$POD_PATH"
}
check "header: C++11 -Wall -Wextra -Werror, linked, setup/teardown" t_cxx

t_static() {
    local libs
    libs=$(pkg-config --static --libs-only-l vnet | sed 's/-lvnet//')
    # shellcheck disable=SC2046,SC2086
    cc -o "$WORK/static" "$ROOT/c-tests/pkgconfig.c" $(pkg-config --cflags vnet) \
        "$LIB/libvnet.a" $libs || return 1
    ! ldd "$WORK/static" | grep -q libvnet || return 1
    new_pod
    env -u LD_LIBRARY_PATH "$WORK/static" "$POD_PATH"
}
check "static: libvnet.a + Libs.private, setup/teardown" t_static

t_dlopen() {
    local syms before
    gcc -std=gnu11 -Wall -Wextra -Werror -I"$PREFIX/include" -o "$WORK/dlopen" \
        "$ROOT/c-tests/dlopen.c" -ldl || return 1
    syms=$(nm -D --defined-only "$LIB/libvnet.so.0" | awk '{print $3}')
    new_pod
    before=$(dump "$POD")
    # shellcheck disable=SC2086
    env -u LD_LIBRARY_PATH "$WORK/dlopen" "$LIB/libvnet.so.0" "$POD_PATH" $syms || return 1
    [ "$before" = "$(dump "$POD")" ]
}
check "dlopen: every symbol, setup/teardown, dlclose, twice; threads/fds back" t_dlopen

t_destdir() {
    local stage=$WORK/stage
    make -s install DESTDIR="$stage" PREFIX=/usr >/dev/null || return 1
    [ -f "$stage/usr/lib/libvnet.so.$VERSION" ] && [ -L "$stage/usr/lib/libvnet.so" ] &&
        [ -f "$stage/usr/include/vnet.h" ] &&
        grep -qx 'prefix=/usr' "$stage/usr/lib/pkgconfig/vnet.pc" &&
        grep -qx 'libdir=/usr/lib' "$stage/usr/lib/pkgconfig/vnet.pc" || return 1
    make -s uninstall DESTDIR="$stage" PREFIX=/usr || return 1
    [ -z "$(find "$stage" -type f -o -type l)" ] || {
        find "$stage" -type f -o -type l
        return 1
    }
}
check "make install DESTDIR=... PREFIX=/usr, then make uninstall" t_destdir

# --- the CLI ---------------------------------------------------------------
VNET=$PREFIX/bin/vnet

t_cli_usage() {
    local rc
    "$VNET" --help | grep -q 'vnet setup --netns PATH' || return 1
    [ "$("$VNET" --version)" = "vnet $VERSION" ] || return 1
    "$VNET" frobnicate 2>/dev/null
    rc=$?; [ $rc = 64 ] || { echo "unknown command: rc $rc"; return 1; }
    "$VNET" setup 2>/dev/null
    rc=$?; [ $rc = 64 ] || { echo "setup without --netns: rc $rc"; return 1; }
    "$VNET" setup --netns /nonexistent-$TAG --no-wait 2>/dev/null
    rc=$?; [ $rc = 2 ] || { echo "missing netns: rc $rc (want 2 VNET_ERR_NETNS)"; return 1; }
    "$VNET" setup --netns relative --no-wait 2>/dev/null
    rc=$?; [ $rc = 1 ] || { echo "relative netns: rc $rc (want 1)"; return 1; }
    new_pod
    echo '{"queues": 0}' | "$VNET" setup --netns "$POD_PATH" --config - --no-wait 2>/dev/null
    rc=$?; [ $rc = 6 ] || { echo "bad config: rc $rc (want 6 VNET_ERR_CONFIG)"; return 1; }
}
check "cli: --help, --version, exit codes 64/2/1/6" t_cli_usage

t_cli_cycle() {
    local before pid rc state=$WORK/state.json
    new_pod
    before=$(dump "$POD")
    "$VNET" show --netns "$POD_PATH" | grep -q 'setup would hand over: eth0' || return 1
    "$VNET" setup --netns "$POD_PATH" --state "$state" >"$WORK/setup.out" 2>"$WORK/setup.err" &
    pid=$!
    # Wait for the result JSON (printed once setup is done), then SIGTERM.
    for _ in $(seq 100); do [ -s "$WORK/setup.out" ] && break; sleep 0.1; done
    kill -TERM $pid
    wait $pid
    rc=$?; [ $rc = 0 ] || { echo "setup after SIGTERM: rc $rc"; cat "$WORK/setup.err"; return 1; }
    cmp -s <(tr -d '\n' <"$WORK/setup.out") <(tr -d '\n' <"$state") || { echo "stdout != state"; return 1; }
    grep -q '"tap0"' "$state" || return 1
    # Left set up (no teardown on SIGTERM): show reports the leftovers.
    "$VNET" show --netns "$POD_PATH" | grep -q 'leftovers: link br0' || return 1
    "$VNET" setup --netns "$POD_PATH" --no-wait >/dev/null 2>&1
    rc=$?; [ $rc = 13 ] || { echo "second setup: rc $rc (want 13 VNET_ERR_LEFTOVERS)"; return 1; }
    "$VNET" teardown --netns "$POD_PATH" --state "$state" || return 1
    [ "$before" = "$(dump "$POD")" ] || { echo "not restored"; return 1; }
    # --no-wait, and teardown taking the namespace from the state.
    "$VNET" setup --netns "$POD_PATH" --state "$state" --no-wait >/dev/null || return 1
    "$VNET" teardown --state "$state" || return 1
    [ "$before" = "$(dump "$POD")" ] || { echo "not restored (2)"; return 1; }
    "$VNET" show --netns "$POD_PATH" | grep -q 'leftovers: none'
}
check "cli: show, setup --state, SIGTERM leaves it set up, teardown restores" t_cli_cycle

t_cli_demo() {
    local pid
    timeout 60 "$VNET" demo >"$WORK/demo.out" 2>&1 || { cat "$WORK/demo.out"; return 1; }
    cat "$WORK/demo.out"
    grep -q 'got   ARP reply 10.1.90.1' "$WORK/demo.out" &&
        grep -q 'got   DHCPOFFER 10.1.90.5' "$WORK/demo.out" &&
        grep -q '"cniVersion"' "$WORK/demo.out" &&
        grep -q 'restored: links, addresses, routes' "$WORK/demo.out" || return 1
    ! ip netns list | grep -q "vnet-demo-" || { echo "demo left namespaces"; return 1; }
    # Ctrl-C in the middle still deletes the namespaces: SIGINT as soon as
    # the demo says they exist (a blocking read on a FIFO, no sleep), then
    # exit status 130 and both gone. A demo that finished first fails here.
    local fifo=$WORK/demo.fifo line rc pod host
    mkfifo "$fifo" || return 1
    "$VNET" demo >"$fifo" 2>"$WORK/demo.err" &
    pid=$!
    exec 3<"$fifo"
    IFS= read -r line <&3
    kill -INT $pid
    cat <&3 >/dev/null
    exec 3<&-
    wait $pid
    rc=$?
    echo "first line: $line"
    cat "$WORK/demo.err"
    [[ $line =~ ^==\ scratch\ namespaces:\ pod\ ([^ ]+)\ and\ host\ ([^ ]+)$ ]] ||
        { echo "unexpected first line"; return 1; }
    pod=${BASH_REMATCH[1]} host=${BASH_REMATCH[2]}
    [ $rc = 130 ] || { echo "demo after SIGINT: rc $rc (want 130)"; return 1; }
    grep -q 'interrupted (signal 2)' "$WORK/demo.err" || return 1
    ! ip netns list | grep -qE "^($pod|$host)( |$)" || { echo "SIGINT left namespaces"; return 1; }
}
check "cli: demo (ARP + DHCP through the TAP, restored, namespaces gone, also on SIGINT)" t_cli_demo

# --- Go --------------------------------------------------------------------
t_go() {
    local gotmp=$WORK/go
    mkdir -p "$gotmp/path" "$gotmp/cache" || return 1
    # Offline, no external modules; caches in the temp dir.
    (
        cd "$ROOT/go" &&
            export GOPATH="$gotmp/path" GOCACHE="$gotmp/cache" GOFLAGS= GOPROXY=off \
                GO111MODULE=on CGO_ENABLED=1 VNET_TEST_NS_PREFIX="$TAG-go" &&
            go vet ./... &&
            go test -count=1 -v ./...
    )
}
if [ "${ECO_SKIP_GO:-0}" = 1 ]; then
    echo "skip go (ECO_SKIP_GO=1)"
elif ! command -v go >/dev/null; then
    FAIL=$((FAIL + 1))
    echo "FAIL go: no go toolchain (apt-get install golang-go, or ECO_SKIP_GO=1)"
else
    check "go: vet + go test against the installed library (pkg-config)" t_go
fi

echo "ecosystem: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
