#!/bin/bash
# Redirect mode's data path against bridge mode and the by-hand topologies
# (issue 16), one topology per run:  bench/redirect/dp.sh TOPOLOGY
#   vnet-bridge | vnet-redirect (vnet's CLI, target/release/vnet)
#   bridge | tc | nft (plain by hand) | tcfull | nftfull (with DHCP rules)
# 64 B and 1514 B UDP frames written to tap0 by one thread (blast.c) for
# $SECS s, counted at the far end of the pod's veth. Root; scratch
# namespaces only (vn16-dp-*), deleted on exit.
set -e
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$here/blast" ] || cc -O2 -o "$here/blast" "$here/blast.c"
VNET=${VNET:-$here/../../target/release/vnet}
P=vn16-dp-pod-$$; H=vn16-dp-host-$$
trap 'ip netns del $P 2>/dev/null; ip netns del $H 2>/dev/null' EXIT INT TERM
ip netns add $P; ip netns add $H
ip -n $P link add eth0 type veth peer veth0 netns $H
ip -n $P link set eth0 up; ip -n $H link set veth0 up; ip -n $P link set lo up
ip -n $P addr add 10.1.90.5/24 dev eth0; ip -n $H addr add 10.1.90.1/24 dev veth0
case $1 in
vnet-*) "$VNET" setup --netns /var/run/netns/$P --mode ${1#vnet-} --no-wait \
          --config <(echo '{"dhcp": false}') --state /tmp/$P.json >/dev/null
        trap '"$VNET" teardown --state /tmp/$P.json >/dev/null; rm -f /tmp/$P.json; ip netns del $P; ip netns del $H' EXIT INT TERM ;;
*) ip -n $P tuntap add tap0 mode tap; ip -n $P link set tap0 up ;;
esac
DST=$(ip -n $H -j link show veth0 | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["address"])')
case $1 in
bridge) ip -n $P link add br0 type bridge ageing_time 0; ip -n $P link set br0 up
  ip -n $P link set tap0 master br0; ip -n $P link set eth0 master br0 ;;
tc) ip netns exec $P tc qdisc add dev tap0 ingress
  ip netns exec $P tc qdisc add dev eth0 ingress
  ip netns exec $P tc filter add dev tap0 parent ffff: protocol all prio 1 u32 match u8 0 0 action mirred egress redirect dev eth0
  ip netns exec $P tc filter add dev eth0 parent ffff: protocol all prio 1 u32 match u8 0 0 action mirred egress redirect dev tap0 ;;
nft) ip netns exec $P nft -f - <<N
table netdev vnet {
  chain tap { type filter hook ingress device tap0 priority 0; fwd to "eth0"; }
  chain pod { type filter hook ingress device eth0 priority 0; fwd to "tap0"; }
}
N
;;
nftfull) ip netns exec $P nft -f - <<N
table netdev vnet {
  chain dtap { ip protocol udp udp dport 67 accept; ip protocol udp udp dport 68 drop; ip6 nexthdr udp udp dport 546-547 drop; }
  chain dpod { ip protocol udp udp dport 67-68 drop; ip6 nexthdr udp udp dport 546-547 drop; }
  chain tap { type filter hook ingress device tap0 priority 0; meta l4proto udp udp dport 67-547 jump dtap; ether type arp arp daddr ip 169.254.254.2 accept; fwd to "eth0"; }
  chain pod { type filter hook ingress device eth0 priority 0; meta l4proto udp udp dport 67-547 jump dpod; fwd to "tap0"; }
}
N
;;
tcfull) T="ip netns exec $P tc"; $T qdisc add dev tap0 ingress; $T qdisc add dev eth0 ingress
  $T filter add dev tap0 parent ffff: protocol ip prio 1 u32 match ip protocol 17 0xff match ip dport 67 0xffff classid 1:1
  $T filter add dev tap0 parent ffff: protocol arp prio 2 u32 match u32 0xa9fefe02 0xffffffff at 24 classid 1:1
  $T filter add dev tap0 parent ffff: protocol all prio 3 u32 match u8 0 0 action mirred egress redirect dev eth0
  $T filter add dev eth0 parent ffff: protocol ip prio 1 u32 match ip protocol 17 0xff match ip dport 67 0xfffe classid 1:1
  $T filter add dev eth0 parent ffff: protocol all prio 3 u32 match u8 0 0 action mirred egress redirect dev tap0 ;;
esac
rx() { ip -n $H -s -j link show veth0 | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["stats64"]["rx"]["packets"])'; }
for len in ${LENS:-64 1514}; do
a=$(rx); w=$(ip netns exec $P "$here/blast" tap0 $len ${SECS:-3} $DST); sleep 0.1; b=$(rx)
echo "$1 len=$len written=$w delivered=$((b-a)) per_s=$(( (b-a)/${SECS:-3} ))"
done
