//! The one shared fixture: a "pod" namespace and a "host" namespace joined
//! by a veth, built the way a CNI plugin would, deleted on drop (also on
//! panic). Tests may use `ip`/`nft` to build and inspect; the library never.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Tests that count the process's fds and threads must not overlap.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

pub const POD_MAC: &str = "42:a4:a6:22:80:2e";

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// An unmet precondition fails the test, so a run without it is never
/// green by accident; only an explicit `VNET_TEST_SKIP=1` skips, and says
/// so. Returns whether the test may go on.
pub fn precondition(met: bool, what: &str) -> bool {
    if met {
        return true;
    }
    let t = std::thread::current();
    let test = t.name().unwrap_or("this test");
    if std::env::var("VNET_TEST_SKIP").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: needs {what} (VNET_TEST_SKIP=1)");
        return false;
    }
    panic!("{test} needs {what}; set VNET_TEST_SKIP=1 to skip it");
}

/// Root, for namespaces (see [`precondition`]).
pub fn need_root() -> bool {
    precondition(is_root(), "root")
}

/// A pod namespace and its host peer namespace.
pub struct Pod {
    pub pod: String,
    pub host: String,
    pub path: String,
    /// The host-namespace link that sees what the pod interface sends
    /// (the veth's peer, or a macvlan pod's neighbour or master's peer).
    pub host_if: &'static str,
}

impl Pod {
    /// Two empty namespaces with unique names.
    pub fn empty(tag: &str) -> Pod {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = std::process::id();
        let pod = format!("vnt-{tag}-{id}-{n}");
        let host = format!("vnth-{id}-{n}");
        let p = Pod {
            path: format!("/var/run/netns/{pod}"),
            pod,
            host,
            host_if: "veth0",
        };
        sh(&["ip", "netns", "add", &p.pod]);
        sh(&["ip", "netns", "add", &p.host]);
        p.ip_pod(&["link", "set", "lo", "up"]);
        p
    }

