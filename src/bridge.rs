//! The bridge joining a VM's TAP and the pod's veth, and the link changes
//! around it, as netlink messages.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkFlags, LinkMessage,
};
use netlink_packet_route::route::{RouteMessage, RouteScope};
use netlink_packet_route::AddressFamily;
use rtnetlink::{LinkBridge, LinkMessageBuilder, RouteMessageBuilder};

use crate::mac::Mac;

/// Our DHCP server's address on every bridge: link-local, never routed.
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 254, 2);
pub const BRIDGE_PREFIX: u8 = 24;

/// A new bridge, down, with the veth's MTU, in our link group. Ageing 0
/// makes it forward like a hub: with one VM and one veth there is nothing to
/// learn, and the VM's MAC is also the pod's. It is created down because a
/// port-less bridge has carrier: up at once, it would get an IPv6 link-local
/// address before [`no_ipv6_autoconf`] could apply.
pub fn new_bridge(name: &str, mtu: u32, group: u32) -> LinkMessage {
    LinkMessageBuilder::<LinkBridge>::new(name)
        .mtu(mtu)
        .link_group(group)
        .ageing_time(0)
        .build()
}

/// No IPv6 address autoconfiguration on link `index`. Our bridge and TAP are
/// plumbing: a link-local address of theirs would make them IPv6 nodes that
/// send DAD, MLD and router solicitations out into the pod network. Must be
/// set before the link has carrier (the kernel adds fe80:: then).
pub fn no_ipv6_autoconf(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    m
}

/// Put link `index` into `bridge`, optionally with MTU and group, and up.
pub fn enslave(index: u32, bridge: u32, mtu: Option<u32>, group: Option<u32>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    if let Some(mtu) = mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(g) = group {
        m.attributes.push(LinkAttribute::Group(g));
    }
    m.attributes.push(LinkAttribute::Controller(bridge));
    m
}

/// Change a link's MAC (veths allow it while up, so routes stay put).
pub fn set_mac(index: u32, mac: Mac) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    m
}

/// `BRIDGE_IP/BRIDGE_PREFIX` on link `index`.
pub fn bridge_address(index: u32) -> AddressMessage {
    let mut a = AddressMessage::default();
    a.header.family = AddressFamily::Inet;
    a.header.prefix_len = BRIDGE_PREFIX;
    a.header.index = index;
    a.attributes
        .push(AddressAttribute::Local(IpAddr::V4(BRIDGE_IP)));
    a.attributes
        .push(AddressAttribute::Address(IpAddr::V4(BRIDGE_IP)));
    a
}

/// A host route to the VM's leased address `vm` through bridge `index`. The
/// VM renews its lease by unicast from that address, and once the pod's
/// addresses and routes are gone nothing else routes back to it: with
/// reverse-path filtering on (`rp_filter` 1 or 2, which many nodes set and
/// new namespaces inherit) the kernel would drop every renewal before our
/// server saw it, and the VM would lose its address when the lease ran out.
pub fn vm_route(index: u32, vm: Ipv4Addr) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(vm, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .pref_source(BRIDGE_IP)
        .build()
}
