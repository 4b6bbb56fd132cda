#!/usr/bin/env bash
# nsdump.sh NS [FILE]: one settled, comparable dump of a network namespace,
# used by every test that compares a namespace before and after vnet:
# links, addresses, routes of both families in every table, policy rules of
# both families, qdiscs and the nf_tables ruleset, minus counters and timers
# that change by themselves. "Settled": two equal dumps 0.3 s apart with no
# address still tentative (IPv6 DAD, link-local routes), within ~6 s.
# Without FILE the dump goes to stdout. Needs ip and tc (iproute2), jq, nft.
# Any command that fails fails the dump (exit 1): an error message on both
# sides of a comparison would compare equal and prove nothing.
set -uo pipefail
ns=${1:?usage: nsdump.sh NS [FILE]}
out=${2:-}

raw() {
    local norm='walk(if type == "object" then del(.stats, .stats64, .operstate,
        .valid_life_time, .preferred_life_time, .expires, .used, .carrier_changes,
        .carrier_up_count, .carrier_down_count, .gc_timer, .hello_timer, .tcn_timer,
        .topology_change_timer) else . end)'
    ip -n "$ns" -d -j link show | jq -S "$norm | sort_by(.ifname)" &&
        ip -n "$ns" -d -j addr show | jq -S "$norm | sort_by(.ifname)" &&
        ip -n "$ns" -4 -d -j route show table all | jq -S "$norm | sort_by(tostring)" &&
        ip -n "$ns" -6 -d -j route show table all | jq -S "$norm | sort_by(tostring)" &&
        ip -n "$ns" -4 -j rule show | jq -S . &&
        ip -n "$ns" -6 -j rule show | jq -S . &&
        tc -n "$ns" -j qdisc show | jq -S "$norm" &&
        ip netns exec "$ns" nft list ruleset
}

tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.next"' EXIT
raw >"$tmp" || { echo "nsdump.sh: dumping $ns failed" >&2; exit 1; }
for _ in $(seq 20); do
    sleep 0.3
    raw >"$tmp.next" || { echo "nsdump.sh: dumping $ns failed" >&2; exit 1; }
    if cmp -s "$tmp" "$tmp.next" && ! grep -q '"tentative"' "$tmp"; then
        break
    fi
    mv "$tmp.next" "$tmp"
done
if [ -n "$out" ]; then cp "$tmp" "$out"; else cat "$tmp"; fi
