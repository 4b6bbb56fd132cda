//! The pure protocol core: one frame seen on the TAP in, the frames to
//! send out. Every frame is hostile input: anything unexpected is ignored.

use std::net::Ipv6Addr;

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, Message, MessageType, OptionCode, Status, StatusCode, IANA,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder, Name};
use etherparse::icmpv6::NdpOptionSlice;
use etherparse::icmpv6::{NeighborAdvertisementPayloadSlice, NeighborSolicitationPayloadSlice};
use etherparse::{Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::lease::Lease6;
use super::ndp;

const SERVER_PORT: u16 = 547;
const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// Where a frame goes.
#[derive(Debug, PartialEq)]
pub enum Out {
    /// To the VM, out of the TAP.
    Tap(Vec<u8>),
    /// Onto the pod network, out of the veth (only the gateway solicitation).
    Pod(Vec<u8>),
}

/// What the server has learnt since it started.
#[derive(Debug, Default, Clone)]
pub struct Learnt {
    /// The global gateway's MAC, from its answer to our solicitation.
    pub gw_mac: Option<[u8; 6]>,
}

/// What to send when the server starts: a solicitation for the gateway
/// (when its MAC is needed) and an RA to all nodes.
pub fn on_start(lease: &Lease6, learnt: &Learnt) -> Vec<Out> {
    let mut out = Vec::new();
    if learnt.gw_mac.is_none() {
        out.extend(ndp::gateway_solicitation(lease).map(Out::Pod));
    }
    out.extend(ndp::router_advertisement(lease, ndp::ALL_NODES, learnt.gw_mac).map(Out::Tap));
    out
}

/// Handle `frame`, an Ethernet frame our socket saw on the TAP:
/// `outgoing` when it was on its way to the VM (from the bridge), else it
/// came from the VM.
pub fn handle_frame(lease: &Lease6, learnt: &mut Learnt, frame: &[u8], outgoing: bool) -> Vec<Out> {
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return Vec::new();
    };
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        return Vec::new();
    };
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        return Vec::new();
    };
    let h = ip.header();
    let (src, dst) = (h.source_addr(), h.destination_addr());
    if outgoing {
        // Only what the pod network sends the VM: the gateway's answer.
        if eth.source() != lease.client_mac && eth.source() != lease.server_mac {
            learn(lease, learnt, &p, eth.source());
        }
        return Vec::new();
    }
    // From the VM: its MAC only, and it must not pretend to be us.
    if eth.source() != lease.client_mac {
        return Vec::new();
    }
    match &p.transport {
        Some(TransportSlice::Icmpv6(icmp)) => {
            if h.hop_limit() != 255 || icmp.code_u8() != 0 {
                return Vec::new();
            }
            if !icmp.is_checksum_valid(src.octets(), dst.octets()) {
                return Vec::new();
            }
            match icmp.icmp_type() {
                Icmpv6Type::RouterSolicitation => {
                    let to = if src.is_unspecified() {
                        ndp::ALL_NODES
                    } else {
                        src
                    };
                    let mut out = Vec::new();
                    if lease.gateway.is_some() && learnt.gw_mac.is_none() {
                        out.extend(ndp::gateway_solicitation(lease).map(Out::Pod));
                    }
                    out.extend(ndp::router_advertisement(lease, to, learnt.gw_mac).map(Out::Tap));
                    out
                }
                Icmpv6Type::NeighborSolicitation => {
                    let Ok(ns) = NeighborSolicitationPayloadSlice::from_slice(icmp.payload())
                    else {
                        return Vec::new();
                    };
                    // Only for our own router address; a link-local gateway
                    // is the node's to answer.
                    if lease.gateway.is_none() || ns.target_address() != lease.router {
                        return Vec::new();
                    }
                    match learnt.gw_mac {
                        Some(mac) => ndp::router_neighbor_advertisement(lease, src, mac)
                            .map(Out::Tap)
                            .into_iter()
                            .collect(),
                        // Ask the gateway; the VM asks again within a second.
                        None => ndp::gateway_solicitation(lease)
                            .map(Out::Pod)
                            .into_iter()
                            .collect(),
                    }
                }
                _ => Vec::new(),
            }
        }
        Some(TransportSlice::Udp(udp)) => {
            if udp.destination_port() != SERVER_PORT
                || !(dst == ALL_SERVERS || dst == lease.router)
                || src.segments()[0] & 0xffc0 != 0xfe80
                || udp
                    .to_header()
                    .calc_checksum_ipv6_raw(src.octets(), dst.octets(), udp.payload())
                    .ok()
                    != Some(udp.checksum())
            {
                return Vec::new();
            }
            let Some(reply) = dhcp_reply(lease, udp.payload()) else {
                return Vec::new();
            };
            let mut out = Vec::new();
            out.extend(udp_frame(lease, src, udp.source_port(), &reply).map(Out::Tap));
            // Every reply refreshes the RA too: clients renew at least every
            // MAX_T1, so the router lifetime never runs out, with no timer.
            out.extend(
                ndp::router_advertisement(lease, ndp::ALL_NODES, learnt.gw_mac).map(Out::Tap),
            );
            out
        }
        _ => Vec::new(),
    }
}

