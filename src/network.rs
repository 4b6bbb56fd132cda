//! The handle: setup, teardown, recover, and the result JSON.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::bridge::BRIDGE_IP;
use crate::cni::CniResult;
use crate::config::Config;
use crate::dhcp;
use crate::dhcp6;
use crate::error::{Error, Result};
use crate::filter::Nft;
use crate::journal::Wait;
use crate::log::Level;
use crate::netlink::Netlink;
use crate::netns::Netns;
use crate::snapshot::InterfaceSnapshot;
use crate::vlog;

pub use crate::state::{
    parse_result_json, InterfaceState, State, FILTER_TABLE, LINK_GROUP, MAX_STATE_BYTES,
    STATE_FORMAT,
};
use crate::state::{Opened, ResultDoc};

/// What [`Network::setup_with`] starts in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupOptions {
    /// Serve DHCP from this handle (when the config has `dhcp` on).
    pub serve_dhcp: bool,
}

impl Default for SetupOptions {
    fn default() -> Self {
        SetupOptions { serve_dhcp: true }
    }
}

/// What [`Network::recover_with`] takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoverOptions {
    /// Open the TAP queues again ([`Network::tap_fd`]). Off: the handle
    /// holds no queue, so a VMM can attach to the persistent TAP by name
    /// (with multiqueue when the setup had queues > 1).
    pub open_taps: bool,
    /// Serve DHCP again where the state says DHCP is on.
    pub serve_dhcp: bool,
    /// Check that our links are still there as saved (the TAP and bridge
    /// by index, name and group, the veth in the bridge with our MAC).
    /// Off, for a teardown of a namespace that changed meanwhile: the state
    /// must still carry the namespace's identity and match it, and teardown
    /// then undoes what it can and names what it could not.
    pub check_links: bool,
}

impl Default for RecoverOptions {
    fn default() -> Self {
        RecoverOptions {
            open_taps: true,
            serve_dhcp: true,
            check_links: true,
        }
    }
}

/// A pod namespace handed over to a VM.
pub struct Network {
    netns: Netns,
    cni: CniResult,
    state: State,
    taps: Vec<Vec<OwnedFd>>,
    dhcp: Vec<dhcp::ServerHandle>,
    /// Sockets in the pod namespace, kept from setup so teardown needs no
    /// thread of its own (each holds a reference to the namespace, which
    /// outlives the VM anyway).
    control: Option<(Netlink, Nft)>,
    torn_down: bool,
}

impl Network {
    /// Hand the pod interfaces of the namespace at `netns_path` over to a VM.
    /// On error the namespace is left as it was.
    pub fn setup(netns_path: &str, cfg: &Config) -> Result<Network> {
        Network::setup_with(netns_path, cfg, SetupOptions::default())
    }

    /// [`Network::setup`], choosing what this handle serves: with
    /// `serve_dhcp: false` the leases are planned and saved in the state as
    /// usual, but no DHCP socket is opened here, for a process that exits
    /// after setup and leaves DHCP to another that recovers the state (a CNI
    /// plugin and its responder): closing the packet socket would cost it a
    /// grace period.
    pub fn setup_with(netns_path: &str, cfg: &Config, opts: SetupOptions) -> Result<Network> {
        let t0 = std::time::Instant::now();
        cfg.validate()?;
        let netns = Netns::open(netns_path)?;
        let given = cfg.cni()?;
        let path = netns.path().to_string();
        let netns_id = Some(netns.id()?);
        let opened_at = (t0.elapsed(), std::time::Instant::now());
        let (ns_path, owned_cfg) = (path.clone(), cfg.clone());
        let r = netns
            .run_owned(move || {
                crate::setup::prepare_in_ns(
                    &ns_path,
                    &owned_cfg,
                    given.as_ref(),
                    opts.serve_dhcp,
                    opened_at,
                )
            })
            .and_then(|mut prepared| {
                let inside: std::time::Duration = prepared.phases.iter().map(|(_, d)| *d).sum();
                prepared.phases.push((
                    "back on the caller's thread".into(),
                    t0.elapsed().saturating_sub(inside),
                ));
                crate::setup::apply_prepared(prepared, &path, cfg)
            });
        let (cni, mut state, opened) =
            r.inspect_err(|e| vlog!(Level::Warn, "setup of {path} failed: {e}"))?;
        state.netns_id = netns_id;
        let what: Vec<String> = state
            .interfaces
            .iter()
            .map(|i| format!("{} -> {}/{}", i.veth, i.bridge, i.tap))
            .collect();
        vlog!(
            Level::Info,
            "set up {path}: {} in {:?}",
            what.join(", "),
            t0.elapsed()
        );
        for (step, t) in &state.journal.timings {
            vlog!(Level::Debug, "setup step {step}: {t:?}");
        }
        let t1 = std::time::Instant::now();
        let mut net = Network::start(netns, cni, state, opened)?;
        let took = t1.elapsed();
        net.state.journal.timings.push(("start DHCP".into(), took));
        Ok(net)
    }

