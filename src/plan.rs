//! From what the namespace holds (and an optional CNI result) to what setup
//! will do: which interfaces, their snapshots, names, the CNI result we hand
//! back, and the DHCP lease for each VM NIC.

use std::net::IpAddr;

use ipnetwork::{IpNetwork, Ipv4Network};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkInfo, LinkLayerType, LinkMessage,
    MacVlanMode,
};

use crate::cni::{CniInterface, CniIp, CniResult, CniRoute};
use crate::config::Config;
use crate::dhcp::Lease;
use crate::error::{Error, Result};
use crate::netlink::{link_attr, NamespaceDump};
use crate::snapshot::{route_destination, route_gateway, InterfaceSnapshot};
use crate::topology::Mode;

/// One pod interface to hand to the VM.
#[derive(Debug)]
pub struct IfacePlan {
    pub snapshot: InterfaceSnapshot,
    pub tap: String,
    pub bridge: String,
}

/// The veths of a namespace, by kind (what the CNI plugin leaves us).
pub fn find_veths(links: &[LinkMessage]) -> Vec<&LinkMessage> {
    links
        .iter()
        .filter(|l| link_attr::kind(l) == Some(&InfoKind::Veth))
        .collect()
}

/// The pod interfaces `mode` takes when no CNI result names them: veths,
/// and in redirect mode macvlans too (what the veth-making and the macvlan
/// plugins leave). A host device has no kind of its own to find it by: it
/// must be named in `cni_result`.
fn candidates(links: &[LinkMessage], mode: Mode) -> Vec<&LinkMessage> {
    match mode {
        Mode::Bridge => find_veths(links),
        Mode::Redirect => links
            .iter()
            .filter(|l| {
                matches!(
                    link_attr::kind(l),
                    Some(InfoKind::Veth) | Some(InfoKind::MacVlan)
                )
            })
            .collect(),
    }
}

