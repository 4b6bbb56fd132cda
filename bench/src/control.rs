//! Control plane: vnet_setup / vnet_teardown through the C ABI, vnet's own
//! per-step times (safe API), the kernel floor, and the shared baselines,
//! all in one run on one fixture, then a summary with ratios.

use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;
use std::ptr;
use std::time::{Duration, Instant};

use vnet::ffi::{self, vnet_handle, vnet_status};
use vnet::filter::Nft;

use crate::baselines::{self, Baseline, Phase};
use crate::fixture::{self, in_ns, After, Pods};
use crate::floor::{self, Steps};
use crate::stats::{ratio, us, Samples, Table};

pub struct Opts {
    pub n: usize,
    pub shell_n: usize,
    pub go_n: usize,
    /// ../shared/anchors, when it exists.
    pub anchors: Option<PathBuf>,
    /// Scratch space for the Go build (bench/target/...).
    pub work: PathBuf,
}

/// The C ABI configs measured: explicit DHCP off, and NULL (defaults: DHCP on).
pub const CONFIGS: [(&str, Option<&CStr>); 2] = [
    ("dhcp off", Some(c"{\"dhcp\": false}")),
    ("dhcp on (NULL config)", None),
];

#[derive(Default)]
pub struct Run {
    pub setup: Samples,
    pub teardown: Samples,
    pub sum: Samples,
    pub setup_cpu: Samples,
    pub teardown_cpu: Samples,
}

/// CPU time of the whole process (all threads, vnet's included).
pub fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A live C handle, movable to another thread (the C API allows it).
pub struct Handle(pub *mut vnet_handle);
// SAFETY: vnet_handle is a Mutex-wrapped Network; the C API documents use
// from any thread (cgo callers hop threads).
unsafe impl Send for Handle {}

fn take_error(err: *mut c_char) -> String {
    if err.is_null() {
        return String::new();
    }
    // SAFETY: a string vnet returned, freed once.
    unsafe {
        let s = CStr::from_ptr(err).to_string_lossy().into_owned();
        ffi::vnet_string_free(err);
        s
    }
}

/// `vnet_setup` through the C ABI; panics with vnet's message on failure.
pub fn c_setup(path: &CStr, cfg: Option<&CStr>) -> Handle {
    let mut h = ptr::null_mut();
    let mut err = ptr::null_mut();
    let cfg = cfg.map_or(ptr::null(), |c| c.as_ptr());
    // SAFETY: valid C strings and out pointers.
    let st = unsafe { ffi::vnet_setup(path.as_ptr(), cfg, &mut h, &mut err) };
    assert_eq!(
        st,
        vnet_status::VNET_OK,
        "vnet_setup {path:?}: {}",
        take_error(err)
    );
    Handle(h)
}

/// `vnet_teardown` (timed part) then `vnet_free`.
pub fn c_teardown(h: Handle) -> Duration {
    let mut err = ptr::null_mut();
    let t = Instant::now();
    // SAFETY: a live handle from vnet_setup.
    let st = unsafe { ffi::vnet_teardown(h.0, &mut err) };
    let d = t.elapsed();
    assert_eq!(
        st,
        vnet_status::VNET_OK,
        "vnet_teardown: {}",
        take_error(err)
    );
    // SAFETY: live handle, not used afterwards.
    unsafe { ffi::vnet_free(h.0) };
    d
}

pub fn c_cycles(path: &str, cfg: Option<&CStr>, n: usize, warmup: usize, after: After) -> Run {
    let p = CString::new(path).unwrap();
    let mut r = Run::default();
    for i in 0..warmup + n {
        let c0 = cpu_now();
        let t0 = Instant::now();
        let h = c_setup(&p, cfg);
        let s = t0.elapsed();
        let c1 = cpu_now();
        std::thread::sleep(fixture::VM_RUNS);
        let c1b = cpu_now();
        let t = c_teardown(h);
        let c2 = cpu_now();
        if after == After::Settled {
            fixture::short_lived_threads_gone();
        }
        if i >= warmup {
            r.setup.push(s);
            r.teardown.push(t);
            r.sum.push(s + t);
            r.setup_cpu.push(c1 - c0);
            r.teardown_cpu.push(c2 - c1b);
        }
    }
    r
}

