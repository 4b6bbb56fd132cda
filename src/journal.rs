//! Setup as a journal of reversible steps. Each step is recorded only once
//! the kernel has acknowledged it, and names devices by index. Undo walks the
//! journal backwards; the slow parts (unregistering our own devices, deleting
//! our nf_tables table) are gathered and paid once at the end, since nothing
//! else depends on them once the pod's veth has been released. Teardown
//! waits only until our devices are out of the namespace ([`Wait`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::RouteMessage;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::filter::{Nft, NFPROTO_BRIDGE, NFPROTO_NETDEV};
use crate::mac::Mac;
use crate::netlink::{Doomed, Netlink};
use crate::snapshot::{InterfaceSnapshot, Raw};

/// One change made to the namespace, with what is needed to reverse it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// The link's MAC was changed from `from` to `to`.
    SetMac { ifindex: u32, from: Mac, to: Mac },
    /// A route was deleted.
    DelRoute { route: Raw<RouteMessage> },
    /// An address was deleted.
    DelAddress { address: Raw<AddressMessage> },
    /// We created this link (bridge or TAP) in link group `group`.
    CreateLink {
        ifindex: u32,
        name: String,
        group: u32,
    },
    /// `port` was enslaved to `bridge`.
    Enslave { port: u32, bridge: u32 },
    /// An address was added to a link we created.
    AddAddress { address: Raw<AddressMessage> },
    /// A route was added through a link we created.
    AddRoute { route: Raw<RouteMessage> },
    /// Our nf_tables table (family bridge) was installed.
    InstallFilter { table: String },
    /// Our nf_tables netdev table (redirect mode, [`crate::fwd`]) was
    /// installed.
    InstallRedirect { table: String },
    /// A link that was down was brought up.
    LinkUp { ifindex: u32 },
    /// The addresses of this pod link were about to be deleted, and the
    /// kernel's routes for them with them. Undone once the addresses are
    /// back: the kernel's routes are made what the record says
    /// ([`crate::restore::kernel_routes`]), before the recorded routes,
    /// which may share a key with one the kernel just made, come back.
    KernelRoutes { ifindex: u32 },
}

/// The journal: steps done so far, in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Journal {
    pub steps: Vec<Step>,
    /// Test-only fault point: fail before step `fail_at` is applied.
    #[serde(skip)]
    pub fail_at: Option<usize>,
    /// Test-only: stop forever before step `hang_at` (to be killed there).
    #[serde(skip)]
    pub hang_at: Option<usize>,
    /// Test-only: fail undo step `k` (0 = the last step) of the next undo.
    #[serde(skip)]
    pub fail_undo_at: Option<usize>,
    /// Test-only: panic at undo step `k` of the next undo.
    #[serde(skip)]
    pub panic_undo_at: Option<usize>,
    /// Test-only: fail step `k` of a recover from this state (read from a
    /// result JSON; without the feature the field is unknown and ignored).
    #[cfg(feature = "fault-injection")]
    #[serde(default, skip_serializing)]
    pub fail_recover_at: Option<usize>,
    #[serde(skip)]
    attempted: usize,
    /// How long each step took (name, time), for benchmarks.
    #[serde(skip)]
    pub timings: Vec<(String, Duration)>,
    #[serde(skip)]
    current: Option<(String, Instant)>,
}

impl Journal {
    pub fn new(fail_at: Option<usize>) -> Journal {
        Journal {
            fail_at,
            ..Journal::default()
        }
    }

    /// Called before each step; fails when told to by the fault hook.
    pub fn begin(&mut self, what: &str) -> Result<()> {
        let k = self.attempted;
        self.attempted += 1;
        self.current = Some((what.to_string(), Instant::now()));
        if self.hang_at == Some(k) {
            // Named so a test can see that this thread reached the step.
            // SAFETY: PR_SET_NAME reads a NUL-terminated string of <= 16 bytes.
            unsafe { libc::prctl(libc::PR_SET_NAME, c"vnet-hang".as_ptr()) };
            loop {
                std::thread::park();
            }
        }
        if self.fail_at == Some(k) {
            return Err(Error::Internal(format!(
                "injected fault at step {k} ({what})"
            )));
        }
        Ok(())
    }

    /// Close the timing of a step that needs no undo of its own (it changes
    /// a device that an earlier step created and undo deletes).
    pub fn done(&mut self) {
        if let Some((what, t0)) = self.current.take() {
            self.timings.push((what, t0.elapsed()));
        }
    }

    pub fn record(&mut self, step: Step) {
        if let Some((what, t0)) = self.current.take() {
            self.timings.push((what, t0.elapsed()));
        }
        self.steps.push(step);
    }

