//! The handle: setup, teardown, recover, and the result JSON.

use std::future::Future;
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::AddressFamily;
use serde::{Deserialize, Serialize};

use crate::bridge::{self, BRIDGE_IP};
use crate::cni::CniResult;
use crate::config::Config;
use crate::dhcp::{self, Lease};
use crate::error::{Error, Result};
use crate::filter::Nft;
use crate::journal::{Journal, Step};
use crate::log::Level;
use crate::mac::Mac;
use crate::netlink::{link_attr, Netlink};
use crate::netns::Netns;
use crate::plan::{self, IfacePlan};
use crate::snapshot::{InterfaceSnapshot, Raw};
use crate::tap::{self, TapOptions};
use crate::vlog;

/// The link group our bridges and TAPs join: all of them go in one request.
pub const LINK_GROUP: u32 = 0x766e_6574;
/// Our nf_tables table (family bridge) in the pod namespace.
pub const FILTER_TABLE: &str = "vnet";
/// Version of the `vnet` state object in the result JSON.
pub const STATE_FORMAT: u32 = 1;
/// Largest result JSON `recover` accepts.
pub const MAX_STATE_BYTES: usize = 4 << 20;

/// What we made of one pod interface.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InterfaceState {
    pub tap: String,
    pub bridge: String,
    pub veth: String,
    pub mtu: u32,
    /// The MAC the VM must use: the pod interface's original one.
    pub vm_mac: Mac,
    /// The veth's new random MAC.
    pub veth_mac: Mac,
    pub queues: u32,
    pub vnet_hdr: bool,
    pub tap_ifindex: u32,
    pub bridge_ifindex: u32,
    /// What DHCP hands the VM (absent without IPv4 or with DHCP off).
    pub lease: Option<Lease>,
    pub snapshot: InterfaceSnapshot,
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
    pub journal: Journal,
}

/// The result JSON: a CNI 1.0.0 result plus our `vnet` object.
#[derive(Serialize, Deserialize)]
struct ResultDoc {
    #[serde(flatten)]
    cni: CniResult,
    vnet: State,
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
    Ok((doc.cni, doc.vnet))
}

/// A pod namespace handed over to a VM.
pub struct Network {
    netns: Netns,
    cni: CniResult,
    state: State,
    taps: Vec<Vec<OwnedFd>>,
    dhcp: Vec<dhcp::ServerHandle>,
    torn_down: bool,
}

/// What the netns thread hands back: sockets and fds made inside.
struct Opened {
    taps: Vec<Vec<OwnedFd>>,
    dhcp: Vec<(UdpSocket, Lease)>,
}

/// Run `fut` to completion on a runtime local to the current thread.
fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::Internal(format!("tokio runtime: {e}")))?;
    Ok(rt.block_on(fut))
}

impl Network {
    /// Hand the pod interfaces of the namespace at `netns_path` over to a VM.
    /// On error the namespace is left as it was.
    pub fn setup(netns_path: &str, cfg: &Config) -> Result<Network> {
        cfg.validate()?;
        let netns = Netns::open(netns_path)?;
        let given = cfg.cni()?;
        let path = netns.path().to_string();
        let netns_id = Some(netns.id()?);
        let t0 = std::time::Instant::now();
        let r = netns.run(|| block_on(setup_in_ns(&path, cfg, given.as_ref()))?);
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
        Network::start(netns, cni, state, opened)
    }

    /// Rebuild a handle in a new process from a saved result JSON: reopen the
    /// TAP queues and serve DHCP again. Touches nothing in the namespace.
    pub fn recover(netns_path: &str, result_json: &str) -> Result<Network> {
        let (cni, state) = parse_result_json(result_json)?;
        let netns = Netns::open(netns_path)?;
        if state.netns_id.is_some_and(|id| Some(id) != netns.id().ok()) {
            return Err(Error::State(format!(
                "the state belongs to another network namespace ({}), not {netns_path}",
                state.netns
            )));
        }
        let opened = netns.run(|| block_on(recover_in_ns(&state))?)?;
        Network::start(netns, cni, state, opened)
    }

