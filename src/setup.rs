//! Setup in two halves: on a thread inside the pod namespace, read what is
//! there, plan, and open what the plan needs ([`prepare_in_ns`]); then, on
//! the caller's thread, apply the steps one by one into the journal through
//! those descriptors ([`apply_prepared`]); on any error, undo what was done.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::route::RouteMessage;

use crate::cni::CniResult;
use crate::config::Config;
use crate::dhcp::{self, Lease};
use crate::error::{Error, Result};
use crate::filter::Nft;
use crate::journal::{Journal, Step, Wait};
use crate::netlink::{link_attr, Netlink};
use crate::plan::{self, IfacePlan};
use crate::snapshot::{InterfaceSnapshot, Raw};
use crate::state::{InterfaceState, Opened, State, FILTER_TABLE, LINK_GROUP, STATE_FORMAT};
use crate::tap::{self, TapOptions};

/// What setup reads and opens inside the pod namespace, on the netns
/// thread. The changes themselves are then made from the caller's thread
/// through these sockets and files, each of which keeps the namespace it was
/// opened in (netavark's model): the netns thread lives only as long as the
/// reading, and the kernel work runs on the caller's already-running CPU
/// instead of waking it at the end.
pub(crate) struct Prepared {
    nl: Netlink,
    nft: Nft,
    cni: CniResult,
    planned: Planned,
    pub(crate) phases: Vec<(String, Duration)>,
}

/// The plan, and what was opened for it inside the namespace.
struct Planned {
    plans: Vec<IfacePlan>,
    /// What each interface's VM is leased (`None`: DHCP off or no IPv4).
    leases: Vec<Option<Lease>>,
    /// `lo`'s index and whether it was up.
    lo: Option<(u32, bool)>,
    /// Per interface, `/dev/net/tun` opened once per queue.
    tun: Vec<Vec<File>>,
    /// Per interface with a lease, its DHCP server's sockets.
    dhcp: Vec<Option<dhcp::Unbound>>,
    /// Per interface with global IPv6 addresses to serve: their addresses
    /// (also without a server of ours: the state keeps the lease for one
    /// started later, as vnet-cni's responder is).
    pod6: Vec<Option<crate::dhcp6::PodV6>>,
    /// Per interface in `pod6`, the IPv6 server's socket when we serve.
    dhcp6: Vec<Option<crate::dhcp6::Unbound>>,
    /// Those sockets serve DHCPv4 too ([`crate::state::dhcp4_on_tap`]).
    dhcp4_on_tap: bool,
}

pub(crate) fn prepare_in_ns(
    netns: &str,
    cfg: &Config,
    given: Option<&CniResult>,
    // Open and bind the DHCP sockets (off: the leases are planned and saved,
    // and another process serves them after `recover_with`).
    serve_dhcp: bool,
    // (time to check the config and open the namespace, then the clock
    // since): only for `Network::timings`.
    called: (Duration, Instant),
) -> Result<Prepared> {
    let mut phases = vec![("check config, open netns".to_string(), called.0)];
    let mut lap = called.1;
    let mut phase = |what: &str| {
        let now = Instant::now();
        phases.push((what.to_string(), now - lap));
        lap = now;
    };
    phase("enter netns (thread, setns)");
    let dump = |e| Error::netlink("dump", e);
    let mut nl = Netlink::open().map_err(|e| Error::netlink("open", e))?;
    let nft = Nft::open().map_err(|e| Error::Filter {
        step: "open".into(),
        source: e,
    })?;
    let ns = nl.dump_all().map_err(dump)?;
    let links = &ns.links;
    phase("read namespace (sockets, 4 dumps)");

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
    let check = |e| Error::Filter {
        step: "check".into(),
        source: e,
    };
    if nft.table_exists(FILTER_TABLE).map_err(check)? {
        return Err(Error::Leftovers(format!(
            "nf_tables table bridge {FILTER_TABLE} in {netns}"
        )));
    }
    if nft.redirect_exists(FILTER_TABLE).map_err(check)? {
        return Err(Error::Leftovers(format!(
            "nf_tables table netdev {FILTER_TABLE} in {netns}"
        )));
    }
    let chosen = plan::find_interfaces(links, given, netns, cfg.mode)?;
    let plans = plan::plan(&chosen, &ns, cfg.mode)?;
    let cni = plan::cni_result(&plans, given, cfg, netns)?;
    let lo = links
        .iter()
        .find(|l| link_attr::name(l) == Some("lo"))
        .map(|l| (l.header.index, l.header.flags.contains(LinkFlags::Up)));
    let leases: Vec<Option<Lease>> = plans
        .iter()
        .map(|p| {
            if cfg.dhcp {
                plan::lease(p, &cni, cfg)
            } else {
                None
            }
        })
        .collect();
    phase("leftover check, plan");

    let mut tun = Vec::new();
    for p in &plans {
        tun.push(
            tap::open_controls(tap_options(cfg)).map_err(|e| Error::Tap {
                name: p.tap.clone(),
                step: "open /dev/net/tun".into(),
                source: e,
            })?,
        );
    }
    let pod6: Vec<Option<crate::dhcp6::PodV6>> = plans
        .iter()
        .map(|p| {
            (cfg.dhcp && cfg.ipv6)
                .then(|| crate::dhcp6::PodV6::from_cni(&p.snapshot.name, &cni, cfg.lease_secs))
                .flatten()
        })
        .collect();
    let on_tap = crate::state::dhcp4_on_tap(
        leases
            .iter()
            .zip(&pod6)
            .map(|(l, v6)| (l.is_some(), v6.is_some())),
    );
    let dhcp_err = |p: &IfacePlan| {
        let bridge = p.bridge.clone();
        move |e| Error::Dhcp { bridge, source: e }
    };
    let mut sockets = Vec::new();
    for (p, l) in plans.iter().zip(&leases) {
        sockets.push(match l {
            Some(_) if serve_dhcp && !on_tap => Some(dhcp::Unbound::open().map_err(dhcp_err(p))?),
            _ => None,
        });
    }
    let mut sockets6 = Vec::new();
    for ((p, v6), l) in plans.iter().zip(&pod6).zip(&leases) {
        sockets6.push(match v6 {
            Some(_) if serve_dhcp => {
                Some(crate::dhcp6::Unbound::open(on_tap && l.is_some()).map_err(dhcp_err(p))?)
            }
            _ => None,
        });
    }
    phase("open TAP control files, DHCP sockets");
    Ok(Prepared {
        nl,
        nft,
        cni,
        planned: Planned {
            plans,
            leases,
            lo,
            tun,
            dhcp: sockets,
            pod6,
            dhcp6: sockets6,
            dhcp4_on_tap: on_tap,
        },
        phases,
    })
}