    /// Rebuild a handle in a new process from a saved result JSON: reopen the
    /// TAP queues and serve DHCP again. Touches nothing in the namespace.
    pub fn recover(netns_path: &str, result_json: &str) -> Result<Network> {
        Network::recover_with(netns_path, result_json, RecoverOptions::default())
    }

    /// [`Network::recover`], choosing what the handle takes over: a DHCP
    /// responder that must leave the TAP to a VMM opens no queue
    /// (`open_taps: false`), a teardown from a fresh process needs neither
    /// queues nor DHCP. The checks that the state describes this namespace
    /// are the same.
    pub fn recover_with(
        netns_path: &str,
        result_json: &str,
        opts: RecoverOptions,
    ) -> Result<Network> {
        let (cni, state) = parse_result_json(result_json)?;
        let netns = Netns::open(netns_path)?;
        if !opts.check_links && state.netns_id.is_none() {
            return Err(Error::State(
                "the state names no namespace identity: its links must be checked".into(),
            ));
        }
        if state.netns_id.is_some_and(|id| Some(id) != netns.id().ok()) {
            return Err(Error::State(format!(
                "the state belongs to another network namespace ({}), not {netns_path}",
                state.netns
            )));
        }
        let opened = netns.run(|| crate::recover::recover_in_ns(&state, opts))?;
        Network::start(netns, cni, state, opened)
    }

    /// Our links (bridges, TAPs) and our nf_tables tables (bridge or netdev family) in the namespace at
    /// `netns_path`, by name: empty when nothing of a setup is there.
    pub fn leftovers(netns_path: &str) -> Result<Vec<String>> {
        let netns = Netns::open(netns_path)?;
        netns.run(|| {
            let mut nl = Netlink::open().map_err(|e| Error::netlink("open", e))?;
            let links = nl.links().map_err(|e| Error::netlink("dump links", e))?;
            let mut found: Vec<String> = links
                .iter()
                .filter(|l| crate::netlink::link_attr::group(l) == LINK_GROUP)
                .map(|l| {
                    crate::netlink::link_attr::name(l)
                        .unwrap_or("?")
                        .to_string()
                })
                .collect();
            let nft = Nft::open().map_err(|e| Error::Filter {
                step: "open".into(),
                source: e,
            })?;
            if nft.table_exists(FILTER_TABLE).map_err(|e| Error::Filter {
                step: "check".into(),
                source: e,
            })? {
                found.push(format!("table bridge {FILTER_TABLE}"));
            }
            // Redirect mode's table (src/fwd.rs).
            if nft
                .redirect_exists(FILTER_TABLE)
                .map_err(|e| Error::Filter {
                    step: "check".into(),
                    source: e,
                })?
            {
                found.push(format!("table netdev {FILTER_TABLE}"));
            }
            Ok(found)
        })
    }