/// Take the gateway's MAC from its NA for it, seen on its way to the VM.
fn learn(lease: &Lease6, learnt: &mut Learnt, p: &SlicedPacket, eth_src: [u8; 6]) {
    let Some(gw) = lease.gateway else { return };
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        return;
    };
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        return;
    };
    let h = ip.header();
    if h.hop_limit() != 255
        || !icmp.is_checksum_valid(h.source_addr().octets(), h.destination_addr().octets())
    {
        return;
    }
    let Icmpv6Type::NeighborAdvertisement(_) = icmp.icmp_type() else {
        return;
    };
    let Ok(na) = NeighborAdvertisementPayloadSlice::from_slice(icmp.payload()) else {
        return;
    };
    if na.target_address() != gw {
        return;
    }
    let tlla = na.options_iterator().find_map(|o| match o {
        Ok(NdpOptionSlice::TargetLinkLayerAddress(t)) => {
            <[u8; 6]>::try_from(t.link_layer_address()).ok()
        }
        _ => None,
    });
    learnt.gw_mac = Some(tlla.unwrap_or(eth_src));
}

/// The DHCPv6 reply to `msg` (RFC 8415 section 18.3), or `None` to stay
/// silent.
pub fn dhcp_reply(lease: &Lease6, msg: &[u8]) -> Option<Vec<u8>> {
    if !sane_options(msg.get(4..)?, 0) {
        return None;
    }
    let m = Message::decode(&mut Decoder::new(msg)).ok()?;
    let opts = m.opts();
    let client_id = match opts.get(OptionCode::ClientId) {
        Some(DhcpOption::ClientId(id)) if !id.is_empty() && id.len() <= 130 => Some(id.clone()),
        Some(_) => return None,
        None => None,
    };
    let server_id = match opts.get(OptionCode::ServerId) {
        Some(DhcpOption::ServerId(id)) => Some(id.as_slice()),
        Some(_) => return None,
        None => None,
    };
    let ours = server_id == Some(lease.duid.as_slice());
    let ianas: Vec<&IANA> = opts
        .get_all(OptionCode::IANA)
        .unwrap_or(&[])
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IANA(ia) => Some(ia),
            _ => None,
        })
        .collect();
    let rapid = opts.get(OptionCode::RapidCommit).is_some();
    let mut reply = DhcpOptions::new();
    let ty = match m.msg_type() {
        MessageType::Solicit => {
            client_id.as_ref()?;
            if server_id.is_some() {
                return None;
            }
            bind(lease, &ianas, &mut reply);
            if rapid {
                reply.insert(DhcpOption::RapidCommit);
                MessageType::Reply
            } else {
                // The highest preference: the client need not wait for others.
                reply.insert(DhcpOption::Preference(255));
                MessageType::Advertise
            }
        }
        MessageType::Request | MessageType::Renew => {
            client_id.as_ref()?;
            if !ours {
                return None;
            }
            bind(lease, &ianas, &mut reply);
            MessageType::Reply
        }
        MessageType::Rebind => {
            client_id.as_ref()?;
            if server_id.is_some() {
                return None;
            }
            bind(lease, &ianas, &mut reply);
            MessageType::Reply
        }
        MessageType::Confirm => {
            client_id.as_ref()?;
            if server_id.is_some() || ianas.is_empty() {
                return None;
            }
            let all_ours = ianas
                .iter()
                .all(|ia| ia_addrs(ia).all(|a| lease.addresses.contains(&a.addr)));
            reply.insert(status(if all_ours {
                Status::Success
            } else {
                Status::NotOnLink
            }));
            MessageType::Reply
        }
        MessageType::Release | MessageType::Decline => {
            // The addresses stay the VM's: they are the pod's, there is no
            // other to give. The client is told it was heard.
            client_id.as_ref()?;
            if !ours {
                return None;
            }
            reply.insert(status(Status::Success));
            MessageType::Reply
        }
        MessageType::InformationRequest => {
            if (server_id.is_some() && !ours) || !ianas.is_empty() {
                return None;
            }
            reply.insert(DhcpOption::InformationRefreshTime(lease.t1_t2().0));
            MessageType::Reply
        }
        _ => return None,
    };
    reply.insert(DhcpOption::ServerId(lease.duid.clone()));
    if let Some(id) = client_id {
        reply.insert(DhcpOption::ClientId(id));
    }
    if !lease.dns_servers.is_empty() {
        reply.insert(DhcpOption::DomainNameServers(lease.dns_servers.clone()));
    }
    let names: Vec<Name> = lease
        .search
        .iter()
        .filter_map(|s| Name::from_ascii(s).ok())
        .collect();
    if !names.is_empty() {
        reply.insert(DhcpOption::DomainSearchList(names));
    }
    let mut out = Message::new_with_id(ty, m.xid());
    out.set_opts(reply);
    let mut buf = Vec::new();
    out.encode(&mut Encoder::new(&mut buf)).ok()?;
    // One frame at the link's MTU, with IPv6 and UDP headers.
    (buf.len() + 48 <= lease.mtu.max(1280) as usize).then_some(buf)
}

