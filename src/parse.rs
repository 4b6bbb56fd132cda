//! Reading the kernel's dumps without parsing what nobody reads. A pod's
//! link dump is mostly IPv4/IPv6 device settings and link-type data that
//! netlink-packet-route would turn into hundreds of typed values; setup
//! needs a handful per link. Parsing all of it (and freeing it again) was
//! ~50 µs of a cold setup on this VM, against ~20 µs for the kernel to
//! answer the dump.

use netlink_packet_core::{DecodeError, NlaBuffer, NlasIterator, Parseable, ParseableParametrized};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkHeader, LinkInfo, LinkMessage, MacVlanMode,
};

/// `<linux/if_link.h>`: the attributes [`crate::netlink::link_attr`] reads.
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_GROUP: u16 = 27;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_MACVLAN_MODE: u16 = 1;
/// `sizeof(struct ifinfomsg)`.
const IFINFOMSG_LEN: usize = 16;

/// An `RTM_NEWLINK` payload as a [`LinkMessage`] holding only the header and
/// the attributes `link_attr` reads: name, MAC, MTU, controller, group and
/// the link kind (without its kind-specific data).
pub fn link(payload: &[u8]) -> Result<LinkMessage, DecodeError> {
    let mut m = LinkMessage::default();
    m.header = LinkHeader::parse(payload)?;
    let family = m.header.interface_family;
    for nla in NlasIterator::new(payload.get(IFINFOMSG_LEN..).unwrap_or_default()) {
        let nla = nla?;
        match nla.kind() {
            IFLA_ADDRESS | IFLA_IFNAME | IFLA_MTU | IFLA_MASTER | IFLA_GROUP => {
                m.attributes
                    .push(LinkAttribute::parse_with_param(&nla, family)?);
            }
            IFLA_LINKINFO => {
                let mut infos = Vec::new();
                let mut data = None;
                for info in NlasIterator::new(nla.value()) {
                    let info: NlaBuffer<&[u8]> = info?;
                    match info.kind() {
                        IFLA_INFO_KIND => infos.push(LinkInfo::Kind(InfoKind::parse(&info)?)),
                        IFLA_INFO_DATA => data = macvlan_mode(info.value()),
                        _ => {}
                    }
                }
                // A macvlan's mode only: redirect mode decides by it.
                if infos.contains(&LinkInfo::Kind(InfoKind::MacVlan)) {
                    if let Some(mode) = data {
                        infos.push(LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                            MacVlanMode::from(mode),
                        )])));
                    }
                }
                if !infos.is_empty() {
                    m.attributes.push(LinkAttribute::LinkInfo(infos));
                }
            }
            _ => {}
        }
    }
    Ok(m)
}

/// `IFLA_MACVLAN_MODE` in a macvlan's `IFLA_INFO_DATA`.
fn macvlan_mode(data: &[u8]) -> Option<u32> {
    NlasIterator::new(data)
        .filter_map(|n| n.ok())
        .find(|n: &NlaBuffer<&[u8]>| n.kind() == IFLA_MACVLAN_MODE)
        .and_then(|n| {
            n.value()
                .get(..4)
                .map(|v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
        })
}

/// Whether an `RTM_NEWROUTE` payload is an IPv4 or IPv6 route: a dump of
/// every family also lists multicast forwarding entries (families
/// `RTNL_FAMILY_IPMR`/`IP6MR`).
pub fn route_is_ip(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|&f| matches!(f as i32, libc::AF_INET | libc::AF_INET6))
}

