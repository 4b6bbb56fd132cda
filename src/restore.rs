//! Putting a pod interface back exactly, and checking that it is.
//!
//! Undo re-adds what setup removed, but the kernel adds things of its own
//! on the way (a prefix route for every re-added address), and an `EEXIST`
//! only says that something holds a key, not that it is what was there. So
//! restore does not trust: [`kernel_routes`] makes the kernel's own routes
//! equal to the record, and [`differences`] compares the whole interface
//! (link, addresses, routes of every table, policy rules) with the record.
//! Teardown succeeds only when that list is empty.

use std::fmt::Write as _;

use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::route::{RouteMessage, RouteProtocol};
use netlink_packet_route::rule::RuleMessage;

use crate::netlink::{link_attr, NamespaceDump, Netlink};
use crate::snapshot::{
    address_ip, clean_route, route_destination, route_gateway, route_table, InterfaceSnapshot,
};

/// Make the kernel-made routes through `s`'s link what they were: delete
/// the ones it made anew for re-added addresses that the pod did not have
/// (ptp deletes the prefix route, sbr moves it to its own table), and add
/// back recorded ones that are missing. Runs after the addresses are back
/// and before the recorded routes are, which may share a key with them.
pub fn kernel_routes(nl: &mut Netlink, s: &InterfaceSnapshot) -> Result<(), String> {
    let now = current_routes(nl, s.ifindex).map_err(|e| format!("{}: read routes: {e}", s.name))?;
    let recorded: Vec<&RouteMessage> = s.kernel_routes.iter().map(|r| &r.0).collect();
    let mut problems = Vec::new();
    for r in now
        .iter()
        .filter(|r| r.header.protocol == RouteProtocol::Kernel)
    {
        if !recorded.contains(&r) {
            if let Err(e) = nl.del_route(r.clone()) {
                if e.raw_os_error() != Some(libc::ESRCH) {
                    problems.push(format!("delete {}: {e}", describe_route(r)));
                }
            }
        }
    }
    for r in recorded {
        if !now.contains(r) {
            // EEXIST: something else holds the key; `differences` names it.
            if let Err(e) = nl.add_route(r.clone()) {
                if e.raw_os_error() != Some(libc::EEXIST) {
                    problems.push(format!("add {}: {e}", describe_route(r)));
                }
            }
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "{}: kernel routes: {}",
            s.name,
            problems.join(", ")
        )),
    }
}

/// The routes through link `ifindex` that a snapshot compares (outside the
/// `local` table), cleaned as the snapshot cleans them.
fn current_routes(nl: &mut Netlink, ifindex: u32) -> std::io::Result<Vec<RouteMessage>> {
    Ok(nl
        .unicast_routes()?
        .into_iter()
        .filter(|r| crate::snapshot::route_uses(r, ifindex))
        .filter(|r| route_table(r) != libc::RT_TABLE_LOCAL as u32)
        .map(clean_route)
        .collect())
}

/// Every way the namespace differs from the record of `snaps`, each named.
/// Empty when each interface has its MAC and MTU, no controller, and
/// exactly its addresses (flags included), routes (every table) and policy
/// rules. IPv6 addresses still in duplicate address detection count as
/// back (DAD passed once for them; the flag clears by itself).
pub fn differences(nl: &mut Netlink, snaps: &[&InterfaceSnapshot]) -> Vec<String> {
    let ns = match nl.dump_all() {
        Ok(ns) => ns,
        Err(e) => return vec![format!("cannot read the namespace to compare: {e}")],
    };
    snaps.iter().flat_map(|s| differs(&ns, s)).collect()
}

fn differs(ns: &NamespaceDump, s: &InterfaceSnapshot) -> Vec<String> {
    let mut out = Vec::new();
    let name = &s.name;
    let Some(link) = ns.links.iter().find(|l| l.header.index == s.ifindex) else {
        return vec![format!("{name} (index {}) is gone", s.ifindex)];
    };
    // Found by index: a rename by someone else is theirs to keep.
    if link_attr::mac(link) != Some(&s.mac.0[..]) {
        out.push(format!("{name}: MAC is not {}", s.mac));
    }
    if link_attr::mtu(link) != Some(s.mtu) {
        out.push(format!(
            "{name}: MTU {:?}, not {}",
            link_attr::mtu(link),
            s.mtu
        ));
    }
    if let Some(c) = link_attr::controller(link).filter(|c| *c != 0) {
        out.push(format!("{name}: still enslaved to link {c}"));
    }

    let want: Vec<AddressMessage> = s.addresses.iter().map(|a| settled(&a.0)).collect();
    let have: Vec<AddressMessage> = ns
        .addrs
        .iter()
        .filter(|a| a.header.index == s.ifindex)
        .map(settled)
        .collect();
    set_diff(&mut out, name, "address", &want, &have, |a| {
        format!("{:?}", address_ip(a))
    });

    let want: Vec<RouteMessage> = s
        .routes
        .iter()
        .chain(&s.kernel_routes)
        .map(|r| r.0.clone())
        .collect();
    let have: Vec<RouteMessage> = ns
        .routes
        .iter()
        .filter(|r| crate::snapshot::route_uses(r, s.ifindex))
        .filter(|r| route_table(r) != libc::RT_TABLE_LOCAL as u32)
        .cloned()
        .map(clean_route)
        .collect();
    set_diff(&mut out, name, "route", &want, &have, describe_route);

    // The recorded addresses decide which rules concern the link.
    let want: Vec<RuleMessage> = s.rules.iter().map(|r| r.0.clone()).collect();
    set_diff(
        &mut out,
        name,
        "rule",
        &want,
        &rules_for(&ns.rules, s),
        |r| format!("{r:?}"),
    );
    out
}

/// The rules of `all` that a snapshot of `s` would record.
fn rules_for(all: &[RuleMessage], s: &InterfaceSnapshot) -> Vec<RuleMessage> {
    let ips: Vec<std::net::IpAddr> = s.ips().iter().map(|n| n.ip()).collect();
    all.iter()
        .filter(|r| crate::snapshot::rule_concerns(r, &s.name, &ips))
        .cloned()
        .collect()
}

/// Names what `want` has that `have` lacks and the reverse.
fn set_diff<T: PartialEq>(
    out: &mut Vec<String>,
    name: &str,
    what: &str,
    want: &[T],
    have: &[T],
    show: impl Fn(&T) -> String,
) {
    for w in want.iter().filter(|w| !have.contains(w)) {
        out.push(format!("{name}: {what} {} is missing", show(w)));
    }
    for h in have.iter().filter(|h| !want.contains(h)) {
        out.push(format!("{name}: {what} {} was not there before", show(h)));
    }
}

/// An address as compared: without its timers and the DAD state, which
/// change by themselves.
fn settled(a: &AddressMessage) -> AddressMessage {
    let mut a = a.clone();
    a.header.flags.remove(AddressHeaderFlags::Tentative);
    a.attributes.retain_mut(|at| match at {
        AddressAttribute::CacheInfo(_) => false,
        AddressAttribute::Flags(f) => {
            f.remove(AddressFlags::Tentative);
            true
        }
        _ => true,
    });
    a
}

/// `dst [via gw] table T proto P`, for messages.
pub fn describe_route(r: &RouteMessage) -> String {
    let mut s = match route_destination(r) {
        Some(d) => d.to_string(),
        None => "?".into(),
    };
    if let Some(gw) = route_gateway(r) {
        let _ = write!(s, " via {gw}");
    }
    let _ = write!(s, " table {} proto {:?}", route_table(r), r.header.protocol);
    s
}
