#!/bin/bash
# vnet end-to-end test: boot a real guest (qemu, TCG) on the TAPs vnet makes
# in a scratch pod netns, and check what the guest's DHCP lease configured,
# that it can reach the host side, that DHCP never leaves the pod, and that
# teardown restores the pod netns exactly.
#
# Run as root from anywhere, after `cargo build --release`:  vm/e2e.sh [SCENARIO...]
# Scenarios: a (IPv4 /24), b (Calico /32, MTU 1450), c (MTU 9000), d (two interfaces),
# and pods made by the CNI reference plugins (tests/cni/lib.sh), the guest
# running busybox udhcpc or, with the -dhcpcd suffix, Debian's dhcpcd 9:
# cni-bridge, cni-dual, cni-ptp, cni-ptpsbr, cni-hostdev, cni-bridge-dhcpcd,
# cni-ptp-dhcpcd, cni-ptpsbr-dhcpcd, and cni-macvlan (refused, no guest).
# IPv6 (issue 17): cni-dual6-dhcpcd (dual-stack, dhcpcd 9 for RA + DHCPv6),
# cni-dual6-dhclient (the guest kernel's RA handling + dhclient -6),
# cni-v6only-dhcpcd (IPv6-only bridge pod, no v4 client) and calico6 (a
# Calico-style IPv6-only /128 pod, default via fe80::ecee:eeff:feee:eeee).
# Redirect mode on reference-plugin pods (vm/redirect-e2e.sh runs these): m (macvlan,
# neighbour pod on the same master), p (ptp veth), h (host-device), r6 (cni-dual6-dhcpcd
# in redirect mode).
# Ends with "vm-e2e: N passed, M failed" (N/M count checks); exit 1 on failure.
# Overrides: VNET_LIB_DIR (libvnet.so, default target/release), VNET_INCLUDE_DIR
# (vnet.h, default include), VM_E2E_OUT (guest + launcher, default target),
# VM_E2E_KEEP=1 keeps the logs, dumps and pcap.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LIBDIR=${VNET_LIB_DIR:-$ROOT/target/release}
INCDIR=${VNET_INCLUDE_DIR:-$ROOT/include}
OUT=${VM_E2E_OUT:-$ROOT/target}/vm
LAUNCHER=${VM_E2E_OUT:-$ROOT/target}/vm_launcher
CNI_SCENARIOS="cni-bridge cni-dual cni-ptp cni-ptpsbr cni-hostdev cni-bridge-dhcpcd cni-ptp-dhcpcd
    cni-ptpsbr-dhcpcd cni-dual6-dhcpcd cni-dual6-dhclient cni-v6only-dhcpcd calico6 cni-macvlan"
SCENARIOS=${*:-a b c d $CNI_SCENARIOS}

