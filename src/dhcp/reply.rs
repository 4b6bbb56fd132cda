//! Pure packet handling: request bytes in, reply bytes + destination out. No I/O, no panics.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{borrowed, DhcpOption, Flags, HType, Message, MessageType, Opcode};
use dhcproto::{Encodable, Encoder};

use super::lease::Lease;
use super::options::{classless_routes, domain_search, wire, WireOpt};

pub(crate) const CLIENT_PORT: u16 = 68;
pub(super) const SERVER_PORT: u16 = 67;
/// Fixed BOOTP header (236) + magic cookie (4).
const HEADER_LEN: usize = 240;
/// Minimum BOOTP message size; some old clients drop shorter replies.
const MIN_LEN: usize = 300;
/// RFC 2131: every client must accept 576-byte IP datagrams; that is also the smallest
/// legal value of option 57.
const DEFAULT_MAX_DATAGRAM: usize = 576;
/// IPv4 + UDP header bytes that count against option 57.
const IP_UDP_HEADERS: usize = 28;

/// A reply to send from the server socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub dest: SocketAddrV4,
}

impl Reply {
    /// This reply as an IPv4/UDP datagram from `from`:67, in an Ethernet
    /// frame from `eth.0` to `eth.1`, or bare for a `SOCK_DGRAM` packet
    /// socket (the kernel adds the Ethernet header).
    pub(super) fn datagram(
        &self,
        from: Ipv4Addr,
        eth: Option<([u8; 6], [u8; 6])>,
    ) -> std::io::Result<Vec<u8>> {
        use etherparse::PacketBuilder;
        let (src, dst) = (from.octets(), self.dest.ip().octets());
        let ip = match eth {
            Some((s, d)) => PacketBuilder::ethernet2(s, d).ipv4(src, dst, 64),
            None => PacketBuilder::ipv4(src, dst, 64),
        };
        let b = ip.udp(SERVER_PORT, self.dest.port());
        let mut out = Vec::with_capacity(b.size(self.bytes.len()));
        b.write(&mut out, &self.bytes)
            .map_err(std::io::Error::other)?;
        Ok(out)
    }

    /// The Ethernet broadcast address when the reply goes to the IPv4
    /// broadcast address, else the client's MAC.
    pub(super) fn dest_mac(&self, client_mac: [u8; 6]) -> [u8; 6] {
        if self.dest.ip().is_broadcast() {
            [0xff; 6]
        } else {
            client_mac
        }
    }
}

/// The few request fields the server looks at.
#[derive(Debug)]
struct Request {
    msg_type: MessageType,
    xid: u32,
    flags: u16,
    ciaddr: Ipv4Addr,
    requested_ip: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    prl: Vec<u8>,
    max_size: Option<u16>,
}

/// Given a received UDP payload, return the reply to send, if any. Never panics on any input.
pub fn handle_packet(lease: &Lease, server_ip: Ipv4Addr, packet: &[u8]) -> Option<Reply> {
    let req = parse(lease, packet)?;
    // A lease with an impossible prefix would produce a garbage mask: serve nothing.
    lease.netmask()?;
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);
    let unicast_or_broadcast = |ciaddr: Ipv4Addr| {
        if ciaddr.is_unspecified() {
            broadcast
        } else {
            SocketAddrV4::new(ciaddr, CLIENT_PORT)
        }
    };
    match req.msg_type {
        MessageType::Discover => {
            let bytes = build(lease, server_ip, &req, Kind::Offer)?;
            Some(Reply {
                bytes,
                dest: broadcast,
            })
        }
        MessageType::Request => {
            if req.server_id.is_some_and(|id| id != server_ip) {
                return None; // the client picked another server's offer
            }
            // SELECTING / INIT-REBOOT carry option 50; RENEWING / REBINDING use ciaddr.
            let wanted = req
                .requested_ip
                .or((!req.ciaddr.is_unspecified()).then_some(req.ciaddr))?;
            if wanted == lease.ip {
                let bytes = build(lease, server_ip, &req, Kind::Ack)?;
                Some(Reply {
                    bytes,
                    dest: unicast_or_broadcast(req.ciaddr),
                })
            } else {
                // NAK so the client restarts at DISCOVER instead of retrying forever.
                let bytes = build(lease, server_ip, &req, Kind::Nak)?;
                Some(Reply {
                    bytes,
                    dest: broadcast,
                })
            }
        }
        MessageType::Inform => {
            // RFC 2131 §4.3.5: configuration only, sent to ciaddr.
            let bytes = build(lease, server_ip, &req, Kind::InformAck)?;
            Some(Reply {
                bytes,
                dest: unicast_or_broadcast(req.ciaddr),
            })
        }
        // RELEASE / DECLINE: the address is fixed, nothing to record. Everything else: ignore.
        _ => None,
    }
}

/// Decode just what we need with dhcproto's zero-copy reader. Its owned decoder is not used:
/// on hostile option lengths it hits `debug_assert!`s / length underflows (e.g. option 80
/// with data, option 81 shorter than 3 bytes), which fuzz builds turn into panics.
fn parse(lease: &Lease, packet: &[u8]) -> Option<Request> {
    let msg = borrowed::Message::new(packet).ok()?;
    if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
        return None;
    }
    // hlen == 6 and len >= 240, so this slice is in bounds.
    if msg.chaddr() != lease.client_mac {
        return None;
    }
    if !msg.giaddr().is_unspecified() {
        return None; // relayed requests are not expected on a pod-local bridge
    }
    let mut msg_type = None;
    let mut requested_ip = None;
    let mut server_id = None;
    let mut prl = None;
    let mut max_size = None;
    // opts() is empty without the magic cookie, so plain BOOTP yields no message type.
    // First occurrence wins; RFC 3396 pieces are already concatenated by the iterator.
    for opt in msg.opts() {
        let d = opt.data();
        match u8::from(opt.code()) {
            53 if msg_type.is_none() => msg_type = one_byte(d).map(MessageType::from),
            50 if requested_ip.is_none() => requested_ip = ipv4(d),
            54 if server_id.is_none() => server_id = ipv4(d),
            55 if prl.is_none() => prl = Some(d.iter().take(255).copied().collect()),
            57 if max_size.is_none() => {
                max_size = <[u8; 2]>::try_from(d).ok().map(u16::from_be_bytes)
            }
            _ => {}
        }
    }
    Some(Request {
        msg_type: msg_type?,
        xid: msg.xid(),
        flags: u16::from(msg.flags()),
        ciaddr: msg.ciaddr(),
        requested_ip,
        server_id,
        prl: prl.unwrap_or_default(),
        max_size,
    })
}

