//! How a VM's TAP is joined to its pod interface. Setup is one journal of
//! reversible steps whatever the topology; a topology only says which
//! steps build the join ([`Topology`]):
//!
//! - [`Mode::Bridge`] ([`bridge::Bridge`]): `brN` holds `tapN` and the pod
//!   interface, which gets a fresh MAC so the VM can have its old one;
//! - [`Mode::Redirect`] ([`redirect::Redirect`]): no bridge; the pod
//!   interface keeps its MAC, MTU and place, and an nf_tables netdev table
//!   ([`crate::fwd`]) moves frames between it and `tapN` at ingress. It
//!   carries pod interfaces a bridge cannot: macvlan, host devices.

pub(crate) mod bridge;
pub(crate) mod redirect;

use std::fs::File;
use std::os::fd::OwnedFd;

use netlink_packet_route::link::LinkAttribute;
use serde::{Deserialize, Serialize};

use crate::dhcp::Lease;
use crate::error::{Error, Result};
use crate::filter::{Nft, Serving};
use crate::journal::{Journal, Step};
use crate::mac::Mac;
use crate::netlink::Netlink;
use crate::plan::IfacePlan;
use crate::state::LINK_GROUP;
use crate::tap::{self, TapOptions};

/// Which topology a setup builds (config `mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Bridge,
    Redirect,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Redirect => "redirect",
        }
    }
}

/// What [`Topology::create`] made for one interface.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Made {
    pub tap: u32,
    /// The bridge's index; 0 when there is none.
    pub bridge: u32,
    /// The MAC our servers' frames come from when it is not the pod
    /// interface's new one (redirect mode: the TAP's).
    pub server_mac: Option<Mac>,
}

/// The steps that differ between topologies, each recorded in the journal
/// as it is done so that undo needs no knowledge of the topology.
pub(crate) trait Topology: Sync {
    /// Our own devices for `p`, before any pod interface is touched (they
    /// are the leftovers a killed setup leaves, see [`crate::setup`]).
    fn create(
        &self,
        nl: &mut Netlink,
        j: &mut Journal,
        p: &IfacePlan,
        files: Vec<File>,
        opts: TapOptions,
        taps: &mut Vec<Vec<OwnedFd>>,
    ) -> Result<Made>;

    /// The pod interface's MAC from here on.
    fn pod_mac(&self, nl: &mut Netlink, j: &mut Journal, p: &IfacePlan) -> Result<Mac>;

    /// After the pod interface is stripped: join it to `made`, and give our
    /// DHCP server its address and the route back to the VM.
    fn attach(
        &self,
        nl: &mut Netlink,
        j: &mut Journal,
        p: &IfacePlan,
        made: Made,
        lease: Option<&Lease>,
    ) -> Result<()>;

    /// The one nf_tables table of this topology, for every interface,
    /// with the rules `serving` needs.
    fn install(
        &self,
        nft: &Nft,
        j: &mut Journal,
        plans: &[IfacePlan],
        made: &[Made],
        serving: Serving,
    ) -> Result<()>;
}

pub(crate) fn of(mode: Mode) -> &'static dyn Topology {
    match mode {
        Mode::Bridge => &bridge::Bridge,
        Mode::Redirect => &redirect::Redirect,
    }
}

/// Create `p.tap` (persistent) from the control files opened in the
/// namespace, with no IPv6 autoconfiguration; its queue fds go to `taps`.
/// With `join`, it joins our link group within the same step, in one
/// request that also turns autoconfiguration off and sets `join`'s
/// attributes: when the TAP is the first link setup makes (redirect mode),
/// a setup killed at any later step then leaves a link of the group, which
/// the next setup calls leftovers. (A kill between `TUNSETIFF` and that
/// request leaves a TAP outside the group: the next setup refuses its
/// name, and nothing of the pod has been touched yet.)
pub(crate) fn create_tap(
    nl: &mut Netlink,
    j: &mut Journal,
    p: &IfacePlan,
    files: Vec<File>,
    opts: TapOptions,
    taps: &mut Vec<Vec<OwnedFd>>,
    join: Option<Vec<LinkAttribute>>,
) -> Result<u32> {
    j.begin("create tap")?;
    let tap_err = |step: &str, e: std::io::Error| match e.raw_os_error() {
        Some(libc::EBUSY) | Some(libc::EEXIST) => Error::NameExists(p.tap.clone()),
        _ => Error::Tap {
            name: p.tap.clone(),
            step: step.into(),
            source: e,
        },
    };
    let fds = tap::create_on(files, &p.tap, opts).map_err(|e| tap_err("create", e))?;
    taps.push(fds);
    let tap_ix = nl.index_of(&p.tap).map_err(|e| tap_err("find", e))?;
    let joined = join.is_some();
    if let Some(attrs) = join {
        // The kernel applies these before any flag change, and the TAP is
        // still down: no link-local address is made first.
        let mut m = crate::bridge::no_ipv6_autoconf(tap_ix);
        m.attributes.push(LinkAttribute::Group(LINK_GROUP));
        m.attributes.extend(attrs);
        if let Err(e) = nl.set_link(m) {
            // Not yet in the journal: remove it here.
            let _ = nl.del_link(tap_ix);
            return Err(Error::netlink(
                format!("put {} in our link group (MAC, MTU, no autoconf)", p.tap),
                e,
            ));
        }
    }
    j.record(Step::CreateLink {
        ifindex: tap_ix,
        name: p.tap.clone(),
        group: LINK_GROUP,
    });
    if !joined {
        j.begin("tap: no IPv6 autoconf")?;
        no_ipv6_autoconf(nl, tap_ix, &p.tap)?;
        j.done();
    }
    Ok(tap_ix)
}

/// No IPv6 autoconfiguration on a link we just created (see
/// [`crate::bridge::no_ipv6_autoconf`]); undone by deleting the link.
pub(crate) fn no_ipv6_autoconf(nl: &mut Netlink, index: u32, name: &str) -> Result<()> {
    nl.set_link(crate::bridge::no_ipv6_autoconf(index))
        .map_err(|e| Error::netlink(format!("addrgenmode none on {name}"), e))
}

/// Our server's address on link `ix` (named `name`), as step `what`.
pub(crate) fn server_address(
    nl: &mut Netlink,
    j: &mut Journal,
    ix: u32,
    name: &str,
    what: &str,
) -> Result<()> {
    use crate::bridge::{bridge_address, BRIDGE_IP};
    j.begin(what)?;
    let addr = bridge_address(ix);
    nl.add_address(addr.clone())
        .map_err(|e| Error::netlink(format!("add {BRIDGE_IP} to {name}"), e))?;
    j.record(Step::AddAddress {
        address: crate::snapshot::Raw(addr),
    });
    Ok(())
}

/// The /32 route to the VM's leased address through `ix` (see
/// [`crate::bridge::vm_route`]).
pub(crate) fn vm_route(
    nl: &mut Netlink,
    j: &mut Journal,
    ix: u32,
    name: &str,
    lease: Option<&Lease>,
) -> Result<()> {
    if let Some(lease) = lease {
        j.begin("route to the VM")?;
        let route = crate::bridge::vm_route(ix, lease.ip);
        nl.add_route(route.clone())
            .map_err(|e| Error::netlink(format!("add route to {} via {name}", lease.ip), e))?;
        j.record(Step::AddRoute {
            route: crate::snapshot::Raw(route),
        });
    }
    Ok(())
}