/// Whether an `RTM_NEWROUTE` payload could be a route a snapshot keeps
/// (`snapshot::InterfaceSnapshot::take` decides): IPv4 or IPv6, unicast,
/// not in the local table. The kernel's own prefix routes are kept: whether
/// the pod's subnet is on-link, and what must come back after an address is
/// re-added, depend on them (a ptp or sbr pod has removed or moved them).
/// Only from the fixed `rtmsg` header, so the routes every namespace is full
/// of (local, broadcast, multicast) are skipped before parsing.
pub fn route_worth_parsing(payload: &[u8]) -> bool {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
    // type, flags (u32).
    let [_, _, _, _, table, _, _, kind, ..] = payload else {
        return false;
    };
    route_is_ip(payload)
        && *kind == libc::RTN_UNICAST
        // A table id over 255 is in RTA_TABLE, with RT_TABLE_COMPAT here.
        && *table != libc::RT_TABLE_LOCAL
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::link_attr;
    use netlink_packet_core::{DefaultNla, Emitable};
    use netlink_packet_route::link::{InfoData, InfoVeth, LinkFlags, LinkLayerType};
    use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteProtocol, RouteType};
    use netlink_packet_route::AddressFamily;

    fn bytes(m: &impl Emitable) -> Vec<u8> {
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    #[test]
    fn link_keeps_what_link_attr_reads_and_only_that() {
        let mut full = LinkMessage::default();
        full.header.index = 7;
        full.header.flags = LinkFlags::Up | LinkFlags::Broadcast;
        full.header.link_layer_type = LinkLayerType::Ether;
        full.attributes = vec![
            LinkAttribute::TxQueueLen(1000),
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::Address(vec![0x42, 0xa4, 0xa6, 0x22, 0x80, 0x2e]),
            LinkAttribute::Mtu(9000),
            LinkAttribute::Controller(3),
            LinkAttribute::Group(0x766e_6574),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Other(DefaultNla::new(
                    5,
                    vec![1, 2, 3, 4],
                )))),
            ]),
            LinkAttribute::NumTxQueues(2),
        ];
        let lean = link(&bytes(&full)).unwrap();
        assert_eq!(lean.header, full.header);
        assert_eq!(link_attr::name(&lean), Some("eth0"));
        assert_eq!(link_attr::mac(&lean), link_attr::mac(&full));
        assert_eq!(link_attr::mtu(&lean), Some(9000));
        assert_eq!(link_attr::controller(&lean), Some(3));
        assert_eq!(link_attr::group(&lean), 0x766e_6574);
        assert_eq!(link_attr::kind(&lean), Some(&InfoKind::Veth));
        assert_eq!(lean.attributes.len(), 6, "{:?}", lean.attributes);
    }

    #[test]
    fn link_without_optional_attributes() {
        let mut full = LinkMessage::default();
        full.header.index = 1;
        full.attributes = vec![LinkAttribute::IfName("lo".into())];
        let lean = link(&bytes(&full)).unwrap();
        assert_eq!(link_attr::name(&lean), Some("lo"));
        assert_eq!(link_attr::kind(&lean), None);
        assert_eq!(link_attr::group(&lean), 0);
        assert!(link(&[0; 8]).is_err(), "a payload shorter than ifinfomsg");
    }

    fn route(
        table: u8,
        protocol: RouteProtocol,
        kind: RouteType,
        family: AddressFamily,
    ) -> Vec<u8> {
        let mut r = RouteMessage::default();
        r.header.address_family = family;
        r.header.table = table;
        r.header.protocol = protocol;
        r.header.kind = kind;
        r.attributes.push(RouteAttribute::Oif(2));
        bytes(&r)
    }

    #[test]
    fn routes_worth_parsing_are_the_ones_a_snapshot_may_keep() {
        use AddressFamily::{Inet, Inet6};
        let (main, local) = (libc::RT_TABLE_MAIN, libc::RT_TABLE_LOCAL);
        let keep = [
            route(main, RouteProtocol::Boot, RouteType::Unicast, Inet),
            route(main, RouteProtocol::Static, RouteType::Unicast, Inet6),
            route(main, RouteProtocol::Ra, RouteType::Unicast, Inet6),
            route(100, RouteProtocol::Dhcp, RouteType::Unicast, Inet),
            route(main, RouteProtocol::Kernel, RouteType::Unicast, Inet),
            route(100, RouteProtocol::Kernel, RouteType::Unicast, Inet6),
            route(
                libc::RT_TABLE_COMPAT,
                RouteProtocol::Boot,
                RouteType::Unicast,
                Inet,
            ),
        ];
        for r in &keep {
            assert!(route_worth_parsing(r));
        }
        let skip = [
            route(local, RouteProtocol::Boot, RouteType::Unicast, Inet),
            route(local, RouteProtocol::Kernel, RouteType::Local, Inet),
            route(main, RouteProtocol::Boot, RouteType::Multicast, Inet6),
            route(main, RouteProtocol::Boot, RouteType::Broadcast, Inet),
            route(
                main,
                RouteProtocol::Boot,
                RouteType::Unicast,
                AddressFamily::Other(128),
            ),
        ];
        for r in &skip {
            assert!(!route_worth_parsing(r));
        }
        assert!(!route_worth_parsing(&[2, 0, 0]), "a truncated rtmsg");
        assert!(route_is_ip(&keep[0]) && route_is_ip(&keep[1]));
        assert!(!route_is_ip(&skip[4]), "a multicast forwarding family");
        assert!(!route_is_ip(&[]));
    }
}