/// The interfaces to use: those of the CNI result that live in the sandbox,
/// in CNI order, or else the one veth of the namespace.
pub fn find_interfaces<'a>(
    links: &'a [LinkMessage],
    cni: Option<&CniResult>,
    netns: &str,
    mode: Mode,
) -> Result<Vec<&'a LinkMessage>> {
    let by_name = |n: &str| links.iter().find(|l| link_attr::name(l) == Some(n));
    if let Some(cni) = cni {
        let wanted = cni.sandbox_interfaces();
        for (n, &i) in wanted.iter().enumerate() {
            let name = &cni.interfaces[i].name;
            if wanted[..n].iter().any(|&j| cni.interfaces[j].name == *name) {
                return Err(Error::Config(format!(
                    "cni_result names interface {name:?} twice"
                )));
            }
        }
        if !wanted.is_empty() {
            return wanted
                .iter()
                .map(|&i| {
                    let name = &cni.interfaces[i].name;
                    by_name(name).ok_or_else(|| {
                        Error::Config(format!(
                            "cni_result names interface {name:?}, which is not in {netns}"
                        ))
                    })
                })
                .collect();
        }
    }
    let veths = candidates(links, mode);
    match veths.len() {
        0 => {
            // A pod interface the mode cannot carry says so, rather than
            // "no veth found".
            match links.iter().find_map(|l| own_mac_refusal(l, mode)) {
                Some(e) => Err(e),
                None => Err(Error::NoVeth(netns.to_string())),
            }
        }
        1 => Ok(veths),
        _ => Err(Error::SeveralVeths {
            path: netns.to_string(),
            names: veths
                .iter()
                .filter_map(|l| link_attr::name(l))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Snapshot each chosen interface and check it can be handed over; `ns`
/// is the namespace's dump.
pub fn plan(chosen: &[&LinkMessage], ns: &NamespaceDump, mode: Mode) -> Result<Vec<IfacePlan>> {
    let links = &ns.links;
    // Every interface is checked before any is snapshotted or touched.
    for link in chosen {
        check_kind(link, mode)?;
    }
    let mut out = Vec::new();
    for (n, link) in chosen.iter().enumerate() {
        let snapshot = InterfaceSnapshot::take(link, &ns.addrs, &ns.routes, &ns.rules)?;
        if snapshot.addresses.iter().all(|a| is_link_local(&a.0)) {
            return Err(Error::NoAddress(snapshot.name));
        }
        if link_attr::controller(link).is_some() {
            return Err(Error::Leftovers(format!(
                "{} is already enslaved to a bridge",
                snapshot.name
            )));
        }
        let (tap, bridge) = match mode {
            Mode::Bridge => (format!("tap{n}"), format!("br{n}")),
            Mode::Redirect => (format!("tap{n}"), String::new()),
        };
        for name in [&tap, &bridge].into_iter().filter(|n| !n.is_empty()) {
            if links
                .iter()
                .any(|l| link_attr::name(l) == Some(name.as_str()))
            {
                return Err(Error::NameExists(name.clone()));
            }
        }
        out.push(IfacePlan {
            snapshot,
            tap,
            bridge,
        });
    }
    Ok(out)
}

/// Only an Ethernet link that is not itself a bridge or a TAP can be handed
/// over: refuse the rest before touching anything, and whatever `mode`
/// would set up dead (see [`own_mac_refusal`], [`redirect_refusal`]).
fn check_kind(link: &LinkMessage, mode: Mode) -> Result<()> {
    let name = link_attr::name(link).unwrap_or("?");
    if let Some(e) = own_mac_refusal(link, mode) {
        return Err(e);
    }
    if link.header.link_layer_type != LinkLayerType::Ether {
        return Err(Error::Config(format!(
            "{name} is not an Ethernet link ({:?}); it cannot be handed to a VM",
            link.header.link_layer_type
        )));
    }
    if matches!(
        link_attr::kind(link),
        Some(InfoKind::Bridge) | Some(InfoKind::Tun)
    ) {
        return Err(Error::Config(format!(
            "{name} is a bridge or TAP, not a pod interface"
        )));
    }
    if mode == Mode::Redirect {
        if let Some(e) = redirect_refusal(link) {
            return Err(e);
        }
    }
    Ok(())
}

/// The refusal for a link that receives only frames for its own MAC, in a
/// mode that cannot carry it. Bridge mode gives the pod interface a new MAC
/// and bridges the VM's: a macvlan or ipvlan would be dead. Redirect mode
/// keeps the MAC and carries a macvlan; ipvlan (no `CONFIG_IPVLAN` on the
/// kernels this was tested on) and the TAP forms are refused in both.
fn own_mac_refusal(link: &LinkMessage, mode: Mode) -> Option<Error> {
    let name = link_attr::name(link).unwrap_or("?");
    let kind = link_attr::kind(link).and_then(own_mac_kind)?;
    let msg = match (kind, mode) {
        ("macvlan", Mode::Redirect) => return None,
        ("macvlan", Mode::Bridge) => format!(
            "{name} is a macvlan link: it receives only frames for its own MAC, so bridge \
             mode (which gives it a new MAC and bridges the VM's) would leave the VM with a \
             dead network; use \"mode\": \"redirect\", which keeps the MAC and carries \
             macvlan pod interfaces"
        ),
        ("ipvlan" | "ipvtap", _) => format!(
            "{name} is an {kind} link: all its slaves share one MAC and it passes only \
             frames for their IP addresses; no mode of this version is proven to carry an \
             {kind} pod interface (no kernel it was tested on has CONFIG_IPVLAN)"
        ),
        _ => format!(
            "{name} is a {kind} link, itself a TAP for a VM: hand it to the VM directly; \
             neither bridge nor redirect mode can carry it"
        ),
    };
    Some(Error::Unsupported(msg))
}

/// What redirect mode refuses beyond [`own_mac_refusal`]: a macvlan in
/// passthru or source mode, and kinds it was not shown to carry (it was
/// tested with veths, macvlans in bridge, private and vepa mode, and
/// kind-less host devices).
fn redirect_refusal(link: &LinkMessage) -> Option<Error> {
    let name = link_attr::name(link).unwrap_or("?");
    match link_attr::kind(link) {
        None | Some(InfoKind::Veth) => None,
        Some(InfoKind::MacVlan) => match macvlan_mode(link) {
            Some(MacVlanMode::Bridge | MacVlanMode::Private | MacVlanMode::Vepa) => None,
            m => Some(Error::Unsupported(format!(
                "{name} is a macvlan in mode {m:?}: redirect mode carries macvlans in bridge, \
             private and vepa mode only"
            ))),
        },
        Some(k) => Some(Error::Unsupported(format!(
            "{name} is a {k:?} link: redirect mode carries veths, macvlans and host devices \
             only"
        ))),
    }
}

fn macvlan_mode(link: &LinkMessage) -> Option<MacVlanMode> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::MacVlan(d)) => d.iter().find_map(|x| match x {
                InfoMacVlan::Mode(m) => Some(*m),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    })
}

/// The kinds whose receive path filters on the link's own MAC (or on IP
/// addresses behind one shared MAC).
fn own_mac_kind(kind: &InfoKind) -> Option<&'static str> {
    match kind {
        InfoKind::MacVlan => Some("macvlan"),
        InfoKind::MacVtap => Some("macvtap"),
        InfoKind::IpVlan => Some("ipvlan"),
        InfoKind::IpVtap => Some("ipvtap"),
        _ => None,
    }
}