/// Make the changes [`prepare_in_ns`] planned, one step at a time, into
/// the journal; on any error, undo what was done. Runs on the caller's
/// thread: everything goes through `prepared`'s sockets and files.
pub(crate) fn apply_prepared(
    prepared: Prepared,
    netns: &str,
    cfg: &Config,
) -> Result<(CniResult, State, Opened)> {
    let Prepared {
        mut nl,
        nft,
        cni,
        mut planned,
        phases,
    } = prepared;
    // Kept here: a rollback compares the namespace with them.
    let plans = std::mem::take(&mut planned.plans);
    let dhcp4_on_tap = planned.dhcp4_on_tap;
    #[cfg(feature = "fault-injection")]
    let fail_at = cfg.fail_at_step;
    #[cfg(not(feature = "fault-injection"))]
    let fail_at = None;
    let mut journal = Journal::new(fail_at);
    journal.timings = phases;
    #[cfg(feature = "fault-injection")]
    {
        journal.hang_at = cfg.hang_at_step;
        journal.fail_undo_at = cfg.fail_undo_at_step;
        journal.panic_undo_at = cfg.panic_at_undo_step;
    }
    let mut taps = Vec::new();
    let mut socks = Vec::new();
    let mut socks6 = Vec::new();
    let mut ifaces = Vec::new();
    let r = apply(
        &mut nl,
        &nft,
        cfg,
        &plans,
        planned,
        &mut journal,
        &mut taps,
        (&mut socks, &mut socks6),
        &mut ifaces,
    );
    if let Err(e) = r {
        drop(socks);
        drop(socks6);
        drop(taps);
        let record: Vec<&InterfaceSnapshot> = plans.iter().map(|p| &p.snapshot).collect();
        let problems = journal.undo(&mut nl, Some(nft), Wait::Freed, &record);
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
        dhcp4_on_tap,
        journal,
    };
    Ok((
        cni,
        state,
        Opened {
            taps,
            dhcp: socks,
            dhcp6: socks6,
            control: Some((nl, nft)),
        },
    ))
}