    pub fn ip_pod(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.pod];
        v.extend_from_slice(args);
        sh(&v)
    }

    pub fn ip_host(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.host];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// A veth `pod_if` (in the pod, with `mac`, `mtu`) <-> `host_if`.
    pub fn veth(&self, pod_if: &str, host_if: &str, mac: &str, mtu: u32) {
        let m = mtu.to_string();
        self.ip_host(&[
            "link", "add", host_if, "mtu", &m, "type", "veth", "peer", "name", pod_if, "mtu", &m,
            "netns", &self.pod,
        ]);
        self.ip_host(&["link", "set", host_if, "up"]);
        self.ip_pod(&["link", "set", pod_if, "address", mac]);
        self.ip_pod(&["link", "set", pod_if, "up"]);
    }

    /// The classic pod: eth0 10.1.90.5/24, default via 10.1.90.1 (host side).
    pub fn ipv4(tag: &str) -> Pod {
        Self::ipv4_mtu(tag, 1500)
    }

    pub fn ipv4_mtu(tag: &str, mtu: u32) -> Pod {
        let p = Pod::empty(tag);
        p.veth("eth0", "veth0", POD_MAC, mtu);
        p.ip_host(&["addr", "add", "10.1.90.1/24", "dev", "veth0"]);
        p.ip_pod(&["addr", "add", "10.1.90.5/24", "dev", "eth0"]);
        p.ip_pod(&["route", "add", "default", "via", "10.1.90.1"]);
        p
    }

    /// The classic pod's addresses on a macvlan `eth0` (MAC `POD_MAC`) in
    /// `mode` (bridge, private, vepa), whose master `m0` is one end of a
    /// veth in the host namespace. Bridge mode: a neighbour macvlan `veth0`
    /// on the same master holds 10.1.90.1 and is `host_if`. Private and
    /// vepa: frames leave through the master, and its peer `m1` holds
    /// 10.1.90.1 and is `host_if`.
    pub fn macvlan(tag: &str, mode: &str) -> Pod {
        let mut p = Pod::empty(tag);
        p.ip_host(&["link", "add", "m0", "type", "veth", "peer", "name", "m1"]);
        p.ip_host(&["link", "set", "m0", "up"]);
        p.ip_host(&["link", "set", "m1", "up"]);
        p.ip_host(&[
            "link", "add", "eth0", "link", "m0", "address", POD_MAC, "type", "macvlan", "mode",
            mode,
        ]);
        p.ip_host(&["link", "set", "eth0", "netns", &p.pod]);
        let gw = if mode == "bridge" {
            p.ip_host(&[
                "link", "add", "veth0", "link", "m0", "type", "macvlan", "mode", "bridge",
            ]);
            p.ip_host(&["link", "set", "veth0", "up"]);
            "veth0"
        } else {
            "m1"
        };
        p.host_if = gw;
        p.ip_host(&["addr", "add", "10.1.90.1/24", "dev", gw]);
        p.ip_pod(&["link", "set", "eth0", "up"]);
        p.ip_pod(&["addr", "add", "10.1.90.5/24", "dev", "eth0"]);
        p.ip_pod(&["route", "add", "default", "via", "10.1.90.1"]);
        p
    }

    pub fn macvlan_bridge(tag: &str) -> Pod {
        Self::macvlan(tag, "bridge")
    }

    pub fn macvlan_private(tag: &str) -> Pod {
        Self::macvlan(tag, "private")
    }

    pub fn macvlan_vepa(tag: &str) -> Pod {
        Self::macvlan(tag, "vepa")
    }

    /// IPv4 + IPv6 (nodad so the dump is stable at once).
    pub fn dual_stack(tag: &str) -> Pod {
        let p = Pod::ipv4(tag);
        p.ip_host(&["addr", "add", "fd00:1::1/64", "dev", "veth0", "nodad"]);
        p.ip_pod(&["addr", "add", "fd00:1::5/64", "dev", "eth0", "nodad"]);
        p.ip_pod(&["-6", "route", "add", "default", "via", "fd00:1::1"]);
        p
    }

    /// IPv4 with extra static routes, one with a metric.
    pub fn extra_routes(tag: &str) -> Pod {
        let p = Pod::ipv4(tag);
        p.ip_pod(&["route", "add", "10.96.0.0/12", "via", "10.1.90.1"]);
        p.ip_pod(&[
            "route",
            "add",
            "192.168.77.0/24",
            "via",
            "10.1.90.1",
            "metric",
            "50",
        ]);
        p
    }

    /// Two interfaces: eth0 10.1.90.5/24 and net1 10.2.0.5/24.
    pub fn two_interfaces(tag: &str) -> Pod {
        let p = Pod::ipv4(tag);
        p.veth("net1", "veth1", "42:a4:a6:22:80:3f", 1500);
        p.ip_host(&["addr", "add", "10.2.0.1/24", "dev", "veth1"]);
        p.ip_pod(&["addr", "add", "10.2.0.5/24", "dev", "net1"]);
        p.ip_pod(&["route", "add", "10.20.0.0/16", "via", "10.2.0.1"]);
        p
    }

    /// A CNI 1.0.0 result naming eth0 and net1 of `two_interfaces`.
    pub fn two_interfaces_cni(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "veth0"},
                {"name": "eth0", "mac": POD_MAC, "sandbox": self.path},
                {"name": "net1", "mac": "42:a4:a6:22:80:3f", "sandbox": self.path}
            ],
            "ips": [
                {"address": "10.1.90.5/24", "gateway": "10.1.90.1", "interface": 1},
                {"address": "10.2.0.5/24", "gateway": "10.2.0.1", "interface": 2}
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.90.1"}],
            "dns": {"nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]}
        })
        .to_string()
    }

    /// Wait (bounded) for IPv6 duplicate address detection to finish: the
    /// kernel adds the local route of an address only after it.
    pub fn settle_dad(&self) {
        for _ in 0..400 {
            if self
                .ip_pod(&["-6", "addr", "show", "tentative"])
                .trim()
                .is_empty()
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Everything that setup may change, in a comparable form (what
    /// scripts/nsdump.sh holds): links, addresses, routes of every table and
    /// family, policy rules of both families, qdiscs, nf_tables rules.
    pub fn dump(&self) -> Value {
        self.settle_dad();
        let j = |args: &[&str]| -> Value {
            let mut v = vec!["ip", "-n", &self.pod, "-d", "-j"];
            v.extend_from_slice(args);
            let text = sh(&v);
            serde_json::from_str(if text.trim().is_empty() { "[]" } else { &text }).expect("ip -j")
        };
        let mut links = j(&["link", "show"]);
        scrub(
            &mut links,
            &[
                "stats",
                "stats64",
                "carrier_changes",
                "carrier_up_count",
                "carrier_down_count",
            ],
        );
        let mut addrs = j(&["addr", "show"]);
        // DAD state: the kernel clears "tentative" on its own a moment later.
        scrub(
            &mut addrs,
            &[
                "tentative",
                "stats",
                "stats64",
                "carrier_changes",
                "carrier_up_count",
                "carrier_down_count",
            ],
        );
        // Sorted, as scripts/nsdump.sh sorts them: the kernel lists routes
        // of one prefix on several links in the order they came.
        let sorted = |mut v: Value| {
            if let Value::Array(a) = &mut v {
                a.sort_by_key(|r| r.to_string());
            }
            v
        };
        let routes4 = sorted(j(&["-4", "route", "show", "table", "all"]));
        let routes6 = sorted(j(&["-6", "route", "show", "table", "all"]));
        let rules4 = j(&["-4", "rule", "show"]);
        let rules6 = j(&["-6", "rule", "show"]);
        let qdiscs: Value =
            serde_json::from_str(&sh(&["tc", "-n", &self.pod, "-j", "qdisc", "show"]))
                .expect("tc -j");
        let nft = sh(&["ip", "netns", "exec", &self.pod, "nft", "list", "ruleset"]);
        serde_json::json!({"links": links, "addrs": addrs, "routes4": routes4, "routes6": routes6,
            "rules4": rules4, "rules6": rules6, "qdiscs": qdiscs, "nft": nft})
    }
}

/// Drop counters the kernel changes on its own.
fn scrub(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(m) => {
            for k in keys {
                m.remove(*k);
            }
            m.values_mut().for_each(|x| scrub(x, keys));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| scrub(x, keys)),
        _ => {}
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.pod])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.host])
            .status();
    }
}