fn one_byte(d: &[u8]) -> Option<u8> {
    match d {
        [b] => Some(*b),
        _ => None,
    }
}

fn ipv4(d: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(d).ok().map(Ipv4Addr::from)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Offer,
    Ack,
    Nak,
    InformAck,
}

/// Encode a BOOTREPLY: header via dhcproto, then options in our order, End, pad.
fn build(lease: &Lease, server_ip: Ipv4Addr, req: &Request, kind: Kind) -> Option<Vec<u8>> {
    let (msg_type, yiaddr, ciaddr) = match kind {
        Kind::Offer => (MessageType::Offer, lease.ip, Ipv4Addr::UNSPECIFIED),
        Kind::Ack => (MessageType::Ack, lease.ip, req.ciaddr),
        Kind::Nak => (
            MessageType::Nak,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
        ),
        Kind::InformAck => (MessageType::Ack, Ipv4Addr::UNSPECIFIED, req.ciaddr),
    };
    let mut msg = Message::new_with_id(
        req.xid,
        ciaddr,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &lease.client_mac,
    );
    msg.set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_flags(Flags::from(req.flags));
    let mut out = Vec::with_capacity(DEFAULT_MAX_DATAGRAM);
    // No options set, so this writes exactly the 240-byte header + cookie.
    msg.encode(&mut Encoder::new(&mut out)).ok()?;
    if out.len() != HEADER_LEN {
        return None;
    }

    let (required, extras) = reply_options(lease, server_ip, kind, msg_type, &req.prl);
    // The reply goes onto the TAP as one unfragmented frame: never more than
    // the link's MTU, whatever the client allows.
    let frame = lease.mtu.map_or(usize::MAX, usize::from);
    let limit = usize::from(req.max_size.unwrap_or(0))
        .max(DEFAULT_MAX_DATAGRAM)
        .min(frame)
        .saturating_sub(IP_UDP_HEADERS);
    for o in required {
        out.extend_from_slice(&o.bytes);
    }
    // Optional options are dropped (not truncated) when they would exceed the client's limit.
    for o in extras {
        if out.len() + o.bytes.len() < limit {
            out.extend_from_slice(&o.bytes);
        }
    }
    out.push(255);
    if out.len() < MIN_LEN {
        out.resize(MIN_LEN, 0);
    }
    Some(out)
}

/// (options always sent, optional options ordered by the client's parameter request list).
fn reply_options(
    lease: &Lease,
    server_ip: Ipv4Addr,
    kind: Kind,
    msg_type: MessageType,
    prl: &[u8],
) -> (Vec<WireOpt>, Vec<WireOpt>) {
    let mut required: Vec<Option<WireOpt>> = vec![
        wire(DhcpOption::MessageType(msg_type)),
        wire(DhcpOption::ServerIdentifier(server_ip)),
    ];
    if kind == Kind::Nak {
        required.push(wire(DhcpOption::Message(
            "requested address not available".into(),
        )));
        return (required.into_iter().flatten().collect(), Vec::new());
    }
    if kind != Kind::InformAck {
        let secs = lease.lease_secs;
        // T1 = 0.5, T2 = 0.875 of the lease (RFC 2131 §4.4.5).
        let t1 = (u64::from(secs) / 2) as u32;
        let t2 = (u64::from(secs) * 7 / 8) as u32;
        required.push(wire(DhcpOption::AddressLeaseTime(secs)));
        required.push(wire(DhcpOption::Renewal(t1)));
        required.push(wire(DhcpOption::Rebinding(t2)));
    }
    if let Some(mask) = lease.netmask() {
        required.push(wire(DhcpOption::SubnetMask(mask)));
    }

    let non_empty = |s: &Option<String>| s.as_ref().filter(|s| !s.is_empty()).cloned();
    let extras = [
        lease
            .gateway
            .and_then(|gw| wire(DhcpOption::Router(vec![gw]))),
        (!lease.dns_servers.is_empty())
            .then(|| wire(DhcpOption::DomainNameServer(lease.dns_servers.clone())))
            .flatten(),
        non_empty(&lease.hostname).and_then(|h| wire(DhcpOption::Hostname(h))),
        non_empty(&lease.domain).and_then(|d| wire(DhcpOption::DomainName(d))),
        // RFC 2132: the minimum legal MTU value is 68.
        lease
            .mtu
            .filter(|m| *m >= 68)
            .and_then(|m| wire(DhcpOption::InterfaceMtu(m))),
        domain_search(&lease.search),
        classless_routes(lease),
    ];
    let mut extras: Vec<WireOpt> = extras.into_iter().flatten().collect();
    // Requested options first, in the client's order; the rest after, in code order.
    extras.sort_by_key(|o| {
        prl.iter()
            .position(|c| *c == o.code)
            .unwrap_or(usize::from(u8::MAX) + usize::from(o.code))
    });
    (required.into_iter().flatten().collect(), extras)
}
