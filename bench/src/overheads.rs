//! The building blocks vnet pays per call outside the kernel's own work,
//! each timed alone, so the "not in the journal" rows can be explained:
//! a netns thread, a netlink socket, one request through vnet's typed
//! wrapper versus the same request on a bare socket, warm and cold.

use std::time::Instant;

use vnet::netlink::Netlink;
use vnet::netns::Netns;

use crate::fixture::in_ns;
use crate::rawnl::{self, Msg, Rtnl};
use crate::stats::{us, Samples, Table};

/// Idle time before each sample when measuring cold (0 = back to back).
static IDLE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn time(n: usize, mut f: impl FnMut()) -> Samples {
    let mut s = Samples::default();
    let idle = IDLE_MS.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..n {
        if idle > 0 {
            std::thread::sleep(std::time::Duration::from_millis(idle));
        }
        let t = Instant::now();
        f();
        s.push(t.elapsed());
    }
    s
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime")
}

pub fn run(path: &str, n: usize) {
    println!("### Building blocks (each alone, n={n}, µs)\n");
    println!(
        "'warm' = back to back; 'cold' = after 40 ms idle, as after a teardown (the vCPUs halt).\n"
    );
    let warm = rows(path, n);
    IDLE_MS.store(40, std::sync::atomic::Ordering::Relaxed);
    let cold = rows(path, n);
    IDLE_MS.store(0, std::sync::atomic::Ordering::Relaxed);
    let mut t = Table::new(&[
        "block",
        "warm median µs",
        "warm p90 µs",
        "cold median µs",
        "cold p90 µs",
    ]);
    for ((name, w), (_, c)) in warm.iter().zip(&cold) {
        t.row(vec![
            name.to_string(),
            us(w.median()),
            us(w.p90()),
            us(c.median()),
            us(c.p90()),
        ]);
    }
    t.print();
}

fn rows(path: &str, n: usize) -> Vec<(&'static str, Samples)> {
    let mut rows: Vec<(&str, Samples)> = Vec::new();
    rows.push((
        "std thread spawn + join",
        time(n, || std::thread::spawn(|| ()).join().unwrap()),
    ));
    rows.push((
        "Netns::open + run(empty): open, thread, setns, join",
        time(n, || {
            Netns::open(path).unwrap().run(|| Ok(())).unwrap();
        }),
    ));
    rows.push((
        "tokio current-thread runtime (enable_io) build + drop (no longer on the setup path)",
        time(n, || drop(runtime())),
    ));
    let inner: Vec<(&'static str, Samples)> = in_ns(path, || {
        let mut v = Vec::new();
        v.push((
            "vnet Netlink::open",
            time(n, || drop(Netlink::open().unwrap())),
        ));
        let lo = rawnl::index_of("lo").unwrap();
        let (rtnl_req, rtnl_dump) = {
            let mut nl = Netlink::open().unwrap();
            let mut req = Samples::default();
            let mut dump = Samples::default();
            let idle = IDLE_MS.load(std::sync::atomic::Ordering::Relaxed);
            for _ in 0..n {
                if idle > 0 {
                    std::thread::sleep(std::time::Duration::from_millis(idle));
                }
                let t = Instant::now();
                nl.set_up(lo, true).unwrap();
                req.push(t.elapsed());
                let t = Instant::now();
                nl.links().unwrap();
                dump.push(t.elapsed());
            }
            (req, dump)
        };
        v.push(("vnet Netlink: one request + ack (set lo up)", rtnl_req));
        v.push(("vnet Netlink: link dump (parsed)", rtnl_dump));
        let mut raw = Rtnl::open().unwrap();
        if IDLE_MS.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            let full = raw.dump(rawnl::RTM_GETLINK, &Msg::link(0, false)).unwrap();
            let lean = raw
                .dump(rawnl::RTM_GETLINK, &Msg::link(0, false).u32(29, 1 << 3))
                .unwrap();
            println!(
                "Link dump of the pod namespace ({} links): {} bytes, {} without statistics.\n",
                full.0, full.1, lean.1
            );
        }
        v.push((
            "bare socket: one request + ack (set lo up)",
            time(n, || {
                raw.req(rawnl::RTM_SETLINK, 0, &Msg::link(lo, true))
                    .unwrap()
            }),
        ));
        v.push((
            "bare socket: link dump (no statistics, as vnet asks)",
            time(n, || {
                raw.dump(rawnl::RTM_GETLINK, &Msg::link(0, false).u32(29, 1 << 3))
                    .unwrap();
            }),
        ));
        v.push(("bare socket: open", time(n, || drop(Rtnl::open().unwrap()))));
        v.push((
            "Nft::open",
            time(n, || drop(vnet::filter::Nft::open().unwrap())),
        ));
        v
    });
    rows.extend(inner);
    rows
}
