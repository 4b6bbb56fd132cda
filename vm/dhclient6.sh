#!/bin/sh
# dhclient -6 hook for the vnet test guest (vnet.client6=dhclient): apply the
# IA_NA address only. isc-dhcp-client gives ip6_prefixlen 128 (DHCPv6 has no
# prefix length); the on-link prefix and the default route are the kernel's,
# from the router advertisement. Every call is logged for /init's report.
# shellcheck disable=SC2154 # every variable comes from dhclient
echo "reason=$reason interface=$interface old=$old_ip6_address new=$new_ip6_address/$new_ip6_prefixlen" \
    "pref=$new_preferred_life max=$new_max_life" >>/tmp/dhclient6.script.log

case "$reason" in
PREINIT6)
    ip link set "$interface" up
    ;;
BOUND6 | RENEW6 | REBIND6 | REBOOT6)
    if [ -n "$old_ip6_address" ] && [ "$old_ip6_address" != "$new_ip6_address" ]; then
        ip -6 addr del "$old_ip6_address/${old_ip6_prefixlen:-128}" dev "$interface" 2>/dev/null
    fi
    if [ -n "$new_ip6_address" ]; then
        ip -6 addr add "$new_ip6_address/${new_ip6_prefixlen:-128}" dev "$interface" 2>/dev/null ||
            ip -6 addr show dev "$interface" | grep -q " $new_ip6_address/" || exit 1
    fi
    ;;
EXPIRE6 | RELEASE6 | STOP6)
    [ -n "$old_ip6_address" ] && ip -6 addr del "$old_ip6_address/${old_ip6_prefixlen:-128}" dev "$interface" 2>/dev/null
    ;;
esac
exit 0