    fn start(netns: Netns, cni: CniResult, state: State, opened: Opened) -> Result<Network> {
        let mut net = Network {
            netns,
            cni,
            state,
            taps: opened.taps,
            dhcp: Vec::new(),
            control: opened.control,
            torn_down: false,
        };
        let v4 = opened
            .dhcp
            .into_iter()
            .map(|(sock, lease)| dhcp::spawn(sock, lease, BRIDGE_IP));
        let v6 = opened.dhcp6.into_iter().map(|(sock, lease6, lease)| {
            let v4 = lease.map(|lease| dhcp::FrameServer {
                lease,
                ip: BRIDGE_IP,
                mac: lease6.server_mac,
            });
            dhcp6::spawn(sock, lease6, v4)
        });
        for started in v4.chain(v6) {
            match started {
                Ok(h) => net.dhcp.push(h),
                Err(e) => {
                    let err = Error::Dhcp {
                        bridge: "bridge".into(),
                        source: e,
                    };
                    let _ = net.teardown();
                    return Err(err);
                }
            }
        }
        Ok(net)
    }

    pub fn interface_count(&self) -> usize {
        self.state.interfaces.len()
    }

    /// Queue `queue` of the TAP of interface `interface`; `None` if out of
    /// range or after teardown.
    pub fn tap_fd(&self, interface: usize, queue: usize) -> Option<BorrowedFd<'_>> {
        self.taps.get(interface)?.get(queue).map(|f| f.as_fd())
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn cni(&self) -> &CniResult {
        &self.cni
    }

    pub fn netns_path(&self) -> &str {
        self.netns.path()
    }

    /// Time spent per step by the last setup or teardown (for benchmarks).
    pub fn timings(&self) -> &[(String, std::time::Duration)] {
        &self.state.journal.timings
    }

    pub fn is_torn_down(&self) -> bool {
        self.torn_down
    }

    /// The result JSON (CNI 1.0.0 + `vnet`), enough for `recover`.
    pub fn result_json(&self) -> Result<String> {
        if self.torn_down {
            return Err(Error::State(
                "the handle was torn down; there is no result any more".into(),
            ));
        }
        let doc = ResultDoc {
            cni: self.cni.clone(),
            vnet: self.state.clone(),
        };
        serde_json::to_string(&doc).map_err(|e| Error::Internal(format!("result JSON: {e}")))
    }

    /// Put the namespace back as it was before setup. Stops DHCP and closes
    /// the TAP fds first. Finishes all it can; on trouble, says what is left
    /// and may be called again. Calling it after success does nothing.
    /// Returns once our links are out of the namespace, before the kernel
    /// has freed them (see [`Netlink::del_links_until_gone`]).
    pub fn teardown(&mut self) -> Result<()> {
        let answers: Vec<OwnedFd> = self
            .dhcp
            .drain(..)
            .filter_map(|h| h.stop_and_keep_answer())
            .collect();
        self.taps.clear();
        if self.state.journal.steps.is_empty() {
            self.torn_down = true;
            return Ok(());
        }
        let journal = &mut self.state.journal;
        let record: Vec<&InterfaceSnapshot> =
            self.state.interfaces.iter().map(|i| &i.snapshot).collect();
        let problems = match self.control.take() {
            // The answer sockets close in the background with the deletion's
            // own (closing one waits for an RCU grace period).
            Some((mut nl, nft)) => journal.undo(
                &mut nl,
                Some(nft),
                Wait::UntilGone {
                    keep: Box::new(answers),
                },
                &record,
            ),
            // A second try after trouble opens new sockets and waits for
            // everything.
            None => {
                let netns = &self.netns;
                std::thread::scope(|s| {
                    // Closed alongside the undo, which waits for grace
                    // periods of its own.
                    if !answers.is_empty() {
                        s.spawn(move || drop(answers));
                    }
                    netns.run(|| {
                        let nft = Nft::open().ok();
                        let mut nl = Netlink::open().map_err(|e| Error::netlink("open", e))?;
                        Ok(journal.undo(&mut nl, nft, Wait::Freed, &record))
                    })
                })?
            }
        };
        if !problems.is_empty() {
            let e = Error::Incomplete(format!("in {}: {}", self.netns.path(), problems.join("; ")));
            vlog!(Level::Warn, "{e}");
            return Err(e);
        }
        vlog!(Level::Info, "tore down {}", self.netns.path());
        self.torn_down = true;
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for h in self.dhcp.drain(..) {
            h.stop();
        }
    }
}
