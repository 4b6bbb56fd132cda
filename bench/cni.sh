#!/bin/bash
# vnet-cni ADD and DEL process times beside the reference bridge plugin's own
# ADD and DEL, in the same run:  bench/cni.sh [ROUNDS]  (default 20).
# Each round makes a fresh pod namespace, then, from inside a scratch node
# namespace (no `ip netns exec` in the timings), runs bridge ADD, vnet-cni
# ADD (DHCP on: includes starting the responder and waiting until it
# serves), vnet-cni ADD with DHCP off (in a second pod), vnet-cni DELs,
# bridge DELs, each timed as a whole process (fork, exec, exit). Prints a
# markdown table of medians and minima. Scratch namespaces vn18-bench-* only.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${VNET_CNI_BIN:-$ROOT/target/release/vnet-cni}
ROUNDS=${1:-20}
[ "$(id -u)" = 0 ] || { echo "bench/cni.sh: must run as root" >&2; exit 2; }
[ -x "$BIN" ] || { echo "bench/cni.sh: $BIN missing (cargo build --release)" >&2; exit 2; }
TAG=vn18-bench-$$
W=$(mktemp -d /tmp/vn18-bench.XXXXXX)
NODE=$TAG-node
cleanup() {
    for p in $(pgrep -f "^vnet-cni serve $W/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    for ns in $(ip netns list | awk '{print $1}' | grep "^$TAG-"); do ip netns del "$ns"; done
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$NODE" && ip -n "$NODE" link set lo up
jq -cn --arg d "$W/ipam" '{cniVersion:"1.0.0",name:"vn18bench",type:"bridge",bridge:"vn18bb",
    isGateway:true,ipam:{type:"host-local",subnet:"10.18.64.0/18",dataDir:$d}}' >"$W/bridge.json"

# Runs inside the node namespace: one round on pods $1 (DHCP on) and $2 (off).
cat >"$W/round.sh" <<'EOF'
set -u
W=$1 BIN=$2 r=$3
one() { # one POD ID: bridge ADD, vnet-cni ADD with $DHCP, DEL both; times in us
    export CNI_NETNS=/run/netns/$1 CNI_CONTAINERID=$2 CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni
    local a b c d
    a=$( { t0=$(date +%s%N); CNI_COMMAND=ADD /usr/lib/cni/bridge <"$W/bridge.json" >"$W/prev.$2"; echo $(( ($(date +%s%N) - t0) / 1000 )); } )
    jq -c --arg sd "$W/state" --argjson dhcp "$DHCP" \
        '{cniVersion:"1.0.0",name:"vn18bench",type:"vnet-cni",stateDir:$sd,dhcp:$dhcp,prevResult:.}' "$W/prev.$2" >"$W/conf.$2"
    b=$( { t0=$(date +%s%N); CNI_COMMAND=ADD "$BIN" <"$W/conf.$2" >/dev/null || echo FAIL >&2; echo $(( ($(date +%s%N) - t0) / 1000 )); } )
    c=$( { t0=$(date +%s%N); CNI_COMMAND=DEL "$BIN" <"$W/conf.$2" >/dev/null || echo FAIL >&2; echo $(( ($(date +%s%N) - t0) / 1000 )); } )
    d=$( { t0=$(date +%s%N); CNI_COMMAND=DEL /usr/lib/cni/bridge <"$W/bridge.json" >/dev/null; echo $(( ($(date +%s%N) - t0) / 1000 )); } )
    echo "$a $b $c $d"
}
DHCP=true one "$4" "on$r"
DHCP=false one "$5" "off$r"
EOF

: >"$W/times"
for r in $(seq "$ROUNDS"); do
    ip netns add "$TAG-p$r" && ip netns add "$TAG-q$r" || exit 1
    ip -n "$TAG-p$r" link set lo up; ip -n "$TAG-q$r" link set lo up
    ip netns exec "$NODE" bash "$W/round.sh" "$W" "$BIN" "$r" "$TAG-p$r" "$TAG-q$r" >>"$W/times" || exit 1
    ip netns del "$TAG-p$r"; ip netns del "$TAG-q$r"
done
# Lines alternate: DHCP on, DHCP off; columns: bridge ADD, vnet ADD, vnet DEL, bridge DEL.
stat() { # stat LINE-PARITY COLUMN -> "median min" in ms
    awk -v p="$1" -v c="$2" 'NR % 2 == p { print $c }' "$W/times" | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.1f ms | %.1f ms", v[int((NR + 1) / 2)] / 1000, v[1] / 1000 }'
}
echo "vnet-cni vs bridge, $ROUNDS rounds, process times (fork to exit), median | min:"
echo
echo "| | median | min |"
echo "|---|---:|---:|"
echo "| bridge ADD | $(stat 1 1) |"
echo "| vnet-cni ADD, DHCP on (responder started and serving) | $(stat 1 2) |"
echo "| vnet-cni ADD, DHCP off | $(stat 0 2) |"
echo "| bridge DEL | $(stat 1 4) |"
echo "| vnet-cni DEL, DHCP on (responder stopped) | $(stat 1 3) |"
echo "| vnet-cni DEL, DHCP off | $(stat 0 3) |"