/// Apply every step, recording each in the journal once done.
///
/// Our own devices come first: from the first change to the pod's
/// interfaces on, a link of `LINK_GROUP` exists, so a process killed half-way
/// leaves leftovers that the next setup detects instead of mistaking a
/// stripped veth for the pod's configuration.
#[allow(clippy::too_many_arguments)]
fn apply(
    nl: &mut Netlink,
    nft: &Nft,
    cfg: &Config,
    plans: &[IfacePlan],
    planned: Planned,
    j: &mut Journal,
    taps: &mut Vec<Vec<OwnedFd>>,
    (socks, socks6): Servers<'_>,
    ifaces: &mut Vec<InterfaceState>,
) -> Result<()> {
    let opts = tap_options(cfg);
    let Planned {
        plans: _,
        leases,
        lo,
        tun,
        dhcp: mut unbound,
        pod6,
        dhcp6: mut unbound6,
        dhcp4_on_tap,
    } = planned;
    let topo = crate::topology::of(cfg.mode);
    let mut made = Vec::new();
    for (p, files) in plans.iter().zip(tun) {
        made.push(topo.create(nl, j, p, files, opts, taps)?);
    }
    let mut pod_macs = Vec::new();
    for p in plans {
        pod_macs.push(topo.pod_mac(nl, j, p)?);
    }
    // Strip in the reverse of the order things must come back in, since undo
    // walks the journal backwards.
    let snaps: Vec<&InterfaceSnapshot> = plans.iter().map(|p| &p.snapshot).collect();
    for route in restore_order_routes(&snaps).into_iter().rev() {
        j.begin("delete route")?;
        nl.del_route(route.clone())
            .map_err(|e| Error::netlink("delete route", e))?;
        j.record(Step::DelRoute { route: Raw(route) });
    }
    for s in &snaps {
        j.begin("kernel routes")?;
        j.record(Step::KernelRoutes { ifindex: s.ifindex });
    }
    let addrs: Vec<_> = snaps.iter().flat_map(|s| s.addresses.iter()).collect();
    for a in addrs.into_iter().rev() {
        j.begin("delete address")?;
        nl.del_address(a.0.clone())
            .map_err(|e| Error::netlink("delete address", e))?;
        j.record(Step::DelAddress { address: a.clone() });
    }

    for ((((p, &veth_mac), &m), lease), v6) in plans
        .iter()
        .zip(&pod_macs)
        .zip(&made)
        .zip(leases)
        .zip(&pod6)
    {
        let s = &p.snapshot;
        // Our frames' source: the TAP's MAC in redirect mode, where the pod
        // interface keeps the VM's.
        let server_mac = m.server_mac.unwrap_or(veth_mac);
        let lease6 = v6
            .as_ref()
            .and_then(|v6| crate::dhcp6::Lease6::from_pod(s, v6, server_mac.0));
        topo.attach(nl, j, p, m, lease.as_ref())?;
        ifaces.push(InterfaceState {
            mode: cfg.mode,
            tap: p.tap.clone(),
            bridge: p.bridge.clone(),
            veth: s.name.clone(),
            mtu: s.mtu,
            vm_mac: s.mac,
            veth_mac,
            queues: cfg.queues,
            vnet_hdr: cfg.vnet_hdr,
            tap_ifindex: m.tap,
            bridge_ifindex: m.bridge,
            lease,
            lease6,
            snapshot: s.clone(),
        });
    }
    if dhcp4_on_tap != crate::state::dhcp4_on_tap_for(ifaces) {
        // Cannot happen: a planned IPv6 address always makes a lease.
        return Err(Error::Internal(
            "no IPv6 lease for a planned IPv6 address".into(),
        ));
    }
    let serving = crate::filter::Serving {
        ipv6: ifaces.iter().any(|i| i.lease6.is_some()),
        dhcp4_on_tap,
    };
    topo.install(nft, j, plans, &made, serving)?;

    if let Some((lo, false)) = lo {
        j.begin("lo up")?;
        nl.set_up(lo, true)
            .map_err(|e| Error::netlink("set lo up", e))?;
        j.record(Step::LinkUp { ifindex: lo });
    }

    for (i, unbound) in ifaces.iter().zip(unbound.iter_mut()) {
        if let (Some(lease), Some(unbound)) = (&i.lease, unbound.take()) {
            j.begin("dhcp socket")?;
            let link = i.server_link();
            let sock = unbound.bind(link, i.tap_ifindex).map_err(|e| Error::Dhcp {
                bridge: link.to_string(),
                source: e,
            })?;
            socks.push((sock, lease.clone()));
            j.done();
        }
    }
    for (i, v6) in ifaces.iter().zip(unbound6.iter_mut()) {
        if let (Some(lease6), Some(unbound)) = (&i.lease6, v6.take()) {
            j.begin("ipv6 socket")?;
            let sock = unbound
                .bind(i.tap_ifindex, i.snapshot.ifindex)
                .map_err(|e| Error::Dhcp {
                    bridge: i.bridge.clone(),
                    source: e,
                })?;
            let v4 = i.lease.clone().filter(|_| dhcp4_on_tap);
            socks6.push((sock, lease6.clone(), v4));
            j.done();
        }
    }
    Ok(())
}

/// The DHCPv4 and IPv6 servers' sockets and leases, filled by `apply`.
type Servers<'a> = (
    &'a mut Vec<(dhcp::Sockets, Lease)>,
    &'a mut Vec<(crate::dhcp6::Sockets, crate::dhcp6::Lease6, Option<Lease>)>,
);

fn tap_options(cfg: &Config) -> TapOptions {
    TapOptions {
        queues: cfg.queues,
        vnet_hdr: cfg.vnet_hdr,
    }
}

/// The order routes are put back in: on-link routes first (a gateway must be
/// reachable before a route through it is accepted), each group in the
/// order the kernel listed them, interface by interface.
fn restore_order_routes(snaps: &[&InterfaceSnapshot]) -> Vec<RouteMessage> {
    let all = snaps
        .iter()
        .flat_map(|s| s.routes.iter().map(|r| r.0.clone()));
    let (onlink, via): (Vec<_>, Vec<_>) =
        all.partition(|r| crate::snapshot::route_gateway(r).is_none());
    onlink.into_iter().chain(via).collect()
}
