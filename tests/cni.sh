#!/bin/bash
# vnet-cni tests, in scratch namespaces (vn18-*) only: a scratch "node"
# namespace runs the plugins, pods are namespaces of their own.
#
#  1. direct, per the spec: [bridge] and [ptp] ADD, then vnet-cni ADD with
#     their result as prevResult; CHECK; DEL; the pod's dump equals the one
#     after the first plugin's ADD byte for byte; a second DEL succeeds;
#     no responder, no state left.
#  2. hostile confs, prevResults and environments: each fails with a CNI
#     error object and a non-zero exit, and the pod's dump is unchanged.
#  3. libcni (the runtimes' library) with conflists [bridge, vnet-cni],
#     [ptp, vnet-cni], dual-stack [bridge, vnet-cni] and [macvlan, vnet-cni
#     with "mode": "redirect"]: ADD, QEMU (TCG) in the pod on tap0 by name, the
#     guest gets its lease (and, dual stack, the pod's exact IPv6 address and
#     a v6 default route from the responder) and pings the gateway and a
#     neighbour pod (over both); CHECK of
#     vnet-cni passes; DEL leaves the pod as before ADD, no links, table,
#     process or state of ours; a second DEL succeeds.
#
# Run as root after `cargo build --release`. Ends with "cni: N passed, M failed".
# VNET_CNI_BIN overrides the plugin (default target/release/vnet-cni);
# CNI_TESTS="direct hostile libcni" picks parts.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${VNET_CNI_BIN:-$ROOT/target/release/vnet-cni}
PARTS=${CNI_TESTS:-direct hostile libcni}
pass=0 fail=0
ok() { echo "  ok   $*"; pass=$((pass + 1)); }
bad() { echo "  FAIL $*"; fail=$((fail + 1)); }
summary() { echo "cni: $pass passed, $fail failed"; }
[ "$(id -u)" = 0 ] || { bad "must run as root"; summary; exit 1; }
[ -x "$BIN" ] || { bad "$BIN missing (cargo build --release)"; summary; exit 1; }

TAG=vn18-$$
W=$(mktemp -d /tmp/vn18-cni.XXXXXX)
NODE=$TAG-node
NSLIST=()
QEMU_PID=
cleanup() {
    [ -n "$QEMU_PID" ] && kill -9 "$QEMU_PID" 2>/dev/null
    # Responders of this run only: their command line names our state dir.
    for p in $(pgrep -f "^vnet-cni serve $W/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    for ns in "${NSLIST[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if [ -n "${CNI_KEEP:-}" ]; then echo "cni: kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkns() { ip netns add "$1" && NSLIST+=("$1") && ip -n "$1" link set lo up; }
dump() { bash scripts/nsdump.sh "$1" "$2" || echo "dump of $1 failed $RANDOM$RANDOM" >"$2"; }
responders() { pgrep -f "^vnet-cni serve $W/" | wc -l; }

mkns "$NODE" || { bad "node netns"; summary; exit 1; }
# The plugins libcni may run: the reference ones and ours.
mkdir -p "$W/bin"
for p in bridge ptp macvlan host-local loopback; do ln -s "/usr/lib/cni/$p" "$W/bin/$p"; done
ln -s "$BIN" "$W/bin/vnet-cni"

# first_conf TYPE NAME SUBNET: the first plugin's conf.
first_conf() {
    case $1 in
    bridge) jq -cn --arg b "vn18b$(cut -d. -f3 <<<"$3")" --arg s "$3" --arg d "$W/ipam" \
        '{type:"bridge",bridge:$b,isGateway:true,ipam:{type:"host-local",subnet:$s,dataDir:$d}}' ;;
    # Dual stack: $3 and the IPv6 range $4.
    dual) jq -cn --arg b "vn18d$(cut -d. -f3 <<<"$3")" --arg s "$3" --arg s6 "$4" --arg d "$W/ipam" \
        '{type:"bridge",bridge:$b,isGateway:true,ipam:{type:"host-local",ranges:[[{subnet:$s}],[{subnet:$s6}]],
          routes:[{dst:"0.0.0.0/0"},{dst:"::/0"}],dataDir:$d}}' ;;
    ptp) jq -cn --arg n "$2" --arg s "$3" --arg d "$W/ipam" \
        '{type:"ptp",ipam:{type:"host-local",subnet:$s,dataDir:$d}}' ;;
    # On the node's vn18m0, whose gateway is another macvlan of the node
    # (a macvlan cannot reach its master's own address): see macvlan_node.
    macvlan) jq -cn --arg s "$3" --arg g "${3%.0/24}.1" --arg d "$W/ipam" \
        '{type:"macvlan",master:"vn18m0",mode:"bridge",
          ipam:{type:"host-local",ranges:[[{subnet:$s,gateway:$g,rangeStart:($g|sub("\\.1$";".10"))}]],dataDir:$d}}' ;;
    esac
}
# plugin CMD NETNS ID CONF-FILE [BIN]: run a plugin directly from the node.
plugin() {
    CNI_COMMAND=$1 CNI_CONTAINERID=$3 CNI_NETNS=$2 CNI_IFNAME=eth0 CNI_PATH=$W/bin \
        ip netns exec "$NODE" "${5:-$BIN}" <"$4"
}
vconf() { # vconf PREV-FILE [EXTRA-JSON]: a vnet-cni conf with that prevResult
    jq -c --arg sd "$W/state" --argjson x "${2:-{\}}" \
        '{cniVersion:"1.0.0",name:"vn18net",type:"vnet-cni",stateDir:$sd,prevResult:.} + $x' "$1"
}

