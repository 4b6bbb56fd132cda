//! `vnet-bench redirect [N]`: redirect mode's setup and teardown against
//! bridge mode, against a floor made of the very requests redirect mode
//! sends (over bare sockets, from one thread that entered the pod namespace
//! once), and against the Go seed, in one run.
//!
//! vnet (both modes, through the C ABI) and the floor take turns on the
//! same pod, round by round, the order rotating each round, so machine
//! noise hits all alike. The Go seed is a process of its own
//! (../shared/anchors/go-nettools) and runs after the rounds; it is
//! skipped with a note when the anchors or its Go packages are absent.

use std::ffi::{CStr, CString};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vnet::filter::Nft;
use vnet::fwd::Pair;

use crate::baselines::{self, Baseline};
use crate::control::{c_setup, c_teardown, timed_setup, timed_teardown};
use crate::fixture::{self, Pods};
use crate::floor::Steps;
use crate::rawnl::{self, Msg, Rtnl, NLM_F_CREATE, NLM_F_EXCL};
use crate::stats::{ratio, us, Samples, Table};
use crate::tun;

const GROUP: u32 = 0x766e_6574;
const TABLE: &str = "vnet";
const TAP: &str = "tap0";
const POD: &str = "eth0";
const TAP_MAC: [u8; 6] = [0x86, 0x7f, 0x50, 0x10, 0xe6, 0x83];
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 90, 5);
const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 90, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 254, 2);
/// eth0's link-local address (EUI-64 of the fixture's 42:a4:a6:22:80:2e),
/// which redirect mode strips with the pod's IPv4 address.
const POD_LL: [u8; 16] = [
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x40, 0xa4, 0xa6, 0xff, 0xfe, 0x22, 0x80, 0x2e,
];

// Attributes the floor needs beyond rawnl's helpers.
const IFLA_ADDRESS: u16 = 1;
const IFLA_MTU: u16 = 4;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_GROUP: u16 = 27;
const IFA_ADDRESS: u16 = 1;
const IFA_FLAGS: u16 = 8;
const IFA_PROTO: u16 = 11;
const IFA_F_PERMANENT: u8 = 0x80;
const IFA_F_TENTATIVE: u8 = 0x40;
const RT_SCOPE_LINK: u8 = 253;
const IFAPROT_KERNEL_LL: u8 = 3;

/// The SETLINK that joins the TAP to the link group: IPv6 address
/// generation off (`IFLA_AF_SPEC { AF_INET6 { ADDR_GEN_MODE none } }`),
/// group, MAC, MTU, in one request, as redirect mode sends it.
fn join(tap: u32) -> Msg {
    // AF_INET6 (len 12) { IFLA_INET6_ADDR_GEN_MODE (8, len 5) = NONE (1) }.
    let af_spec = [12, 0, 10, 0, 5, 0, 8, 0, 1, 0, 0, 0];
    Msg::link(tap, false)
        .attr(IFLA_AF_SPEC, &af_spec)
        .u32(IFLA_GROUP, GROUP)
        .attr(IFLA_ADDRESS, &TAP_MAC)
        .u32(IFLA_MTU, 1500)
}

/// eth0's link-local address, as redirect mode deletes and restores it.
fn link_local(eth0: u32) -> Msg {
    let f = IFA_F_PERMANENT | IFA_F_TENTATIVE;
    Msg::addr6(eth0, 64, f, RT_SCOPE_LINK)
        .attr(IFA_ADDRESS, &POD_LL)
        .u32(IFA_FLAGS, f as u32)
        .attr(IFA_PROTO, &[IFAPROT_KERNEL_LL])
}

macro_rules! step {
    ($steps:expr, $name:expr, $e:expr) => {{
        let t = Instant::now();
        let r = $e;
        $steps.push($name, t.elapsed());
        r
    }};
}

#[derive(Default)]
struct FloorOut {
    setup: [Samples; 2],
    teardown: [Samples; 2],
    setup_steps: [Steps; 2],
    teardown_steps: [Steps; 2],
}

