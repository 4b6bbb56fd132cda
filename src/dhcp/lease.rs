//! The one fixed lease a server hands out, plus small derived values.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

/// What the VM behind one bridge gets. One server serves exactly one lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// Only DHCP requests whose chaddr is this MAC are answered.
    pub client_mac: [u8; 6],
    pub ip: Ipv4Addr,
    /// e.g. 24, or 32 for Calico-style point-to-point addressing.
    pub prefix_len: u8,
    /// May be outside the subnet (169.254.1.1 with a /32); a host route is then sent first.
    pub gateway: Option<Ipv4Addr>,
    /// Extra routes: destination, gateway (`None` = on-link).
    pub routes: Vec<(Ipv4Network, Option<Ipv4Addr>)>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    /// Callers default this to 86400.
    pub lease_secs: u32,
}

impl Lease {
    /// Netmask for `prefix_len`; `None` when the prefix is invalid (> 32).
    pub(crate) fn netmask(&self) -> Option<Ipv4Addr> {
        prefix_mask(self.prefix_len).map(Ipv4Addr::from)
    }

    /// True when `addr` is inside the lease's own subnet (reachable without a route).
    pub(crate) fn on_subnet(&self, addr: Ipv4Addr) -> bool {
        match prefix_mask(self.prefix_len) {
            Some(m) => u32::from(addr) & m == u32::from(self.ip) & m,
            None => false,
        }
    }
}

/// `prefix` leading one bits, or `None` for prefixes longer than 32.
pub(crate) fn prefix_mask(prefix: u8) -> Option<u32> {
    match prefix {
        0 => Some(0),
        1..=32 => Some(u32::MAX << (32 - u32::from(prefix))),
        _ => None,
    }
}