/// vnet's own per-step times via the safe API (`Network::timings`), plus
/// what the journal does not see (total minus the sum of the steps).
fn breakdown(path: &str, dhcp: bool, n: usize) -> (Steps, Steps, Samples, Samples) {
    breakdown_in(|| (path.to_string(), None), dhcp, n)
}

/// As [`breakdown`], on the namespace (and its owner) `pod` gives per round.
fn breakdown_in(
    mut pod: impl FnMut() -> (String, Option<Pods>),
    dhcp: bool,
    n: usize,
) -> (Steps, Steps, Samples, Samples) {
    // VNB_MODE=redirect: the same breakdown in redirect mode.
    let mode = match std::env::var("VNB_MODE").as_deref() {
        Ok("redirect") => vnet::Mode::Redirect,
        _ => vnet::Mode::Bridge,
    };
    // VNB_IPV6=0: IPv6 not served (on a dual-stack pod: VNB_AB_DUAL=1).
    let ipv6 = std::env::var("VNB_IPV6").map_or(true, |v| v != "0");
    let cfg = vnet::Config {
        dhcp,
        mode,
        ipv6,
        ..vnet::Config::default()
    };
    let (mut ss, mut ts) = (Steps::default(), Steps::default());
    let (mut stot, mut ttot) = (Samples::default(), Samples::default());
    for _ in 0..n {
        let (path, owner) = pod();
        let (mut net, steps, total) = timed_setup(&path, &cfg);
        for (name, d) in steps {
            ss.push(&name, d);
        }
        stot.push(total);
        std::thread::sleep(fixture::VM_RUNS);
        ttot.push(timed_teardown(&mut net, &mut ts));
        drop(owner);
    }
    (ss, ts, stot, ttot)
}

/// Tear `net` down, its steps as the library timed them (and the rest of
/// the call) into `ts`; the total, once the short-lived threads are gone.
pub(crate) fn timed_teardown(net: &mut vnet::Network, ts: &mut Steps) -> Duration {
    let t1 = Instant::now();
    net.teardown().expect("Network::teardown");
    let total = t1.elapsed();
    fixture::short_lived_threads_gone();
    let mut inside = Duration::ZERO;
    for (name, d) in net.timings() {
        ts.push(name, *d);
        inside += *d;
    }
    ts.push(
        "(not in the journal: DHCP stop, closing sockets)",
        total.saturating_sub(inside),
    );
    total
}

/// One setup through the safe API: the handle, its steps as the library
/// timed them plus the rest of the call as a last step, and the total.
pub(crate) fn timed_setup(
    path: &str,
    cfg: &vnet::Config,
) -> (vnet::Network, Vec<(String, Duration)>, Duration) {
    let t0 = Instant::now();
    let net = vnet::Network::setup(path, cfg).expect("Network::setup");
    let total = t0.elapsed();
    let mut steps = net.timings().to_vec();
    let inside: Duration = steps.iter().map(|(_, d)| *d).sum();
    steps.push((
        "(rest: not timed inside the library)".into(),
        total.saturating_sub(inside),
    ));
    (net, steps, total)
}

/// A new pod namespace, made the way the CNI plugin would just before setup.
fn fresh_pod() -> (String, Option<Pods>) {
    let p = Pods::new("fresh", 1);
    (p.path(0), Some(p))
}

/// `vnet-bench fresh [N]`: the first setup in a freshly made pod namespace,
/// as every real pod start is (the CNI plugin made it just before), per step.
pub fn fresh(n: usize) {
    println!("### First setup in a fresh pod namespace (what a pod start meets)\n");
    println!(
        "Each round makes a new pod namespace (as the CNI plugin would, with `ip`), \
         then times the first setup in it; n={n} namespaces per row. The floor sends the \
         same requests on bare sockets from a thread that entered the namespace (sockets \
         opened before the clock starts).\n"
    );
    let mut floor = Samples::default();
    for _ in 0..n {
        let p = Pods::new("freshfl", 1);
        let f = floor::rounds(&p.path(0), 1, 0, 0, false, Duration::ZERO, After::Settled);
        floor.0.extend(&f.setup.0);
    }
    let mut t = Table::new(&["setup", "median µs", "p90 µs", "vnet / floor"]);
    let mut rows = Vec::new();
    for dhcp in [false, true] {
        let (_, _, st, _) = breakdown_in(fresh_pod, dhcp, n);
        rows.push((
            format!("vnet safe API, dhcp {}", if dhcp { "on" } else { "off" }),
            st,
        ));
    }
    for (name, st) in &rows {
        t.row(vec![
            name.clone(),
            us(st.median()),
            us(st.p90()),
            format!("{:.2}×", st.median() / floor.median()),
        ]);
    }
    t.row(vec![
        "kernel floor".into(),
        us(floor.median()),
        us(floor.p90()),
        String::new(),
    ]);
    t.print();
}