/// Whether dhcproto 0.15 can decode `opts` without an arithmetic overflow:
/// it subtracts a fixed part from the length of status code (13), vendor
/// class (16) and vendor options (17) unchecked (a panic in debug builds,
/// found by the `dhcp6_packet` fuzz target). Every option must fit, those
/// three must hold their fixed part, the fixed-size ones (preference,
/// elapsed time, server unicast, rapid commit, reconfigure) must be exactly
/// their size, relay messages (9) are refused (we
/// serve no relays), and the IA containers are checked inside too.
fn sane_options(mut opts: &[u8], depth: u8) -> bool {
    if depth > 4 {
        return false;
    }
    while !opts.is_empty() {
        let Some(&[c0, c1, l0, l1]) = opts.get(..4) else {
            return false;
        };
        let (code, len) = (
            u16::from_be_bytes([c0, c1]),
            usize::from(u16::from_be_bytes([l0, l1])),
        );
        let Some(body) = opts.get(4..4 + len) else {
            return false;
        };
        let fixed = match code {
            9 => return false,
            13 => 2,
            16 | 17 => 4,
            _ => 0,
        };
        // Read at their fixed size whatever the length says: any other
        // length would put dhcproto out of step with the options.
        let exact = match code {
            7 | 19 => Some(1),
            8 => Some(2),
            12 => Some(16),
            14 | 20 => Some(0),
            _ => None,
        };
        if len < fixed || exact.is_some_and(|e| e != len) {
            return false;
        }
        // (IA_NA, IA_TA, IAADDR, IA_PD, IAPREFIX, vendor options): their fixed part, then options.
        let inner = match code {
            3 | 25 => Some(12),
            // Vendor options: enterprise number, then options dhcproto
            // decodes like the message's own.
            4 | 17 => Some(4),
            5 => Some(24),
            26 => Some(25),
            _ => None,
        };
        if let Some(skip) = inner {
            match body.get(skip..) {
                Some(rest) if sane_options(rest, depth + 1) => {}
                _ => return false,
            }
        }
        opts = &opts[4 + len..];
    }
    true
}

fn status(s: Status) -> DhcpOption {
    DhcpOption::StatusCode(StatusCode {
        status: s,
        msg: String::new(),
    })
}

fn ia_addrs<'a>(ia: &'a IANA) -> impl Iterator<Item = &'a IAAddr> + 'a {
    ia.opts.iter().filter_map(|o| match o {
        DhcpOption::IAAddr(a) => Some(a),
        _ => None,
    })
}

/// The IA_NA answers: the first IA the client sent gets every address of
/// the pod, others none (RFC 8415 18.3.1: NoAddrsAvail in the IA).
fn bind(lease: &Lease6, ianas: &[&IANA], reply: &mut DhcpOptions) {
    let (t1, t2) = lease.t1_t2();
    if ianas.is_empty() {
        reply.insert(DhcpOption::StatusCode(StatusCode {
            status: Status::NoAddrsAvail,
            msg: "only IA_NA".into(),
        }));
        return;
    }
    for (i, ia) in ianas.iter().enumerate() {
        let mut o = DhcpOptions::new();
        if i == 0 {
            for &a in &lease.addresses {
                o.insert(DhcpOption::IAAddr(IAAddr {
                    addr: a,
                    preferred_life: lease.lease_secs,
                    valid_life: lease.lease_secs,
                    opts: DhcpOptions::new(),
                }));
            }
        } else {
            o.insert(status(Status::NoAddrsAvail));
        }
        let (t1, t2) = if i == 0 { (t1, t2) } else { (0, 0) };
        reply.insert(DhcpOption::IANA(IANA {
            id: ia.id,
            t1,
            t2,
            opts: o,
        }));
    }
}

/// The UDP frame from our router address, port 547, to the client.
fn udp_frame(lease: &Lease6, dst: Ipv6Addr, port: u16, payload: &[u8]) -> Option<Vec<u8>> {
    let b = PacketBuilder::ethernet2(lease.server_mac, lease.client_mac)
        .ipv6(lease.router.octets(), dst.octets(), 64)
        .udp(SERVER_PORT, port);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).ok()?;
    Some(out)
}
