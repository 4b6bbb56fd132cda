//! What we record about a pod interface before touching it, and the exact
//! netlink messages that put it back.
//!
//! Addresses and routes are kept as the messages the kernel dumped (flags,
//! protocol, table, metrics, preference and all), stored as hex in the result
//! JSON, so restoring is byte-faithful and survives a process restart.

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::mac::Mac;
use crate::netlink::link_attr;

/// A netlink message serialised as the kernel's own bytes (hex in JSON).
#[derive(Clone, PartialEq)]
pub struct Raw<T>(pub T);

impl<T: Emitable> Serialize for Raw<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut buf = vec![0u8; self.0.buffer_len()];
        self.0.emit(&mut buf);
        s.collect_str(&format_args!("{}", Hex(&buf)))
    }
}

impl<'de, T: Parseable<[u8]>> Deserialize<'de> for Raw<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 || s.len() > 1 << 16 {
            return Err(D::Error::custom("bad netlink hex length"));
        }
        let bytes = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap_or("x"), 16))
            .collect::<std::result::Result<Vec<u8>, _>>()
            .map_err(D::Error::custom)?;
        T::parse(&bytes)
            .map(Raw)
            .map_err(|e| D::Error::custom(format!("bad netlink message: {e}")))
    }
}

impl<T: fmt::Debug> fmt::Debug for Raw<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

struct Hex<'a>(&'a [u8]);
impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// One pod interface as it was before setup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InterfaceSnapshot {
    pub ifindex: u32,
    pub name: String,
    pub mac: Mac,
    pub mtu: u32,
    /// In kernel order, so IPv4 primaries come back before secondaries.
    pub addresses: Vec<Raw<AddressMessage>>,
    /// Routes through this link that someone added, in every table but
    /// `local`: the ones setup deletes and undo adds back.
    pub routes: Vec<Raw<RouteMessage>>,
    /// The kernel's own routes through this link (`proto kernel`: prefix
    /// routes of its addresses, `fe80::/64`) outside the `local` table, as
    /// they were. The kernel removes and re-creates them with the addresses,
    /// but a plugin may have deleted (ptp) or moved (sbr) them, so restore
    /// makes the re-created set equal to this one.
    pub kernel_routes: Vec<Raw<RouteMessage>>,
    /// The policy rules that name this link or select traffic by one of its
    /// addresses (what the reference `sbr` plugin makes), and the ones with
    /// no selector at all (`from all lookup main`, ...): together they say
    /// which tables route the pod's traffic. vnet never changes them;
    /// teardown checks they are as recorded.
    pub rules: Vec<Raw<RuleMessage>>,
}

impl InterfaceSnapshot {
    /// Record `link` from the namespace's dumps.
    pub fn take(
        link: &LinkMessage,
        addrs: &[AddressMessage],
        routes: &[RouteMessage],
        rules: &[RuleMessage],
    ) -> Result<InterfaceSnapshot> {
        let ifindex = link.header.index;
        let name = link_attr::name(link).unwrap_or_default().to_string();
        let mac = link_attr::mac(link)
            .and_then(Mac::from_slice)
            .ok_or_else(|| Error::Config(format!("{name} has no Ethernet MAC address")))?;
        let addresses: Vec<Raw<AddressMessage>> = addrs
            .iter()
            .filter(|a| a.header.index == ifindex)
            .cloned()
            .map(Raw)
            .collect();
        let ours = |kernel: bool| -> Vec<Raw<RouteMessage>> {
            routes
                .iter()
                .filter(|r| route_uses(r, ifindex) && is_restorable(r))
                .filter(|r| (r.header.protocol == RouteProtocol::Kernel) == kernel)
                .cloned()
                .map(|r| Raw(clean_route(r)))
                .collect()
        };
        let ips: Vec<IpAddr> = addresses
            .iter()
            .filter_map(|a| address_ip(&a.0).map(|n| n.ip()))
            .collect();
        let rules = rules
            .iter()
            .filter(|r| rule_concerns(r, &name, &ips))
            .cloned()
            .map(Raw)
            .collect();
        Ok(InterfaceSnapshot {
            ifindex,
            name,
            mac,
            mtu: link_attr::mtu(link).unwrap_or(1500),
            addresses,
            routes: ours(false),
            kernel_routes: ours(true),
            rules,
        })
    }

