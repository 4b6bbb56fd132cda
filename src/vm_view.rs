//! What the VM must see of the pod's IPv4 routing, for its DHCP lease.
//!
//! The rule: for every destination, the VM sends to the same next hop (on
//! link, or through the same gateway) as the pod did before setup. So the
//! lease is derived from the pod's routing, not from the address's prefix
//! length alone:
//!
//! 1. The tables that route the pod's own traffic are those of the policy
//!    rules that match a packet from the pod's address (no interface, mark
//!    or other selector), in priority order; `local` is left out (it only
//!    holds the pod's own addresses). Without recorded rules: `main`, then
//!    `default`. Of the routes through the pod interface in those tables,
//!    the first table that has a destination decides it (routes through
//!    other links are no use to a VM with one NIC). This is exact for the
//!    shapes plugins make: everything in `main` (bridge, ptp, Calico), or
//!    everything in one table behind `from <pod IP>` (sbr).
//! 2. The mask is the address's own prefix only when the pod had that very
//!    subnet on-link (the kernel's prefix route, or any on-link route to
//!    it). Otherwise (ptp, Calico, Cilium, sbr: the plugin deleted the
//!    prefix route or routes the subnet through a gateway) the mask is /32:
//!    a wider mask would make the VM ARP for neighbours that nobody answers
//!    for, and no option-121 route can beat the connected route it creates.
//! 3. Option 121 (RFC 3442) then carries, in this order: the host route to
//!    an off-subnet gateway (the server adds it), the other on-link routes
//!    (a gateway must be reachable before a route through it is installed;
//!    some clients install in order), the routes through gateways, and the
//!    default route last. RFC 3442 says a client that understands 121 MUST
//!    ignore option 3; option 3 still names the same default gateway, for
//!    clients that ignore 121 (with a /32 mask they also need the host
//!    route, which only 121 carries: no lease can do better for them).

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::{IpNetwork, Ipv4Network};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;

use crate::snapshot::{route_destination, route_gateway, route_table, InterfaceSnapshot};

const MAIN: u32 = libc::RT_TABLE_MAIN as u32;
const DEFAULT: u32 = libc::RT_TABLE_DEFAULT as u32;
const LOCAL: u32 = libc::RT_TABLE_LOCAL as u32;

/// The VM's IPv4 view of one pod address.
#[derive(Debug, PartialEq)]
pub struct V4View {
    /// The lease's mask: the address's prefix when that subnet was on-link
    /// for the pod, else 32.
    pub prefix_len: u8,
    /// The default route's gateway (option 3, and 121's last entry).
    pub gateway: Option<Ipv4Addr>,
    /// Every other route, on-link ones first (`None` = on-link), without
    /// the connected route the mask makes and without the host route to the
    /// gateway (the server adds that one when the mask does not cover it).
    pub routes: Vec<(Ipv4Network, Option<Ipv4Addr>)>,
}

/// The view for `addr`, one of `s`'s addresses.
pub fn ipv4(s: &InterfaceSnapshot, addr: Ipv4Network) -> V4View {
    let mut seen: Vec<(Ipv4Network, Option<Ipv4Addr>)> = Vec::new();
    for table in tables_for(&s.rules, addr.ip()) {
        for (dst, gw) in v4_routes(s, table) {
            if !seen.iter().any(|(d, _)| *d == dst) {
                seen.push((dst, gw));
            }
        }
    }
    let subnet = Ipv4Network::new(addr.network(), addr.prefix()).ok();
    let on_link_subnet = addr.prefix() < 32
        && seen
            .iter()
            .any(|(d, gw)| gw.is_none() && Some(*d) == subnet);
    let prefix_len = if on_link_subnet { addr.prefix() } else { 32 };
    let gateway = seen
        .iter()
        .find(|(d, _)| d.prefix() == 0)
        .and_then(|(_, gw)| *gw);
    let (on_link, via): (Vec<_>, Vec<_>) = seen
        .into_iter()
        .filter(|(d, gw)| {
            let connected = on_link_subnet && gw.is_none() && Some(*d) == subnet;
            let to_gateway = gw.is_none() && d.prefix() == 32 && Some(d.ip()) == gateway;
            let default_via = d.prefix() == 0 && gw.is_some();
            !(connected || to_gateway || default_via)
        })
        .partition(|(_, gw)| gw.is_none());
    V4View {
        prefix_len,
        gateway,
        routes: on_link.into_iter().chain(via).collect(),
    }
}

/// The tables that route a locally made packet from `src`, in rule order.
fn tables_for(rules: &[crate::snapshot::Raw<RuleMessage>], src: Ipv4Addr) -> Vec<u32> {
    let mut v4: Vec<&RuleMessage> = rules
        .iter()
        .map(|r| &r.0)
        .filter(|r| r.header.family == AddressFamily::Inet)
        .collect();
    if v4.is_empty() {
        return vec![MAIN, DEFAULT];
    }
    v4.sort_by_key(|r| priority(r));
    let mut tables = Vec::new();
    for r in v4 {
        if r.header.action != RuleAction::ToTable || !matches_source(r, src) {
            continue;
        }
        let table = r
            .attributes
            .iter()
            .find_map(|a| match a {
                RuleAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(r.header.table));
        if table != LOCAL && !tables.contains(&table) {
            tables.push(table);
        }
    }
    tables
}

fn priority(r: &RuleMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

/// Whether rule `r` applies to any packet the pod sends from `src`: a
/// source selector holding `src`, or none, and no other selector.
fn matches_source(r: &RuleMessage, src: Ipv4Addr) -> bool {
    if r.header.tos != 0 || r.header.dst_len != 0 {
        return false;
    }
    r.attributes.iter().all(|a| match a {
        RuleAttribute::Source(IpAddr::V4(net)) => {
            Ipv4Network::new(*net, r.header.src_len).is_ok_and(|n| n.contains(src))
        }
        RuleAttribute::Priority(_)
        | RuleAttribute::Table(_)
        | RuleAttribute::Protocol(_)
        | RuleAttribute::SuppressIfGroup(_)
        | RuleAttribute::SuppressPrefixLen(_) => true,
        _ => false,
    })
}

/// The IPv4 routes through the pod link in `table`, kernel order, the
/// user's before the kernel's.
fn v4_routes(s: &InterfaceSnapshot, table: u32) -> Vec<(Ipv4Network, Option<Ipv4Addr>)> {
    let all = s.routes.iter().chain(&s.kernel_routes).map(|r| &r.0);
    // A multipath route's hops cannot be said in option 121: left out.
    let single = |r: &&RouteMessage| {
        !r.attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::MultiPath(_)))
    };
    all.filter(|r| route_table(r) == table)
        .filter(single)
        .filter_map(|r: &RouteMessage| {
            let IpNetwork::V4(dst) = route_destination(r)? else {
                return None;
            };
            match route_gateway(r) {
                Some(IpAddr::V4(g)) => Some((dst, Some(g))),
                Some(IpAddr::V6(_)) => None,
                None => Some((dst, None)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
