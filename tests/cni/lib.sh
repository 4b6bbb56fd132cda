# Pod networks made by the CNI project's reference plugins
# (containernetworking-plugins, /usr/lib/cni), for the tests that run vnet on
# real pods. Sourced by bash; every namespace it makes is recorded in NSLIST
# (the caller deletes them on exit, see cni_cleanup) and named $TAG-*.
#
# Each plugin runs inside a scratch "node" namespace, as a runtime runs it on
# a node, with a private host-local dataDir, so nothing touches the root
# namespace or /var/lib/cni.
#
#   cni_world           node + outside namespaces: the node routes 203.0.113.7
#                       (an address beyond the node) to "outside"
#   cni_pod POD         an empty pod namespace
#   cni_conf CHAIN      the plugin confs of CHAIN, one JSON per line
#   cni_add CHAIN POD   run CHAIN's ADDs into POD; prints the last result
#   cni_del CHAIN POD [RESULT]
#                       run CHAIN's DELs, last plugin first, each given the
#                       ADD's RESULT as prevResult (as runtimes cache it);
#                       0 if all exit 0
#
# Chains: bridge (isGateway, host-local), dual (the same, dual-stack), v6only
# (the same, IPv6 only: fd00:25::/64 and a default route ::/0), ptp,
# ptpsbr (ptp + tuning (MTU 1400, MAC $TUNED_MAC) + sbr), hostdev (host-device moving a veth
# from the node), macvlan (bridge mode on the node's uplink).

CNI_BIN=${CNI_BIN:-/usr/lib/cni}
NSLIST=()
BEYOND=203.0.113.7
# The MAC tuning gives a ptpsbr pod (each pod has its own ptp link, so the
# neighbour may carry the same one).
TUNED_MAC=0a:58:0a:1a:00:63

cni_mkns() {
    ip netns add "$1" || return 1
    NSLIST+=("$1")
    ip -n "$1" link set lo up
}

cni_cleanup() {
    local ns
    for ns in "${NSLIST[@]}"; do ip netns del "$ns" 2>/dev/null; done
    NSLIST=()
}

cni_world() {
    NODE=$TAG-node
    OUTSIDE=$TAG-out
    CNI_DATA=${CNI_DATA:-$(mktemp -d)}
    mkdir -p "$CNI_DATA"
    cni_mkns "$NODE" && cni_mkns "$OUTSIDE" || return 1
    ip netns exec "$NODE" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    # The node's uplink: 192.0.2.1 (node) - 192.0.2.2 (outside), which holds
    # $BEYOND and routes every pod subnet back through the node. The
    # macvlan chain uses this uplink as its master.
    ip -n "$NODE" link add up0 type veth peer name up1 netns "$OUTSIDE"
    ip -n "$NODE" addr add 192.0.2.1/24 dev up0
    ip -n "$NODE" link set up0 up
    ip -n "$OUTSIDE" addr add 192.0.2.2/24 dev up1
    ip -n "$OUTSIDE" addr add $BEYOND/32 dev lo
    ip -n "$OUTSIDE" link set up1 up
    ip -n "$OUTSIDE" route add 10.0.0.0/8 via 192.0.2.1
    ip -n "$NODE" route add $BEYOND/32 via 192.0.2.2
    # host-device moves a node device into the pod: veth hd0 (pod end)
    # with hd1 on the node holding the gateway.
    ip -n "$NODE" link add hd0 type veth peer name hd1
    ip -n "$NODE" addr add 10.25.0.1/24 dev hd1
    ip -n "$NODE" link set hd1 up
}

cni_pod() { cni_mkns "$1"; }

# ipam SUBNET [SUBNET6]: host-local in the private dataDir, default routes.
cni_ipam() {
    jq -cn --arg d "$CNI_DATA" --arg s "$1" --arg s6 "${2:-}" '{type: "host-local", dataDir: $d,
        ranges: ([[{subnet: $s}]] + (if $s6 != "" then [[{subnet: $s6}]] else [] end)),
        routes: ([{dst: "0.0.0.0/0"}] + (if $s6 != "" then [{dst: "::/0"}] else [] end))}'
}

