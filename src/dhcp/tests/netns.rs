//! End-to-end test with busybox udhcpc in scratch network namespaces (root only).
//! Run: `cargo test dhcp::netns_tests -- --ignored --nocapture`

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use dhcproto::Decodable;

use crate::dhcp::*;

/// The tests count "vnet-dhcp" threads, so they must not overlap.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
const MAC_STR: &str = "02:42:ac:11:00:02";
const SERVER: Ipv4Addr = Ipv4Addr::new(169, 254, 254, 2);

/// Deletes the scratch namespaces (and everything in them) on every exit path.
struct Netns(Vec<String>);
impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &str) {
    let ok = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {args}");
}

/// Run `f` on a fresh thread that has joined netns `name`.
fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(path).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Threads named "vnet-dhcp", once the count has settled (a new thread
/// names itself a moment after it starts; a stopped one is joined already).
fn dhcp_threads() -> usize {
    let mut n = count_dhcp_threads();
    for _ in 0..100 {
        if n > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        n = count_dhcp_threads();
    }
    n
}

fn count_dhcp_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "vnet-dhcp")
        })
        .count()
}

/// Context switches of the "vnet-dhcp" thread (each wakeup is one).
fn dhcp_switches() -> String {
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "vnet-dhcp") {
            let st = std::fs::read_to_string(t.path().join("status")).unwrap();
            return st.lines().filter(|l| l.contains("ctxt_switches")).collect();
        }
    }
    panic!("no vnet-dhcp thread");
}