    fn start(netns: Netns, cni: CniResult, state: State, opened: Opened) -> Result<Network> {
        let mut net = Network {
            netns,
            cni,
            state,
            taps: opened.taps,
            dhcp: Vec::new(),
            torn_down: false,
        };
        for (sock, lease) in opened.dhcp {
            match dhcp::spawn(sock, lease, BRIDGE_IP) {
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
    pub fn teardown(&mut self) -> Result<()> {
        for h in self.dhcp.drain(..) {
            h.stop();
        }
        self.taps.clear();
        if self.state.journal.steps.is_empty() {
            self.torn_down = true;
            return Ok(());
        }
        let journal = &mut self.state.journal;
        let problems = self.netns.run(|| {
            let nft = Nft::open().ok();
            block_on(async {
                let mut nl = Netlink::open().map_err(|e| Error::netlink("open", e))?;
                Ok(journal.undo(&mut nl, nft).await)
            })?
        })?;
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

async fn setup_in_ns(
    netns: &str,
    cfg: &Config,
    given: Option<&CniResult>,
) -> Result<(CniResult, State, Opened)> {
    let dump = |e| Error::netlink("dump", e);
    let mut nl = Netlink::open().map_err(|e| Error::netlink("open", e))?;
    let nft = Nft::open().map_err(|e| Error::Filter {
        step: "open".into(),
        source: e,
    })?;
    // One dump at a time: the kernel runs a single dump per socket.
    let links = nl.links().await.map_err(dump)?;
    let addrs = nl.addresses().await.map_err(dump)?;
    let mut routes = nl.routes(AddressFamily::Inet).await.map_err(dump)?;
    routes.extend(nl.routes(AddressFamily::Inet6).await.map_err(dump)?);

    let leftovers: Vec<&str> = links
        .iter()
        .filter(|l| link_attr::group(l) == LINK_GROUP)
        .filter_map(|l| link_attr::name(l))
        .collect();
    if !leftovers.is_empty() {
        return Err(Error::Leftovers(format!(
            "links {} in {netns}",
            leftovers.join(", ")
        )));
    }
    if nft.table_exists(FILTER_TABLE).map_err(|e| Error::Filter {
        step: "check".into(),
        source: e,
    })? {
        return Err(Error::Leftovers(format!(
            "nf_tables table bridge {FILTER_TABLE} in {netns}"
        )));
    }
    let chosen = plan::find_interfaces(&links, given, netns)?;
    let plans = plan::plan(&chosen, &links, &addrs, &routes)?;
    let cni = plan::cni_result(&plans, given, cfg, netns)?;
    let lo = links
        .iter()
        .find(|l| link_attr::name(l) == Some("lo"))
        .map(|l| (l.header.index, l.header.flags.contains(LinkFlags::Up)));

    #[cfg(feature = "fault-injection")]
    let fail_at = cfg.fail_at_step;
    #[cfg(not(feature = "fault-injection"))]
    let fail_at = None;
    let mut journal = Journal::new(fail_at);
    let mut taps = Vec::new();
    let mut socks = Vec::new();
    let mut ifaces = Vec::new();
    let r = apply(
        &mut nl,
        &nft,
        cfg,
        &cni,
        &plans,
        lo,
        &mut journal,
        &mut taps,
        &mut socks,
        &mut ifaces,
    )
    .await;
    if let Err(e) = r {
        drop(socks);
        drop(taps);
        let problems = journal.undo(&mut nl, Some(nft)).await;
        if !problems.is_empty() {
            return Err(Error::Incomplete(format!(
                "setup failed ({e}) and rolling back left: {}",
                problems.join("; ")
            )));
        }
        return Err(e);
    }
    let state = State {
        format: STATE_FORMAT,
        netns: netns.to_string(),
        netns_id: None,
        interfaces: ifaces,
        dhcp: cfg.dhcp,
        journal,
    };
    Ok((cni, state, Opened { taps, dhcp: socks }))
}

/// Apply every step, recording each in the journal once done.
///
/// Our own devices come first: from the first change to the pod's
/// interfaces on, a link of `LINK_GROUP` exists, so a process killed half-way
/// leaves leftovers that the next setup detects instead of mistaking a
/// stripped veth for the pod's configuration.
#[allow(clippy::too_many_arguments)]
async fn apply(
    nl: &mut Netlink,
    nft: &Nft,
    cfg: &Config,
    cni: &CniResult,
    plans: &[IfacePlan],
    lo: Option<(u32, bool)>,
    j: &mut Journal,
    taps: &mut Vec<Vec<OwnedFd>>,
    socks: &mut Vec<(UdpSocket, Lease)>,
    ifaces: &mut Vec<InterfaceState>,
) -> Result<()> {
    let opts = TapOptions {
        queues: cfg.queues,
        vnet_hdr: cfg.vnet_hdr,
    };
    let mut made = Vec::new();
    for p in plans {
        let mtu = p.snapshot.mtu;
        j.begin("create bridge")?;
        nl.new_link(bridge::new_bridge(&p.bridge, mtu, LINK_GROUP))
            .await
            .map_err(|e| exists_or(e, &p.bridge, "create bridge"))?;
        let br = bridge::index_of(&p.bridge)
            .map_err(|e| Error::netlink(format!("find {}", p.bridge), e))?;
        j.record(Step::CreateLink {
            ifindex: br,
            name: p.bridge.clone(),
            group: LINK_GROUP,
        });
        j.begin("bridge: no IPv6 autoconf, up")?;
        nl.set_link(bridge::no_ipv6_autoconf(br))
            .await
            .map_err(|e| Error::netlink(format!("addrgenmode none on {}", p.bridge), e))?;
        nl.set_up(br, true)
            .await
            .map_err(|e| Error::netlink(format!("set {} up", p.bridge), e))?;
        j.done();

        j.begin("create tap")?;
        let tap_err = |step: &str, e: std::io::Error| match e.raw_os_error() {
            Some(libc::EBUSY) | Some(libc::EEXIST) => Error::NameExists(p.tap.clone()),
            _ => Error::Tap {
                name: p.tap.clone(),
                step: step.into(),
                source: e,
            },
        };
        let fds = tap::create(&p.tap, opts).map_err(|e| tap_err("create", e))?;
        taps.push(fds);
        let tap_ix = bridge::index_of(&p.tap).map_err(|e| tap_err("find", e))?;
        j.record(Step::CreateLink {
            ifindex: tap_ix,
            name: p.tap.clone(),
            group: LINK_GROUP,
        });
        j.begin("tap: no IPv6 autoconf")?;
        nl.set_link(bridge::no_ipv6_autoconf(tap_ix))
            .await
            .map_err(|e| Error::netlink(format!("addrgenmode none on {}", p.tap), e))?;
        j.done();

        j.begin("enslave tap")?;
        nl.set_link(bridge::enslave(tap_ix, br, Some(mtu), Some(LINK_GROUP)))
            .await
            .map_err(|e| Error::netlink(format!("add {} to {}", p.tap, p.bridge), e))?;
        j.record(Step::Enslave {
            port: tap_ix,
            bridge: br,
        });
        made.push((br, tap_ix));
    }

    let mut veth_macs = Vec::new();
    for p in plans {
        let s = &p.snapshot;
        j.begin("set veth MAC")?;
        let veth_mac = Mac::random()?;
        nl.set_link(bridge::set_mac(s.ifindex, veth_mac))
            .await
            .map_err(|e| Error::netlink(format!("set MAC ({})", s.name), e))?;
        j.record(Step::SetMac {
            ifindex: s.ifindex,
            from: s.mac,
            to: veth_mac,
        });
        veth_macs.push(veth_mac);
    }
    // Strip in the reverse of the order things must come back in, since undo
    // walks the journal backwards.
    let snaps: Vec<&InterfaceSnapshot> = plans.iter().map(|p| &p.snapshot).collect();
    for route in restore_order_routes(&snaps).into_iter().rev() {
        j.begin("delete route")?;
        nl.del_route(route.clone())
            .await
            .map_err(|e| Error::netlink("delete route", e))?;
        j.record(Step::DelRoute { route: Raw(route) });
    }
    let addrs: Vec<_> = snaps.iter().flat_map(|s| s.addresses.iter()).collect();
    for a in addrs.into_iter().rev() {
        j.begin("delete address")?;
        nl.del_address(a.0.clone())
            .await
            .map_err(|e| Error::netlink("delete address", e))?;
        j.record(Step::DelAddress { address: a.clone() });
    }

    for ((p, &veth_mac), &(br, tap_ix)) in plans.iter().zip(&veth_macs).zip(&made) {
        let s = &p.snapshot;
        j.begin("enslave veth")?;
        nl.set_link(bridge::enslave(s.ifindex, br, None, None))
            .await
            .map_err(|e| Error::netlink(format!("add {} to {}", s.name, p.bridge), e))?;
        j.record(Step::Enslave {
            port: s.ifindex,
            bridge: br,
        });

        j.begin("bridge address")?;
        let addr = bridge::bridge_address(br);
        nl.add_address(addr.clone())
            .await
            .map_err(|e| Error::netlink(format!("add {BRIDGE_IP} to {}", p.bridge), e))?;
        j.record(Step::AddAddress { address: Raw(addr) });

        ifaces.push(InterfaceState {
            tap: p.tap.clone(),
            bridge: p.bridge.clone(),
            veth: s.name.clone(),
            mtu: s.mtu,
            vm_mac: s.mac,
            veth_mac,
            queues: cfg.queues,
            vnet_hdr: cfg.vnet_hdr,
            tap_ifindex: tap_ix,
            bridge_ifindex: br,
            lease: if cfg.dhcp {
                plan::lease(p, cni, cfg)
            } else {
                None
            },
            snapshot: s.clone(),
        });
    }

    j.begin("install filter")?;
    let veths: Vec<String> = plans.iter().map(|p| p.snapshot.name.clone()).collect();
    nft.install(FILTER_TABLE, &veths)
        .map_err(|e| Error::Filter {
            step: "install".into(),
            source: e,
        })?;
    j.record(Step::InstallFilter {
        table: FILTER_TABLE.into(),
    });

    if let Some((lo, false)) = lo {
        j.begin("lo up")?;
        nl.set_up(lo, true)
            .await
            .map_err(|e| Error::netlink("set lo up", e))?;
        j.record(Step::LinkUp { ifindex: lo });
    }

    for i in ifaces.iter() {
        if let Some(lease) = &i.lease {
            j.begin("dhcp socket")?;
            let sock = dhcp::bind_socket(&i.bridge).map_err(|e| Error::Dhcp {
                bridge: i.bridge.clone(),
                source: e,
            })?;
            socks.push((sock, lease.clone()));
        }
    }
    Ok(())
}

/// The order routes are put back in: on-link routes first (a gateway must be
/// reachable before a route through it is accepted), each group in the
/// order the kernel listed them, interface by interface.
fn restore_order_routes(
    snaps: &[&InterfaceSnapshot],
) -> Vec<netlink_packet_route::route::RouteMessage> {
    let all = snaps
        .iter()
        .flat_map(|s| s.routes.iter().map(|r| r.0.clone()));
    let (onlink, via): (Vec<_>, Vec<_>) =
        all.partition(|r| crate::snapshot::route_gateway(r).is_none());
    onlink.into_iter().chain(via).collect()
}

fn exists_or(e: std::io::Error, name: &str, step: &str) -> Error {
    if e.raw_os_error() == Some(libc::EEXIST) {
        Error::NameExists(name.to_string())
    } else {
        Error::netlink(format!("{step} {name}"), e)
    }
}

/// In the namespace: check the devices are ours and still there (the veth
/// with the MAC we gave it, in our bridge), then reopen them.
async fn recover_in_ns(state: &State) -> Result<Opened> {
    let mut nl = Netlink::open().map_err(|e| Error::netlink("open", e))?;
    let links = nl
        .links()
        .await
        .map_err(|e| Error::netlink("dump links", e))?;
    let mut taps = Vec::new();
    let mut dhcp = Vec::new();
    for i in &state.interfaces {
        for (name, ix) in [(&i.tap, i.tap_ifindex), (&i.bridge, i.bridge_ifindex)] {
            match links.iter().find(|l| l.header.index == ix) {
                Some(l)
                    if link_attr::name(l) == Some(name.as_str())
                        && link_attr::group(l) == LINK_GROUP => {}
                Some(_) => {
                    return Err(Error::State(format!(
                        "link {ix} is not our {name}: the state is not of this namespace"
                    )))
                }
                None => return Err(Error::State(format!("{name} (index {ix}) is gone"))),
            }
        }
        let veth = links.iter().find(|l| l.header.index == i.snapshot.ifindex);
        let ours = veth.is_some_and(|l| {
            link_attr::mac(l) == Some(&i.veth_mac.0[..])
                && link_attr::controller(l) == Some(i.bridge_ifindex)
        });
        if !ours {
            return Err(Error::State(format!(
                "{} (index {}) does not carry MAC {} in {}: the state is not of this namespace",
                i.veth, i.snapshot.ifindex, i.veth_mac, i.bridge
            )));
        }
        let opts = TapOptions {
            queues: i.queues,
            vnet_hdr: i.vnet_hdr,
        };
        taps.push(tap::reopen(&i.tap, opts).map_err(|e| Error::Tap {
            name: i.tap.clone(),
            step: "reopen".into(),
            source: e,
        })?);
        if state.dhcp {
            if let Some(lease) = &i.lease {
                let sock = dhcp::bind_socket(&i.bridge).map_err(|e| Error::Dhcp {
                    bridge: i.bridge.clone(),
                    source: e,
                })?;
                dhcp.push((sock, lease.clone()));
            }
        }
    }
    Ok(Opened { taps, dhcp })
}