direct() { # direct TYPE SUBNET
    local t=$1 P=$TAG-d$1 out
    mkns "$P" || { bad "direct $t: netns"; return; }
    jq -c --arg n vn18net '. + {cniVersion:"1.0.0",name:$n}' <<<"$(first_conf "$t" vn18net "$2")" >"$W/$t.first"
    plugin ADD /run/netns/$P d$t "$W/$t.first" "$W/bin/$t" >"$W/$t.prev" ||
        { bad "direct $t: $t ADD failed: $(cat "$W/$t.prev")"; return; }
    dump "$P" "$W/$t.before"
    vconf "$W/$t.prev" >"$W/$t.conf"
    local t0=$(date +%s%N)
    if plugin ADD /run/netns/$P d$t "$W/$t.conf" >"$W/$t.res"; then
        ok "direct $t: vnet-cni ADD ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
    else
        bad "direct $t: vnet-cni ADD: $(cat "$W/$t.res")"; return
    fi
    local mac0=$(jq -r '.interfaces[] | select(.name=="eth0") | .mac' "$W/$t.prev")
    if jq -e --arg m "$mac0" --arg sb /run/netns/$P \
        '[.interfaces[] | select(.name=="tap0" and .mac==$m and .sandbox==$sb)] | length == 1' "$W/$t.res" >/dev/null &&
        [ "$(jq -S -c '[.ips, .routes, .dns]' "$W/$t.res")" = "$(jq -S -c '[.ips, .routes, .dns]' "$W/$t.prev")" ]; then
        ok "direct $t: result = prevResult + tap0 (mac $mac0, sandbox), ips/routes/dns unchanged"
    else
        bad "direct $t: result $(cat "$W/$t.res")"
    fi
    [ "$(responders)" = 1 ] && ok "direct $t: one DHCP responder runs" || bad "direct $t: $(responders) responders"
    # No queue of tap0 is held by anything of ours: a VMM can attach.
    local held=0 p
    for p in $(pgrep -f "^vnet-cni serve $W/"); do
        ls -l /proc/$p/fd 2>/dev/null | grep -q 'net/tun' && held=1
    done
    [ $held = 0 ] && ok "direct $t: the responder holds no /dev/net/tun" || bad "direct $t: the responder holds a TAP queue"
    vconf "$W/$t.res" >"$W/$t.check"
    out=$(plugin CHECK /run/netns/$P d$t "$W/$t.check") && ok "direct $t: CHECK passes" || bad "direct $t: CHECK: $out"
    # A dead responder is reported by CHECK.
    if [ "$t" = bridge ]; then
        local pid=$(pgrep -f "^vnet-cni serve $W/")
        kill -9 "$pid"; sleep 0.2
        out=$(plugin CHECK /run/netns/$P d$t "$W/$t.check")
        if [ $? != 0 ] && grep -q 'not running' <<<"$out"; then ok "direct $t: CHECK reports the dead responder"; else bad "direct $t: CHECK after kill: $out"; fi
    fi
    # Drift: tap0 deleted by hand. CHECK names it; DEL still restores all.
    if [ "$t" = ptp ]; then
        ip -n "$P" link del tap0
        out=$(plugin CHECK /run/netns/$P d$t "$W/$t.check")
        if [ $? != 0 ] && grep -q 'tap0' <<<"$out"; then ok "direct $t: CHECK reports tap0 gone: $(jq -r .details <<<"$out")"; else bad "direct $t: CHECK after tap0 deleted: $out"; fi
    fi
    local t1=$(date +%s%N)
    out=$(plugin DEL /run/netns/$P d$t "$W/$t.conf") &&
        ok "direct $t: vnet-cni DEL ($(( ($(date +%s%N) - t1) / 1000000 )) ms)" || bad "direct $t: DEL: $out"
    dump "$P" "$W/$t.after"
    if diff -u "$W/$t.before" "$W/$t.after" >"$W/$t.diff"; then
        ok "direct $t: pod dump after vnet-cni DEL = after $t ADD"
    else
        bad "direct $t: pod differs after DEL"; head -40 "$W/$t.diff"
    fi
    [ "$(responders)" = 0 ] && ok "direct $t: no responder left" || bad "direct $t: responder left"
    [ -z "$(ls -A "$W/state" 2>/dev/null)" ] && ok "direct $t: no state left" || bad "direct $t: state left: $(ls "$W/state")"
    out=$(plugin DEL /run/netns/$P d$t "$W/$t.conf") && ok "direct $t: second DEL succeeds" || bad "direct $t: second DEL: $out"
    plugin DEL /run/netns/$P d$t "$W/$t.first" "$W/bin/$t" >/dev/null
    # DEL when the namespace is gone: state and responder are cleaned up.
    plugin ADD /run/netns/$P d$t "$W/$t.first" "$W/bin/$t" >"$W/$t.prev2" &&
        vconf "$W/$t.prev2" >"$W/$t.conf2" && plugin ADD /run/netns/$P d$t "$W/$t.conf2" >/dev/null
    ip netns del "$P"
    out=$(plugin DEL /run/netns/$P d$t "$W/$t.conf2")
    if [ $? = 0 ] && [ "$(responders)" = 0 ] && [ -z "$(ls -A "$W/state")" ]; then
        ok "direct $t: DEL with the netns gone succeeds, stops the responder, drops the state"
    else
        bad "direct $t: DEL with the netns gone: $out; $(responders) responders; state $(ls "$W/state")"
    fi
    plugin DEL /run/netns/$P d$t "$W/$t.first" "$W/bin/$t" >/dev/null 2>&1
}