/// `vnet-bench fresh-steps [N]`: [`fresh`] broken down per step.
pub fn fresh_steps(n: usize) {
    for dhcp in [false, true] {
        let (ss, _, st, _) = breakdown_in(fresh_pod, dhcp, n);
        let tag = if dhcp { "dhcp on" } else { "dhcp off" };
        steps_table(
            &format!("**vnet setup, {tag}, first call in a fresh pod namespace**"),
            &ss,
            &st,
        );
    }
}

fn steps_table(title: &str, steps: &Steps, total: &Samples) {
    println!("{title}\n");
    let mut t = Table::new(&["step", "median µs", "p90 µs"]);
    for (name, s) in &steps.0 {
        t.row(vec![name.clone(), us(s.median()), us(s.p90())]);
    }
    t.row(vec![
        "**total**".into(),
        us(total.median()),
        us(total.p90()),
    ]);
    t.print();
}

fn phase(r: &Samples) -> Phase {
    Phase {
        median: r.median(),
        p90: r.p90(),
    }
}

/// A floor's setup and its until-gone teardown, as vnet's rows report them.
fn floor_until_gone(f: &floor::Floor) -> Baseline {
    Baseline::from([
        ("setup".into(), phase(&f.setup)),
        ("teardown".into(), phase(&f.teardown_gone)),
        ("setup+teardown".into(), phase(&f.sum_gone)),
    ])
}

/// A row for vnet's C ABI with DHCP off in condition `what`, and the row
/// of the floor measured in the same condition.
fn vnet_and_floor(
    what: &str,
    r: &Run,
    floor_name: &str,
    f: &floor::Floor,
) -> [(String, Baseline); 2] {
    [
        (
            format!("vnet C ABI, {}, {what}", CONFIGS[0].0),
            as_baseline(r),
        ),
        (floor_name.to_string(), floor_until_gone(f)),
    ]
}

fn as_baseline(r: &Run) -> Baseline {
    Baseline::from([
        ("setup".into(), phase(&r.setup)),
        ("teardown".into(), phase(&r.teardown)),
        ("setup+teardown".into(), phase(&r.sum)),
        ("setup cpu".into(), phase(&r.setup_cpu)),
        ("teardown cpu".into(), phase(&r.teardown_cpu)),
    ])
}

