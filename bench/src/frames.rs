//! Frames a VM would send: Ethernet + IPv4 + UDP (small, MTU-sized) and a
//! ~64 KiB TCP/IPv4 TSO frame behind a virtio_net_hdr.
//! Destination: the host end's MAC and 10.1.90.99 (not an address of the
//! host namespace, which does not forward): the host drops each packet
//! right after the routing lookup, so the receiver costs little and sends
//! nothing back (its ICMP errors are rate-limited).

use std::net::Ipv4Addr;

pub const VM_MAC: [u8; 6] = [0x42, 0xa4, 0xa6, 0x22, 0x80, 0x2e];
const SRC: Ipv4Addr = Ipv4Addr::new(10, 1, 90, 5);
const DST: Ipv4Addr = Ipv4Addr::new(10, 1, 90, 99);
/// Largest IPv4 packet.
pub const IP_MAX: usize = 65535;
const TCP_MSS: u16 = 1448;
/// What a Linux guest's TCP sends at most with virtio-net's default
/// gso_max_size of 65536: 45 full segments (65160 B of payload) in one
/// 65200-byte IPv4 packet, a 65214-byte frame.
pub const IP_GUEST_TSO: usize = 20 + 20 + 45 * TCP_MSS as usize;

fn csum_add(mut sum: u32, b: &[u8]) -> u32 {
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn eth(dst: [u8; 6]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&VM_MAC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f
}

fn ipv4(f: &mut Vec<u8>, proto: u8, total: usize) {
    let start = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]); // id, DF, ttl
    f.extend_from_slice(&SRC.octets());
    f.extend_from_slice(&DST.octets());
    let c = !fold(csum_add(0, &f[start..start + 20]));
    f[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
}

/// An Ethernet frame of exactly `len` bytes (>= 42) holding IPv4/UDP to port 9.
pub fn udp(dst: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = eth(dst);
    let ip_len = len - 14;
    ipv4(&mut f, 17, ip_len);
    let udp_len = ip_len - 20;
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed for IPv4)
    f.resize(len, 0x5a);
    f
}

/// virtio_net_hdr_mrg_rxbuf (12 bytes, little-endian) + an Ethernet frame
/// holding one `ip_len`-byte TCP/IPv4 packet, for the kernel
/// to treat as TSO (gso_size 1448, checksum left to offload).
pub fn gso_tcp(dst: [u8; 6], ip_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(12 + 14 + ip_len);
    f.push(1); // VIRTIO_NET_HDR_F_NEEDS_CSUM
    f.push(1); // VIRTIO_NET_HDR_GSO_TCPV4
    f.extend_from_slice(&54u16.to_le_bytes()); // hdr_len: eth + ip + tcp
    f.extend_from_slice(&TCP_MSS.to_le_bytes()); // gso_size
    f.extend_from_slice(&34u16.to_le_bytes()); // csum_start: the TCP header
    f.extend_from_slice(&16u16.to_le_bytes()); // csum_offset: TCP checksum
    f.extend_from_slice(&0u16.to_le_bytes()); // num_buffers
    f.extend_from_slice(&eth(dst));
    ipv4(&mut f, 6, ip_len);
    let tcp_len = ip_len - 20;
    let th = f.len();
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    f.extend_from_slice(&1u32.to_be_bytes()); // seq
    f.extend_from_slice(&0u32.to_be_bytes()); // ack
    f.extend_from_slice(&[0x50, 0x18]); // data offset 5, ACK|PSH
    f.extend_from_slice(&0xffffu16.to_be_bytes()); // window
    f.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
                                        // CHECKSUM_PARTIAL convention: the field holds the pseudo-header sum.
    let mut pseudo = csum_add(0, &SRC.octets());
    pseudo = csum_add(pseudo, &DST.octets());
    pseudo += 6 + tcp_len as u32;
    f[th + 16..th + 18].copy_from_slice(&fold(pseudo).to_be_bytes());
    f.resize(12 + 14 + ip_len, 0x5a);
    f
}