    /// The addresses as `ip/prefix`.
    pub fn ips(&self) -> Vec<IpNetwork> {
        self.addresses
            .iter()
            .filter_map(|a| address_ip(&a.0))
            .collect()
    }
}

/// The IP and prefix of an address message.
pub fn address_ip(a: &AddressMessage) -> Option<IpNetwork> {
    let ip = a.attributes.iter().find_map(|at| match at {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let ip = ip.or_else(|| {
        a.attributes.iter().find_map(|at| match at {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    IpNetwork::new(ip, a.header.prefix_len).ok()
}

pub(crate) fn route_uses(r: &RouteMessage, ifindex: u32) -> bool {
    r.attributes.iter().any(|a| match a {
        RouteAttribute::Oif(i) => *i == ifindex,
        RouteAttribute::MultiPath(hops) => hops.iter().any(|h| h.interface_index == ifindex),
        _ => false,
    })
}

/// Unicast and outside the `local` table (whose routes the kernel keeps
/// for the addresses by itself).
fn is_restorable(r: &RouteMessage) -> bool {
    matches!(r.header.kind, RouteType::Unicast) && route_table(r) != libc::RT_TABLE_LOCAL as u32
}

/// The table a route is in (`RTA_TABLE` when the id is over 255).
pub fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(r.header.table as u32)
}

/// A rule worth recording for a link named `name` holding `ips`: it names
/// the link, or selects by a prefix holding one of the addresses, or
/// selects nothing at all (it routes every packet, the pod's too).
pub(crate) fn rule_concerns(r: &RuleMessage, name: &str, ips: &[IpAddr]) -> bool {
    let holds = |net: &IpAddr, len: u8| {
        IpNetwork::new(*net, len).is_ok_and(|n| len > 0 && ips.iter().any(|ip| n.contains(*ip)))
    };
    let mut selects = r.header.tos != 0;
    for a in &r.attributes {
        match a {
            RuleAttribute::Iifname(n) | RuleAttribute::Oifname(n) if n == name => return true,
            RuleAttribute::Source(ip) if holds(ip, r.header.src_len) => return true,
            RuleAttribute::Destination(ip) if holds(ip, r.header.dst_len) => return true,
            RuleAttribute::Priority(_)
            | RuleAttribute::Table(_)
            | RuleAttribute::Protocol(_)
            | RuleAttribute::Goto(_)
            | RuleAttribute::SuppressIfGroup(_)
            | RuleAttribute::SuppressPrefixLen(_) => {}
            _ => selects = true,
        }
    }
    !selects
}

/// Drop what the kernel reports but refuses (or recomputes) on RTM_NEWROUTE.
pub fn clean_route(mut r: RouteMessage) -> RouteMessage {
    r.attributes
        .retain(|a| !matches!(a, RouteAttribute::CacheInfo(_) | RouteAttribute::Expires(_)));
    r.header.flags &= RouteFlags::Onlink;
    r
}

pub fn route_gateway(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    })
}

pub fn route_destination(r: &RouteMessage) -> Option<IpNetwork> {
    let len = r.header.destination_prefix_length;
    let ip = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
            _ => None,
        })
        .unwrap_or(match r.header.address_family {
            netlink_packet_route::AddressFamily::Inet6 => {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            }
            _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        });
    IpNetwork::new(ip, len).ok()
}

/// The index of the link a route goes out through, if it names one.
pub fn route_oif(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(ix) => Some(*ix),
        _ => None,
    })
}