cni_conf() {
    local base='{cniVersion: "1.0.0", name: $name}'
    case $1 in
    bridge)
        jq -cn --argjson ipam "$(cni_ipam 10.22.0.0/24)" --arg name vn-bridge "$base + {type: \"bridge\",
            bridge: \"cni0\", isGateway: true, ipMasq: false, ipam: \$ipam}" ;;
    dual)
        jq -cn --argjson ipam "$(cni_ipam 10.24.0.0/24 fd00:24::/64)" --arg name vn-dual "$base + {type: \"bridge\",
            bridge: \"cni1\", isGateway: true, ipMasq: false, ipam: \$ipam}" ;;
    v6only)
        jq -cn --argjson ipam "$(cni_ipam 10.27.0.0/24 fd00:25::/64 | jq -c '.ranges |= .[1:] | .routes |= .[1:]')" \
            --arg name vn-v6only "$base + {type: \"bridge\", bridge: \"cni2\", isGateway: true, ipMasq: false, ipam: \$ipam}" ;;
    ptp)
        jq -cn --argjson ipam "$(cni_ipam 10.23.0.0/24)" --arg name vn-ptp "$base + {type: \"ptp\",
            ipMasq: false, ipam: \$ipam}" ;;
    ptpsbr)
        jq -cn --argjson ipam "$(cni_ipam 10.26.0.0/24)" --arg name vn-ptpsbr "$base + {type: \"ptp\",
            ipMasq: false, ipam: \$ipam}"
        jq -cn --arg name vn-ptpsbr "$base + {type: \"tuning\", mtu: 1400, mac: \"$TUNED_MAC\"}"
        jq -cn --arg name vn-ptpsbr "$base + {type: \"sbr\"}" ;;
    hostdev)
        jq -cn --argjson ipam "$(cni_ipam 10.25.0.0/24)" --arg name vn-hostdev "$base + {type: \"host-device\",
            device: \"hd0\", ipam: (\$ipam | .routes = [{dst: \"0.0.0.0/0\", gw: \"10.25.0.1\"}]
            | .ranges[0][0].rangeStart = \"10.25.0.2\")}" ;;
    macvlan)
        jq -cn --argjson ipam "$(cni_ipam 192.0.2.0/24)" --arg name vn-macvlan "$base + {type: \"macvlan\",
            master: \"up0\", mode: \"bridge\", ipam: (\$ipam | .ranges[0][0].rangeStart = \"192.0.2.10\")}" ;;
    *) echo "cni_conf: unknown chain $1" >&2; return 1 ;;
    esac
}

# cni_run COMMAND POD CONF [PREV]: one plugin call, as a runtime makes it.
cni_run() {
    local conf=$3 type
    [ -n "${4:-}" ] && conf=$(jq -c --argjson prev "$4" '. + {prevResult: $prev}' <<<"$conf")
    type=$(jq -r .type <<<"$conf")
    CNI_COMMAND=$1 CNI_CONTAINERID=$2 CNI_NETNS=/run/netns/$2 CNI_IFNAME=eth0 CNI_PATH=$CNI_BIN \
        ip netns exec "$NODE" "$CNI_BIN/$type" <<<"$conf"
}

cni_add() {
    local conf prev=
    while read -r conf; do
        prev=$(cni_run ADD "$2" "$conf" "$prev") || { echo "$prev" >&2; return 1; }
    done < <(cni_conf "$1")
    echo "$prev"
}

cni_del() {
    local conf rc=0
    while read -r conf; do
        cni_run DEL "$2" "$conf" "${3:-}" >&2 || rc=1
    done < <(cni_conf "$1" | tac)
    return $rc
}
