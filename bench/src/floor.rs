//! The kernel floor: the very requests vnet makes for the classic pod, sent
//! back to back from one thread that entered the pod namespace once, over
//! sockets opened once. No runtime, no thread per call, no parsing. What is
//! left is what the kernel itself costs.

use std::net::Ipv4Addr;
use std::time::Instant;

use vnet::filter::Nft;

use crate::fixture::{in_ns, After};
use crate::rawnl::{self, Msg, Rtnl, NLM_F_CREATE, NLM_F_EXCL};
use crate::stats::Samples;
use crate::tun;

const GROUP: u32 = 0x766e_6574;
const TABLE: &str = "vnet";
const POD_MAC: [u8; 6] = [0x42, 0xa4, 0xa6, 0x22, 0x80, 0x2e];
const VETH_MAC: [u8; 6] = [0x02, 0x65, 0x02, 0x11, 0x22, 0x33];
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 90, 5);
const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 90, 1);
const BR_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 254, 2);

/// Per-step samples, in the order first seen.
#[derive(Default)]
pub struct Steps(pub Vec<(String, Samples)>);

impl Steps {
    fn add(&mut self, name: &str, t: Instant) {
        self.push(name, t.elapsed());
    }

    /// One more sample of step `name` (a new row the first time).
    pub fn push(&mut self, name: &str, d: std::time::Duration) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => s.push(d),
            None => {
                let mut s = Samples::default();
                s.push(d);
                self.0.push((name.to_string(), s));
            }
        }
    }
}

pub struct Floor {
    pub setup: Samples,
    /// Teardown with the link-group delete and the table delete one after
    /// the other.
    pub teardown_serial: Samples,
    /// ... and at the same time from two threads (what vnet does).
    pub teardown_parallel: Samples,
    pub sum_parallel: Samples,
    /// The table deleted, then the links, returning once they are out of
    /// the namespace (the kernel frees them on another thread): as vnet.
    pub teardown_gone: Samples,
    pub sum_gone: Samples,
    pub setup_steps: Steps,
    pub teardown_steps: Steps,
}

macro_rules! step {
    ($steps:expr, $name:expr, $e:expr) => {{
        let t = Instant::now();
        let r = $e;
        $steps.add($name, t);
        r
    }};
}

/// `n` rounds of each kind of teardown.
/// Each teardown comes [`crate::fixture::VM_RUNS`] after its setup, as in
/// vnet's control-plane rounds.
pub fn run(path: &str, n: usize, dhcp: bool, after: After) -> Floor {
    rounds(path, n, n, n, dhcp, crate::fixture::VM_RUNS, after)
}

