//! The lease both IPv6 fuzz targets serve (every RA option in use).

use std::sync::OnceLock;

use vnet::dhcp6::{Lease6, ROUTER_LL};

pub fn lease() -> &'static Lease6 {
    static LEASE: OnceLock<Lease6> = OnceLock::new();
    LEASE.get_or_init(|| Lease6 {
        client_mac: [0x42, 0xa4, 0xa6, 0x22, 0x80, 0x2e],
        server_mac: [0x02, 0x11, 0x22, 0x33, 0x44, 0x55],
        addresses: vec!["fd00:24::5".parse().unwrap()],
        router: ROUTER_LL,
        gateway: Some("fd00:24::1".parse().unwrap()),
        default_route: true,
        on_link: vec![("fd00:24::".parse().unwrap(), 64)],
        routes: vec![("fd00:99::".parse().unwrap(), 48)],
        dns_servers: vec!["fd00::53".parse().unwrap()],
        search: vec!["svc.cluster.local".into()],
        mtu: 1280,
        lease_secs: 86400,
        duid: vec![0, 3, 0, 1, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55],
    })
}
