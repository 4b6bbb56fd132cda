//! What the VM is given over IPv6, derived from the pod's IPv6 routing.

use std::net::Ipv6Addr;

use ipnetwork::{IpNetwork, Ipv6Network};
use serde::{Deserialize, Serialize};

use crate::cni::CniResult;
use crate::snapshot::{route_destination, route_gateway, route_table, InterfaceSnapshot};

/// Our router address when the pod's gateway is not link-local:
/// `fe80::a9fe:fe02`, the IPv6 twin of the DHCPv4 server's 169.254.254.2.
/// The VM's neighbour solicitations for it are answered by us (with the
/// gateway's MAC) and dropped on their way to the pod network.
pub const ROUTER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0xa9fe, 0xfe02);

/// Longest RA router lifetime receivers take (RFC 8319). Refreshed by an
/// unsolicited RA with every DHCPv6 reply, and clients renew at least every
/// [`MAX_T1`], so it never runs out while the VM lives: no timer of ours.
pub const ROUTER_LIFETIME: u16 = 65535;
/// Clients renew no later than this (seconds), so RAs are refreshed well
/// inside [`ROUTER_LIFETIME`].
pub const MAX_T1: u32 = 6 * 3600;

/// What the VM behind one bridge gets over IPv6. One server serves exactly
/// one VM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease6 {
    /// Only frames from this MAC are answered, and only to it.
    pub client_mac: [u8; 6],
    /// Ethernet source of our frames: ours, unique (bridge mode: the
    /// veth's new MAC; redirect mode: the TAP's).
    pub server_mac: [u8; 6],
    /// The pod's global addresses, handed out in one IA_NA.
    pub addresses: Vec<Ipv6Addr>,
    /// Source of our RAs and DHCPv6 replies, and so the VM's next hop:
    /// the pod's gateway when that is link-local, else [`ROUTER_LL`].
    pub router: Ipv6Addr,
    /// The pod's global gateway, when `router` is ours: its MAC is what we
    /// answer solicitations for `router` with.
    pub gateway: Option<Ipv6Addr>,
    /// Whether the pod had a default route (RA router lifetime > 0).
    pub default_route: bool,
    /// Prefixes the pod had on-link: prefix information with L on, A off.
    pub on_link: Vec<(Ipv6Addr, u8)>,
    /// More specific routes through the same gateway (RFC 4191).
    pub routes: Vec<(Ipv6Addr, u8)>,
    pub dns_servers: Vec<Ipv6Addr>,
    pub search: Vec<String>,
    pub mtu: u32,
    /// Valid lifetime of the addresses.
    pub lease_secs: u32,
    /// Server DUID (DUID-LL of `server_mac`): stable for the handle, saved
    /// in the state so it survives `vnet_recover`.
    pub duid: Vec<u8>,
}

/// What the CNI result (or the config's `dns`) says of one pod
/// interface's IPv6, read in the namespace before anything changes.
#[derive(Debug, Clone)]
pub struct PodV6 {
    pub addresses: Vec<Ipv6Addr>,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
    pub lease_secs: u32,
}