pub fn run(o: &Opts) {
    println!("## 1. Control plane\n");
    println!(
        "One pod namespace (eth0 {} 10.1.90.5/24, default via 10.1.90.1, peer veth0 in a host namespace). \
         n={} measured rounds after 3 warm-up rounds; µs; nearest-rank percentiles. \
         CPU = process CPU time (all threads) in the same window. \
         A round is: setup, {} ms for the VM, teardown, then a wait until the kernel has freed \
         the deleted links before the next setup, as every baseline's own teardown waits for it \
         (rows marked \"at once\" skip that wait).\n",
        fixture::POD_MAC,
        o.n,
        fixture::VM_RUNS.as_millis()
    );
    let pods = Pods::new("ctl", 1);
    let path = pods.path(0);
    let before = pods.dump(0);

    let mut rows: Vec<(String, Baseline)> = Vec::new();
    for (name, cfg) in CONFIGS {
        eprintln!("[bench] vnet C ABI, {name} ...");
        let r = c_cycles(&path, cfg, o.n, 3, After::Settled);
        assert_eq!(pods.dump(0), before, "pod namespace not restored ({name})");
        rows.push((format!("vnet C ABI, {name}"), as_baseline(&r)));
    }

    eprintln!("[bench] kernel floor ...");
    let fl = floor::run(&path, o.n, false, After::Settled);
    let fl_dhcp = floor::run(&path, o.n.min(20), true, After::Settled);
    assert_eq!(pods.dump(0), before, "pod namespace not restored (floor)");
    rows.push((
        "kernel floor (same requests, one thread, sockets kept; teardown returns once the links are out of the namespace, as vnet's)".into(),
        floor_until_gone(&fl),
    ));
    rows.push((
        "kernel floor, teardown until the kernel has freed the links (group ‖ table delete)".into(),
        Baseline::from([
            ("teardown".into(), phase(&fl.teardown_parallel)),
            ("setup+teardown".into(), phase(&fl.sum_parallel)),
        ]),
    ));
    rows.push((
        "kernel floor, until freed, deletes one after the other".into(),
        Baseline::from([("teardown".into(), phase(&fl.teardown_serial))]),
    ));

    // nf_tables hooks are gated by kernel-wide static keys, one per (family,
    // hook): the first user of a hook on the node patches kernel text (IPIs
    // to every vCPU), the last one gone patches it back. br_netfilter (built
    // into this kernel) registers its bridge hooks in a namespace at its first
    // bridge and keeps them, which holds the forward and input keys on; vnet's
    // table uses only those two hooks, so it should patch nothing. Rows with
    // another VM's table on the node check that (an output chain, which vnet
    // used to have, made every lone setup patch the kernel).
    eprintln!("[bench] vnet C ABI and floor with another bridge table on the node ...");
    let keeper = Pods::new("keys", 1);
    in_ns(&keeper.path(0), || {
        Nft::open()
            .expect("nf_tables socket")
            .install("vnet", &["eth0".to_string()])
            .expect("keeper table")
    });
    let keys_on = c_cycles(&path, CONFIGS[0].1, o.n, 3, After::Settled);
    let fl_keys = floor::run(&path, o.n, false, After::Settled);
    drop(keeper);
    assert_eq!(pods.dump(0), before, "pod namespace not restored (keys on)");
    let keys_rows = vnet_and_floor(
        "another VM's table on the node",
        &keys_on,
        "kernel floor, another VM's table on the node",
        &fl_keys,
    );

    let mut go = (None, None);
    if let Some(a) = &o.anchors {
        println!("### Baselines (output as printed)\n");
        if let Some(b) = baselines::shell(a, o.shell_n) {
            rows.push((
                "shell: iproute2 + ebtables (anchors/shell/bench.sh)".into(),
                b,
            ));
        }
        if let Some(b) = baselines::shell_floor(a, o.n.min(30)) {
            rows.push((
                "ip -batch + nft -f, empty process subtracted (anchors/shell/floor.sh)".into(),
                b,
            ));
        }
        go = baselines::go(a, &o.work, o.go_n);
        if let Some(b) = &go.0 {
            rows.push((
                "Go seed-equivalent (netlink + ebtables execs)".into(),
                b.clone(),
            ));
        }
        if let Some(b) = &go.1 {
            rows.push(("Go without the ebtables execs".into(), b.clone()));
        }
    } else {
        println!("> ../shared/anchors not found: shell and Go baselines skipped.\n");
    }

    // The same rounds without waiting for the kernel to free the last
    // round's links before the next setup (see `fixture::After`).
    eprintln!("[bench] vnet C ABI and floor, each setup at once after the previous teardown ...");
    let at_once = c_cycles(&path, CONFIGS[0].1, o.n, 3, After::AtOnce);
    let fl_at_once = floor::rounds(&path, 0, 0, o.n, false, fixture::VM_RUNS, After::AtOnce);
    assert_eq!(pods.dump(0), before, "pod namespace not restored (at once)");
    let at_once_rows = vnet_and_floor(
        "each setup at once after the previous teardown (kernel still freeing)",
        &at_once,
        "kernel floor, each setup at once after the previous until-gone teardown",
        &fl_at_once,
    );

    let extra_pairs = [
        (
            keys_rows[0].clone(),
            "kernel floor, another VM's table on the node",
            keys_rows[1].1.clone(),
        ),
        (
            at_once_rows[0].clone(),
            "kernel floor, setup at once",
            at_once_rows[1].1.clone(),
        ),
    ];
    rows.extend(keys_rows);
    rows.extend(at_once_rows);

    println!("### Summary (µs)\n");
    let mut t = Table::new(&[
        "job",
        "setup p50",
        "setup p90",
        "teardown p50",
        "teardown p90",
        "sum p50",
        "sum p90",
        "CPU setup p50",
        "CPU teardown p50",
    ]);
    let cell = |b: &Baseline, k: &str, p90: bool| {
        b.get(k)
            .map(|p| us(if p90 { p.p90 } else { p.median }))
            .unwrap_or_else(|| "-".into())
    };
    for (name, b) in &rows {
        t.row(vec![
            name.clone(),
            cell(b, "setup", false),
            cell(b, "setup", true),
            cell(b, "teardown", false),
            cell(b, "teardown", true),
            cell(b, "setup+teardown", false),
            cell(b, "setup+teardown", true),
            cell(b, "setup cpu", false),
            cell(b, "teardown cpu", false),
        ]);
    }
    t.print();

    println!("### Ratios (vnet median / baseline median; < 1 means vnet is faster)\n");
    let mut t = Table::new(&[
        "vnet",
        "against",
        "setup",
        "teardown",
        "sum",
        "CPU setup",
        "CPU teardown",
    ]);
    let m = |b: &Baseline, k: &str| b.get(k).map_or(f64::NAN, |p| p.median);
    let floor_row = rows[2].1.clone();
    let mut against: Vec<(&str, Baseline)> = vec![
        ("kernel floor", floor_row),
        ("kernel floor, until freed", rows[3].1.clone()),
    ];
    if let Some(b) = &go.0 {
        against.push(("Go seed-equivalent", b.clone()));
    }
    if let Some(b) = &go.1 {
        against.push(("Go no-ebtables", b.clone()));
    }
    if let Some((_, b)) = rows.iter().find(|(n, _)| n.starts_with("shell")) {
        against.push(("shell", b.clone()));
    }
    let pairs = rows
        .iter()
        .take(2)
        .flat_map(|(vn, v)| against.iter().map(move |(an, a)| (vn, v, *an, a)))
        .chain(extra_pairs.iter().map(|((vn, v), an, a)| (vn, v, *an, a)));
    for (vname, v, aname, a) in pairs {
        {
            t.row(vec![
                vname.clone(),
                aname.to_string(),
                ratio(m(v, "setup"), m(a, "setup")),
                ratio(m(v, "teardown"), m(a, "teardown")),
                ratio(m(v, "setup+teardown"), m(a, "setup+teardown")),
                ratio(m(v, "setup cpu"), m(a, "setup cpu")),
                ratio(m(v, "teardown cpu"), m(a, "teardown cpu")),
            ]);
        }
    }
    t.print();

    println!("### Where vnet's time goes (safe API, `Network::timings()`)\n");
    for dhcp in [false, true] {
        let (ss, ts, st, tt) = breakdown(&path, dhcp, o.n);
        let tag = if dhcp { "dhcp on" } else { "dhcp off" };
        steps_table(&format!("**vnet setup, {tag}**"), &ss, &st);
        steps_table(&format!("**vnet teardown, {tag}**"), &ts, &tt);
    }
    assert_eq!(
        pods.dump(0),
        before,
        "pod namespace not restored (breakdown)"
    );
    steps_table(
        "**kernel floor setup** (dhcp off; the dhcp socket row is from a dhcp-on floor run)",
        &{
            let mut s = Steps(fl.setup_steps.0.clone());
            s.0.extend(
                fl_dhcp
                    .setup_steps
                    .0
                    .into_iter()
                    .filter(|(n, _)| n == "dhcp socket"),
            );
            s
        },
        &fl.setup,
    );
    steps_table(
        "**kernel floor teardown** (rounds until freed, serial then parallel, then rounds until gone from the namespace; total = until gone)",
        &fl.teardown_steps,
        &fl.teardown_gone,
    );

    fresh(o.n.min(30));
    first_summary(o.n.min(20));
    crate::overheads::run(&path, o.n.max(50));
}

