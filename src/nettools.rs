//! The building blocks of the original Go `nettools`, one call each, for
//! programs that want to compose their own flow. Each runs on a short-lived
//! thread inside the given namespace; `Network` is built from the same parts.

use std::net::IpAddr;
use std::os::fd::OwnedFd;

use ipnetwork::IpNetwork;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;

use crate::bridge;
use crate::cni::CniResult;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::mac::Mac;
use crate::netlink::{link_attr, NamespaceDump, Netlink};
use crate::netns::Netns;
use crate::plan;
use crate::snapshot::InterfaceSnapshot;
use crate::tap::{self, TapOptions};
use crate::topology::Mode;

/// Run `f` with a netlink connection inside `ns`.
fn with_netlink<T: Send>(
    ns: &Netns,
    f: impl FnOnce(&mut Netlink) -> Result<T> + Send,
) -> Result<T> {
    ns.run(|| {
        let mut nl = Netlink::open().map_err(|e| Error::netlink("open", e))?;
        f(&mut nl)
    })
}

fn dumps(nl: &mut Netlink) -> Result<NamespaceDump> {
    nl.dump_all().map_err(|e| Error::netlink("dump", e))
}

fn link_named(nl: &mut Netlink, name: &str) -> Result<LinkMessage> {
    let links = nl.links().map_err(|e| Error::netlink("dump links", e))?;
    links
        .into_iter()
        .find(|l| link_attr::name(l) == Some(name))
        .ok_or_else(|| Error::Config(format!("no link named {name:?}")))
}

/// The name of the one veth in the namespace (errors for none or several).
pub fn find_veth(ns: &Netns) -> Result<String> {
    with_netlink(ns, |nl| {
        let links = nl.links().map_err(|e| Error::netlink("dump links", e))?;
        let found = plan::find_interfaces(&links, None, ns.path(), Mode::Bridge)?;
        Ok(link_attr::name(found[0]).unwrap_or_default().to_string())
    })
}

/// Everything about link `name` (addresses, routes, MAC, MTU), and the same
/// as a CNI 1.0.0 result.
pub fn extract_link_info(ns: &Netns, name: &str) -> Result<(InterfaceSnapshot, CniResult)> {
    with_netlink(ns, |nl| {
        let mut d = dumps(nl)?;
        let links = std::mem::take(&mut d.links);
        let link = links
            .iter()
            .find(|l| link_attr::name(l) == Some(name))
            .ok_or_else(|| Error::Config(format!("no link named {name:?} in {}", ns.path())))?;
        // No name check against the rest: nothing is created here.
        let plans = plan::plan(&[link], &d, Mode::Bridge)?;
        let cni = plan::cni_result(&plans, None, &Config::default(), ns.path())?;
        let snap = plans
            .into_iter()
            .next()
            .map(|p| p.snapshot)
            .ok_or_else(|| Error::Internal("no plan".into()))?;
        Ok((snap, cni))
    })
}

/// Remove the routes (all but the kernel's) and addresses of link `name`;
/// returns what it held, to put back with [`restore_link`].
pub fn strip_link(ns: &Netns, name: &str) -> Result<InterfaceSnapshot> {
    with_netlink(ns, |nl| {
        let d = dumps(nl)?;
        let link = d
            .links
            .iter()
            .find(|l| link_attr::name(l) == Some(name))
            .ok_or_else(|| Error::Config(format!("no link named {name:?}")))?;
        let snap = InterfaceSnapshot::take(link, &d.addrs, &d.routes, &d.rules)?;
        for r in snap.routes.iter().rev() {
            nl.del_route(r.0.clone())
                .map_err(|e| Error::netlink("delete route", e))?;
        }
        for a in snap.addresses.iter().rev() {
            nl.del_address(a.0.clone())
                .map_err(|e| Error::netlink("delete address", e))?;
        }
        Ok(snap)
    })
}

/// Put back what [`strip_link`] removed, and the recorded MAC.
pub fn restore_link(ns: &Netns, snap: &InterfaceSnapshot) -> Result<()> {
    with_netlink(ns, |nl| {
        nl.set_link(bridge::set_mac(snap.ifindex, snap.mac))
            .map_err(|e| Error::netlink("set MAC", e))?;
        for a in &snap.addresses {
            nl.add_address(a.0.clone())
                .map_err(|e| Error::netlink("add address", e))?;
        }
        let (onlink, via): (Vec<_>, Vec<_>) = snap
            .routes
            .iter()
            .partition(|r| crate::snapshot::route_gateway(&r.0).is_none());
        for r in onlink.into_iter().chain(via) {
            nl.add_route(r.0.clone())
                .map_err(|e| Error::netlink("add route", e))?;
        }
        Ok(())
    })
}