/// Runs udhcpc in `ns`; returns (exit ok, the env the script saw on "bound", seconds taken).
fn udhcpc(ns: &str, dir: &Path, tries: &str) -> (bool, String, f64) {
    let out = dir.join("env");
    let _ = std::fs::remove_file(&out);
    let script = dir.join("script.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] || exit 0\n\
             for v in ip mask subnet router dns domain hostname mtu staticroutes search lease serverid; do\n\
             eval echo \"$v=\\$$v\"; done > {}\n",
            out.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let t = Instant::now();
    let st = Command::new("ip")
        .args([
            "netns", "exec", ns, "busybox", "udhcpc", "-i", "vethc", "-f", "-q", "-n",
        ])
        .args(["-t", tries, "-T", "1", "-s"])
        .arg(&script)
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    (
        st.status.success(),
        std::fs::read_to_string(&out).unwrap_or_default(),
        secs,
    )
}

#[test]
#[ignore = "needs root, iproute2 and busybox; run with --ignored"]
fn udhcpc_gets_lease_in_scratch_netns() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !precondition(is_root(), "root") || !precondition(has_busybox(), "busybox") {
        return;
    }
    let pid = std::process::id();
    let (s, c) = (format!("vnh-dhcp-s-{pid}"), format!("vnh-dhcp-c-{pid}"));
    ip(&format!("netns add {s}"));
    let _g1 = Netns(vec![s.clone()]);
    ip(&format!("netns add {c}"));
    let _g2 = Netns(vec![c.clone()]);
    ip(&format!("-n {s} link add br0 type bridge"));
    ip(&format!("-n {s} link add br1 type bridge"));
    ip(&format!("-n {s} addr add 169.254.254.2/24 dev br0"));
    ip(&format!("-n {s} link set br0 up"));
    ip(&format!(
        "-n {s} link add vetha type veth peer name vethc netns {c}"
    ));
    ip(&format!("-n {s} link set vetha master br0 up"));
    ip(&format!("-n {c} link set vethc address {MAC_STR} up"));

    let lease = Lease {
        client_mac: MAC,
        ip: Ipv4Addr::new(10, 244, 1, 5),
        prefix_len: 32,
        gateway: Some(Ipv4Addr::new(169, 254, 1, 1)),
        routes: vec![("10.96.0.0/12".parse().unwrap(), None)],
        dns_servers: vec![Ipv4Addr::new(10, 96, 0, 10)],
        search: vec![
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
        ],
        domain: Some("cluster.local".into()),
        hostname: Some("vm1".into()),
        mtu: Some(1400),
        lease_secs: 86400,
    };
    assert_eq!(dhcp_threads(), 0);
    // Socket creation and spawn both on a thread inside the server netns, as the lead does.
    let (h, second) = in_netns(&s, move || {
        // Answers go out on the client's port of br0: vetha.
        let sock = bind_sockets("br0", ifindex("vetha")).unwrap();
        // A second bridge in the same netns gets its own port-67 socket
        // (it has no port; its answers would go out on itself).
        let second = bind_sockets("br1", ifindex("br1")).unwrap();
        (spawn(sock, lease, SERVER).unwrap(), second)
    });
    drop(second);
    assert_eq!(dhcp_threads(), 1);

    let dir = std::env::temp_dir().join(format!("vnh-dhcp-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, env, secs) = udhcpc(&c, &dir, "3");
    println!("udhcpc start -> lease: {:.1} ms\n{env}", secs * 1000.0);
    assert!(ok, "udhcpc failed");
    for want in [
        "ip=10.244.1.5",
        "mask=32",
        "subnet=255.255.255.255",
        "router=169.254.1.1",
        "dns=10.96.0.10",
        "domain=cluster.local",
        "hostname=vm1",
        "mtu=1400",
        "staticroutes=169.254.1.1/32 0.0.0.0 10.96.0.0/12 0.0.0.0 0.0.0.0/0 169.254.1.1",
        "search=default.svc.cluster.local svc.cluster.local",
        "lease=86400",
        "serverid=169.254.254.2",
    ] {
        assert!(env.lines().any(|l| l == want), "missing {want:?} in\n{env}");
    }

    // Renewal: the client now owns the address and unicasts from it; the ACK comes back
    // unicast although the server netns has no route to 10.244.1.5 (it is sent on vetha
    // as a frame to the client's MAC).
    ip(&format!("-n {c} addr add 10.244.1.5/32 dev vethc"));
    ip(&format!("-n {c} route add 169.254.254.0/24 dev vethc"));
    let t = Instant::now();
    let ack = in_netns(&c, renew).expect("no unicast ACK to renewal");
    println!(
        "renewal round trip: {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let m = dhcproto::v4::Message::decode(&mut dhcproto::Decoder::new(&ack)).unwrap();
    assert_eq!(m.opts().msg_type(), Some(dhcproto::v4::MessageType::Ack));
    assert_eq!(m.ciaddr(), Ipv4Addr::new(10, 244, 1, 5));
    // (With reverse-path filtering on in the server's namespace, this
    // renewal needs a route back to the client: setup adds one, see
    // tests/renewal.rs.)
    ip(&format!("-n {c} addr flush dev vethc"));

    // Another MAC gets nothing.
    ip(&format!("-n {c} link set vethc address 02:00:00:00:00:99"));
    let (ok, env, _) = udhcpc(&c, &dir, "2");
    assert!(!ok && env.is_empty(), "foreign MAC got a lease: {env}");

    h.stop();
    assert_eq!(
        dhcp_threads(),
        0,
        "runtime thread still alive after last stop"
    );
    // Port 67 is free again: a plain bind (no SO_REUSEADDR) would conflict with any survivor.
    in_netns(&s, || {
        std::net::UdpSocket::bind("0.0.0.0:67").expect("socket not closed")
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs root; run with --ignored"]
fn runtime_restarts_after_last_stop() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !precondition(is_root(), "root") {
        return;
    }
    let pid = std::process::id();
    let s = format!("vnh-dhcp-r-{pid}");
    ip(&format!("netns add {s}"));
    let _g = Netns(vec![s.clone()]);
    ip(&format!("-n {s} link add br0 type bridge"));
    ip(&format!("-n {s} link add br1 type bridge"));
    let lease = Lease {
        client_mac: MAC,
        ip: Ipv4Addr::new(10, 0, 0, 5),
        prefix_len: 24,
        gateway: None,
        routes: vec![],
        dns_servers: vec![],
        search: vec![],
        domain: None,
        hostname: None,
        mtu: None,
        lease_secs: 60,
    };
    for _ in 0..3 {
        let l = lease.clone();
        let (a, b) = in_netns(&s, move || {
            let a = spawn(
                bind_sockets("br0", ifindex("br0")).unwrap(),
                l.clone(),
                SERVER,
            )
            .unwrap();
            let b = spawn(bind_sockets("br1", ifindex("br1")).unwrap(), l, SERVER).unwrap();
            (a, b)
        });
        assert_eq!(dhcp_threads(), 1, "one shared runtime thread");
        // Idle means parked: no wakeups (no timers, no polling) over half a second.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let before = dhcp_switches();
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(dhcp_switches(), before, "idle runtime thread woke up");
        a.stop();
        assert_eq!(dhcp_threads(), 1, "still serving br1");
        drop(b);
        assert_eq!(dhcp_threads(), 0);
    }
}

/// RENEWING-state REQUEST from 10.244.1.5:68 to the server; returns the reply bytes.
fn renew() -> Option<Vec<u8>> {
    use dhcproto::v4::{DhcpOption, Message, MessageType};
    use dhcproto::{Encodable, Encoder};
    let ip = Ipv4Addr::new(10, 244, 1, 5);
    let sock = std::net::UdpSocket::bind((ip, 68)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut m = Message::new_with_id(
        7,
        ip,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &MAC,
    );
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Request));
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    sock.send_to(&buf, (SERVER, 67)).unwrap();
    let mut rx = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut rx).ok()?;
    assert_eq!(from, std::net::SocketAddr::from((SERVER, 67)));
    Some(rx[..n].to_vec())
}

/// A link's index in the current thread's namespace.
fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert!(i > 0, "no link {name}");
    i
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn has_busybox() -> bool {
    Command::new("busybox").output().is_ok()
}

/// An unmet precondition fails the test unless the run explicitly skips
/// (`VNET_TEST_SKIP=1`), and a skip says what was skipped.
fn precondition(met: bool, what: &str) -> bool {
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
