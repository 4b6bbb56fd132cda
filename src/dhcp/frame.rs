//! DHCPv4 through the IPv6 server's packet socket on the TAP.
//!
//! When we serve a dual-stack pod, the TAP already has a packet socket
//! that sees every frame the VM sends before the bridge or an ingress hook
//! does (see `dhcp6::server`). Its filter then also lets through IPv4 UDP
//! to port 67, and this answers those requests: no UDP socket on the
//! bridge and no send-only packet socket, the two that DHCPv4 alone needs.
//! The kernel's classic-BPF setup costs ~45 µs whatever the program, so one
//! filtered socket instead of three sockets is what keeps serving IPv6
//! cheap. Renewals unicast to the server are seen here as broadcasts are:
//! the socket sees the frame, whatever its destination. The copy that goes
//! on to the bridge or the TAP's own stack is dropped by the filter table,
//! so no port-unreachable comes back to the VM.

use std::net::Ipv4Addr;

use etherparse::{LinkSlice, NetSlice, SlicedPacket, TransportSlice};

use super::lease::Lease;
use super::reply::{handle_packet, SERVER_PORT};

/// A DHCPv4 server answering whole frames.
#[derive(Clone, Debug)]
pub struct FrameServer {
    pub lease: Lease,
    /// Our address (the server identifier and the answers' source).
    pub ip: Ipv4Addr,
    /// The answers' source MAC.
    pub mac: [u8; 6],
}

impl FrameServer {
    /// The answer to `frame`, which the VM sent, when it is a DHCPv4
    /// request we answer. Hostile input: anything else gets nothing.
    pub fn answer(&self, frame: &[u8]) -> Option<Vec<u8>> {
        let p = SlicedPacket::from_ethernet(frame).ok()?;
        let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
            return None;
        };
        // The VM's own frames only (its chaddr is checked too).
        if eth.source() != self.lease.client_mac {
            return None;
        }
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            return None;
        };
        if ip.header().is_fragmenting_payload() {
            return None;
        }
        let Some(TransportSlice::Udp(udp)) = &p.transport else {
            return None;
        };
        if udp.destination_port() != SERVER_PORT {
            return None;
        }
        let reply = handle_packet(&self.lease, self.ip, udp.payload())?;
        let to = reply.dest_mac(self.lease.client_mac);
        reply.datagram(self.ip, Some((self.mac, to))).ok()
    }
}