/// `vnet-bench steps [N]`: the per-step tables only, both configs.
pub fn steps(n: usize) {
    let pods = Pods::new("steps", 1);
    // VNB_AB_DUAL=1: a dual-stack pod, so "dhcp on" serves IPv6 too.
    if std::env::var("VNB_AB_DUAL").is_ok_and(|v| v == "1") {
        pods.add_v6(0);
    }
    let path = pods.path(0);
    for dhcp in [false, true] {
        let _ = breakdown(&path, dhcp, 3);
        let (ss, ts, st, tt) = breakdown(&path, dhcp, n);
        let tag = if dhcp { "dhcp on" } else { "dhcp off" };
        steps_table(&format!("**vnet setup, {tag}**"), &ss, &st);
        steps_table(&format!("**vnet teardown, {tag}**"), &ts, &tt);
    }
}

/// `vnet-bench probe [N]`: C ABI and safe API setup/teardown medians only,
/// both configs, alternating, for a fast look after a library change.
pub fn probe(n: usize) {
    let pods = Pods::new("probe", 1);
    let path = pods.path(0);
    let mut t = Table::new(&[
        "how",
        "setup p50",
        "setup p90",
        "teardown p50",
        "teardown p90",
    ]);
    for (name, cfg) in CONFIGS {
        let r = c_cycles(&path, cfg, n, 3, After::Settled);
        t.row(vec![
            format!("C ABI, {name}"),
            us(r.setup.median()),
            us(r.setup.p90()),
            us(r.teardown.median()),
            us(r.teardown.p90()),
        ]);
        let (_, _, s, td) = breakdown(&path, cfg.is_none(), n);
        t.row(vec![
            format!("safe API, {name}"),
            us(s.median()),
            us(s.p90()),
            us(td.median()),
            us(td.p90()),
        ]);
    }
    let f = floor::run(&path, n, false, After::Settled);
    let rows = [
        ("kernel floor (until gone)", &f.teardown_gone),
        (
            "kernel floor, until freed (‖ deletes)",
            &f.teardown_parallel,
        ),
        (
            "kernel floor, until freed, deletes in series",
            &f.teardown_serial,
        ),
    ];
    for (i, (name, td)) in rows.into_iter().enumerate() {
        let (a, b) = if i == 0 {
            (us(f.setup.median()), us(f.setup.p90()))
        } else {
            (String::new(), String::new())
        };
        t.row(vec![name.into(), a, b, us(td.median()), us(td.p90())]);
    }
    t.print();
}

