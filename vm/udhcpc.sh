#!/bin/sh
# udhcpc hook for the vnet test guest: apply the lease (address, MTU, routes,
# DNS) and record it in /tmp/lease.$interface for /init's report.
# Variables come from busybox udhcpc: interface ip mask router mtu dns domain
# staticroutes serverid.

case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound | renew)
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-32}" dev "$interface"
    routes=
    if [ -n "$staticroutes" ]; then
        # RFC 3442: with option 121 present the router option is ignored.
        # On-link routes (gateway 0.0.0.0) go first so gateways are reachable.
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            if [ "$2" = 0.0.0.0 ]; then
                ip route add "$1" dev "$interface" scope link &&
                    routes="$routes,$1>link"
            fi
            shift 2
        done
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            if [ "$2" != 0.0.0.0 ]; then
                # Report only what was installed: a second default route
                # (another NIC's lease) is refused and must not show.
                { ip route add "$1" via "$2" dev "$interface" ||
                    ip route add "$1" via "$2" dev "$interface" onlink; } 2>/dev/null &&
                    routes="$routes,$1>$2"
            fi
            shift 2
        done
    elif [ -n "$router" ]; then
        for r in $router; do
            # First interface with a router wins the default route.
            ip route add default via "$r" dev "$interface" 2>/dev/null ||
                ip route add default via "$r" dev "$interface" onlink 2>/dev/null
            break
        done
    fi
    # Several NICs may hand out the same DNS: write each line once.
    touch /etc/resolv.conf
    {
        [ -n "$domain" ] && echo "search $domain"
        for d in $dns; do echo "nameserver $d"; done
    } | while read -r line; do
        grep -qxF "$line" /etc/resolv.conf || echo "$line" >>/etc/resolv.conf
    done
    {
        echo "L_IP='$ip'"
        echo "L_MASK='${mask:-32}'"
        echo "L_ROUTER='$(echo $router | tr ' ' ',')'"
        echo "L_ROUTES='${routes#,}'"
        echo "L_DNS='$(echo $dns | tr ' ' ',')'"
        echo "L_DOMAIN='$domain'"
        echo "L_SERVER='$serverid'"
    } >"/tmp/lease.$interface"
    ;;
esac
exit 0