fn is_link_local(a: &AddressMessage) -> bool {
    match crate::snapshot::address_ip(a) {
        Some(IpNetwork::V6(n)) => n.ip().segments()[0] & 0xffc0 == 0xfe80,
        Some(IpNetwork::V4(_)) => false,
        None => true,
    }
}

/// The CNI 1.0.0 result to hand back: the caller's, checked against the
/// namespace and completed from it, or one built from the namespace alone.
pub fn cni_result(
    plans: &[IfacePlan],
    given: Option<&CniResult>,
    cfg: &Config,
    netns: &str,
) -> Result<CniResult> {
    let mut r = given.cloned().unwrap_or_else(|| CniResult {
        cni_version: crate::cni::CNI_VERSION.into(),
        ..Default::default()
    });
    for p in plans {
        let s = &p.snapshot;
        let idx = match r
            .interfaces
            .iter()
            .position(|i| i.name == s.name && !i.sandbox.is_empty())
        {
            Some(i) => i,
            None => {
                r.interfaces.push(CniInterface {
                    name: s.name.clone(),
                    ..Default::default()
                });
                r.interfaces.len() - 1
            }
        };
        let iface = &mut r.interfaces[idx];
        iface.mac = s.mac.to_string();
        iface.mtu = Some(s.mtu);
        iface.sandbox = netns.to_string();
        let held = s.ips();
        for ip in r.ips.iter().filter(|ip| ip.interface == Some(idx)) {
            if !held.contains(&ip.address) {
                return Err(Error::Config(format!(
                    "cni_result gives {} to {}, but {} does not hold it",
                    ip.address, s.name, s.name
                )));
            }
        }
        if !r.ips.iter().any(|ip| ip.interface == Some(idx)) {
            for net in held.iter().filter(|n| !is_v6_link_local(n)) {
                let gateway = default_gateway(s, net.is_ipv4());
                r.ips.push(CniIp {
                    version: None,
                    address: *net,
                    gateway,
                    interface: Some(idx),
                });
            }
        }
        if given.is_none_or(|g| g.routes.is_empty()) {
            for route in &s.routes {
                if let Some(dst) = route_destination(&route.0) {
                    let gw = route_gateway(&route.0);
                    let rt = CniRoute { dst, gw };
                    if !r.routes.contains(&rt) {
                        r.routes.push(rt);
                    }
                }
            }
        }
    }
    if let Some(g) = given {
        for rt in &g.routes {
            check_route(rt, plans, netns)?;
        }
    }
    for (i, ip) in r.ips.iter().enumerate() {
        if ip.interface.is_none() && !plans.iter().any(|p| p.snapshot.ips().contains(&ip.address)) {
            return Err(Error::Config(format!(
                "cni_result ips[{i}] {} is on no interface in {netns}",
                ip.address
            )));
        }
    }
    if let Some(dns) = &cfg.dns {
        r.dns = dns.clone();
    }
    Ok(r)
}

