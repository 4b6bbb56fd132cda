//! Router advertisements and neighbour advertisements we send, and the
//! learning solicitation for the gateway. Parsing is etherparse's; the
//! option bodies it has types for (prefix information, RA fixed part) are
//! its encoders too.

use std::net::Ipv6Addr;

use etherparse::icmpv6::{
    NeighborAdvertisementHeader, PrefixInformation, RouterAdvertisementHeader,
    RouterAdvertisementPayload,
};
use etherparse::{Icmpv6Type, PacketBuilder};

use super::lease::{Lease6, ROUTER_LIFETIME};

pub(crate) const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const OPT_SLLA: u8 = 1;
const OPT_TLLA: u8 = 2;
const OPT_MTU: u8 = 5;
const OPT_ROUTE_INFO: u8 = 24;
/// Largest RA we build: routes beyond it are left out (an RA must fit in
/// the minimum IPv6 MTU).
const MAX_RA: usize = 1280 - 40 - 8;

/// The Ethernet multicast address for IPv6 multicast `a` (RFC 2464).
pub(crate) fn multicast_mac(a: &Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// ff02::1:ffXX:XXXX for `a`.
pub(crate) fn solicited_node(a: &Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// A whole Ethernet frame: `icmp` (type + body) from `src` to `dst`, hop
/// limit 255 as ND requires.
fn icmp_frame(
    eth: ([u8; 6], [u8; 6]),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ty: Icmpv6Type,
    body: &[u8],
) -> Option<Vec<u8>> {
    let b = PacketBuilder::ethernet2(eth.0, eth.1)
        .ipv6(src.octets(), dst.octets(), 255)
        .icmpv6(ty);
    let mut out = Vec::with_capacity(b.size(body.len()));
    b.write(&mut out, body).ok()?;
    Some(out)
}

fn ll_option(ty: u8, mac: [u8; 6]) -> [u8; 8] {
    [ty, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]
}

/// The RA for `lease` to `dst` (the soliciting VM, or all nodes);
/// `gw_mac`: the gateway's MAC when learnt (a source link-layer option
/// saves the VM a solicitation).
pub(crate) fn router_advertisement(
    lease: &Lease6,
    dst: Ipv6Addr,
    gw_mac: Option<[u8; 6]>,
) -> Option<Vec<u8>> {
    let header = RouterAdvertisementHeader {
        cur_hop_limit: 64,
        managed_address_config: true,
        other_config: true,
        router_lifetime: if lease.default_route {
            ROUTER_LIFETIME
        } else {
            0
        },
    };
    let mut body = RouterAdvertisementPayload {
        reachable_time: 0,
        retrans_timer: 0,
    }
    .to_bytes()
    .to_vec();
    if lease.gateway.is_some() {
        if let Some(mac) = gw_mac {
            body.extend_from_slice(&ll_option(OPT_SLLA, mac));
        }
    }
    if lease.mtu >= 1280 {
        body.extend_from_slice(&[OPT_MTU, 1, 0, 0]);
        body.extend_from_slice(&lease.mtu.to_be_bytes());
    }
    for &(prefix, len) in &lease.on_link {
        let pi = PrefixInformation {
            prefix_length: len,
            on_link: true,
            // No stateless address: the VM's one address comes by DHCPv6.
            autonomous_address_configuration: false,
            valid_lifetime: u32::MAX,
            preferred_lifetime: u32::MAX,
            prefix: prefix.octets(),
        };
        // Type and length included.
        body.extend_from_slice(&pi.to_bytes());
    }
    for &(prefix, len) in &lease.routes {
        // RFC 4191 2.3: 8, 16 or 24 bytes, the prefix cut to what `len` needs.
        let bytes = usize::from(len.min(128)).div_ceil(64) * 8;
        if body.len() + 8 + bytes > MAX_RA {
            break;
        }
        body.extend_from_slice(&[OPT_ROUTE_INFO, (1 + bytes / 8) as u8, len, 0]);
        body.extend_from_slice(&u32::from(ROUTER_LIFETIME).to_be_bytes());
        body.extend_from_slice(&prefix.octets()[..bytes]);
    }
    icmp_frame(
        (lease.server_mac, dst_mac(lease, &dst)),
        lease.router,
        dst,
        Icmpv6Type::RouterAdvertisement(header),
        &body,
    )
}

/// The VM's MAC for unicast, the group's for multicast.
fn dst_mac(lease: &Lease6, dst: &Ipv6Addr) -> [u8; 6] {
    if dst.octets()[0] == 0xff {
        multicast_mac(dst)
    } else {
        lease.client_mac
    }
}

/// The NA for our router address, answering a solicitation from `src`
/// (`::` for DAD: then to all nodes, not solicited).
pub(crate) fn router_neighbor_advertisement(
    lease: &Lease6,
    src: Ipv6Addr,
    gw_mac: [u8; 6],
) -> Option<Vec<u8>> {
    let (dst, solicited) = if src.is_unspecified() {
        (ALL_NODES, false)
    } else {
        (src, true)
    };
    let mut body = lease.router.octets().to_vec();
    body.extend_from_slice(&ll_option(OPT_TLLA, gw_mac));
    icmp_frame(
        (lease.server_mac, dst_mac(lease, &dst)),
        lease.router,
        dst,
        Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
            router: true,
            solicited,
            r#override: true,
        }),
        &body,
    )
}

/// The solicitation for the pod's global gateway, sent onto the pod
/// network from the VM's address and MAC (the pod's own, which the gateway
/// already knows): its answer comes back to the VM's MAC, through the
/// bridge and past our socket on the TAP.
pub(crate) fn gateway_solicitation(lease: &Lease6) -> Option<Vec<u8>> {
    let gw = lease.gateway?;
    let src = *lease.addresses.first()?;
    let dst = solicited_node(&gw);
    let mut body = gw.octets().to_vec();
    body.extend_from_slice(&ll_option(OPT_SLLA, lease.client_mac));
    icmp_frame(
        (lease.client_mac, multicast_mac(&dst)),
        src,
        dst,
        Icmpv6Type::NeighborSolicitation,
        &body,
    )
}
