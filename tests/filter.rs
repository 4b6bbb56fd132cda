//! The DHCP filter, by traffic: DHCPv4 and DHCPv6 never cross the pod's veth
//! in either direction, our server still answers the VM, and other UDP to
//! neighbouring ports crosses both ways (so a silent capture means "dropped",
//! not "broken"). Frames are injected and captured at both ends: the TAP fd
//! (the VM) and an AF_PACKET socket on the host end of the veth (the pod
//! network).

mod common;

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use common::*;
use vnet::{Config, Mode, Network};

const VM_MAC: [u8; 6] = [0x42, 0xa4, 0xa6, 0x22, 0x80, 0x2e];
const HOST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const BCAST: [u8; 6] = [0xff; 6];
/// All DHCPv6 relay agents and servers (ff02::1:2), as a multicast MAC.
const DHCP6_MAC: [u8; 6] = [0x33, 0x33, 0x00, 0x01, 0x00, 0x02];

/// An Ethernet frame with IPv4 or IPv6 UDP `sport` -> `dport` and a payload.
/// Checksums are left zero: nothing on the way verifies them, and the
/// filter looks at ports only.
fn udp(src: [u8; 6], dst: [u8; 6], v6: bool, sport: u16, dport: u16) -> Vec<u8> {
    let payload = b"vnet filter test";
    let ulen = 8 + payload.len();
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(ulen as u16).to_be_bytes());
        f.extend_from_slice(&[17, 1]); // next header UDP, hop limit 1
        let mut from = [0u8; 16];
        from[..2].copy_from_slice(&[0xfe, 0x80]);
        from[15] = 7;
        f.extend_from_slice(&from);
        f.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
    } else {
        let tot = (20 + ulen) as u16;
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&tot.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 1, 90, 7, 255, 255, 255, 255]);
        let sum = ip_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
    }
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(ulen as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// DHCPv4 and DHCPv6 frames from `src` in both roles (client to server and
/// server to client), to the broadcast / all-DHCP-servers addresses.
fn dhcp_frames(src: [u8; 6]) -> Vec<Vec<u8>> {
    dhcp_frames_to(src, DHCP6_MAC)
}

/// [`dhcp_frames`] with DHCPv6 sent to `v6_dst` (a macvlan passes a
/// multicast MAC only when subscribed to it, so frames for a macvlan pod go
/// to its own MAC).
fn dhcp_frames_to(src: [u8; 6], v6_dst: [u8; 6]) -> Vec<Vec<u8>> {
    [
        (false, 68, 67),
        (false, 67, 68),
        (true, 546, 547),
        (true, 547, 546),
    ]
    .into_iter()
    .map(|(v6, sport, dport)| {
        let dst = if v6 { v6_dst } else { BCAST };
        udp(src, dst, v6, sport, dport)
    })
    .collect()
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The UDP destination port of an IPv4 or IPv6 frame, if it is UDP.
fn udp_dport(f: &[u8]) -> Option<u16> {
    let at = match f.get(12..14)? {
        [0x08, 0x00] if *f.get(23)? == 17 => 14 + usize::from(f[14] & 0x0f) * 4,
        [0x86, 0xdd] if *f.get(20)? == 17 => 14 + 40,
        _ => return None,
    };
    Some(u16::from_be_bytes([*f.get(at + 2)?, *f.get(at + 3)?]))
}

fn is_dhcp(port: u16) -> bool {
    matches!(port, 67 | 68 | 546 | 547)
}

/// UDP destination ports of the frames that arrive at `host` from the pod
/// side within `wait`.
fn received_ports(host: &HostSide, wait: Duration) -> Vec<u16> {
    let mut ports = Vec::new();
    host.receive(wait, |f| {
        ports.extend(udp_dport(f));
        false
    });
    ports
}

/// UDP destination ports of the frames the VM sees on its TAP within `wait`.
fn tap_ports(fd: RawFd, wait: Duration) -> Vec<u16> {
    let deadline = Instant::now() + wait;
    let mut ports = Vec::new();
    let _ = read_tap_until(fd, wait.as_secs() + 1, |f| {
        ports.extend(udp_dport(f));
        (Instant::now() >= deadline).then_some(())
    });
    ports
}

const WAIT: Duration = Duration::from_millis(400);

#[test]
fn dhcp_stays_off_the_pod_network_both_ways() {
    dhcp_filter(Mode::Bridge, Pod::ipv4, false);
}

/// A dual-stack pod: DHCPv4 goes through the IPv6 server's socket, and
/// the table's DHCP drops name no interface.
#[test]
fn dhcp_stays_off_the_pod_network_dual_stack() {
    dhcp_filter(Mode::Bridge, Pod::dual_stack, false);
}

#[test]
fn redirect_dhcp_stays_off_the_pod_network_dual_stack() {
    dhcp_filter(Mode::Redirect, Pod::dual_stack, false);
}

#[test]
fn redirect_dhcp_stays_off_the_pod_network_veth() {
    dhcp_filter(Mode::Redirect, Pod::ipv4, false);
}

#[test]
fn redirect_dhcp_stays_off_the_pod_network_macvlan_bridge() {
    dhcp_filter(Mode::Redirect, Pod::macvlan_bridge, true);
}

#[test]
fn redirect_dhcp_stays_off_the_pod_network_macvlan_private() {
    dhcp_filter(Mode::Redirect, Pod::macvlan_private, true);
}

#[test]
fn redirect_dhcp_stays_off_the_pod_network_macvlan_vepa() {
    dhcp_filter(Mode::Redirect, Pod::macvlan_vepa, true);
}

/// Captures at both ends, each next to control frames on the neighbouring
/// ports that must cross (so silence means "dropped", not "broken").
fn dhcp_filter(mode: Mode, make: fn(&str) -> Pod, macvlan: bool) {
    if !need_root() {
        return;
    }
    let _g = serial();
    let p = make("filter");
    // A macvlan neighbour hears multicast only when it asked for it.
    if p.host_if == "veth0" && macvlan {
        p.ip_host(&["link", "set", "veth0", "promisc", "on"]);
    }
    let to_vm6 = if macvlan { VM_MAC } else { DHCP6_MAC };
    let before = p.dump();
    let cfg = Config {
        mode,
        ..Config::default()
    };
    let mut net = Network::setup(&p.path, &cfg).expect("setup");
    let tap = net.tap_fd(0, 0).unwrap().as_raw_fd();
    let host = HostSide::open(&p, p.host_if);
    // Let the kernel's own chatter (IPv6 DAD, MLD) pass before counting.
    std::thread::sleep(Duration::from_millis(50));
    let _ = tap_ports(tap, Duration::from_millis(50));
    let _ = received_ports(&host, Duration::from_millis(50));

    // VM -> pod network. A real DHCPDISCOVER: our server must answer it on
    // the TAP, and neither it nor the OFFER may leave through the veth.
    let xid = 0x5eed_f117;
    tap_write(tap, &frames::dhcp_discover(VM_MAC, xid).unwrap());
    let offer = read_tap_until(tap, 5, |f| frames::dhcp_offer(f, xid));
    assert!(offer.is_some(), "our DHCP server did not answer the VM");
    for frame in dhcp_frames(VM_MAC) {
        tap_write(tap, &frame);
    }
    // Controls: the ports right next to the DHCP ones cross.
    tap_write(tap, &udp(VM_MAC, BCAST, false, 68, 69));
    tap_write(tap, &udp(VM_MAC, DHCP6_MAC, true, 546, 548));
    let seen = received_ports(&host, WAIT);
    assert!(
        !seen.iter().any(|&p| is_dhcp(p)),
        "DHCP from the VM reached the pod network: UDP ports {seen:?}"
    );
    assert!(
        seen.contains(&69) && seen.contains(&548),
        "control frames from the VM did not cross the veth: UDP ports {seen:?}"
    );

    // Pod network -> VM and -> our server. A DHCPDISCOVER for the VM's own
    // MAC would get an OFFER from our server (seen on the TAP) if it got in.
    let _ = tap_ports(tap, Duration::from_millis(50));
    host.send(&frames::dhcp_discover(VM_MAC, xid + 1).unwrap());
    for frame in dhcp_frames_to(HOST_MAC, to_vm6) {
        host.send(&frame);
    }
    host.send(&udp(HOST_MAC, BCAST, false, 67, 66));
    host.send(&udp(HOST_MAC, to_vm6, true, 547, 545));
    let seen = tap_ports(tap, WAIT);
    assert!(
        !seen.iter().any(|&p| is_dhcp(p)),
        "DHCP from the pod network reached the VM or our server: UDP ports {seen:?}"
    );
    assert!(
        seen.contains(&66) && seen.contains(&545),
        "control frames from the pod network did not reach the VM: UDP ports {seen:?}"
    );
    let leaked = received_ports(&host, WAIT);
    assert!(
        !leaked.iter().any(|&p| is_dhcp(p)),
        "our server answered the pod network: UDP ports {leaked:?}"
    );

    drop(host);
    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
}
