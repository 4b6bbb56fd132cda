//! Scale: many pods, set up (and torn down) one after another and from a
//! thread pool. The fixture is built before the clock starts.

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::control::{c_setup, c_teardown, Handle};
use crate::fixture::Pods;
use crate::floor;
use crate::stats::{us, Samples, Table};

/// Run `f` on every item from `threads` workers; per-item latency + wall.
fn pool<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    f: impl Fn(T) -> (R, Duration) + Sync,
) -> (Vec<R>, Samples, Duration) {
    let queue = Mutex::new(items.into_iter().collect::<VecDeque<T>>());
    let out = Mutex::new((Vec::new(), Samples::default()));
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let Some(item) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let (r, d) = f(item);
                let mut o = out.lock().unwrap();
                o.0.push(r);
                o.1.push(d);
            });
        }
    });
    let wall = t0.elapsed();
    let (r, s) = out.into_inner().unwrap();
    (r, s, wall)
}

pub fn run(sizes: &[usize], threads: &[usize], cfg: Option<&CStr>, cfg_name: &str) {
    println!("## 2. Scale\n");
    println!(
        "Config: {cfg_name}. Each pod is its own namespace (peers in one shared host namespace). \
         Per-pod latency of each vnet_setup / vnet_teardown call (µs) and pods per second \
         (pods / wall time of the whole batch). All pods are set up, then all torn down, \
         with the same number of threads.\n"
    );
    let mut t = Table::new(&[
        "pods",
        "threads",
        "setup p50",
        "setup p90",
        "setup pods/s",
        "teardown p50",
        "teardown p90",
        "teardown pods/s",
    ]);
    let mut floor_rows = Vec::new();
    for &n in sizes {
        eprintln!("[bench] scale: building {n} pods ...");
        let pods = Pods::new(&format!("sc{n}"), n);
        let before = pods.dump(0);
        let paths: Vec<CString> = (0..n)
            .map(|i| CString::new(pods.path(i)).unwrap())
            .collect();
        let mut counts: Vec<usize> = vec![1];
        counts.extend(threads.iter().copied().filter(|&k| k > 1 && k <= n));
        for &k in &counts {
            eprintln!("[bench] scale: {n} pods, {k} threads ...");
            let (handles, s, sw) = pool(paths.iter().collect(), k, |p| {
                let t = Instant::now();
                let h = c_setup(p, cfg);
                (h, t.elapsed())
            });
            let (_, td, tw) = pool(handles, k, |h: Handle| ((), c_teardown(h)));
            let rate = |w: Duration| format!("{:.0}", n as f64 / w.as_secs_f64());
            t.row(vec![
                n.to_string(),
                k.to_string(),
                us(s.median()),
                us(s.p90()),
                rate(sw),
                us(td.median()),
                us(td.p90()),
                rate(tw),
            ]);
        }
        assert_eq!(pods.dump(0), before, "pod 0 of {n} not restored");
        if n > 1 {
            for &k in &counts {
                eprintln!("[bench] scale: kernel floor, {n} pods, {k} threads ...");
                let (_, cyc, w) = pool(pods.pods.iter().enumerate().collect(), k, |(i, _)| {
                    let f = floor::rounds(
                        &pods.path(i),
                        0,
                        0,
                        1,
                        false,
                        Duration::ZERO,
                        crate::fixture::After::AtOnce,
                    );
                    let (s, td) = (f.setup.median(), f.teardown_gone.median());
                    ((s, td), Duration::from_secs_f64((s + td) / 1e6))
                });
                floor_rows.push((n, k, cyc, n as f64 / w.as_secs_f64()));
            }
            assert_eq!(pods.dump(0), before, "pod 0 of {n} not restored (floor)");
        }
    }
    t.print();
    println!(
        "Kernel floor at scale (dhcp off): each worker enters a pod, sends the same requests as \
         vnet on bare sockets, then tears down at once (table, then the link group, returning once the links are out of the namespace, as vnet). Latency of one \
         pod's setup + teardown, and pods/s for whole cycles.\n"
    );
    let mut t = Table::new(&[
        "pods",
        "threads",
        "cycle p50 µs",
        "cycle p90 µs",
        "cycles/s",
    ]);
    for (n, k, s, r) in floor_rows {
        t.row(vec![
            n.to_string(),
            k.to_string(),
            us(s.median()),
            us(s.p90()),
            format!("{r:.0}"),
        ]);
    }
    t.print();
}
