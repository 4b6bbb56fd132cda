//! Every descriptor vnet holds while a network is set up is close-on-exec:
//! a launcher that forks and execs QEMU hands it the TAP fds it chooses and
//! none of ours (control sockets, DHCP sockets, the DHCP runtime's epoll).
//! One test in its own process, so no other test opens fds meanwhile.

mod common;

use std::collections::BTreeSet;

use common::*;
use vnet::{Config, Network};

fn open_fds() -> BTreeSet<i32> {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    // Without the listing's own descriptor, closed by now.
    // SAFETY: F_GETFD on a descriptor number; no memory involved.
    listed
        .into_iter()
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect()
}

fn target(fd: i32) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into())
}

#[test]
fn every_descriptor_held_is_close_on_exec() {
    if !need_root() {
        return;
    }
    let p = Pod::ipv4("cloexec");
    let cfg = Config {
        queues: 2,
        ..Config::default()
    };
    let (before, threads) = (open_fds(), thread_count());
    let mut net = Network::setup(&p.path, &cfg).expect("setup");
    let held: Vec<i32> = open_fds().difference(&before).copied().collect();
    // The namespace, 2 TAP queues, 2 control sockets, 2 DHCP sockets, the
    // DHCP runtime's own.
    assert!(held.len() >= 7, "only {held:?} opened");
    let leaky: Vec<String> = held
        .iter()
        .filter(|&&fd| {
            // SAFETY: F_GETFD on a descriptor number; no memory involved.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .map(|&fd| format!("{fd} -> {}", target(fd)))
        .collect();
    assert!(leaky.is_empty(), "not close-on-exec: {leaky:?}");
    net.teardown().expect("teardown");
    drop(net);
    // The thread that waits for the kernel to free the deleted links holds
    // the deletion's sockets until then.
    assert_eq!(settle_threads(threads), threads, "threads left");
    let left: Vec<String> = open_fds()
        .difference(&before)
        .map(|&fd| format!("{fd} -> {}", target(fd)))
        .collect();
    assert!(
        left.is_empty(),
        "still open after teardown and drop: {left:?}"
    );
}