/// The floor's thread: enters `path` once, opens its sockets once, then
/// runs one round (setup, the VM's run, teardown, the kernel freeing the
/// TAP) per message, answering on `done`. Index 0: DHCP off, 1: on.
fn floor_thread(
    path: String,
    go: mpsc::Receiver<(bool, bool)>,
    done: mpsc::Sender<()>,
) -> std::thread::JoinHandle<FloorOut> {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd, on this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        let mut nl = Rtnl::open().expect("rtnetlink socket");
        let nft = Nft::open().expect("nf_tables socket");
        let eth0 = nl.index_of(POD).expect("eth0");
        let mut out = FloorOut::default();
        while let Ok((dhcp, keep)) = go.recv() {
            let i = dhcp as usize;
            let (mut ss, mut ts) = (Steps::default(), Steps::default());
            let (s, t) = if keep {
                let o = &mut out;
                round(
                    &mut nl,
                    &nft,
                    eth0,
                    dhcp,
                    &mut o.setup_steps[i],
                    &mut o.teardown_steps[i],
                )
            } else {
                round(&mut nl, &nft, eth0, dhcp, &mut ss, &mut ts)
            };
            if keep {
                out.setup[i].push(s);
                out.teardown[i].push(t);
            }
            done.send(()).unwrap();
        }
        out
    })
}

/// One floor round; (setup, teardown), steps recorded in `ss` and `ts`.
fn round(
    nl: &mut Rtnl,
    nft: &Nft,
    eth0: u32,
    dhcp: bool,
    ss: &mut Steps,
    ts: &mut Steps,
) -> (Duration, Duration) {
    let s = ss;
    let t0 = Instant::now();
    step!(
        s,
        "4 dumps (links, addrs, routes, rules)",
        nl.dumps_with_rules().unwrap()
    );
    step!(s, "nft tables exist? (bridge, netdev)", {
        nft.table_exists(TABLE).unwrap();
        nft.redirect_exists(TABLE).unwrap()
    });
    let (tap, tap_ix) = step!(s, "create tap (TUNSETIFF, persist, index)", {
        let fd = tun::attach(TAP, tun::IFF_TAP | tun::IFF_NO_PI | tun::IFF_TUN_EXCL).unwrap();
        tun::set_persist(std::os::fd::AsFd::as_fd(&fd), true).unwrap();
        (fd, nl.index_of(TAP).unwrap())
    });
    step!(
        s,
        "join: addrgenmode none + group + MAC + MTU",
        nl.req(rawnl::RTM_SETLINK, 0, &join(tap_ix)).unwrap()
    );
    step!(
        s,
        "tap up",
        nl.req(rawnl::RTM_SETLINK, 0, &Msg::link(tap_ix, true))
            .unwrap()
    );
    step!(
        s,
        "delete route",
        nl.req(rawnl::RTM_DELROUTE, 0, &Msg::default_via(eth0, GW))
            .unwrap()
    );
    step!(s, "delete addresses (link-local, IPv4)", {
        nl.req(rawnl::RTM_DELADDR, 0, &link_local(eth0)).unwrap();
        nl.req(rawnl::RTM_DELADDR, 0, &Msg::ipv4(eth0, POD_IP, 24))
            .unwrap()
    });
    step!(
        s,
        "server address",
        nl.req(
            rawnl::RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            &Msg::ipv4(tap_ix, SERVER_IP, 24)
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
                &Msg::host_route(tap_ix, POD_IP, SERVER_IP)
            )
            .unwrap()
        );
    }
    let pairs = [Pair {
        tap: TAP.into(),
        tap_ifindex: tap_ix,
        pod: POD.into(),
        pod_ifindex: eth0,
    }];
    step!(
        s,
        "install redirect",
        nft.install_redirect(TABLE, &pairs, vnet::filter::Serving::default())
            .unwrap()
    );
    let sock = if dhcp {
        Some(step!(
            s,
            "dhcp socket",
            vnet::dhcp::bind_sockets(TAP, tap_ix).unwrap()
        ))
    } else {
        None
    };
    let setup = t0.elapsed();

    std::thread::sleep(fixture::VM_RUNS);
    let s = ts;
    let t1 = Instant::now();
    drop(tap);
    step!(s, "restore addresses (IPv4, link-local)", {
        nl.req(
            rawnl::RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            &Msg::ipv4(eth0, POD_IP, 24),
        )
        .unwrap();
        nl.req(
            rawnl::RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            &link_local(eth0),
        )
        .unwrap()
    });
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
    // As vnet: the DHCP sockets close in the background.
    std::thread::spawn(move || drop(sock));
    let freeing = step!(s, "delete netdev table, then tap0 until gone", {
        nft.delete_redirect(TABLE).unwrap();
        nl.del_link_until_gone(tap_ix).unwrap()
    });
    let teardown = t1.elapsed();
    // The next round starts once the kernel has freed the TAP, as vnet's
    // rounds wait for its teardown thread.
    freeing.join().unwrap();
    (setup, teardown)
}

/// What one vnet config measured through the C ABI.
#[derive(Default)]
struct Vnet {
    setup: Samples,
    teardown: Samples,
}

