//! Test-only fault points on the way back (feature `fault-injection`):
//! a failure or a panic at one undo step of a teardown or rollback, and a
//! failure at one step of recover. Without the feature nothing here fires:
//! the knobs are never set (the config fields do not exist, and a state's
//! `journal.fail_recover_at` is ignored).

use crate::error::{Error, Result};
use crate::journal::Step;
use crate::snapshot::{address_ip, route_destination};
use crate::state::State;

/// The undo faults of one run of [`crate::journal::Journal::undo`], taken
/// from the journal so that each fires once and a second teardown is clean.
#[derive(Default)]
pub(crate) struct UndoFault {
    pub(crate) fail: Option<usize>,
    pub(crate) panic: Option<usize>,
}

impl UndoFault {
    /// At undo step `k` (0 = the last step done): the problem to report
    /// instead of undoing `step`, if told to fail there; panics if told to.
    pub(crate) fn hit(&self, k: usize, step: &Step) -> Option<String> {
        if self.panic == Some(k) {
            panic!("injected panic at undo step {k} ({})", describe(step));
        }
        (self.fail == Some(k))
            .then(|| format!("injected fault at undo step {k} ({})", describe(step)))
    }
}

/// What undoing `step` puts back, named as the journal's JSON names the
/// step (its `step` tag), then what it concerns.
pub fn describe(step: &Step) -> String {
    match step {
        Step::SetMac { ifindex, from, .. } => format!("set_mac: MAC {from} of link {ifindex}"),
        Step::DelRoute { route } => format!("del_route: route {:?}", route_destination(&route.0)),
        Step::DelAddress { address } => {
            format!("del_address: address {:?}", address_ip(&address.0))
        }
        Step::CreateLink { ifindex, name, .. } => {
            format!("create_link: link {name} (index {ifindex})")
        }
        Step::Enslave { port, bridge } => format!("enslave: link {port} in bridge {bridge}"),
        Step::AddAddress { address } => format!(
            "add_address: address {:?} on link {}",
            address_ip(&address.0),
            address.0.header.index
        ),
        Step::AddRoute { route } => format!("add_route: route {:?}", route_destination(&route.0)),
        Step::InstallFilter { table } => format!("install_filter: nf_tables table {table}"),
        Step::InstallRedirect { table } => {
            format!("install_redirect: nf_tables netdev table {table}")
        }
        Step::LinkUp { ifindex } => format!("link_up: link {ifindex} up"),
        Step::KernelRoutes { ifindex } => format!("kernel_routes: kernel routes of link {ifindex}"),
    }
}

/// A fault point of recover: step `*k` (then counted on) fails when the
/// state says so.
pub(crate) fn recover_point(state: &State, k: &mut usize, what: &str) -> Result<()> {
    let at = *k;
    *k += 1;
    #[cfg(feature = "fault-injection")]
    if state.journal.fail_recover_at == Some(at) {
        return Err(Error::Internal(format!(
            "injected fault at recover step {at} ({what})"
        )));
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = (state, what, at, Error::Internal);
    Ok(())
}
