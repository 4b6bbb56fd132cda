//! Hand-built Ethernet frames for the demo: what a VM would put on the TAP.

use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use vnet::{Error, Result};

const BROADCAST: [u8; 6] = [0xff; 6];

/// A broadcast ARP request for `target` from `mac`/`sender`.
pub fn arp_request(mac: [u8; 6], sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = BROADCAST.to_vec();
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&sender);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

/// The sender MAC of an ARP reply from `ip`, if `f` is one.
pub fn arp_reply_from(f: &[u8], ip: [u8; 4]) -> Option<[u8; 6]> {
    let is_reply = f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2];
    (is_reply && f[28..32] == ip).then(|| f[22..28].try_into().unwrap())
}

/// A broadcast DHCPDISCOVER in Ethernet/IPv4/UDP, as a fresh VM sends it.
pub fn dhcp_discover(mac: [u8; 6], xid: u32) -> Result<Vec<u8>> {
    let any = Ipv4Addr::UNSPECIFIED;
    let mut msg = v4::Message::new_with_id(xid, any, any, any, any, &mac);
    msg.set_flags(v4::Flags::default().set_broadcast());
    msg.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let mut bootp = Vec::new();
    msg.encode(&mut Encoder::new(&mut bootp))
        .map_err(|e| Error::Internal(format!("encoding DHCPDISCOVER: {e}")))?;

    let udp_len = 8 + bootp.len();
    let ip_len = 20 + udp_len;
    let mut ip = vec![
        0x45,
        0,
        (ip_len >> 8) as u8,
        ip_len as u8,
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0,
    ];
    ip.extend_from_slice(&[0, 0, 0, 0, 255, 255, 255, 255]);
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());

    let mut f = BROADCAST.to_vec();
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    // UDP 68 -> 67; checksum 0 means "none" in IPv4.
    f.extend_from_slice(&[0, 68, 0, 67, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
    f.extend_from_slice(&bootp);
    Ok(f)
}

/// A one-line description of the DHCPOFFER for `xid` in `f`, if it is one.
pub fn dhcp_offer(f: &[u8], xid: u32) -> Option<String> {
    if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 17 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let udp = 14 + ihl;
    if f.len() < udp + 8 || f[udp + 2..udp + 4] != [0, 68] {
        return None;
    }
    let msg = v4::Message::decode(&mut Decoder::new(&f[udp + 8..])).ok()?;
    if msg.xid() != xid || msg.opts().msg_type() != Some(MessageType::Offer) {
        return None;
    }
    let mut s = format!("DHCPOFFER {}", msg.yiaddr());
    if let Some(DhcpOption::SubnetMask(m)) = msg.opts().get(OptionCode::SubnetMask) {
        s += &format!(" mask {m}");
    }
    if let Some(DhcpOption::Router(r)) = msg.opts().get(OptionCode::Router) {
        let r: Vec<String> = r.iter().map(|a| a.to_string()).collect();
        s += &format!(" router {}", r.join(","));
    }
    if let Some(DhcpOption::ServerIdentifier(id)) = msg.opts().get(OptionCode::ServerIdentifier) {
        s += &format!(" from server {id}");
    }
    Some(s)
}

/// The Internet checksum (RFC 1071) of an IPv4 header.
fn checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
