//! The handle's saved state: what a setup made, enough to serve, describe
//! and undo it in any process (the `vnet` object of the result JSON). Its
//! own module so that setup, recover and the handle depend on it rather
//! than on each other.

use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use crate::cni::CniResult;
use crate::dhcp::{self, Lease};
use crate::dhcp6::{self, Lease6};
use crate::error::{Error, Result};
use crate::filter::Nft;
use crate::journal::Journal;
use crate::mac::Mac;
use crate::netlink::Netlink;
use crate::snapshot::InterfaceSnapshot;
use crate::topology::Mode;

/// The link group our bridges and TAPs join: all of them go in one request.
pub const LINK_GROUP: u32 = 0x766e_6574;
/// Our nf_tables table (family bridge) in the pod namespace.
pub const FILTER_TABLE: &str = "vnet";
/// Version of the `vnet` state object in the result JSON.
/// 2: snapshots hold the kernel's routes and the policy rules, which restore
/// compares with; a format-1 state lacks them and would restore wrongly.
pub const STATE_FORMAT: u32 = 2;
/// Largest result JSON `recover` accepts.
pub const MAX_STATE_BYTES: usize = 4 << 20;

/// What we made of one pod interface.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InterfaceState {
    /// Which topology joins the TAP to the pod interface (absent in states
    /// written before redirect mode: bridge).
    #[serde(default)]
    pub mode: Mode,
    pub tap: String,
    /// The bridge; empty in redirect mode, which has none.
    pub bridge: String,
    pub veth: String,
    pub mtu: u32,
    /// The MAC the VM must use: the pod interface's original one.
    pub vm_mac: Mac,
    /// The pod interface's MAC during the setup: a new random one in bridge
    /// mode, its own (`vm_mac`) in redirect mode.
    pub veth_mac: Mac,
    pub queues: u32,
    pub vnet_hdr: bool,
    pub tap_ifindex: u32,
    /// 0 in redirect mode.
    pub bridge_ifindex: u32,
    /// What DHCP hands the VM (absent without IPv4 or with DHCP off).
    pub lease: Option<Lease>,
    /// What RA and DHCPv6 hand the VM (absent without a global IPv6
    /// address, and with `ipv6` or DHCP off). Holds the
    /// server DUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease6: Option<Lease6>,
    pub snapshot: InterfaceSnapshot,
}

/// Whether the IPv6 servers' packet sockets also serve DHCPv4 (see
/// `dhcp::frame`), given (has an IPv4 lease, has an IPv6 one) per
/// interface: when one serves IPv6 and each with an IPv4 lease also has an
/// IPv6 one. All or none, because the filter table's DHCPv4 rules are
/// shared by all the interfaces.
pub(crate) fn dhcp4_on_tap(ifaces: impl IntoIterator<Item = (bool, bool)>) -> bool {
    let mut v6 = false;
    for (has4, has6) in ifaces {
        if has4 && !has6 {
            return false;
        }
        v6 |= has6;
    }
    v6
}

/// [`dhcp4_on_tap`] for interfaces already set up.
pub(crate) fn dhcp4_on_tap_for(ifaces: &[InterfaceState]) -> bool {
    dhcp4_on_tap(
        ifaces
            .iter()
            .map(|i| (i.lease.is_some(), i.lease6.is_some())),
    )
}

impl InterfaceState {
    /// The link our DHCP server listens on and has its address on.
    pub fn server_link(&self) -> &str {
        match self.mode {
            Mode::Bridge => &self.bridge,
            Mode::Redirect => &self.tap,
        }
    }
}

/// Everything needed to serve, describe and undo a setup, in any process.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: u32,
    pub netns: String,
    /// Device and inode of the namespace, so state is never applied to
    /// another namespace that merely has devices of the same names.
    #[serde(default)]
    pub netns_id: Option<(u64, u64)>,
    pub interfaces: Vec<InterfaceState>,
    pub dhcp: bool,
    /// The IPv6 servers' sockets serve DHCPv4 too ([`dhcp4_on_tap`]), and
    /// the filter table was built for that. Recorded, not recomputed:
    /// earlier libraries served a dual-stack pod's DHCPv4 either way and
    /// wrote no such field, so recover reads such a state's table back
    /// from the kernel instead (`recover::dhcp4_on_tap`). Written only
    /// when true, so that a library older than this refuses such a state
    /// (an unknown field) instead of serving against a table that drops
    /// what its UDP socket listens for, and still reads every other state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dhcp4_on_tap: bool,
    pub journal: Journal,
}

/// The result JSON: a CNI 1.0.0 result plus our `vnet` object.
#[derive(Serialize, Deserialize)]
pub(crate) struct ResultDoc {
    #[serde(flatten)]
    pub(crate) cni: CniResult,
    pub(crate) vnet: State,
}

/// Read a saved result JSON back: the CNI result and our state. Checks the
/// shape and the format version only; `recover` checks it against the kernel.
pub fn parse_result_json(json: &str) -> Result<(CniResult, State)> {
    if json.len() > MAX_STATE_BYTES {
        return Err(Error::State(format!(
            "result JSON is {} bytes; the limit is {MAX_STATE_BYTES}",
            json.len()
        )));
    }
    let doc: ResultDoc =
        serde_json::from_str(json).map_err(|e| Error::State(format!("result JSON: {e}")))?;
    if doc.vnet.format != STATE_FORMAT {
        return Err(Error::State(format!(
            "state format {} (this library reads {STATE_FORMAT})",
            doc.vnet.format
        )));
    }
    if doc.vnet.interfaces.is_empty() {
        return Err(Error::State("result JSON names no interface".into()));
    }
    if doc.vnet.dhcp4_on_tap && !dhcp4_on_tap_for(&doc.vnet.interfaces) {
        return Err(Error::State(
            "dhcp4_on_tap with an IPv4 lease that has no IPv6 one".into(),
        ));
    }
    Ok((doc.cni, doc.vnet))
}

/// What setup or recovery hands back: sockets and fds made inside the
/// namespace.
pub(crate) struct Opened {
    pub(crate) taps: Vec<Vec<OwnedFd>>,
    pub(crate) dhcp: Vec<(dhcp::Sockets, Lease)>,
    /// The IPv6 servers' sockets and leases, and the DHCPv4 lease each
    /// also serves (see [`dhcp4_on_tap`]).
    pub(crate) dhcp6: Vec<(dhcp6::Sockets, Lease6, Option<Lease>)>,
    /// The rtnetlink and nf_tables sockets, kept for teardown.
    pub(crate) control: Option<(Netlink, Nft)>,
}

/// Write a file whole or not at all (write a mode-0600 temporary, fsync,
/// rename over `path`): a half-written state file would leave a namespace
/// nobody can recover. For the tools that keep a handle's result on disk.
pub fn write_file_atomic(path: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = format!("{path}.tmp{}", std::process::id());
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
