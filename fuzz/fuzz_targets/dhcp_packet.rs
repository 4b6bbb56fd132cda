//! Fuzz the DHCP protocol core: any UDP payload must yield `None` or a sane reply, never a
//! panic. Run: `cargo fuzz run dhcp_packet`.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vnet::dhcp::{handle_packet, Lease};

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

fn check(data: &[u8]) {
    if let Some(r) = handle_packet(lease(), SERVER, data) {
        assert!(r.bytes.len() >= 300 && r.bytes.len() <= usize::from(u16::MAX));
        assert_eq!(r.dest.port(), 68);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
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