fn vnet_cycle(path: &CStr, cfg: &CStr) -> (Duration, Duration) {
    let t0 = Instant::now();
    let h = c_setup(path, Some(cfg));
    let s = t0.elapsed();
    std::thread::sleep(fixture::VM_RUNS);
    let t = c_teardown(h);
    fixture::short_lived_threads_gone();
    (s, t)
}

/// One redirect-mode cycle through the safe API, for vnet's own steps.
fn vnet_steps_cycle(path: &str, dhcp: bool, ss: &mut Steps, ts: &mut Steps) {
    let cfg = vnet::Config {
        dhcp,
        mode: vnet::Mode::Redirect,
        ..vnet::Config::default()
    };
    let (mut net, steps, total) = timed_setup(path, &cfg);
    for (name, d) in steps {
        ss.push(&name, d);
    }
    ss.push("**total**", total);
    std::thread::sleep(fixture::VM_RUNS);
    let total = timed_teardown(&mut net, ts);
    ts.push("**total**", total);
}

fn med(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|x, y| x.total_cmp(y));
    v[v.len() / 2]
}

fn steps_table(title: &str, steps: &Steps) {
    println!("{title}\n");
    let mut t = Table::new(&["step", "median µs", "p90 µs"]);
    for (name, s) in &steps.0 {
        t.row(vec![name.clone(), us(s.median()), us(s.p90())]);
    }
    t.print();
}

