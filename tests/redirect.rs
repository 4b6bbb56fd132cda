//! Redirect mode (issue 16): no bridge; the pod interface keeps its MAC,
//! MTU and place; frames cross TAP <-> pod interface both ways; the
//! namespace comes back byte for byte; 64 KiB GSO frames from a multiqueue
//! vnet_hdr TAP cross whole.

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use vnet::{Config, Mode, Network};

const VM_MAC: [u8; 6] = [0x42, 0xa4, 0xa6, 0x22, 0x80, 0x2e];

fn redirect(queues: u32, vnet_hdr: bool) -> Config {
    Config {
        mode: Mode::Redirect,
        queues,
        vnet_hdr,
        ..Config::default()
    }
}

/// The pod interface as `ip -j link` shows it: (MAC, MTU, master).
fn eth0(p: &Pod) -> (String, u64, Option<String>) {
    let l: serde_json::Value =
        serde_json::from_str(&p.ip_pod(&["-j", "link", "show", "eth0"])).unwrap();
    (
        l[0]["address"].as_str().unwrap().to_string(),
        l[0]["mtu"].as_u64().unwrap(),
        l[0]["master"].as_str().map(str::to_string),
    )
}

/// An ARP request for the gateway written on the TAP reaches the host side
/// byte for byte, and the gateway's reply (from the host's own stack)
/// comes back to the VM on the TAP: both directions cross.
fn assert_both_ways(p: &Pod, net: &Network) {
    let host = HostSide::open(p, p.host_if);
    let fd = net.tap_fd(0, 0).unwrap().as_raw_fd();
    let req = frames::arp_request(VM_MAC, [10, 1, 90, 5], [10, 1, 90, 1]);
    tap_write(fd, &req);
    assert!(
        host.receive(Duration::from_secs(2), |f| f.get(..req.len())
            == Some(&req[..])),
        "the VM's ARP request did not reach {}",
        p.host_if
    );
    // An ARP reply to the VM's MAC, ethertype 0x0806, opcode 2.
    let reply = read_tap_until(fd, 3, |f| {
        (f.len() >= 42 && f[..6] == VM_MAC && f[12..14] == [8, 6] && f[20..22] == [0, 2])
            .then_some(())
    });
    assert!(
        reply.is_some(),
        "no ARP reply from the gateway reached the VM"
    );
}

fn restores_exactly(make: fn(&str) -> Pod, cni: bool) {
    if !need_root() {
        return;
    }
    let _s = serial();
    let p = make("rdr");
    let before = p.dump();
    let (mac, mtu, _) = eth0(&p);
    let cfg = Config {
        cni_result: cni.then(|| serde_json::from_str(&p.two_interfaces_cni()).unwrap()),
        ..redirect(1, false)
    };
    let mut net = Network::setup(&p.path, &cfg).expect("setup");
    // Kept in place: same MAC, same MTU, no master; no bridge anywhere.
    assert_eq!(eth0(&p), (mac.clone(), mtu, None));
    let links = p.ip_pod(&["-br", "link"]);
    assert!(!links.contains("br0") && links.contains("tap0"), "{links}");
    let addrs = p.ip_pod(&["-br", "-4", "addr", "show", "eth0"]);
    assert!(!addrs.contains("10.1.90.5"), "not stripped: {addrs}");
    let r: serde_json::Value = serde_json::from_str(&net.result_json().unwrap()).unwrap();
    let i = &r["vnet"]["interfaces"][0];
    assert_eq!(i["mode"], "redirect", "{i}");
    assert_eq!(i["vm_mac"].as_str(), Some(mac.as_str()), "{i}");
    assert_both_ways(&p, &net);
    // `vnet show` lists the redirect rules as the kernel holds them.
    let show = sh(&[env!("CARGO_BIN_EXE_vnet"), "show", "--netns", &p.path]);
    for want in [
        "fwd to eth0",
        "fwd to tap0",
        "jump dhcp_vm",
        "jump dhcp_pod",
    ] {
        assert!(show.contains(want), "vnet show lacks {want:?}:\n{show}");
    }
    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
}

#[test]
fn veth_restores_exactly() {
    restores_exactly(Pod::ipv4, false);
}

#[test]
fn dual_stack_restores_exactly() {
    restores_exactly(
        |t| {
            let p = Pod::dual_stack(t);
            p.settle_dad();
            p
        },
        false,
    );
}

#[test]
fn extra_routes_restore_exactly() {
    restores_exactly(Pod::extra_routes, false);
}

#[test]
fn two_interfaces_restore_exactly() {
    restores_exactly(Pod::two_interfaces, true);
}