/// A CNI route must be one the namespace holds through a pod interface (in
/// any table): same destination, and the same gateway when it names one
/// (one it omits is "the plugin's default gateway", so any will do).
/// Anything else contradicts the namespace: refused before any change.
fn check_route(rt: &CniRoute, plans: &[IfacePlan], netns: &str) -> Result<()> {
    let held = plans.iter().flat_map(|p| {
        let s = &p.snapshot;
        s.routes.iter().chain(&s.kernel_routes)
    });
    let found = held
        .filter(|r| {
            route_destination(&r.0)
                .is_some_and(|d| d.network() == rt.dst.network() && d.prefix() == rt.dst.prefix())
        })
        .any(|r| rt.gw.is_none() || route_gateway(&r.0) == rt.gw);
    if found {
        return Ok(());
    }
    Err(Error::Config(format!(
        "cni_result route {}{} is not in {netns}",
        rt.dst,
        rt.gw.map(|g| format!(" via {g}")).unwrap_or_default()
    )))
}

fn is_v6_link_local(n: &IpNetwork) -> bool {
    matches!(n, IpNetwork::V6(v6) if v6.ip().segments()[0] & 0xffc0 == 0xfe80)
}

fn default_gateway(s: &InterfaceSnapshot, v4: bool) -> Option<IpAddr> {
    s.routes.iter().find_map(|r| {
        let dst = route_destination(&r.0)?;
        (dst.prefix() == 0 && dst.is_ipv4() == v4)
            .then(|| route_gateway(&r.0))
            .flatten()
    })
}

/// The DHCP lease for the VM NIC standing in for interface `idx` of the
/// result, if it has an IPv4 address.
pub fn lease(p: &IfacePlan, cni: &CniResult, cfg: &Config) -> Option<Lease> {
    let s = &p.snapshot;
    let idx = cni
        .interfaces
        .iter()
        .position(|i| i.name == s.name && !i.sandbox.is_empty())?;
    let ip = cni
        .ips
        .iter()
        .find(|ip| ip.interface == Some(idx) && ip.address.is_ipv4())?;
    let IpNetwork::V4(net) = ip.address else {
        return None;
    };
    // What the pod's routing says is on-link and which next hop each
    // destination used (the rule is in `vm_view`).
    let view = crate::vm_view::ipv4(s, net);
    let mut routes = view.routes;
    // Our server on-link, so renewals (unicast to the server id) reach it
    // over the bridge instead of going to the gateway and being filtered.
    if let Ok(server) = Ipv4Network::new(crate::bridge::BRIDGE_IP, 32) {
        let first_via = routes.iter().position(|(_, gw)| gw.is_some());
        routes.insert(first_via.unwrap_or(routes.len()), (server, None));
    }
    // `cni_result` has already put a configured `dns` in place of the CNI one.
    let dns = &cni.dns;
    Some(Lease {
        client_mac: s.mac.0,
        ip: net.ip(),
        prefix_len: view.prefix_len,
        gateway: view.gateway,
        routes,
        dns_servers: dns
            .nameservers
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect(),
        search: dns.search.clone(),
        domain: dns.domain.clone(),
        hostname: cfg.hostname.clone(),
        mtu: u16::try_from(s.mtu).ok(),
        lease_secs: cfg.lease_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, kind: InfoKind) -> LinkMessage {
        let mut l = LinkMessage::default();
        l.header.link_layer_type = LinkLayerType::Ether;
        l.attributes.push(LinkAttribute::IfName(name.into()));
        l.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        l
    }

    /// No kernel here has ipvlan, so the refusal is checked on the message
    /// a dump would give: refused in both modes, before anything is read.
    #[test]
    fn ipvlan_is_refused_in_both_modes() {
        for kind in [InfoKind::IpVlan, InfoKind::IpVtap, InfoKind::MacVtap] {
            for mode in [Mode::Bridge, Mode::Redirect] {
                let e = check_kind(&link("eth0", kind.clone()), mode).unwrap_err();
                assert!(matches!(e, Error::Unsupported(_)), "{e}");
                assert!(e.to_string().contains("eth0"), "{e}");
            }
        }
        let e = check_kind(&link("eth0", InfoKind::MacVlan), Mode::Bridge).unwrap_err();
        assert!(e.to_string().contains("\"redirect\""), "{e}");
        // A macvlan whose mode the dump does not give is not guessed at.
        let e = check_kind(&link("eth0", InfoKind::MacVlan), Mode::Redirect).unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
        let e = check_kind(&link("vx", InfoKind::Vxlan), Mode::Redirect).unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
    }
}