/// `vnet-bench first [N]`: the first setup in a fresh process and a fresh
/// pod namespace, per step: what a launcher that runs one VM per process
/// (and so loads vnet once per pod) meets.
pub fn first(n: usize) {
    for dhcp in [false, true] {
        let (steps, total) = first_runs(n, dhcp);
        let tag = if dhcp { "dhcp on" } else { "dhcp off" };
        steps_table(
            &format!("**vnet setup, {tag}, first call in a fresh process**"),
            &steps,
            &total,
        );
    }
}

/// The summary of [`first`] for the full run.
pub fn first_summary(n: usize) {
    println!("### First setup in a fresh process (one VM per launcher process)\n");
    println!(
        "Each round makes a new pod namespace and a new process (this benchmark's binary) \
         whose one setup is the library's first call in it, then tears down; n={n} \
         processes per row. Per step: `vnet-bench first`.\n"
    );
    let mut t = Table::new(&["setup", "median µs", "p90 µs"]);
    for dhcp in [false, true] {
        let (_, total) = first_runs(n, dhcp);
        t.row(vec![
            format!("vnet safe API, dhcp {}", if dhcp { "on" } else { "off" }),
            us(total.median()),
            us(total.p90()),
        ]);
    }
    t.print();
}

/// `n` rounds of `vnet-bench first-child`, each in a new process and pod.
fn first_runs(n: usize, dhcp: bool) -> (Steps, Samples) {
    let mut steps = Steps::default();
    let mut total = Samples::default();
    for _ in 0..n {
        let p = Pods::new("first", 1);
        let out = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(["first-child", &p.path(0), if dhcp { "1" } else { "0" }])
            .output()
            .expect("first-child");
        assert!(
            out.status.success(),
            "first-child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((name, v)) = line.split_once('\t') else {
                continue;
            };
            let d = Duration::from_nanos(v.parse().expect("nanoseconds"));
            if name == "total" {
                total.push(d);
                continue;
            }
            steps.push(name, d);
        }
    }
    (steps, total)
}

/// The child of [`first`]: one setup in `path`, its steps on stdout
/// (`name\tnanoseconds`), then teardown.
pub fn first_child(path: &str, dhcp: bool) {
    let cfg = vnet::Config {
        dhcp,
        ..vnet::Config::default()
    };
    let (mut net, steps, total) = timed_setup(path, &cfg);
    for (name, d) in steps {
        println!("{name}\t{}", d.as_nanos());
    }
    println!("total\t{}", total.as_nanos());
    net.teardown().expect("Network::teardown");
}