pass=0
fail=0
ok() { echo "  ok   $*"; pass=$((pass + 1)); }
bad() { echo "  FAIL $*"; fail=$((fail + 1)); }
summary() { echo "vm-e2e: $pass passed, $fail failed"; }
die() { echo "vm-e2e: $*" >&2; bad "$*"; summary; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
vm/build-initramfs.sh "$OUT" || die "building the guest failed"
for tool in tcpdump:tcpdump jq:jq nft:nftables; do
    pkg=${tool#*:}
    command -v "${tool%%:*}" >/dev/null || apt-get install -y --no-install-recommends "$pkg" ||
        { apt-get update && apt-get install -y --no-install-recommends "$pkg"; } ||
        die "cannot install $pkg"
done
[ -f "$LIBDIR/libvnet.so" ] && [ -f "$INCDIR/vnet.h" ] && [ -x "$LIBDIR/vnet" ] ||
    die "$LIBDIR/libvnet.so, $LIBDIR/vnet or $INCDIR/vnet.h missing (run cargo build --release)"
# The library's SONAME is libvnet.so.0, which cargo does not create: keep
# that link beside the launcher (as tests/c_api.rs does).
SODIR=${VM_E2E_OUT:-$ROOT/target}/vm-lib
mkdir -p "$SODIR" && ln -sfn "$LIBDIR/libvnet.so" "$SODIR/libvnet.so.0"
cc -O2 -Wall -Wextra -Werror -I "$INCDIR" c-tests/vm_launcher.c -L "$LIBDIR" -lvnet \
    -Wl,-rpath,"$SODIR" -Wl,-rpath,"$LIBDIR" -o "$LAUNCHER" || die "building vm_launcher failed"

TAG=vnete2e-$$
WORK=$(mktemp -d)
# shellcheck source=../tests/cni/lib.sh
. "$ROOT/tests/cni/lib.sh"
CNI_DATA=$WORK/cni-data
TCPDUMP_PID=
LAUNCHER_PID=
cleanup() {
    if [ -n "$LAUNCHER_PID" ]; then
        kill -TERM "$LAUNCHER_PID" 2>/dev/null
        wait "$LAUNCHER_PID" 2>/dev/null
    fi
    [ -n "$TCPDUMP_PID" ] && kill "$TCPDUMP_PID" 2>/dev/null
    cni_cleanup
    if [ -n "${VM_E2E_KEEP:-}" ]; then echo "vm-e2e: logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkns() { cni_mkns "$1"; }
# veth HOSTNS HOSTIF PODNS PODIF: created inside HOSTNS, peer moved to PODNS.
veth() { ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"; }

# snapshot NS FILE: the one settled dump (scripts/nsdump.sh); a failed dump
# leaves a marker no other dump equals.
snapshot() {
    bash "$ROOT/scripts/nsdump.sh" "$1" "$2" || echo "dump of $1 failed $RANDOM$RANDOM" >"$2"
}

# expect DESCRIPTION EXTENDED-REGEX (against the current guest report)
expect() {
    if grep -qE -- "$2" "$GUEST"; then ok "$SC: $1"; else bad "$SC: $1 (no line matching: $2)"; fi
}

# launch PODNS PINGS [CONFIG_JSON]: boot the guest for scenario $SC; checks shared
# by every scenario (exit code, guest done, MACs, teardown restore). $IFACES
# names the pod interfaces vnet hands over, in order (default eth0).
launch() {
    local ns=$1 pings=$2 config=${3:-} ifc
    # The MACs the guest must carry: the pod's own, read from the namespace
    # before setup (not what vnet reports, which the launcher passes on).
    local podmacs=
    for ifc in ${IFACES:-eth0}; do
        podmacs+="$(ip -n "$ns" -j link show dev "$ifc" | jq -r '.[0].address') "
    done
    snapshot "$ns" "$WORK/$SC.before"
    local t0=$(date +%s.%N)
    # The launcher kills qemu after 120 s itself; the outer timeout only
    # guards against a hang in vnet (SIGTERM still lets it tear down).
    # Run in the background and wait, so a signal to this script runs its
    # trap at once (the trap stops the launcher, which tears vnet down).
    VM_APPEND="${VM_APPEND:-}" timeout -k 10 200 "$LAUNCHER" "/run/netns/$ns" "$OUT/vmlinuz" \
        "$OUT/initramfs.cpio.gz" "$pings" ${config:+"$config"} >"$WORK/$SC.out" 2>"$WORK/$SC.err" &
    LAUNCHER_PID=$!
    wait "$LAUNCHER_PID"
    local rc=$? t1=$(date +%s.%N)
    LAUNCHER_PID=
    GUEST=$WORK/$SC.guest
    grep -ao 'VNET-GUEST.*' "$WORK/$SC.out" | tr -d '\r' >"$GUEST"
    sed 's/^/    | /' "$GUEST"
    sed 's/^/    : /' "$WORK/$SC.err" | grep -v '^    : $'
    local lease=$(grep -o 'lease_s=[0-9.]*' "$GUEST" | cut -d= -f2 | tr '\n' ' ')
    local lease6=$(grep -o 'lease6_s=[0-9.]*' "$GUEST" | cut -d= -f2)
    local boot=$(grep -o 'boot uptime=[0-9.]*' "$GUEST" | cut -d= -f2)
    echo "  scenario $SC: lease ${lease:-(none) }s${lease6:+, lease6 ${lease6}s}, guest kernel->init ${boot:-?}s, wall $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s"
    if [ $rc = 0 ]; then ok "$SC: launcher exit 0 (setup, qemu, teardown)"; else bad "$SC: launcher exit $rc"; fi
    expect "guest finished" '^VNET-GUEST done'
    # Every guest NIC carries the MAC its pod interface had, in order.
    local gmacs=$(grep -o '^VNET-GUEST iface=eth[0-9]* .*mac=[^ ]*' "$GUEST" | grep -o '..:..:..:..:..:..' | tr '\n' ' ')
    if [ -n "$gmacs" ] && [ "$podmacs" = "$gmacs" ]; then
        ok "$SC: guest MACs = the pod's original MACs ($podmacs)"
    else
        bad "$SC: guest MACs '$gmacs' != the pod's original MACs '$podmacs'"
    fi
    snapshot "$ns" "$WORK/$SC.after"
    if diff -u "$WORK/$SC.before" "$WORK/$SC.after" >"$WORK/$SC.diff"; then
        ok "$SC: pod netns restored exactly after teardown"
    else
        bad "$SC: pod netns differs after teardown"
        head -60 "$WORK/$SC.diff" | sed 's/^/    /'
    fi
}

# baseline NS TARGET [ARGS]: the topology works from the pod before vnet,
# so a guest ping failure is vnet's, not the fixture's.
baseline() {
    if ip netns exec "$1" busybox ping -c 1 -W 2 "${@:3}" "$2" >"$WORK/$SC.baseline" 2>&1; then
        ok "$SC: fixture: pod reaches $2 before setup"
    else
        bad "$SC: fixture: pod cannot reach $2 before setup"
        sed 's/^/    /' "$WORK/$SC.baseline"
        ip -n "$1" -6 addr show | sed 's/^/    /'
    fi
}

POD_MAC=42:a4:a6:22:80:2e

scenario_a() { # IPv4 /24, default config, tcpdump on the host veth
    local P=$TAG-pa H=$TAG-ha
    mkns "$P" && mkns "$H" || { bad "a: netns"; return; }
    veth "$H" veth0 "$P" eth0
    ip -n "$H" addr add 10.1.90.1/24 dev veth0
    ip -n "$H" link set veth0 up
    ip -n "$P" link set eth0 address $POD_MAC
    ip -n "$P" addr add 10.1.90.5/24 dev eth0
    ip -n "$P" link set eth0 up
    ip -n "$P" route add default via 10.1.90.1
    baseline "$P" 10.1.90.1

    # -Z root: a fresh machine may lack the tcpdump user (its postinst did not
    # create it here), and tcpdump then exits at once, capturing nothing.
    ip netns exec "$H" tcpdump -Z root -i veth0 -n -U --immediate-mode -w "$WORK/a.pcap" 'udp port 67 or udp port 68' \
        2>"$WORK/a.tcpdump" &
    TCPDUMP_PID=$!
    for _ in $(seq 50); do grep -q listening "$WORK/a.tcpdump" && break; sleep 0.1; done

    # Strict reverse-path filtering in the pod, as many nodes have it (loose,
    # systemd's default, drops the same): the guest renews its lease from its
    # address, which only vnet's route leads back to.
    ip netns exec "$P" sysctl -qw net.ipv4.conf.all.rp_filter=1 \
        net.ipv4.conf.default.rp_filter=1 net.ipv4.conf.eth0.rp_filter=1
    VM_APPEND="vnet.renew=1 ${VM_APPEND:-}" launch "$P" 10.1.90.1
    expect "address 10.1.90.5/24" '^VNET-GUEST iface=eth0 .*ip=10\.1\.90\.5/24 '
    expect "lease renewed (rp_filter=1)" '^VNET-GUEST renew ok '
    expect "mtu 1500" '^VNET-GUEST iface=eth0 .*mtu=1500 '
    expect "default via 10.1.90.1" '^VNET-GUEST route default via 10\.1\.90\.1 dev eth0'
    expect "ping 10.1.90.1" '^VNET-GUEST ping 10\.1\.90\.1 ok'

    # Positive control after teardown: one packet to port 67 from the pod must
    # be the only one captured, proving the capture works and nothing leaked.
    ip netns exec "$P" bash -c 'echo x >/dev/udp/10.1.90.1/67'
    sleep 1
    kill -INT "$TCPDUMP_PID" 2>/dev/null
    wait "$TCPDUMP_PID" 2>/dev/null
    TCPDUMP_PID=
    tcpdump -Z root -r "$WORK/a.pcap" -n 2>/dev/null >"$WORK/a.dhcp"
    local n=$(wc -l <"$WORK/a.dhcp")
    if [ "$n" = 1 ] && grep -q '10\.1\.90\.5\.[0-9]* > 10\.1\.90\.1\.67' "$WORK/a.dhcp"; then
        ok "a: no DHCP packet on the host veth during the VM's life (control packet seen)"
    else
        bad "a: DHCP capture on host veth0 has $n packets (want only the control):"
        head -20 "$WORK/a.dhcp" | sed 's/^/    /'
    fi
}

scenario_b() { # Calico: /32, on-link 169.254.1.1, proxy ARP on the host side, MTU 1450
    local P=$TAG-pb H=$TAG-hb
    mkns "$P" && mkns "$H" || { bad "b: netns"; return; }
    veth "$H" veth0 "$P" eth0
    # Calico's IPIP MTU: virtio-net's default is 1500 and the launcher sets
    # no host_mtu, so only DHCP option 26 can give the guest 1450.
    ip -n "$H" link set veth0 mtu 1450
    ip -n "$P" link set eth0 mtu 1450
    ip netns exec "$H" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.veth0.proxy_arp=1
    ip -n "$H" link set veth0 up
    ip -n "$H" addr add 10.0.0.1/32 dev lo
    ip -n "$H" route add 10.244.1.7/32 dev veth0
    # Proxy ARP answers only for addresses routed out another interface, as
    # on a Calico node: give the host netns an uplink with the default route.
    ip -n "$H" link add up0 type veth peer name up1
    ip -n "$H" link set up0 up
    ip -n "$H" link set up1 up
    ip -n "$H" route add default dev up0
    ip -n "$P" link set eth0 address $POD_MAC
    ip -n "$P" addr add 10.244.1.7/32 dev eth0
    ip -n "$P" link set eth0 up
    ip -n "$P" route add 169.254.1.1 dev eth0 scope link
    ip -n "$P" route add default via 169.254.1.1 dev eth0
    baseline "$P" 10.0.0.1

    launch "$P" 10.0.0.1
    expect "address 10.244.1.7/32" '^VNET-GUEST iface=eth0 .*ip=10\.244\.1\.7/32 '
    expect "mtu 1450 (from DHCP only)" '^VNET-GUEST iface=eth0 .*mtu=1450 '
    expect "route 169.254.1.1 dev eth0 scope link" '^VNET-GUEST route 169\.254\.1\.1 dev eth0 scope link'
    expect "default via 169.254.1.1" '^VNET-GUEST route default via 169\.254\.1\.1 dev eth0'
    expect "ping 10.0.0.1 (via proxy ARP)" '^VNET-GUEST ping 10\.0\.0\.1 ok'
}

scenario_c() { # jumbo MTU; the ping carries 8000-byte payloads
    local P=$TAG-pc H=$TAG-hc
    mkns "$P" && mkns "$H" || { bad "c: netns"; return; }
    veth "$H" veth0 "$P" eth0
    ip -n "$H" link set veth0 mtu 9000
    ip -n "$H" addr add 10.1.90.1/24 dev veth0
    ip -n "$H" link set veth0 up
    ip -n "$P" link set eth0 address $POD_MAC mtu 9000
    ip -n "$P" addr add 10.1.90.5/24 dev eth0
    ip -n "$P" link set eth0 up
    ip -n "$P" route add default via 10.1.90.1
    baseline "$P" 10.1.90.1 -s 8000

    VM_APPEND="vnet.ping_size=8000" launch "$P" 10.1.90.1
    expect "mtu 9000" '^VNET-GUEST iface=eth0 .*ip=10\.1\.90\.5/24 mtu=9000 '
    expect "8000-byte ping 10.1.90.1" '^VNET-GUEST ping 10\.1\.90\.1 ok'
}

scenario_d() { # two interfaces described by a CNI result
    local P=$TAG-pd H=$TAG-hd
    mkns "$P" && mkns "$H" || { bad "d: netns"; return; }
    veth "$H" veth0 "$P" eth0
    veth "$H" veth1 "$P" net1
    ip -n "$H" addr add 10.1.90.1/24 dev veth0
    ip -n "$H" addr add 10.2.0.1/24 dev veth1
    ip -n "$H" link set veth0 up
    ip -n "$H" link set veth1 up
    ip -n "$P" link set eth0 address $POD_MAC
    ip -n "$P" link set net1 address 42:a4:a6:22:80:3e
    ip -n "$P" addr add 10.1.90.5/24 dev eth0
    ip -n "$P" addr add 10.2.0.5/24 dev net1
    ip -n "$P" link set eth0 up
    ip -n "$P" link set net1 up
    ip -n "$P" route add default via 10.1.90.1
    baseline "$P" 10.1.90.1
    baseline "$P" 10.2.0.1
    local sb=/run/netns/$P
    local cfg
    cfg=$(jq -cn --arg sb "$sb" '{cni_result: {
        cniVersion: "1.0.0",
        interfaces: [
            {name: "veth0"},
            {name: "eth0", mac: "42:a4:a6:22:80:2e", sandbox: $sb},
            {name: "net1", mac: "42:a4:a6:22:80:3e", sandbox: $sb}],
        ips: [
            {address: "10.1.90.5/24", gateway: "10.1.90.1", interface: 1},
            {address: "10.2.0.5/24", gateway: "10.2.0.1", interface: 2}],
        routes: [{dst: "0.0.0.0/0", gw: "10.1.90.1"}],
        dns: {nameservers: ["10.96.0.10"], search: ["default.svc.cluster.local"]}}}')

    IFACES="eth0 net1" launch "$P" 10.1.90.1,10.2.0.1 "$cfg"
    expect "eth0 10.1.90.5/24" '^VNET-GUEST iface=eth0 .*ip=10\.1\.90\.5/24 '
    expect "eth1 10.2.0.5/24" '^VNET-GUEST iface=eth1 .*ip=10\.2\.0\.5/24 '
    expect "default via 10.1.90.1 dev eth0" '^VNET-GUEST route default via 10\.1\.90\.1 dev eth0'
    expect "DNS 10.96.0.10 from the CNI result" '^VNET-GUEST resolv nameserver 10\.96\.0\.10'
    expect "ping 10.1.90.1" '^VNET-GUEST ping 10\.1\.90\.1 ok'
    expect "ping 10.2.0.1" '^VNET-GUEST ping 10\.2\.0\.1 ok'
}

# A pod made by the reference plugins' CHAIN (tests/cni/lib.sh), with a
# neighbour pod from the same chain on the same node. The guest must send to
# the next hop the pod used: its gateway, the neighbour (on-link only where
# the pod had the subnet on-link: not for ptp, which is what issue 14 was)
# and an address beyond the node, with pings the size of the pod's MTU.
# After teardown the pod is exactly as the plugins left it, and the plugins'
# own DEL succeeds.
# cni_scenario CHAIN CLIENT MASK MTU
cni_scenario() {
    local chain=$1 client=$2 mask=$3 mtu=$4 P=$TAG-p$SC N=$TAG-n$SC res nres= gw ip nip= pings
    [ -n "${NODE:-}" ] || cni_world || { bad "$SC: node namespaces"; return; }
    cni_pod "$P" || { bad "$SC: netns"; return; }
    res=$(cni_add "$chain" "$P") || { bad "$SC: $chain ADD failed"; return; }
    ip=$(jq -r '.ips[0].address | split("/")[0]' <<<"$res")
    gw=$(jq -r '.ips[0].gateway' <<<"$res")
    pings=$gw,$BEYOND
    if [ "$chain" != hostdev ]; then
        cni_pod "$N" && nres=$(cni_add "$chain" "$N") || { bad "$SC: neighbour ADD failed"; return; }
        nip=$(jq -r '.ips[0].address | split("/")[0]' <<<"$nres")
        pings=$gw,$nip,$BEYOND
    fi
    local t
    # From the pod's address: with sbr only the rule for it finds a route.
    for t in ${pings//,/ }; do baseline "$P" "$t" -s $((mtu - 28)) -I "$ip"; done

    VM_APPEND="vnet.client=$client vnet.ping_size=$((mtu - 28)) ${VM_APPEND:-}" \
        launch "$P" "$pings" "$(jq -cn --argjson r "$res" '{cni_result: $r}')"
    expect "$client: address $ip/$mask" "^VNET-GUEST iface=eth0 .*ip=${ip//./\\.}/$mask "
    if [ "$client" = dhcpcd ]; then
        # dhcpcd 9 puts option 26 on its routes and leaves the link at 1500.
        expect "$client: mtu $mtu on the default route" "^VNET-GUEST iface=eth0 .*route_mtu=$mtu "
    else
        expect "$client: mtu $mtu" "^VNET-GUEST iface=eth0 .*mtu=$mtu "
    fi
    expect "default via $gw" "^VNET-GUEST route default via ${gw//./\\.} dev eth0"
    for t in ${pings//,/ }; do
        expect "$client: ping $t ($((mtu - 28))-byte payload)" "^VNET-GUEST ping ${t//./\\.} ok"
    done
    [ "$chain" = ptpsbr ] && expect "$client: the MAC tuning set ($TUNED_MAC)" "^VNET-GUEST iface=eth0 .*mac=$TUNED_MAC "
    if [ "$mask" = 32 ]; then
        local subnet=$(jq -r '.ips[0].address' <<<"$res" | sed 's/\.[0-9]*\//.0\//')
        expect "subnet $subnet via the gateway, not on-link" "^VNET-GUEST route ${subnet//./\\.} via ${gw//./\\.} dev eth0"
    fi
    if cni_del "$chain" "$P" "$res" 2>"$WORK/$SC.del"; then
        ok "$SC: the plugins' DEL succeeds after teardown"
    else
        bad "$SC: the plugins' DEL failed:"; sed 's/^/    /' "$WORK/$SC.del"
    fi
    [ -n "$nres" ] && cni_del "$chain" "$N" "$nres" 2>/dev/null
}

# dad_wait NS...: until no address in any of NS is tentative (DAD over),
# at most 6 s.
dad_wait() {
    local ns busy _
    for _ in $(seq 60); do
        busy=
        for ns in "$@"; do
            ip netns exec "$ns" ip -6 addr show | grep -q tentative && busy=1
        done
        [ -n "$busy" ] || return 0
        sleep 0.1
    done
}

# expect_not DESCRIPTION EXTENDED-REGEX: no line of the guest report matches.
expect_not() {
    local hit
    if hit=$(grep -m1 -E -- "$2" "$GUEST"); then bad "$SC: $1 (the guest reported: $hit)"; else ok "$SC: $1"; fi
}

# v6cap_start NS: capture ICMPv6 and DHCPv6 on every link of NS (the node)
# for the guest's life; v6cap_check NS: the capture holds frames (the
# guest's pings and the pod's own ND, the control) but none of vnet's RA,
# NA from its link-local address or DHCPv6 answers, which stay in the pod.
v6cap_start() {
    ip netns exec "$1" timeout 200 tcpdump -Z root -i any -U -w "$WORK/$SC.pcap" 'icmp6 or udp port 546 or udp port 547' >/dev/null 2>&1 &
    V6CAP=$!
    sleep 1
}
v6cap_check() {
    sleep 1
    kill "$V6CAP" 2>/dev/null; wait "$V6CAP" 2>/dev/null
    local ours total
    ours=$(ip netns exec "$1" tcpdump -Z root -nr "$WORK/$SC.pcap" 2>/dev/null | grep -cE 'router advertisement|fe80::a9fe:fe02|dhcp6 (advertise|reply)' || true)
    total=$(ip netns exec "$1" tcpdump -Z root -nr "$WORK/$SC.pcap" 2>/dev/null | wc -l)
    if [ "$total" -gt 0 ] && [ "$ours" = 0 ]; then
        ok "$SC: node capture: $total ICMPv6/DHCPv6 frames (the control), none of our RA/NA/DHCPv6"
    else
        bad "$SC: node capture: $ours of ours among $total"
    fi
}

# cni_v6 CHAIN CLIENT6 [MODE]: issue 17, a bridge-plugin pod with IPv6
# (dual: dual-stack, global gateway fd00:24::1; v6only: IPv6 only,
# fd00:25::1) and a neighbour: the guest gets v4 by DHCP where the pod has
# it and the pod's exact v6 address by RA + DHCPv6, and pings the gateways
# and the neighbour over each; the node-side capture holds none of our
# RA/DHCPv6. CLIENT6 dhcpcd: dhcpcd 9 for both (RA in userspace);
# dhclient: the guest kernel's RA handling + dhclient -6 (v4 by udhcpc).
cni_v6() {
    local chain=$1 client=$2 mode=${3:-bridge} P=$TAG-p$SC N=$TAG-n$SC res nres ip ip6 gw gw6 nip nip6 pings app
    [ -n "${NODE:-}" ] || cni_world || { bad "$SC: node namespaces"; return; }
    cni_pod "$P" || { bad "$SC: netns"; return; }
    res=$(cni_add "$chain" "$P") || { bad "$SC: $chain ADD failed"; return; }
    cni_pod "$N" && nres=$(cni_add "$chain" "$N") || { bad "$SC: neighbour ADD failed"; return; }
    ip=$(jq -r '.ips[] | select(.address | test(":") | not) | .address | split("/")[0]' <<<"$res")
    gw=$(jq -r '.ips[] | select(.address | test(":") | not) | .gateway' <<<"$res")
    ip6=$(jq -r '.ips[] | select(.address | test(":")) | .address' <<<"$res")
    gw6=$(jq -r '.ips[] | select(.address | test(":")) | .gateway' <<<"$res")
    nip=$(jq -r '.ips[] | select(.address | test(":") | not) | .address | split("/")[0]' <<<"$nres")
    nip6=$(jq -r '.ips[] | select(.address | test(":")) | .address | split("/")[0]' <<<"$nres")
    # host-local's range in tests/cni/lib.sh: fd00:2N::/64.
    local net6=${ip6%%::*}::/64
    pings=$gw6,$nip6
    [ -n "$ip" ] && pings=$gw,$nip,$pings
    # DAD: the pods' addresses and the gateway's on the node's bridge.
    dad_wait "$P" "$NODE"
    local t
    # Up to 3 echoes: the first one to the bridge's v6 address is now and
    # then lost right after the plugins' ADD (seen with and without vnet).
    for t in ${pings//,/ }; do baseline "$P" "$t" -c 3; done
    app="vnet.v6=1"
    case $client in
    dhcpcd) app+=" vnet.client=dhcpcd" ;;
    *) app+=" vnet.client6=$client" ;;
    esac
    # No IPv4 in the pod: vnet serves no DHCPv4, the guest runs no v4 client.
    [ -z "$ip" ] && app+=" vnet.v4=0"
    v6cap_start "$NODE"
    VM_APPEND="$app ${VM_APPEND:-}" \
        launch "$P" "$pings" "$(jq -cn --argjson r "$res" --arg m "$mode" '{cni_result: $r, mode: $m}')"
    v6cap_check "$NODE"
    # DHCPv6 has no prefix length: the address is a /128, and the pod's
    # on-link /64 (host-local's range in tests/cni/lib.sh) comes from the RA.
    # Exactly one global address (no SLAAC one: A off), the pod's.
    expect "$client: v6 address exactly ${ip6%/*}, no other" "^VNET-GUEST iface6=eth0 ip6=${ip6%/*}/128 *lease6_s=.* client6=$client"
    expect "$client: $net6 on-link (RA prefix, L)" "^VNET-GUEST route6 $net6 dev eth0"
    expect "v6 default route" "^VNET-GUEST route6 default via fe80::[0-9a-f:]* dev eth0"
    # dhclient does no RA: the kernel's own RA processing made the route.
    [ "$client" = dhclient ] && expect "v6 default route from the kernel's RA handling (proto ra)" \
        "^VNET-GUEST route6 default via fe80::[0-9a-f:]* dev eth0 proto ra "
    if [ -z "$ip" ]; then
        expect "no IPv4 client run" "^VNET-GUEST iface=eth0 v4=off "
        expect_not "no IPv4 address on eth0" "^VNET-GUEST addr [0-9]+: eth0 +inet "
    fi
    # vnet.renew6=1 (dhcpcd): told to renew at once, dhcpcd's RENEW gets a
    # REPLY for the same address, and it never solicits again.
    case " ${VM_APPEND:-} " in *" vnet.renew6=1 "*)
        expect "DHCPv6 lease renewed, not rediscovered: RENEW answered, no new SOLICIT, same address" \
            "^VNET-GUEST renew6 ok .* solicit=0 ip6=${ip6%/*}/128 *$" ;;
    esac
    for t in ${pings//,/ }; do expect "ping $t" "^VNET-GUEST ping ${t//./\\.} ok"; done
    cni_del "$chain" "$P" "$res" 2>/dev/null || bad "$SC: DEL failed"
    cni_del "$chain" "$N" "$nres" 2>/dev/null
}

# calico_pod NODE NODEIF POD ADDR MAC: a Calico IPv6 pod: eth0 holds ADDR/128
# and a default route via fe80::ecee:eeff:feee:eeee, the node end of the veth
# (MAC ee:ee:ee:ee:ee:ee, no address of its own but that link-local) routes
# ADDR/128 to it.
CALI_GW=fe80::ecee:eeff:feee:eeee
calico_pod() {
    ip -n "$1" link add "$2" type veth peer name eth0 netns "$3" || return 1
    ip -n "$1" link set "$2" addrgenmode none
    ip -n "$1" link set "$2" address ee:ee:ee:ee:ee:ee up
    ip -n "$1" addr add $CALI_GW/64 dev "$2" nodad
    ip -n "$3" link set eth0 address "$5" up
    ip -n "$3" addr add "$4/128" dev eth0 nodad
    ip -n "$3" -6 route add default via $CALI_GW dev eth0
    ip -n "$1" -6 route add "$4/128" dev "$2"
}

# calico6: issue 17, a Calico-style IPv6-only pod (as tests/ipv6.rs
# calico_style_ipv6_only), no CNI result: vnet reads the namespace. The guest
# (dhcpcd 9, no v4) must hold exactly fd00:33::5/128 with no on-link prefix,
# default via the node's link-local, and reach a node address and a
# neighbour pod made the same way through it.
scenario_calico6() {
    local P=$TAG-pk H=$TAG-hk N=$TAG-nk t
    mkns "$P" && mkns "$H" && mkns "$N" || { bad "$SC: netns"; return; }
    ip netns exec "$H" sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv6.conf.default.forwarding=1
    ip -n "$H" addr add fd00:99::1/128 dev lo
    calico_pod "$H" cali0 "$P" fd00:33::5 $POD_MAC && calico_pod "$H" cali1 "$N" fd00:33::6 42:a4:a6:22:80:3f ||
        { bad "$SC: calico veths"; return; }
    # The pods' own link-local addresses (EUI-64) finish DAD.
    dad_wait "$P" "$N"
    for t in fd00:99::1 fd00:33::6; do baseline "$P" "$t"; done
    v6cap_start "$H"
    VM_APPEND="vnet.v6=1 vnet.v4=0 vnet.client=dhcpcd ${VM_APPEND:-}" launch "$P" fd00:99::1,fd00:33::6
    v6cap_check "$H"
    expect "v6 address exactly fd00:33::5/128, no other" "^VNET-GUEST iface6=eth0 ip6=fd00:33::5/128 *lease6_s="
    expect "default via $CALI_GW dev eth0" "^VNET-GUEST route6 default via $CALI_GW dev eth0"
    expect_not "no on-link prefix route (a /128 pod)" "^VNET-GUEST route6 fd00:33::/[0-9]"
    expect "no IPv4 client run" "^VNET-GUEST iface=eth0 v4=off "
    expect_not "no IPv4 address on eth0" "^VNET-GUEST addr [0-9]+: eth0 +inet "
    for t in fd00:99::1 fd00:33::6; do expect "ping $t (via $CALI_GW)" "^VNET-GUEST ping $t ok"; done
}

# A macvlan pod (the usual Multus secondary network) cannot be bridged: a
# macvlan receives only frames for its own MAC. Setup must refuse it
# (VNET_ERR_UNSUPPORTED, 17) and change nothing.
cni_macvlan() {
    local P=$TAG-p$SC res rc
    [ -n "${NODE:-}" ] || cni_world || { bad "$SC: node namespaces"; return; }
    cni_pod "$P" && res=$(cni_add macvlan "$P") || { bad "$SC: macvlan ADD failed"; return; }
    snapshot "$P" "$WORK/$SC.before"
    jq -cn --argjson r "$res" '{cni_result: $r}' |
        "$LIBDIR/vnet" setup --netns "/run/netns/$P" --config - --no-wait >"$WORK/$SC.out" 2>"$WORK/$SC.err"
    rc=$?
    if [ $rc = 17 ] && grep -qi macvlan "$WORK/$SC.err" && grep -q "mode.: .redirect" "$WORK/$SC.err"; then
        ok "$SC: refused with exit 17 naming macvlan and redirect mode: $(head -1 "$WORK/$SC.err")"
    else
        bad "$SC: vnet setup exit $rc (want 17): $(cat "$WORK/$SC.err")"
    fi
    snapshot "$P" "$WORK/$SC.after"
    if diff -u "$WORK/$SC.before" "$WORK/$SC.after" >"$WORK/$SC.diff"; then
        ok "$SC: pod netns untouched"
    else
        bad "$SC: pod netns changed by a refused setup"; head -40 "$WORK/$SC.diff" | sed 's/^/    /'
    fi
    cni_del macvlan "$P" "$res" 2>/dev/null || bad "$SC: macvlan DEL failed"
}

# Redirect mode (issue 16) on pods made by the reference CNI plugins, run
# from a scratch node namespace with a private host-local dataDir; the
# plugin's result is the cni_result, and its DEL must succeed after teardown.
CNI=/usr/lib/cni
# cni CMD NODE POD IFNAME CONF: run plugin "type" of CONF (stdout: its result).
cni() {
    local type
    type=$(jq -r .type <<<"$5")
    CNI_COMMAND=$1 CNI_CONTAINERID=$3 CNI_NETNS=/var/run/netns/$3 CNI_IFNAME=$4 \
        CNI_PATH=$CNI ip netns exec "$2" "$CNI/$type" <<<"$5"
}
# ipam SUBNET FIRST GW: host-local handing out FIRST only, in $WORK/ipam.
ipam() {
    jq -cn --arg s "$1" --arg f "$2" --arg g "$3" --arg d "$WORK/ipam" '{type: "host-local",
        dataDir: $d, ranges: [[{subnet: $s, rangeStart: $f, rangeEnd: $f, gateway: $g}]],
        routes: [{dst: "0.0.0.0/0"}]}'
}
# redirect_run POD NODE CONF PINGS: ADD, boot the guest in redirect mode on
# the plugin's result, then DEL (exit 0 expected).
redirect_run() {
    local P=$1 N=$2 conf=$3 pings=$4 res
    if res=$(cni ADD "$N" "$P" eth0 "$conf"); then ok "$SC: plugin ADD"; else bad "$SC: plugin ADD"; return; fi
    launch "$P" "$pings" "$(jq -cn --argjson r "$res" '{mode: "redirect", cni_result: $r}')"
    local mode
    mode=$(grep -ao 'VNET-HOST result .*' "$WORK/$SC.out" | head -1 | cut -d' ' -f3- |
        jq -r '[.vnet.interfaces[].mode] | join(",")' 2>/dev/null)
    if [ "$mode" = redirect ]; then ok "$SC: result says mode redirect"; else bad "$SC: result mode '$mode'"; fi
    if cni DEL "$N" "$P" eth0 "$conf" >/dev/null; then ok "$SC: plugin DEL exit 0"; else bad "$SC: plugin DEL failed"; fi
}

scenario_m() { # macvlan (bridge mode) from the macvlan plugin, a neighbour pod on the same master
    local P=$TAG-pm N=$TAG-nm B=$TAG-bm
    mkns "$P" && mkns "$N" && mkns "$B" || { bad "m: netns"; return; }
    ip -n "$N" link add m0 type veth peer name m1
    ip -n "$N" link set m0 up && ip -n "$N" link set m1 up
    # The gateway: a macvlan of the node on the same master.
    ip -n "$N" link add gw link m0 type macvlan mode bridge
    ip -n "$N" addr add 10.1.90.1/24 dev gw && ip -n "$N" link set gw up
    local conf nconf
    conf=$(jq -cn --argjson i "$(ipam 10.1.90.0/24 10.1.90.5 10.1.90.1)" \
        '{cniVersion: "1.0.0", name: "vn16-mv", type: "macvlan", master: "m0", mode: "bridge", ipam: $i}')
    nconf=$(jq -cn --argjson i "$(ipam 10.1.90.0/24 10.1.90.6 10.1.90.1)" \
        '{cniVersion: "1.0.0", name: "vn16-mvn", type: "macvlan", master: "m0", mode: "bridge", ipam: $i}')
    cni ADD "$N" "$B" eth0 "$nconf" >/dev/null || bad "m: neighbour ADD"
    baseline "$B" 10.1.90.1
    redirect_run "$P" "$N" "$conf" 10.1.90.1,10.1.90.6
    expect "eth0 10.1.90.5/24" '^VNET-GUEST iface=eth0 .*ip=10\.1\.90\.5/24 '
    expect "ping the gateway 10.1.90.1" '^VNET-GUEST ping 10\.1\.90\.1 ok'
    expect "ping the neighbour pod 10.1.90.6" '^VNET-GUEST ping 10\.1\.90\.6 ok'
    cni DEL "$N" "$B" eth0 "$nconf" >/dev/null || bad "m: neighbour DEL"
}

scenario_p() { # veth from the ptp plugin (/32, gateway on the node side)
    local P=$TAG-pp N=$TAG-np
    mkns "$P" && mkns "$N" || { bad "p: netns"; return; }
    local conf
    conf=$(jq -cn --argjson i "$(ipam 10.1.91.0/24 10.1.91.5 10.1.91.1)" \
        '{cniVersion: "1.0.0", name: "vn16-ptp", type: "ptp", ipMasq: false, ipam: $i}')
    redirect_run "$P" "$N" "$conf" 10.1.91.1
    expect "ping the gateway 10.1.91.1" '^VNET-GUEST ping 10\.1\.91\.1 ok'
}

scenario_h() { # a device moved in by the host-device plugin (one end of a node veth)
    local P=$TAG-ph N=$TAG-nh
    mkns "$P" && mkns "$N" || { bad "h: netns"; return; }
    ip -n "$N" link add hd0 type veth peer name hd1
    ip -n "$N" addr add 10.1.92.1/24 dev hd1 && ip -n "$N" link set hd1 up
    local conf
    conf=$(jq -cn --argjson i "$(ipam 10.1.92.0/24 10.1.92.5 10.1.92.1)" \
        '{cniVersion: "1.0.0", name: "vn16-hd", type: "host-device", device: "hd0", ipam: $i}')
    redirect_run "$P" "$N" "$conf" 10.1.92.1
    expect "ping the peer 10.1.92.1" '^VNET-GUEST ping 10\.1\.92\.1 ok'
}

for SC in $SCENARIOS; do
    echo "== scenario $SC"
    GUEST=/dev/null
    case $SC in
    a | b | c | d | m | p | h) scenario_$SC ;;
    cni-bridge) cni_scenario bridge udhcpc 24 1500 ;;
    cni-dual) cni_scenario dual udhcpc 24 1500 ;;
    cni-ptp) cni_scenario ptp udhcpc 32 1500 ;;
    cni-ptpsbr) cni_scenario ptpsbr udhcpc 32 1400 ;;
    cni-hostdev) cni_scenario hostdev udhcpc 24 1500 ;;
    cni-bridge-dhcpcd) cni_scenario bridge dhcpcd 24 1500 ;;
    cni-ptp-dhcpcd) cni_scenario ptp dhcpcd 32 1500 ;;
    cni-ptpsbr-dhcpcd) cni_scenario ptpsbr dhcpcd 32 1400 ;;
    cni-dual6-dhcpcd) VM_APPEND="vnet.renew6=1 ${VM_APPEND:-}" cni_v6 dual dhcpcd ;;
    cni-dual6-dhclient) cni_v6 dual dhclient ;;
    cni-v6only-dhcpcd) cni_v6 v6only dhcpcd ;;
    calico6) scenario_calico6 ;;
    r6) cni_v6 dual dhcpcd redirect ;;
    cni-macvlan) cni_macvlan ;;
    *) bad "unknown scenario $SC" ;;
    esac
done
summary
[ "$fail" = 0 ]
