#!/bin/bash
# Prove the test guest's init/udhcpc/report path without vnet: boot it under
# TCG on a tap inside a scratch netns, with busybox udhcpd serving the lease.
# Two leases: a /24 with a router, and a Calico-style /32 with option 121.
# Usage (root): vm/guest-selftest.sh [OUTDIR]
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/../target/vm}
"$HERE/build-initramfs.sh" "$OUT" || exit 1

NS=vnet-gst-$$
WORK=$(mktemp -d)
cleanup() {
    [ -n "${UDHCPD_PID:-}" ] && kill "$UDHCPD_PID" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass=0
fail=0
check() { # check NAME GREP-PATTERN LOGFILE
    if grep -qE -- "$2" "$3"; then
        echo "  ok   $1"
        pass=$((pass + 1))
    else
        echo "  FAIL $1 (no match for: $2)"
        fail=$((fail + 1))
    fi
}

# run_case NAME HOST_ADDR PING_TARGET UDHCPD_OPTIONS...
run_case() {
    local name=$1 haddr=$2 target=$3
    shift 3
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    ip -n "$NS" tuntap add tap0 mode tap
    ip -n "$NS" addr add "$haddr" dev tap0
    ip -n "$NS" link set tap0 up
    # The host side needs a route back to a /32 guest (as Calico adds).
    [ -n "${HOST_ROUTE:-}" ] && ip -n "$NS" route add "$HOST_ROUTE" dev tap0
    {
        echo "interface tap0"
        echo "lease_file $WORK/leases"
        echo "pidfile $WORK/udhcpd.pid"
        printf '%s\n' "$@"
    } >"$WORK/udhcpd.conf"
    : >"$WORK/leases"
    ip netns exec "$NS" busybox udhcpd -f -a 100 "$WORK/udhcpd.conf" >"$WORK/udhcpd.log" 2>&1 &
    UDHCPD_PID=$!
    local t0=$(date +%s.%N)
    ip netns exec "$NS" timeout 120 qemu-system-x86_64 -accel tcg -m 256 -nographic \
        -no-reboot -kernel "$OUT/vmlinuz" -initrd "$OUT/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet panic=-1 ${GUEST_DEBUG:+vnet.debug=1 }vnet.ping=$target" \
        -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
        -device virtio-net-pci,netdev=n0,mac=42:a4:a6:22:80:2e \
        </dev/null >"$WORK/$name.log" 2>&1
    local rc=$? t1=$(date +%s.%N)
    kill "$UDHCPD_PID" 2>/dev/null
    wait "$UDHCPD_PID" 2>/dev/null
    UDHCPD_PID=
    ip netns del "$NS"
    echo "case $name: qemu rc=$rc, wall $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"
    grep -ao 'VNET-GUEST.*' "$WORK/$name.log" | tr -d '\r' | sed 's/^/  | /'
    echo "qemu_rc=$rc" >>"$WORK/$name.log"
    check "$name: qemu exited 0" '^qemu_rc=0$' "$WORK/$name.log"
}

run_case ipv4-24 10.1.90.1/24 10.1.90.1 \
    "start 10.1.90.5" "end 10.1.90.5" "max_leases 1" \
    "option subnet 255.255.255.0" "option router 10.1.90.1" \
    "option dns 10.96.0.10" "option domain svc.cluster.local" "option mtu 1500"
L=$WORK/ipv4-24.log
check "ipv4-24: lease" 'VNET-GUEST iface=eth0 mac=42:a4:a6:22:80:2e ip=10.1.90.5/24 mtu=1500 router=10.1.90.1' "$L"
check "ipv4-24: default route" 'VNET-GUEST route default via 10.1.90.1 dev eth0' "$L"
check "ipv4-24: resolv.conf" 'VNET-GUEST resolv nameserver 10.96.0.10' "$L"
check "ipv4-24: ping" 'VNET-GUEST ping 10.1.90.1 ok' "$L"
check "ipv4-24: done" 'VNET-GUEST done' "$L"

HOST_ROUTE=10.244.1.7/32 run_case calico-32 169.254.1.1/32 169.254.1.1 \
    "start 10.244.1.7" "end 10.244.1.7" "max_leases 1" \
    "option subnet 255.255.255.255" "option router 169.254.1.1" "option mtu 1450" \
    "option staticroutes 169.254.1.1/32 0.0.0.0, 0.0.0.0/0 169.254.1.1"
L=$WORK/calico-32.log
check "calico-32: /32 lease, mtu 1450" 'VNET-GUEST iface=eth0 .*ip=10.244.1.7/32 mtu=1450' "$L"
check "calico-32: on-link route" 'VNET-GUEST route 169.254.1.1 dev eth0 scope link' "$L"
check "calico-32: default route" 'VNET-GUEST route default via 169.254.1.1 dev eth0' "$L"
check "calico-32: ping" 'VNET-GUEST ping 169.254.1.1 ok' "$L"

echo "guest-selftest: $pass passed, $fail failed"
[ "$fail" = 0 ]