#[test]
fn macvlan_bridge_restores_exactly() {
    restores_exactly(Pod::macvlan_bridge, false);
}

#[test]
fn macvlan_private_restores_exactly() {
    restores_exactly(Pod::macvlan_private, false);
}

#[test]
fn macvlan_vepa_restores_exactly() {
    restores_exactly(Pod::macvlan_vepa, false);
}

#[test]
fn mtu_is_kept_and_the_tap_gets_it() {
    if !need_root() {
        return;
    }
    let _s = serial();
    let p = Pod::ipv4_mtu("rmtu", 1450);
    let before = p.dump();
    let mut net = Network::setup(&p.path, &redirect(1, false)).expect("setup");
    let t: serde_json::Value =
        serde_json::from_str(&p.ip_pod(&["-j", "link", "show", "tap0"])).unwrap();
    assert_eq!(t[0]["mtu"].as_u64(), Some(1450));
    assert_eq!(eth0(&p).1, 1450);
    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
}

/// `ioctl(fd, req, arg)` on a TAP queue, arg by value.
fn tap_ioctl(fd: i32, req: libc::c_ulong, arg: libc::c_ulong) {
    // SAFETY: TUNSETVNETHDRSZ takes a pointer to int; TUNSETOFFLOAD a value.
    let rc = unsafe { libc::ioctl(fd, req as _, arg) };
    assert!(
        rc >= 0,
        "ioctl {req:#x}: {}",
        std::io::Error::last_os_error()
    );
}

/// A 65214-byte TSO frame (45 segments of 1448 B) written on the second
/// queue of a multiqueue vnet_hdr TAP reaches the veth's far end whole:
/// the very bytes behind the virtio header, in one frame.
#[test]
fn gso_frames_cross_whole_multiqueue_vnet_hdr() {
    if !need_root() {
        return;
    }
    let _s = serial();
    let p = Pod::ipv4("rgso");
    let before = p.dump();
    let mut net = Network::setup(&p.path, &redirect(2, true)).expect("setup");
    let host_mac: serde_json::Value =
        serde_json::from_str(&p.ip_host(&["-j", "link", "show", "veth0"])).unwrap();
    let dst = mac(host_mac[0]["address"].as_str().unwrap());
    let host = HostSide::open(&p, "veth0");
    let fd = net.tap_fd(0, 1).expect("queue 1").as_raw_fd();
    const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
    const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
    let sz: libc::c_int = 12;
    tap_ioctl(
        fd,
        TUNSETVNETHDRSZ,
        &sz as *const libc::c_int as libc::c_ulong,
    );
    tap_ioctl(fd, TUNSETOFFLOAD, 0x1 | 0x2 | 0x4); // CSUM, TSO4, TSO6
    let frame = gso_frame(dst, 65214 - 14);
    let mut got = 0;
    for _ in 0..3 {
        tap_write(fd, &frame);
    }
    let whole = host.receive(Duration::from_secs(3), |f| {
        got += usize::from(f == &frame[12..]);
        got == 3
    });
    assert!(whole, "{got} of 3 64 KiB GSO frames crossed whole");
    drop(host);
    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
}

fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// virtio_net_hdr_mrg_rxbuf (12 bytes) + Ethernet + one `ip_len`-byte
/// TCP/IPv4 packet for the kernel to treat as TSO (gso_size 1448, checksum
/// left to offload: the field holds the pseudo-header sum).
fn gso_frame(dst: [u8; 6], ip_len: usize) -> Vec<u8> {
    let mut f = vec![1u8, 1]; // NEEDS_CSUM, GSO_TCPV4
    for v in [54u16, 1448, 34, 16, 0] {
        f.extend_from_slice(&v.to_le_bytes()); // hdr_len gso_size csum_start csum_offset num_buffers
    }
    f.extend_from_slice(&dst);
    f.extend_from_slice(&VM_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(ip_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 1, 90, 5, 10, 1, 90, 99]);
    let sum = csum(&f[ip..ip + 20], 0);
    f[ip + 10..ip + 12].copy_from_slice(&(!sum).to_be_bytes());
    let th = f.len();
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    let tcp_len = (ip_len - 20) as u32;
    let pseudo = csum(&[10, 1, 90, 5, 10, 1, 90, 99], 6 + tcp_len);
    f[th + 16..th + 18].copy_from_slice(&pseudo.to_be_bytes());
    f.resize(12 + 14 + ip_len, 0x5a);
    f
}

fn csum(b: &[u8], init: u32) -> u16 {
    let mut s = init
        + b.chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum::<u32>();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}