pub fn run(n: usize, anchors: Option<&Path>, work: &Path) {
    const WARMUP: usize = 3;
    let pods = Pods::new("rfloor", 1);
    let path = pods.path(0);
    let cpath = CString::new(path.clone()).unwrap();
    let before = pods.dump(0);
    let configs: [(&str, &CStr); 4] = [
        ("redirect", c"{\"mode\": \"redirect\", \"dhcp\": false}"),
        ("redirect", c"{\"mode\": \"redirect\"}"),
        ("bridge", c"{\"dhcp\": false}"),
        ("bridge", c"{}"),
    ];
    let (go_tx, go_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let floor = floor_thread(path.clone(), go_rx, done_tx);
    let mut vnet: Vec<Vnet> = (0..4).map(|_| Vnet::default()).collect();
    // Per-round ratios: redirect/bridge and redirect/floor, [dhcp].
    let mut r_rb: [[Vec<f64>; 2]; 2] = Default::default();
    let mut r_rf: [[Vec<f64>; 2]; 2] = Default::default();
    let (mut vss, mut vts): ([Steps; 2], [Steps; 2]) = Default::default();
    // Contestants per round: 4 vnet configs, the floor (DHCP off, on), and
    // vnet's own steps (safe API, DHCP off, on).
    const K: usize = 8;
    // VNB_RF_ONLY=0,4: only these contestants (0-3 vnet configs, 4-5 the
    // floor, 6-7 vnet's steps), to look into one of them.
    let only: Vec<usize> = std::env::var("VNB_RF_ONLY")
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    for round in 0..WARMUP + n {
        let keep = round >= WARMUP;
        let mut got = [(Duration::ZERO, Duration::ZERO); K];
        for j in 0..K {
            let k = (j + round) % K;
            if !only.is_empty() && !only.contains(&k) {
                continue;
            }
            match k {
                0..=3 => got[k] = vnet_cycle(&cpath, configs[k].1),
                4 | 5 => {
                    go_tx.send((k == 5, keep)).unwrap();
                    done_rx.recv().unwrap();
                }
                _ => {
                    let d = k == 7;
                    if keep {
                        vnet_steps_cycle(&path, d, &mut vss[d as usize], &mut vts[d as usize]);
                    } else {
                        vnet_steps_cycle(&path, d, &mut Steps::default(), &mut Steps::default());
                    }
                }
            }
        }
        if !keep {
            continue;
        }
        let ran = |k: usize| only.is_empty() || only.contains(&k);
        for (k, v) in vnet.iter_mut().enumerate() {
            if ran(k) {
                v.setup.push(got[k].0);
                v.teardown.push(got[k].1);
            }
        }
        for d in 0..2 {
            if !(ran(d) && ran(2 + d)) {
                continue;
            }
            let (r, b) = (got[d], got[2 + d]);
            r_rb[d][0].push(r.0.as_secs_f64() / b.0.as_secs_f64());
            r_rb[d][1].push(r.1.as_secs_f64() / b.1.as_secs_f64());
        }
    }
    drop(go_tx);
    let fl = floor
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    for d in 0..2 {
        let (v, f) = (&vnet[d], &fl);
        for (a, b) in v.setup.0.iter().zip(&f.setup[d].0) {
            r_rf[d][0].push(a / b);
        }
        for (a, b) in v.teardown.0.iter().zip(&f.teardown[d].0) {
            r_rf[d][1].push(a / b);
        }
    }
    assert_eq!(pods.dump(0), before, "pod namespace not restored");
    drop(pods);

    // The Go seed: its own process, after the rounds.
    let (go, go_noeb) = match anchors {
        Some(a) => baselines::go(a, work, n),
        None => {
            println!("> Go seed: skipped (no ../shared/anchors; set VNB_ANCHORS)");
            (None, None)
        }
    };

    println!(
        "### Redirect mode against bridge mode, its floor and the Go seed \
         (n={n} per row, interleaved round by round; Go seed run after)\n"
    );
    let mut t = Table::new(&[
        "what",
        "setup p50 µs",
        "setup p90 µs",
        "teardown p50 µs",
        "teardown p90 µs",
    ]);
    let names = [
        "vnet redirect, dhcp off",
        "vnet redirect, dhcp on",
        "vnet bridge, dhcp off",
        "vnet bridge, dhcp on",
    ];
    for (k, v) in vnet.iter().enumerate() {
        t.row(vec![
            names[k].into(),
            us(v.setup.median()),
            us(v.setup.p90()),
            us(v.teardown.median()),
            us(v.teardown.p90()),
        ]);
    }
    for d in 0..2 {
        t.row(vec![
            format!("redirect floor, dhcp {}", ["off", "on"][d]),
            us(fl.setup[d].median()),
            us(fl.setup[d].p90()),
            us(fl.teardown[d].median()),
            us(fl.teardown[d].p90()),
        ]);
    }
    let phase = |b: &Option<Baseline>, k: &str, p90: bool| {
        b.as_ref()
            .and_then(|b| b.get(k))
            .map_or(f64::NAN, |p| if p90 { p.p90 } else { p.median })
    };
    for (name, b) in [
        ("Go seed (Virtlet's bridge design, ebtables)", &go),
        ("Go seed without ebtables", &go_noeb),
    ] {
        t.row(vec![
            name.into(),
            us(phase(b, "setup", false)),
            us(phase(b, "setup", true)),
            us(phase(b, "teardown", false)),
            us(phase(b, "teardown", true)),
        ]);
    }
    t.print();

    let mut t = Table::new(&[
        "ratio (of medians; per-round median in brackets)",
        "setup, dhcp off",
        "setup, dhcp on",
        "teardown, dhcp off",
        "teardown, dhcp on",
    ]);
    let cell = |a: f64, b: f64, per: Option<&mut Vec<f64>>| match per {
        Some(v) => format!("{} ({:.2}×)", ratio(a, b), med(v)),
        None => ratio(a, b),
    };
    let mut row = |name: &str, f: &mut dyn FnMut(usize, usize) -> String| {
        t.row(vec![name.into(), f(0, 0), f(1, 0), f(0, 1), f(1, 1)]);
    };
    let m = |s: &Samples| s.median();
    let pick = |v: &Vnet, ph: usize| if ph == 0 { m(&v.setup) } else { m(&v.teardown) };
    row("redirect / bridge", &mut |d, ph| {
        cell(
            pick(&vnet[d], ph),
            pick(&vnet[2 + d], ph),
            Some(&mut r_rb[d][ph]),
        )
    });
    row("redirect / floor", &mut |d, ph| {
        let f = if ph == 0 {
            m(&fl.setup[d])
        } else {
            m(&fl.teardown[d])
        };
        cell(pick(&vnet[d], ph), f, Some(&mut r_rf[d][ph]))
    });
    let go_ph = |b: &Option<Baseline>, ph: usize| phase(b, ["setup", "teardown"][ph], false);
    row("Go seed / redirect", &mut |d, ph| {
        cell(go_ph(&go, ph), pick(&vnet[d], ph), None)
    });
    row("Go seed without ebtables / redirect", &mut |d, ph| {
        cell(go_ph(&go_noeb, ph), pick(&vnet[d], ph), None)
    });
    t.print();

    for d in 0..2 {
        let tag = ["dhcp off", "dhcp on"][d];
        steps_table(
            &format!("**vnet redirect setup, {tag} (safe API, same rounds)**"),
            &vss[d],
        );
        let mut s = Steps(fl.setup_steps[d].0.clone());
        s.0.push(("**total**".into(), fl.setup[d].clone()));
        steps_table(&format!("**redirect floor setup, {tag}**"), &s);
        steps_table(
            &format!("**vnet redirect teardown, {tag} (safe API, same rounds)**"),
            &vts[d],
        );
        let mut s = Steps(fl.teardown_steps[d].0.clone());
        s.0.push(("**total**".into(), fl.teardown[d].clone()));
        steps_table(&format!("**redirect floor teardown, {tag}**"), &s);
    }
}