multiqueue() { # queues 2 + vnet_hdr: the TAP a VMM opens by name is multiqueue
    local P=$TAG-mq out
    mkns "$P" || { bad "multiqueue: netns"; return; }
    jq -c '. + {cniVersion:"1.0.0",name:"vn18net"}' <<<"$(first_conf bridge vn18net 10.18.5.0/24)" >"$W/mq.first"
    plugin ADD /run/netns/$P mq "$W/mq.first" "$W/bin/bridge" >"$W/mq.prev" || { bad "multiqueue: bridge ADD"; return; }
    dump "$P" "$W/mq.before"
    vconf "$W/mq.prev" '{"queues":2,"vnet_hdr":true,"dhcp":false}' >"$W/mq.conf"
    out=$(plugin ADD /run/netns/$P mq "$W/mq.conf") || { bad "multiqueue: ADD: $out"; return; }
    local info=$(ip -n "$P" -d -j link show tap0 | jq -c '.[0].linkinfo.info_data')
    if jq -e '.type=="tap" and .multi_queue==true and .vnet_hdr==true and .persist==true and .pi==false' <<<"$info" >/dev/null; then
        ok "multiqueue: tap0 is a persistent multiqueue vnet_hdr TAP ($info)"
    else
        bad "multiqueue: tap0 $info"
    fi
    # Nothing holds a queue: two queues open with IFF_MULTI_QUEUE by name.
    local nq=$(ip netns exec "$P" python3 -c '
import fcntl, os, struct
fds = []
for _ in range(2):
    f = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(f, 0x400454ca, struct.pack("16sH22x", b"tap0", 0x0002 | 0x1000 | 0x4000 | 0x0100))
    fds.append(f)
print(len(fds))' 2>&1)
    [ "$nq" = 2 ] && ok "multiqueue: a VMM attaches 2 queues to tap0 by name" || bad "multiqueue: attach: $nq"
    [ "$(responders)" = 0 ] && ok "multiqueue: dhcp false starts no responder" || bad "multiqueue: responder with dhcp off"
    out=$(plugin DEL /run/netns/$P mq "$W/mq.conf") || bad "multiqueue: DEL: $out"
    dump "$P" "$W/mq.after"
    diff -q "$W/mq.before" "$W/mq.after" >/dev/null && ok "multiqueue: pod dump after DEL = after bridge ADD" || bad "multiqueue: pod differs"
    plugin DEL /run/netns/$P mq "$W/mq.first" "$W/bin/bridge" >/dev/null 2>&1
}

hostile() {
    local P=$TAG-h out rc n=0 nbad=0
    mkns "$P" || { bad "hostile: netns"; return; }
    jq -c '. + {cniVersion:"1.0.0",name:"vn18net"}' <<<"$(first_conf bridge vn18net 10.18.9.0/24)" >"$W/h.first"
    plugin ADD /run/netns/$P h "$W/h.first" "$W/bin/bridge" >"$W/h.prev" || { bad "hostile: bridge ADD: $(cat "$W/h.prev")"; return; }
    dump "$P" "$W/h.before"
    local good=$(vconf "$W/h.prev")
    local cases=() c
    # Confs.
    for c in \
        '.dhcpp = true' '.cni_result = .prevResult' '.queues = 0' '.queues = 100000' '.queues = "1"' \
        '.lease_secs = 1' '.hostname = ""' '.dns = [1]' '.dns = {"nameservers": ["x"]}' '.vnet_hdr = "yes"' \
        '.cniVersion = "0.2.0"' '.cniVersion = "9.9.9"' '.cniVersion = 1' 'del(.cniVersion)' 'del(.name)' \
        '.name = "../../etc"' '.name = ""' '.stateDir = "relative"' '.stateDir = 5' 'del(.prevResult)' \
        '.prevResult = []' '.prevResult = "x"' '.prevResult.cniVersion = "0.1.0"' \
        '.prevResult.interfaces = []' '.prevResult.interfaces[2].name = "eth9"' \
        '.prevResult.interfaces[2].sandbox = ""' '.prevResult.ips[0].address = "10.99.0.5/24"' \
        '.prevResult.ips[0].interface = 7' '.prevResult.ips[0].address = "nonsense"' \
        '.prevResult.interfaces = [[1]]' '.prevResult.ips = {}' '.prevResult.dns = [[]]' \
        '.prevResult.routes = [{"dst": "1.2.3.4/99"}]' '.ipam = {"type": "host-local"}' \
        '.fail_at_step = 3' '.mode = 7'; do
        cases+=("conf|$c")
    done
    for c in 'CNI_CONTAINERID=' 'CNI_CONTAINERID=../x' 'CNI_CONTAINERID=a/b' 'CNI_IFNAME=' \
        'CNI_IFNAME=eth0/../x' 'CNI_IFNAME=waytoolonginterfacename' 'CNI_IFNAME=eth9' 'CNI_NETNS=' \
        'CNI_NETNS=/nonexistent' 'CNI_NETNS=/proc/self/ns/net' 'CNI_NETNS=/dev/null' 'CNI_NETNS=/etc/passwd' \
        'CNI_COMMAND=' 'CNI_COMMAND=ADDX' 'CNI_COMMAND=add'; do
        cases+=("env|$c")
    done
    cases+=("raw|" "raw|[]" "raw|null" "raw|{" "raw|\"x\"" "raw|$(head -c 3000 /dev/urandom | base64 -w0)")
    for c in "${cases[@]}"; do
        local kind=${c%%|*} arg=${c#*|} input envs=()
        case $kind in
        conf) input=$(jq -c "$arg" <<<"$good" 2>/dev/null) || input=$good ;;
        env) input=$good; envs=("$arg") ;;
        raw) input=$arg ;;
        esac
        out=$(env CNI_COMMAND=ADD CNI_CONTAINERID=h CNI_NETNS=/run/netns/$P CNI_IFNAME=eth0 CNI_PATH=$W/bin \
            "${envs[@]}" ip netns exec "$NODE" "$BIN" <<<"$input")
        rc=$?
        n=$((n + 1))
        if [ $rc = 0 ] || ! jq -e '(.code|type=="number") and (.msg|type=="string") and (.details|type=="string")' <<<"$out" >/dev/null 2>&1; then
            nbad=$((nbad + 1)); bad "hostile $kind '$arg': rc=$rc out=$out"
        fi
    done
    dump "$P" "$W/h.after"
    [ $nbad = 0 ] && ok "hostile: $n inputs, each a CNI error object with exit != 0" || true
    if diff -u "$W/h.before" "$W/h.after" >"$W/h.diff"; then ok "hostile: pod dump unchanged after $n hostile ADDs"; else bad "hostile: pod changed"; head -30 "$W/h.diff"; fi
    [ "$(responders)" = 0 ] && [ -z "$(ls -A "$W/state" 2>/dev/null)" ] && ok "hostile: no responder, no state" || bad "hostile: leftovers"
    out=$(jq -c '.prevResult.interfaces[2].name = "eth9"' <<<"$good" | env CNI_COMMAND=ADD CNI_CONTAINERID=h CNI_NETNS=/run/netns/$P CNI_IFNAME=eth9 ip netns exec "$NODE" "$BIN")
    grep -q '"code":1[0-9][0-9]' <<<"$out" && grep -q eth9 <<<"$out" && ok "hostile: prevResult naming an interface the pod lacks: $(jq -c . <<<"$out")" || bad "hostile: missing interface: $out"
    out=$(echo '{"cniVersion":"0.4.0"}' | CNI_COMMAND=VERSION "$BIN")
    [ "$(jq -c .supportedVersions <<<"$out")" = '["0.3.0","0.3.1","0.4.0","1.0.0"]' ] && ok "VERSION: $out" || bad "VERSION: $out"
}

