//! Fuzz the DHCP protocol core: any UDP payload must yield `None` or a sane reply, never a
//! panic; and the frame path of a dual-stack pod (`FrameServer`): any frame, or the payload
//! in a frame from the VM, yields nothing or one frame to the VM's MAC or broadcast.
//! Run: `cargo fuzz run dhcp_packet`.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vnet::dhcp::{handle_packet, FrameServer, Lease};

const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
const SERVER: Ipv4Addr = Ipv4Addr::new(169, 254, 254, 2);

/// A lease using every option encoder (off-subnet gateway, routes, search list, ...).
fn lease() -> &'static Lease {
    static LEASE: OnceLock<Lease> = OnceLock::new();
    LEASE.get_or_init(|| Lease {
        client_mac: MAC,
        ip: Ipv4Addr::new(10, 244, 1, 5),
        prefix_len: 32,
        gateway: Some(Ipv4Addr::new(169, 254, 1, 1)),
        routes: vec![("10.96.0.0/12".parse().unwrap(), None)],
        dns_servers: vec![Ipv4Addr::new(10, 96, 0, 10)],
        search: vec![
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
        ],
        domain: Some("cluster.local".into()),
        hostname: Some("vm1".into()),
        mtu: Some(1400),
        lease_secs: 86400,
    })
}

/// IPv4 + UDP headers, which count against option 57 and the MTU.
const IP_UDP: usize = 28;

/// What the client can take: its maximum message size (option 57), else
/// 576, and never more than fits one frame at the MTU. Option 57 is not
/// parsed here (pieces may be split and concatenated, RFC 3396): a packet
/// without byte 57 anywhere cannot carry it, and one with it is bounded by
/// the MTU alone.
fn bound(data: &[u8]) -> usize {
    let mtu = usize::from(lease().mtu.unwrap());
    let client = if data.contains(&57) { usize::MAX } else { 576 };
    client.min(mtu) - IP_UDP
}

fn check(data: &[u8]) {
    if let Some(r) = handle_packet(lease(), SERVER, data) {
        let (len, max) = (r.bytes.len(), bound(data));
        assert!(
            len >= 300 && len <= max,
            "reply of {len} bytes, bound {max}"
        );
        assert_eq!(r.dest.port(), 68);
    }
}

const SERVER_MAC: [u8; 6] = [0x02, 0x65, 0x02, 0x11, 0x22, 0x33];

/// `frame` through the frame path: nothing, or an IPv4 frame from us to
/// the VM (or broadcast).
fn check_frame(frame: &[u8]) {
    let s = FrameServer {
        lease: lease().clone(),
        ip: SERVER,
        mac: SERVER_MAC,
    };
    if let Some(f) = s.answer(frame) {
        assert!(f[..6] == MAC || f[..6] == [0xff; 6]);
        assert_eq!(f[6..12], SERVER_MAC);
        assert_eq!(f[12..14], [0x08, 0x00]);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    check_frame(data);
    // The payload in a well-formed frame from the VM to port 67.
    let b = etherparse::PacketBuilder::ethernet2(MAC, [0xff; 6])
        .ipv4([0; 4], [255; 4], 64)
        .udp(68, 67);
    let mut f = Vec::new();
    if b.write(&mut f, data).is_ok() {
        check_frame(&f);
    }
    // Guessing the client MAC and cookie by chance is unlikely, so also run the input with a
    // valid BOOTREQUEST header forced in; that drives option parsing and reply building.
    if data.len() >= 240 {
        let mut p = data.to_vec();
        p[..4].copy_from_slice(&[1, 1, 6, 0]);
        p[24..28].fill(0);
        p[28..34].copy_from_slice(&MAC);
        p[236..240].copy_from_slice(&[99, 130, 83, 99]);
        check(&p);
    }
});
