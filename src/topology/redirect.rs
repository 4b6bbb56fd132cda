//! Redirect mode: no bridge. `tapN` is created with the pod interface's
//! MTU and brought up; the pod interface keeps its MAC (the VM's), MTU and
//! place and is never enslaved, so a macvlan (which receives only frames
//! for its own MAC) or a host device works. Our server's address lives on
//! the TAP, and one nf_tables netdev table moves every other frame between
//! the two at ingress ([`crate::fwd`] says how DHCP stays ours).

use std::fs::File;
use std::os::fd::OwnedFd;

use netlink_packet_route::link::LinkAttribute;

use super::{create_tap, server_address, vm_route, Made, Topology};
use crate::dhcp::Lease;
use crate::error::{Error, Result};
use crate::filter::{Nft, Serving};
use crate::fwd::Pair;
use crate::journal::{Journal, Step};
use crate::mac::Mac;
use crate::netlink::Netlink;
use crate::plan::IfacePlan;
use crate::state::FILTER_TABLE;
use crate::tap::TapOptions;

pub(crate) struct Redirect;

impl Topology for Redirect {
    fn create(
        &self,
        nl: &mut Netlink,
        j: &mut Journal,
        p: &IfacePlan,
        files: Vec<File>,
        opts: TapOptions,
        taps: &mut Vec<Vec<OwnedFd>>,
    ) -> Result<Made> {
        // A MAC we know (our servers' frames come from it; the pod
        // interface's is the VM's) and the pod's MTU, so frames go whole
        // both ways: set in the request that joins the TAP to our group.
        let mac = Mac::random()?;
        let attrs = vec![
            LinkAttribute::Address(mac.0.to_vec()),
            LinkAttribute::Mtu(p.snapshot.mtu),
        ];
        let tap = create_tap(nl, j, p, files, opts, taps, Some(attrs))?;
        // Up on its own: with autoconfiguration off first. Undone by the
        // TAP's deletion.
        j.begin("tap: up")?;
        nl.set_up(tap, true)
            .map_err(|e| Error::netlink(format!("set {} up", p.tap), e))?;
        j.done();
        Ok(Made {
            tap,
            bridge: 0,
            server_mac: Some(mac),
        })
    }

    /// Unchanged: the VM uses it, and the pod network knows it.
    fn pod_mac(&self, _: &mut Netlink, _: &mut Journal, p: &IfacePlan) -> Result<Mac> {
        Ok(p.snapshot.mac)
    }

    fn attach(
        &self,
        nl: &mut Netlink,
        j: &mut Journal,
        p: &IfacePlan,
        made: Made,
        lease: Option<&Lease>,
    ) -> Result<()> {
        server_address(nl, j, made.tap, &p.tap, "server address")?;
        vm_route(nl, j, made.tap, &p.tap, lease)
    }

    /// Installed last, in one batch: frames start to cross only once the
    /// pod interface is stripped and DHCP is already kept apart.
    fn install(
        &self,
        nft: &Nft,
        j: &mut Journal,
        plans: &[IfacePlan],
        made: &[Made],
        serving: Serving,
    ) -> Result<()> {
        j.begin("install redirect")?;
        let pairs: Vec<Pair> = plans
            .iter()
            .zip(made)
            .map(|(p, m)| Pair {
                tap: p.tap.clone(),
                tap_ifindex: m.tap,
                pod: p.snapshot.name.clone(),
                pod_ifindex: p.snapshot.ifindex,
            })
            .collect();
        nft.install_redirect(FILTER_TABLE, &pairs, serving)
            .map_err(|e| Error::Filter {
                step: "install redirect".into(),
                source: e,
            })?;
        j.record(Step::InstallRedirect {
            table: FILTER_TABLE.into(),
        });
        Ok(())
    }
}
