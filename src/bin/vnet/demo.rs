//! `vnet demo`: the README walkthrough on scratch namespaces. The namespaces
//! are built with `ip` (this is the CLI, not the library) and deleted on
//! every path: normal return, error, and SIGINT/SIGTERM.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use vnet::{Config, Error, Network, Result};

use crate::{frames, signals, CmdResult};

const POD_MAC: &str = "42:a4:a6:22:80:2e";
const POD_IP: [u8; 4] = [10, 1, 90, 5];
const GATEWAY: [u8; 4] = [10, 1, 90, 1];

/// Namespaces to delete if a signal ends the demo.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::Internal(format!("running ip: {e}")))?;
    if !out.status.success() {
        return Err(Error::Internal(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn delete_ns(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).status();
}

/// A scratch namespace, deleted on drop.
struct Scratch(String);

impl Scratch {
    fn new(name: String) -> Result<Scratch> {
        // Register first: a signal between `add` and the push must not leak it.
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.clone());
        ip(&["netns", "add", &name]).map(|_| Scratch(name))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        delete_ns(&self.0);
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n| n != &self.0);
    }
}

/// On SIGINT/SIGTERM: delete the namespaces, then exit. The process exit
/// closes the TAP fds, so nothing of the demo survives.
fn watch_signals() {
    signals::block_term();
    std::thread::spawn(|| {
        let sig = signals::wait_term();
        let names = LIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for n in &names {
            delete_ns(n);
        }
        eprintln!(
            "\nvnet demo: interrupted (signal {sig}); deleted {}",
            names.join(", ")
        );
        std::process::exit(128 + sig);
    });
}

/// What setup may change, comparable across setup and teardown (the same
/// fields the test fixture compares; kernel counters dropped).
fn dump(ns: &str) -> Result<Value> {
    let j = |args: &[&str]| -> Result<Value> {
        let mut v = vec!["-n", ns, "-d", "-j"];
        v.extend_from_slice(args);
        let text = ip(&v)?;
        let mut val: Value =
            serde_json::from_str(if text.trim().is_empty() { "[]" } else { &text })
                .map_err(|e| Error::Internal(format!("ip -j: {e}")))?;
        scrub(&mut val);
        Ok(val)
    };
    let nft = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "ruleset"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|_| "(nft not available)".into());
    Ok(serde_json::json!({
        "links": j(&["link", "show"])?,
        "addrs": j(&["addr", "show"])?,
        "routes4": j(&["-4", "route", "show", "table", "all"])?,
        "routes6": j(&["-6", "route", "show", "table", "all"])?,
        "nft": nft,
    }))
}

fn scrub(v: &mut Value) {
    const KEYS: [&str; 6] = [
        "stats",
        "stats64",
        "carrier_changes",
        "carrier_up_count",
        "carrier_down_count",
        "tentative",
    ];
    match v {
        Value::Object(m) => {
            for k in KEYS {
                m.remove(k);
            }
            m.values_mut().for_each(scrub);
        }
        Value::Array(a) => a.iter_mut().for_each(scrub),
        _ => {}
    }
}

fn show_pod(pod: &str) -> Result<()> {
    for args in [["-br", "link"], ["-br", "addr"]] {
        for line in ip(&["-n", pod, args[0], args[1]])?.lines() {
            println!("   {line}");
        }
    }
    for line in ip(&["-n", pod, "route"])?.lines() {
        println!("   route: {line}");
    }
    Ok(())
}