impl PodV6 {
    /// `None` when interface `name` has no global IPv6 address.
    pub fn from_cni(name: &str, cni: &CniResult, lease_secs: u32) -> Option<PodV6> {
        let idx = cni
            .interfaces
            .iter()
            .position(|i| i.name == name && !i.sandbox.is_empty())?;
        let addresses: Vec<Ipv6Addr> = cni
            .ips
            .iter()
            .filter(|ip| ip.interface == Some(idx))
            .filter_map(|ip| match ip.address {
                IpNetwork::V6(n) => Some(n.ip()),
                IpNetwork::V4(_) => None,
            })
            .filter(|a| !is_link_local(a) && !is_multicast(a) && !a.is_unspecified())
            .collect();
        if addresses.is_empty() {
            return None;
        }
        let dns = cni
            .dns
            .nameservers
            .iter()
            .filter_map(|a| match a {
                std::net::IpAddr::V6(v6) => Some(*v6),
                std::net::IpAddr::V4(_) => None,
            })
            .collect();
        Some(PodV6 {
            addresses,
            dns,
            search: cni.dns.search.clone(),
            lease_secs,
        })
    }
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

fn is_multicast(a: &Ipv6Addr) -> bool {
    a.octets()[0] == 0xff
}

impl Lease6 {
    /// The lease for the pod interface `s` with global addresses `addrs`
    /// (from the CNI result). `None` when there is no global address.
    ///
    /// The routes are those through the pod link in `main` (every plugin
    /// that hands out IPv6 puts them there). How the VM reaches the
    /// gateway's MAC:
    /// - a link-local gateway (Calico's `fe80::ecee:eeff:feee:eeee`,
    ///   Cilium) is a real neighbour on the pod link: we advertise from
    ///   that very address without a link-layer option, so the VM resolves
    ///   it like the pod did, by NS answered by the node;
    /// - a global gateway (the bridge plugin's `fd00:24::1`) cannot source
    ///   an RA (RFC 4861: RAs come from link-local addresses), and its
    ///   link-local address is not known to us. We advertise from
    ///   [`ROUTER_LL`] and answer the VM's NS for it with the gateway's MAC,
    ///   learnt by soliciting the gateway from the VM's own address and MAC
    ///   on the veth. The VM's frames then go straight to the gateway, as the
    ///   pod's did; the gateway sees the same MAC and source address as for
    ///   the pod.
    pub fn from_pod(s: &InterfaceSnapshot, v6: &PodV6, veth_mac: [u8; 6]) -> Option<Lease6> {
        let addresses = v6.addresses.clone();
        if addresses.is_empty() {
            return None;
        }
        let main = libc::RT_TABLE_MAIN as u32;
        let mut seen: Vec<(Ipv6Network, Option<Ipv6Addr>)> = Vec::new();
        for r in s.routes.iter().chain(&s.kernel_routes).map(|r| &r.0) {
            if route_table(r) != main {
                continue;
            }
            let Some(IpNetwork::V6(dst)) = route_destination(r) else {
                continue;
            };
            let gw = match route_gateway(r) {
                Some(std::net::IpAddr::V6(g)) => Some(g),
                Some(_) => continue,
                None => None,
            };
            if !seen.iter().any(|(d, _)| *d == dst) {
                seen.push((dst, gw));
            }
        }
        let default_gw = seen
            .iter()
            .find(|(d, _)| d.prefix() == 0)
            .and_then(|(_, g)| *g);
        // Without a default route, the gateway of the first other route.
        let gw = default_gw.or_else(|| seen.iter().find_map(|(_, g)| *g));
        let (router, gateway) = match gw {
            Some(g) if is_link_local(&g) => (g, None),
            Some(g) => (ROUTER_LL, Some(g)),
            None => (ROUTER_LL, None),
        };
        let on_link = seen
            .iter()
            .filter(|(d, g)| {
                g.is_none()
                    && d.prefix() > 0
                    && d.prefix() < 128
                    && !is_link_local(&d.ip())
                    && !is_multicast(&d.ip())
            })
            .map(|(d, _)| (d.network(), d.prefix()))
            .collect();
        let routes = seen
            .iter()
            .filter(|(d, g)| d.prefix() > 0 && g.is_some() && *g == gw)
            .map(|(d, _)| (d.network(), d.prefix()))
            .collect();
        let mut duid = vec![0, 3, 0, 1];
        duid.extend_from_slice(&veth_mac);
        Some(Lease6 {
            client_mac: s.mac.0,
            server_mac: veth_mac,
            addresses,
            router,
            gateway,
            default_route: default_gw.is_some(),
            on_link,
            routes,
            dns_servers: v6.dns.clone(),
            search: v6.search.clone(),
            mtu: s.mtu,
            lease_secs: v6.lease_secs,
            duid,
        })
    }

    /// T1 and T2 (RFC 8415 section 21.4) for the lease.
    pub(crate) fn t1_t2(&self) -> (u32, u32) {
        let t1 = (self.lease_secs / 2).min(MAX_T1);
        let t2 = (self.lease_secs / 5 * 4).min(MAX_T1 / 5 * 8).max(t1);
        (t1, t2)
    }
}