/// Assert two dumps are equal, printing the difference.
pub fn assert_same(before: &Value, after: &Value) {
    if before != after {
        let b = serde_json::to_string_pretty(before).unwrap();
        let a = serde_json::to_string_pretty(after).unwrap();
        let diff: Vec<String> = b
            .lines()
            .zip(a.lines())
            .filter(|(x, y)| x != y)
            .take(20)
            .map(|(x, y)| format!("- {x}\n+ {y}"))
            .collect();
        panic!("namespace not restored:\n{}", diff.join("\n"));
    }
}

/// Open fds of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Wait (bounded) until the thread count drops to `n`: threads that have
/// finished their work may still be exiting when a call returns.
pub fn settle_threads(n: usize) -> usize {
    for _ in 0..200 {
        if thread_count() <= n {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    thread_count()
}

/// Packets received by the host end `ifname` of the pod's veth.
pub fn host_rx_packets(p: &Pod, ifname: &str) -> u64 {
    let v: Value = serde_json::from_str(&p.ip_host(&["-s", "-j", "link", "show", ifname])).unwrap();
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
}

/// The demo's frame builders (ARP, DHCPDISCOVER/OFFER), shared with tests.
#[path = "../../src/bin/vnet/frames.rs"]
pub mod frames;

/// Write one frame to a TAP fd (as the VM would), all of it.
pub fn tap_write(fd: i32, frame: &[u8]) {
    // SAFETY: writing our own buffer to an open TAP fd.
    let n = unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
    assert_eq!(
        n,
        frame.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
}

/// Read frames from a TAP fd until `want` accepts one (bounded by `secs`).
pub fn read_tap_until<T>(
    fd: i32,
    secs: u64,
    mut want: impl FnMut(&[u8]) -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut buf = vec![0u8; 65536];
    while std::time::Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
            continue;
        }
        // SAFETY: reading into a buffer we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            if let Some(t) = want(&buf[..n as usize]) {
                return Some(t);
            }
        }
    }
    None
}

/// A raw socket on the host end of the veth, opened inside the host
/// namespace (it keeps that namespace for life).
pub struct HostSide {
    pub fd: OwnedFd,
    pub ifindex: i32,
}

impl HostSide {
    pub fn open(p: &Pod, ifname: &str) -> HostSide {
        let ns = File::open(format!("/var/run/netns/{}", p.host)).unwrap();
        let name = ifname.to_string();
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let c = std::ffi::CString::new(name).unwrap();
            // SAFETY: valid C string.
            let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) } as i32;
            assert!(ifindex > 0);
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2); the fd is owned right away.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from(proto),
                )
            };
            assert!(raw >= 0, "{}", std::io::Error::last_os_error());
            // SAFETY: a fresh fd we own.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: zeroed sockaddr_ll is valid; fields set below.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex;
            // SAFETY: binding to a correctly sized sockaddr_ll.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
            HostSide { fd, ifindex }
        })
        .join()
        .unwrap()
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: sending our buffer to a correctly sized address.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
    }

    /// Hand each frame that arrives from the pod side to `done` (frames
    /// this socket sent itself are skipped) until it says so or `wait` is
    /// over; returns whether it said so.
    pub fn receive(&self, wait: Duration, mut done: impl FnMut(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 20) } <= 0 {
                continue;
            }
            // SAFETY: zeroed sockaddr_ll is valid as an out-parameter.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: reading into our buffer and address.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n > 0 && sll.sll_pkttype != libc::PACKET_OUTGOING && done(&buf[..n as usize]) {
                return true;
            }
        }
        false
    }
}
