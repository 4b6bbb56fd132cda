//! The building blocks vnet pays per call outside the kernel's own work,
//! each timed alone, so the "not in the journal" rows can be explained:
//! a netns thread, a tokio runtime, an rtnetlink connection, one request
//! through rtnetlink versus the same request on a bare socket.

use std::time::Instant;

use vnet::netlink::Netlink;
use vnet::netns::Netns;

use crate::fixture::in_ns;
use crate::rawnl::{self, Msg, Rtnl};
use crate::stats::{us, Samples, Table};

fn time(n: usize, mut f: impl FnMut()) -> Samples {
    let mut s = Samples::default();
    for _ in 0..n {
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
        "tokio current-thread runtime (enable_io) build + drop",
        time(n, || drop(runtime())),
    ));
    let inner: Vec<(&'static str, Samples)> = in_ns(path, || {
        let mut v = Vec::new();
        let rt = runtime();
        v.push((
            "rtnetlink: Netlink::open (socket + connection task)",
            time(n, || {
                rt.block_on(async { drop(Netlink::open().unwrap()) });
            }),
        ));
        let lo = rawnl::index_of("lo").unwrap();
        let (rtnl_req, rtnl_dump) = rt.block_on(async {
            let mut nl = Netlink::open().unwrap();
            let mut req = Samples::default();
            let mut dump = Samples::default();
            for _ in 0..n {
                let t = Instant::now();
                nl.set_up(lo, true).await.unwrap();
                req.push(t.elapsed());
                let t = Instant::now();
                nl.links().await.unwrap();
                dump.push(t.elapsed());
            }
            (req, dump)
        });
        v.push(("rtnetlink: one request + ack (set lo up)", rtnl_req));
        v.push(("rtnetlink: link dump", rtnl_dump));
        let mut raw = Rtnl::open().unwrap();
        v.push((
            "bare socket: one request + ack (set lo up)",
            time(n, || {
                raw.req(rawnl::RTM_SETLINK, 0, &Msg::link(lo, true))
                    .unwrap()
            }),
        ));
        v.push((
            "bare socket: link dump",
            time(n, || {
                raw.dump(rawnl::RTM_GETLINK, &Msg::link(0, false)).unwrap();
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
    let mut t = Table::new(&["block", "median µs", "p90 µs"]);
    for (name, s) in &rows {
        t.row(vec![name.to_string(), us(s.median()), us(s.p90())]);
    }
    t.print();
}