pub fn run() -> CmdResult {
    watch_signals();
    let id = std::process::id();
    let host = Scratch::new(format!("vnet-demo-{id}-host"))?;
    let pod = Scratch::new(format!("vnet-demo-{id}-pod"))?;
    let path = format!("/var/run/netns/{}", pod.0);
    println!("== scratch namespaces: pod {} and host {}", pod.0, host.0);
    build_pod(&pod.0, &host.0)?;
    println!("   the CNI plugin's work: pod eth0 {POD_MAC} 10.1.90.5/24, default via 10.1.90.1 (host veth0)");
    show_pod(&pod.0)?;
    let before = dump(&pod.0)?;

    let t = Instant::now();
    let mut net = Network::setup(&path, &Config::default())?;
    println!("\n== vnet setup: {:.1} ms", ms(t.elapsed()));
    show_pod(&pod.0)?;

    let r = exchange_frames(&net);
    let json = net.result_json()?;
    // Tear down even if the frame exchange failed: the point is a clean exit.
    let t = Instant::now();
    let td = net.teardown();
    r?;
    println!("\n== result JSON (save it to recover after a restart):");
    let pretty = serde_json::from_str::<Value>(&json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or(json);
    println!("{pretty}");
    td?;
    println!("\n== vnet teardown: {:.1} ms", ms(t.elapsed()));
    show_pod(&pod.0)?;
    let after = dump(&pod.0)?;
    if before != after {
        let diff = diff_lines(&before, &after);
        return Err(Error::Incomplete(format!("namespace not restored:\n{diff}")).into());
    }
    println!("   restored: links, addresses, routes and nf_tables identical to before setup (ip -j dumps)");
    drop(pod);
    drop(host);
    println!("\n== deleted the scratch namespaces");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn build_pod(pod: &str, host: &str) -> Result<()> {
    let h = |args: &[&str]| ip(&[&["-n", host], args].concat());
    let p = |args: &[&str]| ip(&[&["-n", pod], args].concat());
    p(&["link", "set", "lo", "up"])?;
    h(&[
        "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", pod,
    ])?;
    h(&["link", "set", "veth0", "up"])?;
    h(&["addr", "add", "10.1.90.1/24", "dev", "veth0"])?;
    p(&["link", "set", "eth0", "address", POD_MAC])?;
    p(&["link", "set", "eth0", "up"])?;
    p(&["addr", "add", "10.1.90.5/24", "dev", "eth0"])?;
    p(&["route", "add", "default", "via", "10.1.90.1"])?;
    Ok(())
}

/// Play the VM on tap0: ARP for the gateway (answered by the host end of the
/// veth, so the frame crossed br0 and the veth), then DHCPDISCOVER
/// (answered by vnet's server on br0).
fn exchange_frames(net: &Network) -> Result<()> {
    let iface = &net.state().interfaces[0];
    let mac = iface.vm_mac.0;
    let fd = net
        .tap_fd(0, 0)
        .ok_or_else(|| Error::Internal("no TAP fd".into()))?;
    println!(
        "\n== frames: the VM side of {} -> {} -> {} -> host veth0",
        iface.tap, iface.bridge, iface.veth
    );
    send(fd, &frames::arp_request(mac, POD_IP, GATEWAY))?;
    println!(
        "   sent  ARP who-has 10.1.90.1 tell 10.1.90.5 (from {})",
        iface.vm_mac
    );
    let t = Instant::now();
    let reply = recv_until(fd, Duration::from_secs(3), |f| {
        frames::arp_reply_from(f, GATEWAY)
    })?
    .ok_or_else(|| Error::Internal("no ARP reply from the gateway through the bridge".into()))?;
    println!(
        "   got   ARP reply 10.1.90.1 is-at {} after {:.2} ms",
        mac_str(&reply),
        ms(t.elapsed())
    );

    if !net.state().dhcp || iface.lease.is_none() {
        println!("   (DHCP off: no DHCPDISCOVER sent)");
        return Ok(());
    }
    let xid = std::process::id();
    send(fd, &frames::dhcp_discover(mac, xid)?)?;
    println!("   sent  DHCPDISCOVER xid {xid:#x}");
    let t = Instant::now();
    match recv_until(fd, Duration::from_secs(3), |f| frames::dhcp_offer(f, xid))? {
        Some(offer) => println!("   got   {offer} after {:.2} ms", ms(t.elapsed())),
        None => println!("   WARNING: no DHCPOFFER within 3 s"),
    }
    Ok(())
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn send(fd: BorrowedFd<'_>, frame: &[u8]) -> Result<()> {
    // SAFETY: writing a live buffer to an open fd.
    let n = unsafe { libc::write(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
    if n < 0 {
        return Err(Error::Tap {
            name: "tap0".into(),
            step: "write".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Read frames until `want` picks one or `limit` passes (other traffic, e.g.
/// IPv6 router solicitations, is skipped).
fn recv_until<T>(
    fd: BorrowedFd<'_>,
    limit: Duration,
    want: impl Fn(&[u8]) -> Option<T>,
) -> Result<Option<T>> {
    let end = Instant::now() + limit;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
        if r <= 0 {
            continue;
        }
        // SAFETY: reading into a live buffer of that length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            if let Some(t) = want(&buf[..n as usize]) {
                return Ok(Some(t));
            }
        }
    }
}

/// The first differing lines of two dumps.
fn diff_lines(a: &Value, b: &Value) -> String {
    let a = serde_json::to_string_pretty(a).unwrap_or_default();
    let b = serde_json::to_string_pretty(b).unwrap_or_default();
    a.lines()
        .zip(b.lines())
        .filter(|(x, y)| x != y)
        .take(20)
        .map(|(x, y)| format!("- {x}\n+ {y}"))
        .collect::<Vec<_>>()
        .join("\n")
}