/// `serial` rounds with the two deletes one after the other, then
/// `parallel` rounds with them side by side, waiting until the kernel has
/// freed the links; then `gone_rounds` that delete the table, then the
/// links, returning once they are out of the namespace (as vnet does).
/// Each teardown comes `vm_runs` after its setup; `after` says whether the
/// next setup waits until the kernel has freed an until-gone round's links.
pub fn rounds(
    path: &str,
    serial: usize,
    parallel: usize,
    gone_rounds: usize,
    dhcp: bool,
    vm_runs: std::time::Duration,
    after: After,
) -> Floor {
    let n = serial;
    in_ns(path, || {
        let mut nl = Rtnl::open().expect("rtnetlink socket");
        let nft = Nft::open().expect("nf_tables socket");
        let eth0 = nl.index_of("eth0").expect("eth0");
        let mut f = Floor {
            setup: Samples::default(),
            teardown_serial: Samples::default(),
            teardown_parallel: Samples::default(),
            sum_parallel: Samples::default(),
            teardown_gone: Samples::default(),
            sum_gone: Samples::default(),
            setup_steps: Steps::default(),
            teardown_steps: Steps::default(),
        };
        let veths = vec!["eth0".to_string()];
        // The thread still sending the last until-gone delete (its answer
        // comes once the kernel has freed the links).
        let mut freeing: Option<std::thread::JoinHandle<()>> = None;
        let settle = |freeing: &mut Option<std::thread::JoinHandle<()>>| {
            if let (After::Settled, Some(t)) = (after, freeing.take()) {
                t.join().unwrap();
            }
        };
        for round in 0..serial + parallel + gone_rounds {
            settle(&mut freeing);
            let gone = round >= serial + parallel;
            let parallel = round >= n;
            let s = &mut f.setup_steps;
            let t0 = Instant::now();
            step!(
                s,
                "3 dumps (links, addrs, routes of both families)",
                nl.dumps().unwrap()
            );
            step!(s, "nft table exists?", nft.table_exists(TABLE).unwrap());
            step!(
                s,
                "set veth MAC",
                nl.req(rawnl::RTM_SETLINK, 0, &Msg::set_mac(eth0, VETH_MAC))
                    .unwrap()
            );
            step!(
                s,
                "delete route",
                nl.req(rawnl::RTM_DELROUTE, 0, &Msg::default_via(eth0, GW))
                    .unwrap()
            );
            step!(
                s,
                "delete address",
                nl.req(rawnl::RTM_DELADDR, 0, &Msg::ipv4(eth0, POD_IP, 24))
                    .unwrap()
            );
            let br = step!(s, "create bridge", {
                nl.req(
                    rawnl::RTM_NEWLINK,
                    NLM_F_CREATE | NLM_F_EXCL,
                    &Msg::new_bridge("br0", 1500, GROUP),
                )
                .unwrap();
                nl.index_of("br0").unwrap()
            });
            let (tap, tap_ix) = step!(s, "create tap", {
                let fd =
                    tun::attach("tap0", tun::IFF_TAP | tun::IFF_NO_PI | tun::IFF_TUN_EXCL).unwrap();
                tun::set_persist(std::os::fd::AsFd::as_fd(&fd), true).unwrap();
                (fd, nl.index_of("tap0").unwrap())
            });
            step!(
                s,
                "enslave tap",
                nl.req(
                    rawnl::RTM_SETLINK,
                    0,
                    &Msg::enslave(tap_ix, br, Some(1500), Some(GROUP))
                )
                .unwrap()
            );
            step!(
                s,
                "enslave veth",
                nl.req(rawnl::RTM_SETLINK, 0, &Msg::enslave(eth0, br, None, None))
                    .unwrap()
            );
            step!(
                s,
                "bridge address",
                nl.req(
                    rawnl::RTM_NEWADDR,
                    NLM_F_CREATE | NLM_F_EXCL,
                    &Msg::ipv4(br, BR_IP, 24)
                )
                .unwrap()
            );
            if dhcp {
                step!(
                    s,
                    "route to the VM",
                    nl.req(
                        rawnl::RTM_NEWROUTE,
                        NLM_F_CREATE | NLM_F_EXCL,
                        &Msg::host_route(br, POD_IP, BR_IP)
                    )
                    .unwrap()
                );
            }
            step!(s, "install filter", nft.install(TABLE, &veths).unwrap());
            let mut sock = if dhcp {
                Some(step!(
                    s,
                    "dhcp socket",
                    vnet::dhcp::bind_sockets("br0", tap_ix).unwrap()
                ))
            } else {
                None
            };
            let setup = t0.elapsed();
            f.setup.push(setup);

            std::thread::sleep(vm_runs);
            let s = &mut f.teardown_steps;
            let t1 = Instant::now();
            drop(tap);
            step!(
                s,
                "release veth",
                nl.req(rawnl::RTM_SETLINK, 0, &Msg::release(eth0)).unwrap()
            );
            step!(
                s,
                "restore address",
                nl.req(
                    rawnl::RTM_NEWADDR,
                    NLM_F_CREATE | NLM_F_EXCL,
                    &Msg::ipv4(eth0, POD_IP, 24)
                )
                .unwrap()
            );
            step!(
                s,
                "restore route",
                nl.req(
                    rawnl::RTM_NEWROUTE,
                    NLM_F_CREATE | NLM_F_EXCL,
                    &Msg::default_via(eth0, GW)
                )
                .unwrap()
            );
            step!(
                s,
                "restore MAC",
                nl.req(rawnl::RTM_SETLINK, 0, &Msg::set_mac(eth0, POD_MAC))
                    .unwrap()
            );
            if gone {
                // As vnet: the DHCP sockets close in the background (a
                // packet socket's close waits for an RCU grace period).
                let sk = sock.take();
                std::thread::spawn(move || drop(sk));
                step!(s, "delete nft table, then br0+tap0 until gone", {
                    nft.delete_table(TABLE).unwrap();
                    freeing = Some(nl.del_group_until_gone(GROUP, &[br, tap_ix]).unwrap());
                });
            } else if parallel {
                step!(s, "delete br0+tap0 (group) ‖ nft table", {
                    let sock = sock.take();
                    std::thread::scope(|sc| {
                        let h = sc.spawn(|| {
                            drop(sock);
                            nft.delete_table(TABLE).unwrap()
                        });
                        nl.req(rawnl::RTM_DELLINK, 0, &Msg::link_group(GROUP))
                            .unwrap();
                        h.join().unwrap();
                    })
                });
            } else {
                drop(sock.take());
                step!(
                    s,
                    "delete br0+tap0 (group, one request)",
                    nl.req(rawnl::RTM_DELLINK, 0, &Msg::link_group(GROUP))
                        .unwrap()
                );
                step!(s, "delete nft table", nft.delete_table(TABLE).unwrap());
            }
            let td = t1.elapsed();
            if gone {
                f.teardown_gone.push(td);
                f.sum_gone.push(setup + td);
            } else if parallel {
                f.teardown_parallel.push(td);
                f.sum_parallel.push(setup + td);
            } else {
                f.teardown_serial.push(td);
            }
        }
        settle(&mut freeing);
        f
    })
}