    /// Undo every step, last first, then compare the pod interfaces with
    /// `record` (what setup found). Keeps going past failures and returns
    /// what could not be undone and every difference from the record; a
    /// device already gone counts as done, and an address or route whose key
    /// is taken is left to the comparison, so undoing twice is harmless and
    /// success means the interfaces are as recorded.
    ///
    /// With `Wait::UntilGone`, undo returns once our links are out of the
    /// namespace, and the kernel finishes freeing them in the background
    /// (see [`Netlink::del_links_until_gone`]).
    pub fn undo(
        &mut self,
        nl: &mut Netlink,
        nft: Option<Nft>,
        wait: Wait,
        record: &[&InterfaceSnapshot],
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let created: BTreeSet<u32> = self
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::CreateLink { ifindex, .. } => Some(*ifindex),
                _ => None,
            })
            .collect();
        let mut deletions = Vec::new();
        // (nf_tables family, table) to delete with our links.
        let mut table = None;
        self.timings.clear();
        let t0 = Instant::now();
        let fault = crate::fault::UndoFault {
            fail: self.fail_undo_at.take(),
            panic: self.panic_undo_at.take(),
        };
        for (k, step) in self.steps.iter().rev().enumerate() {
            if let Some(p) = fault.hit(k, step) {
                problems.push(p);
                continue;
            }
            let r = match step {
                Step::SetMac { ifindex, from, .. } => {
                    let mut m = LinkMessage::default();
                    m.header.index = *ifindex;
                    m.attributes.push(LinkAttribute::Address(from.0.to_vec()));
                    nl.set_link(m)
                        .map_err(|e| format!("restore MAC {from} on link {ifindex}: {e}"))
                }
                // EEXIST: the key is taken; by the recorded route or not,
                // the comparison at the end says.
                Step::DelRoute { route } => nl
                    .add_route(route.0.clone())
                    .or_else(already(libc::EEXIST))
                    .map_err(|e| {
                        format!(
                            "restore route {:?}: {e}",
                            crate::snapshot::route_destination(&route.0)
                        )
                    }),
                Step::DelAddress { address } => nl
                    .add_address(address.0.clone())
                    .or_else(already(libc::EEXIST))
                    .map_err(|e| {
                        format!(
                            "restore address {:?}: {e}",
                            crate::snapshot::address_ip(&address.0)
                        )
                    }),
                Step::CreateLink {
                    ifindex,
                    name,
                    group,
                } => {
                    deletions.push((*ifindex, name.clone(), *group));
                    Ok(())
                }
                // Released by the deletion of whichever end we created.
                Step::Enslave { port, bridge }
                    if created.contains(port) || !created.contains(bridge) =>
                {
                    Ok(())
                }
                Step::Enslave { port, .. } => {
                    let mut m = LinkMessage::default();
                    m.header.index = *port;
                    m.attributes.push(LinkAttribute::Controller(0));
                    nl.set_link(m)
                        .or_else(already(libc::ENODEV))
                        .map_err(|e| format!("release link {port} from its bridge: {e}"))
                }
                Step::AddAddress { address } if created.contains(&address.0.header.index) => Ok(()),
                Step::AddAddress { address } => nl
                    .del_address(address.0.clone())
                    .or_else(already(libc::EADDRNOTAVAIL))
                    .or_else(already(libc::ENODEV))
                    .map_err(|e| format!("remove address: {e}")),
                Step::AddRoute { route }
                    if crate::snapshot::route_oif(&route.0)
                        .is_some_and(|ix| created.contains(&ix)) =>
                {
                    Ok(())
                }
                Step::AddRoute { route } => nl
                    .del_route(route.0.clone())
                    .or_else(already(libc::ESRCH))
                    .or_else(already(libc::ENODEV))
                    .map_err(|e| format!("remove route: {e}")),
                Step::InstallFilter { table: t } => {
                    table = Some((NFPROTO_BRIDGE, t.clone()));
                    Ok(())
                }
                Step::InstallRedirect { table: t } => {
                    table = Some((NFPROTO_NETDEV, t.clone()));
                    Ok(())
                }
                Step::LinkUp { ifindex } => nl
                    .set_up(*ifindex, false)
                    .map_err(|e| format!("set link {ifindex} down again: {e}")),
                Step::KernelRoutes { ifindex } => {
                    match record.iter().find(|s| s.ifindex == *ifindex) {
                        Some(s) => crate::restore::kernel_routes(nl, s),
                        None => Err(format!(
                            "link {ifindex}: no record to restore its routes from"
                        )),
                    }
                }
            };
            if let Err(p) = r {
                problems.push(p);
            }
        }
        self.timings.push(("undo: restore".into(), t0.elapsed()));
        let t1 = Instant::now();
        problems.extend(match wait {
            Wait::Freed => delete_together(nl, nft, &deletions, table),
            Wait::UntilGone { keep } => delete_until_gone(nl, nft, &deletions, table, keep),
        });
        self.timings
            .push(("undo: delete links + table".into(), t1.elapsed()));
        let t2 = Instant::now();
        problems.extend(crate::restore::differences(nl, record));
        self.timings
            .push(("undo: compare with the record".into(), t2.elapsed()));
        if problems.is_empty() {
            self.steps.clear();
        }
        problems
    }
}