# macvlan_node SUBNET: the node's macvlan master vn18m0 (one end of a veth)
# and the pods' gateway .1 on a macvlan of its own on the same master.
macvlan_node() {
    ip -n "$NODE" link add vn18m0 type veth peer name vn18m1 &&
        ip -n "$NODE" link set vn18m0 up && ip -n "$NODE" link set vn18m1 up &&
        ip -n "$NODE" link add vn18gw link vn18m0 type macvlan mode bridge &&
        ip -n "$NODE" addr add "${1%.0/24}.1/24" dev vn18gw && ip -n "$NODE" link set vn18gw up
}

libcni_chain() { # libcni_chain TYPE SUBNET LEASED-PREFIX [VNET-CNI-FIELDS [V6-SUBNET]]
    local t=$1 plen=$3 x=${4:-{\}} s6=${5:-} P=$TAG-l$1 N=$TAG-n$1 out list neigh res
    mkns "$P" && mkns "$N" || { bad "libcni $t: netns"; return; }
    list=$W/l$t.conflist neigh=$W/n$t.conflist
    jq -n --argjson f "$(first_conf "$t" vn18l$t "$2" "$s6")" --arg sd "$W/state" --argjson x "$x" \
        '{cniVersion:"1.0.0",name:"vn18l'"$t"'",plugins:[$f,({type:"vnet-cni",stateDir:$sd,hostname:"vm0"} + $x)]}' >"$list"
    jq -n --argjson f "$(first_conf "$t" vn18l$t "$2" "$s6")" '{cniVersion:"1.0.0",name:"vn18l'"$t"'",plugins:[$f]}' >"$neigh"
    local drv="ip netns exec $NODE $W/libcni-driver"
    $drv add "$neigh" /run/netns/$N neigh$t eth0 "$W/cache" "$W/bin" >"$W/n$t.res" ||
        { bad "libcni $t: neighbour pod ADD failed"; return; }
    local nip=$(jq -r '.ips[0].address' "$W/n$t.res" | cut -d/ -f1)
    dump "$P" "$W/l$t.before"
    local t0=$(date +%s%N)
    if $drv add "$list" /run/netns/$P pod$t eth0 "$W/cache" "$W/bin" >"$W/l$t.res" 2>"$W/l$t.err"; then
        ok "libcni $t: ADD of [$t, vnet-cni] ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
    else
        bad "libcni $t: ADD: $(cat "$W/l$t.err")"; return
    fi
    local ip=$(jq -r '.ips[0].address' "$W/l$t.res") gw=$(jq -r '.ips[0].gateway' "$W/l$t.res")
    local v6= pings="$gw,$nip" ip6= gw6= nip6=
    if [ -n "$s6" ]; then
        ip6=$(jq -r '.ips[] | select(.address | test(":")) | .address | split("/")[0]' "$W/l$t.res")
        gw6=$(jq -r '.ips[] | select(.address | test(":")) | .gateway' "$W/l$t.res")
        nip6=$(jq -r '.ips[] | select(.address | test(":")) | .address | split("/")[0]' "$W/n$t.res")
        v6=vnet.v6=1 pings="$pings,$gw6,$nip6"
        # The plugin exited: its responder serves IPv6 from the saved lease.
        cat "$W"/state/*.json 2>/dev/null | jq -r '.result' | jq -e --arg a "$ip6" \
            '[.. | objects | .lease6? // empty | .addresses[]] == [$a]' >/dev/null &&
            ok "libcni $t: the state holds the IPv6 lease $ip6" || bad "libcni $t: no IPv6 lease in the state"
    fi
    local mac=$(jq -r '.interfaces[] | select(.name=="tap0") | .mac' "$W/l$t.res")
    local tap=$(jq -r '.interfaces[] | select(.name|startswith("tap")) | .name' "$W/l$t.res")
    out=$($drv checklast "$list" /run/netns/$P pod$t eth0 "$W/cache" "$W/bin" 2>&1) &&
        ok "libcni $t: CHECK of vnet-cni passes" || bad "libcni $t: CHECK of vnet-cni: $out"
    if out=$($drv check "$list" /run/netns/$P pod$t eth0 "$W/cache" "$W/bin" 2>&1); then
        echo "  note libcni $t: CHECK of the whole list passes"
    else
        echo "  note libcni $t: CHECK of the whole list fails in $t itself (it expects the pod MAC and IPs on eth0, now the VM's): $out"
    fi
    # The VMM, started after ADD returned, opens the TAP by name.
    ip netns exec "$P" timeout -k 5 150 qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot \
        -kernel "$ROOT/target/vm/vmlinuz" -initrd "$ROOT/target/vm/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet panic=-1 vnet.ping=$pings $v6" \
        -netdev tap,id=n0,ifname=$tap,script=no,downscript=no \
        -device virtio-net-pci,netdev=n0,mac=$mac >"$W/l$t.qemu" 2>&1 </dev/null &
    QEMU_PID=$!
    wait $QEMU_PID
    QEMU_PID=
    grep -ao 'VNET-GUEST.*' "$W/l$t.qemu" | tr -d '\r' >"$W/l$t.guest"
    sed 's/^/    | /' "$W/l$t.guest" | grep -E 'iface=|ping'
    # The lease follows the pod's routing: /24 on a bridge, /32 behind
    # ptp's gateway.
    local want=${ip%/*}/$plen
    grep -qE "^VNET-GUEST iface=eth0 mac=$mac ip=${want//./\\.} " "$W/l$t.guest" &&
        ok "libcni $t: guest leased $want (pod had $ip) on mac $mac" || { bad "libcni $t: guest lease"; tail -5 "$W/l$t.qemu"; }
    grep -q "^VNET-GUEST ping $gw ok" "$W/l$t.guest" && ok "libcni $t: guest pings the gateway $gw" || bad "libcni $t: ping $gw"
    grep -q "^VNET-GUEST ping $nip ok" "$W/l$t.guest" && ok "libcni $t: guest pings the neighbour pod $nip" || bad "libcni $t: ping $nip"
    if [ -n "$s6" ]; then
        grep -q "^VNET-GUEST iface6=eth0 ip6=$ip6/128 " "$W/l$t.guest" &&
            ok "libcni $t: guest holds exactly the pod's IPv6 address $ip6" || bad "libcni $t: guest IPv6 address"
        grep -q "^VNET-GUEST route6 default via " "$W/l$t.guest" && ok "libcni $t: guest has a v6 default route" || bad "libcni $t: v6 default route"
        for a in $gw6 $nip6; do
            grep -q "^VNET-GUEST ping $a ok" "$W/l$t.guest" && ok "libcni $t: guest pings $a" || bad "libcni $t: ping $a"
        done
    fi
    out=$($drv del "$list" /run/netns/$P pod$t eth0 "$W/cache" "$W/bin" 2>&1) && ok "libcni $t: DEL" || bad "libcni $t: DEL: $out"
    dump "$P" "$W/l$t.after"
    if diff -u "$W/l$t.before" "$W/l$t.after" >"$W/l$t.diff"; then ok "libcni $t: pod dump after DEL = before ADD"; else bad "libcni $t: pod differs"; head -30 "$W/l$t.diff"; fi
    [ "$(responders)" = 0 ] && [ -z "$(ls -A "$W/state")" ] && ok "libcni $t: no responder, no state left" || bad "libcni $t: responder/state left"
    out=$($drv del "$list" /run/netns/$P pod$t eth0 "$W/cache" "$W/bin" 2>&1) && ok "libcni $t: second DEL succeeds" || bad "libcni $t: second DEL: $out"
    $drv del "$neigh" /run/netns/$N neigh$t eth0 "$W/cache" "$W/bin" >/dev/null 2>&1
}

for part in $PARTS; do
    echo "== $part"
    case $part in
    direct) direct bridge 10.18.1.0/24; direct ptp 10.18.2.0/24; multiqueue ;;
    hostile) hostile ;;
    libcni)
        vm/build-initramfs.sh "$ROOT/target/vm" >/dev/null || bad "guest build"
        GO111MODULE=off GOPATH=/usr/share/gocode:$W/gopath GOCACHE=$W/gocache \
            go build -o "$W/libcni-driver" tests/cni/libcni-driver.go || { bad "building libcni-driver"; continue; }
        libcni_chain bridge 10.18.3.0/24 24
        libcni_chain ptp 10.18.4.0/24 32
        # Dual stack: IPv6 served by the responder the plugin left.
        libcni_chain dual 10.18.7.0/24 24 '{}' fd00:18:7::/64
        # A macvlan pod (bridge mode cannot carry one) in redirect mode.
        macvlan_node 10.18.6.0/24 || bad "macvlan node"
        libcni_chain macvlan 10.18.6.0/24 24 '{"mode":"redirect"}' ;;
    esac
done
summary
[ "$fail" = 0 ]