/// Create bridge `name` (up, MAC ageing 0, given MTU) and enslave `ports`.
/// Returns the bridge's index.
pub fn setup_bridge(ns: &Netns, name: &str, ports: &[&str], mtu: u32) -> Result<u32> {
    let ports: Vec<String> = ports.iter().map(|s| s.to_string()).collect();
    with_netlink(ns, |nl| {
        nl.new_link(bridge::new_bridge(name, mtu, 0))
            .map_err(|e| Error::netlink(format!("create {name}"), e))?;
        let br = nl
            .index_of(name)
            .map_err(|e| Error::netlink("find bridge", e))?;
        nl.set_link(bridge::no_ipv6_autoconf(br))
            .map_err(|e| Error::netlink("addrgenmode", e))?;
        nl.set_up(br, true)
            .map_err(|e| Error::netlink(format!("set {name} up"), e))?;
        for p in &ports {
            let ix = nl
                .index_of(p)
                .map_err(|e| Error::netlink(format!("find {p}"), e))?;
            nl.set_link(bridge::enslave(ix, br, None, None))
                .map_err(|e| Error::netlink(format!("enslave {p}"), e))?;
        }
        Ok(br)
    })
}

/// Delete bridge `name` (its ports are released by the kernel).
pub fn teardown_bridge(ns: &Netns, name: &str) -> Result<()> {
    with_netlink(ns, |nl| {
        let l = link_named(nl, name)?;
        if link_attr::kind(&l) != Some(&InfoKind::Bridge) {
            return Err(Error::Config(format!("{name} is not a bridge")));
        }
        nl.del_link(l.header.index)
            .map_err(|e| Error::netlink(format!("delete {name}"), e))
    })
}

/// Give link `name` the addresses and routes that a CNI result assigns to it
/// (routes of the result go to its first interface that holds an address).
pub fn configure_link(ns: &Netns, name: &str, cni: &CniResult) -> Result<()> {
    let idx = cni.interfaces.iter().position(|i| i.name == name);
    with_netlink(ns, |nl| {
        let link = link_named(nl, name)?;
        let ix = link.header.index;
        for ip in cni
            .ips
            .iter()
            .filter(|ip| ip.interface.is_none() || ip.interface == idx)
        {
            nl.add_address(address(ix, ip.address))
                .map_err(|e| Error::netlink(format!("add {}", ip.address), e))?;
        }
        for r in &cni.routes {
            let gw = r.gw.or_else(|| {
                cni.ips
                    .iter()
                    .find(|ip| ip.address.is_ipv4() == r.dst.is_ipv4())
                    .and_then(|ip| ip.gateway)
            });
            nl.add_route(route(ix, r.dst, gw))
                .map_err(|e| Error::netlink(format!("add route {}", r.dst), e))?;
        }
        Ok(())
    })
}

fn address(ix: u32, net: IpNetwork) -> AddressMessage {
    let mut a = AddressMessage::default();
    a.header.family = if net.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    a.header.prefix_len = net.prefix();
    a.header.index = ix;
    a.attributes.push(AddressAttribute::Local(net.ip()));
    a.attributes.push(AddressAttribute::Address(net.ip()));
    a
}

fn route(ix: u32, dst: IpNetwork, gw: Option<IpAddr>) -> RouteMessage {
    let mut r = RouteMessage::default();
    let h = &mut r.header;
    h.address_family = if dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    h.destination_prefix_length = dst.prefix();
    h.table = libc::RT_TABLE_MAIN;
    h.protocol = RouteProtocol::Boot;
    h.scope = if gw.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    h.kind = RouteType::Unicast;
    let addr = |ip: IpAddr| match ip {
        IpAddr::V4(v) => RouteAddress::Inet(v),
        IpAddr::V6(v) => RouteAddress::Inet6(v),
    };
    if dst.prefix() > 0 {
        r.attributes
            .push(RouteAttribute::Destination(addr(dst.network())));
    }
    if let Some(g) = gw {
        r.attributes.push(RouteAttribute::Gateway(addr(g)));
    }
    r.attributes.push(RouteAttribute::Oif(ix));
    r
}

/// Create persistent TAP `name` in the namespace and open its queues.
pub fn open_tap(ns: &Netns, name: &str, opts: TapOptions) -> Result<Vec<OwnedFd>> {
    ns.run(|| {
        tap::create(name, opts).map_err(|e| Error::Tap {
            name: name.into(),
            step: "create".into(),
            source: e,
        })
    })
}

/// A fresh random locally administered unicast MAC.
pub fn generate_mac() -> Result<Mac> {
    Mac::random()
}

/// For tests and demos: a veth pair `name_a` in `a` <-> `name_b` in `b`,
/// both up (the "escape" link from a pod to a host namespace).
pub fn create_escape_veth(a: &Netns, name_a: &str, b: &Netns, name_b: &str) -> Result<()> {
    let b_fd = b.raw_fd();
    with_netlink(a, |nl| {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name_a.to_string()));
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(name_b.to_string()));
        peer.attributes.push(LinkAttribute::NetNsFd(b_fd));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(netlink_packet_route::link::InfoData::Veth(
                netlink_packet_route::link::InfoVeth::Peer(peer),
            )),
        ]));
        nl.new_link(m)
            .map_err(|e| Error::netlink(format!("create veth {name_a}"), e))?;
        let ix = nl
            .index_of(name_a)
            .map_err(|e| Error::netlink("find veth", e))?;
        nl.set_up(ix, true)
            .map_err(|e| Error::netlink("veth up", e))
    })?;
    with_netlink(b, |nl| {
        let l = link_named(nl, name_b)?;
        nl.set_up(l.header.index, true)
            .map_err(|e| Error::netlink("peer up", e))
    })
}