/// How long [`Journal::undo`] waits for the kernel to delete our links.
pub enum Wait {
    /// Until it has freed them: for rolling back a failed setup, where the
    /// caller is about to get an error and nothing else may linger.
    Freed,
    /// Until they are out of the namespace (teardown). `keep` is closed
    /// in the background with the sockets of the deletion.
    UntilGone { keep: Box<dyn Send> },
}

fn already(errno: i32) -> impl Fn(std::io::Error) -> std::io::Result<()> {
    move |e| {
        if e.raw_os_error() == Some(errno) {
            Ok(())
        } else {
            Err(e)
        }
    }
}

/// Unregister our links and delete our table at the same time: each waits
/// for RCU grace periods, and the two waits need not be paid one after the
/// other. Netlink requests run in the sender's syscall, so the table goes
/// from a second thread while this one sends the link deletion.
fn delete_together(
    nl: &mut Netlink,
    nft: Option<Nft>,
    links: &[(u32, String, u32)],
    table: Option<(u8, String)>,
) -> Vec<String> {
    // The thread hands the socket back: closing an nf_tables socket right
    // after a table delete waits for the kernel's deferred cleanup (~19 ms
    // here), so it is closed only once the link deletion has been paid too.
    let filter = table.map(|(family, t)| {
        std::thread::Builder::new()
            .name("vnet-nft".into())
            .spawn(move || {
                let r = match &nft {
                    Some(nft) => nft
                        .delete_table_in(family, &t)
                        .map(drop)
                        .map_err(|e| format!("delete nf_tables table {t}: {e}")),
                    None => Err(format!("delete nf_tables table {t}: no nf_tables socket")),
                };
                (r, nft)
            })
    });
    let mut problems = delete_links(nl, links);
    let mut keep = None;
    match filter {
        None => {}
        Some(Err(e)) => problems.push(format!("delete nf_tables table: spawn: {e}")),
        Some(Ok(h)) => match h.join() {
            Ok((r, nft)) => {
                keep = nft;
                if let Err(p) = r {
                    problems.push(p);
                }
            }
            Err(_) => problems.push("delete nf_tables table: thread panicked".into()),
        },
    }
    drop(keep);
    problems
}

/// Delete the table, then our links in one request without waiting for the
/// kernel to free them; the nf_tables socket goes with `keep` (closing it
/// right after a table delete waits ~19 ms for the kernel's cleanup).
fn delete_until_gone(
    nl: &mut Netlink,
    nft: Option<Nft>,
    links: &[(u32, String, u32)],
    table: Option<(u8, String)>,
    keep: Box<dyn Send>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some((family, t)) = table {
        match &nft {
            Some(nft) => {
                if let Err(e) = nft.delete_table_in(family, &t) {
                    problems.push(format!("delete nf_tables table {t}: {e}"));
                }
            }
            None => problems.push(format!("delete nf_tables table {t}: no nf_tables socket")),
        }
    }
    let keep: Box<dyn Send> = Box::new((keep, nft));
    // One request either way: the group, or the only link (redirect mode).
    let which = match (one_group(links), links) {
        (Some(group), _) => Some(Doomed::Group(group)),
        (None, [(index, _, _)]) => Some(Doomed::Index(*index)),
        _ => None,
    };
    let left: Vec<(u32, String, u32)> = match which {
        Some(which) => {
            let indexes: Vec<u32> = links.iter().map(|l| l.0).collect();
            match nl.del_links_until_gone(which, &indexes, keep) {
                Ok(left) => links
                    .iter()
                    .filter(|l| left.contains(&l.0))
                    .cloned()
                    .collect(),
                // Each link named below.
                Err(_) => links.to_vec(),
            }
        }
        // Not what a finished setup leaves: no need to spare the closes.
        None => links.to_vec(),
    };
    problems.extend(delete_links_one_by_one(nl, &left));
    problems
}

fn delete_links(nl: &mut Netlink, links: &[(u32, String, u32)]) -> Vec<String> {
    if let Some(group) = one_group(links) {
        // One request for all of them: one batch of grace periods. Errors
        // show up below, where each link is named.
        let _ = nl.del_link_group(group);
    }
    delete_links_one_by_one(nl, links)
}

/// The link group all of `links` are in, when there are two or more links
/// and one group: then one request deletes them all.
fn one_group(links: &[(u32, String, u32)]) -> Option<u32> {
    let groups: BTreeSet<u32> = links.iter().map(|l| l.2).collect();
    match (links.len(), groups.len()) {
        (2.., 1) => groups.first().copied(),
        _ => None,
    }
}

/// Whatever a group request left (a link not yet in the group, or the
/// request failed) goes one by one; ENODEV means already gone.
fn delete_links_one_by_one(nl: &mut Netlink, links: &[(u32, String, u32)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (ifindex, name, _) in links {
        if let Err(e) = nl.del_link(*ifindex) {
            if e.raw_os_error() != Some(libc::ENODEV) {
                problems.push(format!("delete {name} (index {ifindex}): {e}"));
            }
        }
    }
    problems
}
