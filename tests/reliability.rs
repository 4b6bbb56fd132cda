//! Issue 4: transactions under injected faults, teardown of a namespace that
//! changed meanwhile, crash recovery with a killed process, and concurrency.

mod common;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::*;
use vnet::{Config, Error, Mode, Network};

/// A config for `mode`, otherwise the defaults.
fn in_mode(mode: Mode) -> Config {
    Config {
        mode,
        ..Config::default()
    }
}

/// What a leftover list names first in `mode`: the first link setup makes.
fn first_link(mode: Mode) -> &'static str {
    match mode {
        Mode::Bridge => "br0",
        Mode::Redirect => "tap0",
    }
}

/// Fewest steps a whole setup of the test pod takes in `mode` (a walk
/// that ends sooner stopped early): redirect mode makes no bridge.
#[cfg(feature = "fault-injection")]
fn min_steps(mode: Mode) -> usize {
    match mode {
        Mode::Bridge => 11,
        Mode::Redirect => 10,
    }
}

/// Each test below runs in both modes: `name` for bridge mode,
/// `name_redirect` for redirect mode.
macro_rules! both_modes {
    ($(#[$m:meta])* $name:ident, $redirect:ident) => {
        $(#[$m])*
        #[test]
        fn $name() {
            body::$name(Mode::Bridge)
        }
        $(#[$m])*
        #[test]
        fn $redirect() {
            body::$name(Mode::Redirect)
        }
    };
}

fn write_frame(net: &Network, frame: &[u8]) {
    let fd = net.tap_fd(0, 0).expect("tap fd").as_raw_fd();
    // SAFETY: writing a byte buffer to an open fd.
    let n = unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
    assert_eq!(
        n,
        frame.len() as isize,
        "write to tap: {}",
        std::io::Error::last_os_error()
    );
}

/// Frames written on the TAP cross br0 and the veth to the host side: the
/// very frames, matched byte for byte there (background traffic such as the
/// MLD reports sent when the pod's addresses go does not count).
fn assert_frames_cross(p: &Pod, net: &Network) {
    let host = HostSide::open(p, p.host_if);
    let frame = frames::arp_request(
        [0x42, 0xa4, 0xa6, 0x22, 0x80, 0x2e],
        [10, 1, 90, 5],
        [10, 1, 90, 1],
    );
    for _ in 0..5 {
        write_frame(net, &frame);
    }
    let mut seen = 0;
    let all = host.receive(Duration::from_secs(2), |f| {
        // The veth may pad a short frame to 60 bytes on the way.
        seen += usize::from(f.get(..frame.len()) == Some(&frame[..]));
        seen == 5
    });
    assert!(all, "{seen} of 5 frames reached the host side");
}

both_modes!(
    #[cfg(feature = "fault-injection")]
    every_fault_point_rolls_back,
    every_fault_point_rolls_back_redirect
);

mod body {
    use super::*;

    #[cfg(feature = "fault-injection")]
    pub fn every_fault_point_rolls_back(mode: Mode) {
        if !need_root() {
            return;
        }
        let _serial = serial();
        type Make = fn(&str) -> Pod;
        let mut scenarios: Vec<(&str, Make, u32, bool)> = vec![
            ("v4", Pod::ipv4, 1, false),
            ("ds", Pod::dual_stack, 1, false),
            ("two", Pod::two_interfaces, 1, true),
            ("mq", Pod::ipv4, 4, false),
        ];
        if mode == Mode::Redirect {
            scenarios.push(("mvb", Pod::macvlan_bridge, 1, false));
            scenarios.push(("mvp", Pod::macvlan_private, 2, false));
        }
        let mut points = 0;
        for (tag, make, queues, cni) in scenarios {
            let p = make(tag);
            let base = Config {
                mode,
                queues,
                cni_result: cni.then(|| serde_json::from_str(&p.two_interfaces_cni()).unwrap()),
                ..Config::default()
            };
            let before = p.dump();
            let (fds, threads) = (fd_count(), thread_count());
            for k in 0.. {
                let cfg = Config {
                    fail_at_step: Some(k),
                    ..base.clone()
                };
                match Network::setup(&p.path, &cfg) {
                    Err(Error::Internal(m)) if m.contains("injected fault") => {
                        points += 1;
                        assert_same(&before, &p.dump());
                        assert_eq!(fd_count(), fds, "{tag}: fd leaked after fault at step {k}");
                        assert_eq!(
                            settle_threads(threads),
                            threads,
                            "{tag}: thread left after fault at {k}"
                        );
                    }
                    Err(e) => panic!("{tag}: step {k}: unexpected error {e}"),
                    Ok(mut net) => {
                        assert!(k >= min_steps(mode), "{tag}: only {k} steps?");
                        assert_frames_cross(&p, &net);
                        net.teardown().unwrap();
                        drop(net);
                        assert_same(&before, &p.dump());
                        break;
                    }
                }
            }
        }
        println!("fault points exercised ({mode:?}): {points}");
    }

    pub fn teardown_after_tap_removed_and_address_restored(mode: Mode) {
        if !need_root() {
            return;
        }
        let _serial = serial();
        let p = Pod::ipv4("chg");
        let before = p.dump();
        let mut net = Network::setup(&p.path, &in_mode(mode)).unwrap();
        p.ip_pod(&["link", "del", "tap0"]);
        p.ip_pod(&["addr", "add", "10.1.90.5/24", "dev", "eth0"]);
        net.teardown().expect("teardown of a changed namespace");
        assert_same(&before, &p.dump());
        // Twice is harmless.
        net.teardown().expect("second teardown");
        assert_same(&before, &p.dump());
    }

    pub fn teardown_after_veth_renamed(mode: Mode) {
        if !need_root() {
            return;
        }
        let _serial = serial();
        let p = Pod::ipv4("ren");
        let mut net = Network::setup(&p.path, &in_mode(mode)).unwrap();
        p.ip_pod(&["link", "set", "eth0", "down"]);
        p.ip_pod(&["link", "set", "eth0", "name", "pod0"]);
        p.ip_pod(&["link", "set", "pod0", "up"]);
        net.teardown().expect("teardown");
        let addr = p.ip_pod(&["addr", "show", "pod0"]);
        assert!(
            addr.contains("10.1.90.5/24") && addr.contains(POD_MAC),
            "{addr}"
        );
        let routes = p.ip_pod(&["route", "show"]);
        assert!(
            routes.contains("default via 10.1.90.1 dev pod0"),
            "{routes}"
        );
        let links = p.ip_pod(&["link", "show"]);
        assert!(!links.contains("br0") && !links.contains("tap0"), "{links}");
    }

    pub fn teardown_reports_what_it_could_not_do(mode: Mode) {
        if !need_root() {
            return;
        }
        let _serial = serial();
        let p = Pod::ipv4("gone");
        let mut net = Network::setup(&p.path, &in_mode(mode)).unwrap();
        // The pod's veth disappears (its peer is deleted on the host side).
        p.ip_host(&["link", "del", "veth0"]);
        let err = net.teardown().expect_err("nothing to restore the pod onto");
        let msg = err.to_string();
        assert!(matches!(err, Error::Incomplete(_)), "{msg}");
        // Bridge mode changed the veth's MAC first; redirect mode left it.
        let first = match mode {
            Mode::Bridge => "restore MAC",
            Mode::Redirect => "restore address",
        };
        assert!(
            msg.contains(first) && msg.contains("No such device"),
            "{msg}"
        );
        // What could be done was done.
        let links = p.ip_pod(&["link", "show"]);
        assert!(!links.contains("br0") && !links.contains("tap0"), "{links}");
        assert!(!sh(&["ip", "netns", "exec", &p.pod, "nft", "list", "ruleset"]).contains("vnet"));
    }

    /// Run in a child process by `recover_after_sigkill`: set up, save the
    /// result JSON, then wait to be killed.
    #[test]
    fn child_setup_then_wait() {
        let (Ok(path), Ok(state)) = (
            std::env::var("VNET_CHILD_NETNS"),
            std::env::var("VNET_CHILD_STATE"),
        ) else {
            return;
        };
        let net = Network::setup(&path, &in_mode(child_mode())).unwrap();
        let tmp = format!("{state}.tmp");
        std::fs::write(&tmp, net.result_json().unwrap()).unwrap();
        std::fs::rename(&tmp, &state).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    }

    pub fn recover_after_sigkill(mode: Mode) {
        if !need_root() {
            return;
        }
        let _serial = serial();
        let p = Pod::ipv4("kill");
        let before = p.dump();
        let state = std::env::temp_dir().join(format!("vnet-state-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&state);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "body::child_setup_then_wait",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("VNET_CHILD_NETNS", &p.path)
            .env("VNET_CHILD_STATE", &state)
            .env("VNET_CHILD_MODE", mode.as_str())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !state.exists() {
            assert!(Instant::now() < deadline, "child did not set up");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let json = std::fs::read_to_string(&state).unwrap();
        let _ = std::fs::remove_file(&state);

        // A fresh setup refuses the half-owned namespace.
        match Network::setup(&p.path, &in_mode(mode)) {
            Err(Error::Leftovers(m)) => assert!(m.contains(first_link(mode)), "{m}"),
            Err(e) => panic!("expected leftovers, got {e}"),
            Ok(_) => panic!("setup over leftovers succeeded"),
        }

        let mut net = Network::recover(&p.path, &json).expect("recover");
        assert_frames_cross(&p, &net);
        // DHCP is served again: a DISCOVER written on the TAP gets an OFFER back.
        let mac = [0x42, 0xa4, 0xa6, 0x22, 0x80, 0x2e];
        write_frame(&net, &frames::dhcp_discover(mac, 0x5eed).unwrap());
        let fd = net.tap_fd(0, 0).unwrap().as_raw_fd();
        let offer = read_tap_until(fd, 5, |f| frames::dhcp_offer(f, 0x5eed))
            .expect("no DHCPOFFER after recover");
        assert!(
            offer.contains("10.1.90.5") && offer.contains("router 10.1.90.1"),
            "{offer}"
        );
        net.teardown().expect("teardown after recover");
        assert_same(&before, &p.dump());
    }

    pub fn concurrent_pods(mode: Mode) {
        if !need_root() {
            return;
        }
        let _serial = serial();
        const PODS: usize = 32;
        const ROUNDS: usize = 20;
        let pods: Vec<Pod> = (0..PODS).map(|_| Pod::ipv4("cc")).collect();
        let befores: Vec<_> = pods.iter().map(|p| p.dump()).collect();
        let (fds, threads) = (fd_count(), thread_count());
        std::thread::scope(|s| {
            for p in &pods {
                s.spawn(move || {
                    for _ in 0..ROUNDS {
                        let mut net = Network::setup(&p.path, &in_mode(mode)).expect("setup");
                        assert_frames_cross(p, &net);
                        net.teardown().expect("teardown");
                    }
                });
            }
        });
        for (p, b) in pods.iter().zip(&befores) {
            assert_same(b, &p.dump());
        }
        // Teardown returns before the kernel has freed the links; the threads
        // waiting on that hold sockets until it has.
        assert_eq!(settle_threads(threads), threads, "threads left");
        assert_eq!(fd_count(), fds, "fds leaked");
        println!("concurrency ({mode:?}): {PODS} pods x {ROUNDS} rounds");
    }

    /// Run in a child process by `kill_during_setup_is_detected`: start a setup
    /// that stops before step k and wait there to be killed.
    #[cfg(feature = "fault-injection")]
    #[test]
    fn child_setup_hangs() {
        let (Ok(path), Ok(k)) = (
            std::env::var("VNET_CHILD_NETNS"),
            std::env::var("VNET_CHILD_HANG"),
        ) else {
            return;
        };
        let cfg = Config {
            hang_at_step: Some(k.parse().unwrap()),
            ..in_mode(child_mode())
        };
        // Reached only when k is past the last step: setup must have worked,
        // and the parent sees that in the exit status and the state file.
        let mut net = Network::setup(&path, &cfg).expect("setup past the last hang point");
        let state = std::env::var("VNET_CHILD_STATE").unwrap();
        std::fs::write(&state, net.result_json().unwrap()).unwrap();
        net.teardown().expect("teardown in the child");
    }

    /// A launcher killed between any two steps of setup leaves a namespace that
    /// the next setup refuses as leftovers, never one it takes for a pod.
    #[cfg(feature = "fault-injection")]
    pub fn kill_during_setup_is_detected(mode: Mode) {
        if !need_root() {
            return;
        }
        let _serial = serial();
        let mut killed_at = 0;
        let state = std::env::temp_dir().join(format!("vnet-hang-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&state);
        for k in 0.. {
            let p = Pod::ipv4("half");
            let before = p.dump();
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "body::child_setup_hangs",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("VNET_CHILD_NETNS", &p.path)
                .env("VNET_CHILD_HANG", k.to_string())
                .env("VNET_CHILD_STATE", &state)
                .env("VNET_CHILD_MODE", mode.as_str())
                .spawn()
                .unwrap();
            // Wait until the child is parked at step k (or finished: k is past the end).
            let deadline = Instant::now() + Duration::from_secs(10);
            let finished = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                let parked = std::fs::read_dir(format!("/proc/{}/task", child.id()))
                    .map(|d| {
                        d.flatten().any(|t| {
                            std::fs::read_to_string(t.path().join("comm"))
                                .is_ok_and(|c| c.trim() == "vnet-hang")
                                && std::fs::read_to_string(t.path().join("wchan"))
                                    .is_ok_and(|w| w.contains("futex"))
                        })
                    })
                    .unwrap_or(false);
                if parked {
                    break None;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("child never reached step {k}");
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            if let Some(status) = finished {
                // Only a child past the last step may finish, and then with a
                // whole setup (and teardown) behind it: an early error or panic
                // must not end the sweep as if it had.
                assert!(status.success(), "child at step {k} exited with {status}");
                let json = std::fs::read_to_string(&state).expect("child finished without a setup");
                let _ = std::fs::remove_file(&state);
                assert!(json.contains("\"tap0\""), "{json}");
                assert_same(&before, &p.dump());
                break;
            }
            child.kill().unwrap();
            child.wait().unwrap();
            killed_at += 1;
            match Network::setup(&p.path, &in_mode(mode)) {
                Ok(mut net) => {
                    // Only a kill before the first step may leave the namespace usable.
                    assert_eq!(k, 0, "setup over a namespace killed at step {k} succeeded");
                    net.teardown().unwrap();
                    assert_same(&before, &p.dump());
                }
                Err(Error::Leftovers(m)) => {
                    assert!(k > 0 && m.contains(first_link(mode)), "step {k}: {m}")
                }
                Err(e) => panic!("step {k}: expected leftovers, got {e}"),
            }
        }
        assert!(killed_at >= min_steps(mode), "only {killed_at} kill points");
        println!("kill points exercised ({mode:?}): {killed_at}");
    }
}

/// The mode a child process was started for.
fn child_mode() -> Mode {
    match std::env::var("VNET_CHILD_MODE").as_deref() {
        Ok("redirect") => Mode::Redirect,
        _ => Mode::Bridge,
    }
}

both_modes!(
    teardown_after_tap_removed_and_address_restored,
    teardown_after_tap_removed_and_address_restored_redirect
);
both_modes!(
    teardown_after_veth_renamed,
    teardown_after_veth_renamed_redirect
);
both_modes!(
    teardown_reports_what_it_could_not_do,
    teardown_reports_what_it_could_not_do_redirect
);
both_modes!(recover_after_sigkill, recover_after_sigkill_redirect);
both_modes!(concurrent_pods, concurrent_pods_redirect);
both_modes!(
    #[cfg(feature = "fault-injection")]
    kill_during_setup_is_detected,
    kill_during_setup_is_detected_redirect
);
