//! The renewal a VM unicasts to our DHCP server, through a real setup. Many
//! nodes turn on reverse-path filtering (systemd's default is loose mode,
//! `rp_filter=2`) and a new pod namespace inherits it; once setup has taken
//! the pod's address away, nothing in the namespace routes back to the VM's
//! address, so without a route of ours the kernel drops the renewal before
//! our server sees it, and the VM loses its address when the lease runs out.

mod common;

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use common::*;
use dhcproto::v4::{DhcpOption, Message, MessageType};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use vnet::{Config, Mode, Network};

const VM_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 90, 5);
const SERVER: Ipv4Addr = Ipv4Addr::new(169, 254, 254, 2);

fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// A DHCPREQUEST in RENEWING state (RFC 2131 4.3.2): from the leased address,
/// unicast to the server, `ciaddr` set, no server id or requested address.
fn renewal(vm: [u8; 6], bridge: [u8; 6], xid: u32) -> Vec<u8> {
    let any = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, VM_IP, any, any, any, &vm);
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Request));
    let mut bootp = Vec::new();
    m.encode(&mut Encoder::new(&mut bootp)).unwrap();
    let b = etherparse::PacketBuilder::ethernet2(vm, bridge)
        .ipv4(VM_IP.octets(), SERVER.octets(), 64)
        .udp(68, 67);
    let mut f = Vec::with_capacity(b.size(bootp.len()));
    b.write(&mut f, &bootp).unwrap();
    f
}

/// The DHCPACK for `xid` to `VM_IP` in frame `f`, if it is one.
fn ack(f: &[u8], xid: u32) -> Option<()> {
    let p = etherparse::SlicedPacket::from_ethernet(f).ok()?;
    let Some(etherparse::TransportSlice::Udp(udp)) = p.transport else {
        return None;
    };
    if udp.source_port() != 67 {
        return None;
    }
    let m = Message::decode(&mut Decoder::new(udp.payload())).ok()?;
    (m.xid() == xid && m.opts().msg_type() == Some(MessageType::Ack) && m.yiaddr() == VM_IP)
        .then_some(())
}

/// The pod namespace's count of UDP datagrams that found no socket
/// (`Udp: NoPorts` in /proc/net/snmp).
fn udp_no_ports(p: &Pod) -> u64 {
    let snmp = sh(&["ip", "netns", "exec", &p.pod, "cat", "/proc/net/snmp"]);
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "NoPorts")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

fn sysctl(p: &Pod, key: &str, value: &str) {
    sh(&[
        "ip",
        "netns",
        "exec",
        &p.pod,
        "sysctl",
        "-qw",
        &format!("{key}={value}"),
    ]);
}

/// Renew with reverse-path filtering `mode` on everything in the pod
/// namespace, as a node's sysctl defaults would have it.
fn renewal_is_answered(mode: &str) {
    renewal_in(mode, Mode::Bridge, Pod::ipv4);
}

/// [`renewal_is_answered`] in `topology`, on the pod `make` builds. The
/// server's MAC (what the renewal is sent to) is that of the link holding
/// its address: br0, or in redirect mode tap0.
fn renewal_in(mode: &str, topology: Mode, make: fn(&str) -> Pod) {
    if !need_root() {
        return;
    }
    let _g = serial();
    renew(mode, topology, make, false);
}

/// The lengths of the classic filters on the packet sockets in `p`'s
/// namespace: sock_diag shows a filter's instructions only when it was
/// attached as classic BPF, not for a loaded program attached by
/// descriptor.
fn classic_filters(p: &Pod) -> Vec<usize> {
    let ss = sh(&["ip", "netns", "exec", &p.pod, "ss", "-H0bn"]);
    ss.split("bpf filter (")
        .skip(1)
        .map(|rest| rest.split(')').next().unwrap().parse().unwrap())
        .collect()
}

/// The UDP sockets on port 67 in `p`'s namespace.
fn udp67(p: &Pod) -> usize {
    sh(&["ip", "netns", "exec", &p.pod, "ss", "-Huan", "sport = :67"])
        .lines()
        .count()
}

/// The MAC of the link holding our server's address: br0, or in redirect
/// mode tap0 (what a renewal is sent to).
fn server_mac(p: &Pod, topology: Mode) -> [u8; 6] {
    let server = match topology {
        Mode::Bridge => "br0",
        Mode::Redirect => "tap0",
    };
    let link: serde_json::Value =
        serde_json::from_str(&p.ip_pod(&["-j", "link", "show", server])).unwrap();
    mac(link[0]["address"].as_str().unwrap())
}

/// The VM's first lease (broadcast, from 0.0.0.0: it never meets the
/// reverse-path filter) and its unicast renewal to `server`, through TAP
/// queue `tap`, are answered; and no stack in the namespace saw a DHCP
/// datagram with nobody listening (it would answer the VM with a port
/// unreachable).
fn lease_and_renewal(p: &Pod, tap: i32, server: [u8; 6], xid: u32, what: &str) {
    let vm = mac(POD_MAC);
    let no_ports = udp_no_ports(p);
    tap_write(tap, &frames::dhcp_discover(vm, xid).unwrap());
    assert!(
        read_tap_until(tap, 5, |f| frames::dhcp_offer(f, xid)).is_some(),
        "no OFFER ({what})"
    );
    tap_write(tap, &renewal(vm, server, xid + 1));
    assert!(
        read_tap_until(tap, 5, |f| ack(f, xid + 1)).is_some(),
        "the unicast renewal from {VM_IP} got no ACK ({what})"
    );
    assert_eq!(
        udp_no_ports(p),
        no_ports,
        "a datagram for a closed port ({what})"
    );
}

/// The eBPF programs this process holds.
fn programs_held() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:bpf-prog")
        })
        .count()
}

/// [`renewal_in`] under the caller's lock; `loaded`: a dual-stack pod's
/// socket must have the loaded program, not the classic filter.
fn renew(mode: &str, topology: Mode, make: fn(&str) -> Pod, loaded: bool) {
    let p = make("renew");
    let dual = p
        .ip_pod(&["-6", "addr", "show", "scope", "global"])
        .contains("inet6");
    if dual {
        p.settle_dad();
    }
    sysctl(&p, "net.ipv4.conf.all.rp_filter", mode);
    sysctl(&p, "net.ipv4.conf.default.rp_filter", mode);
    sysctl(&p, "net.ipv4.conf.eth0.rp_filter", mode);
    let before = p.dump();
    let cfg = Config {
        mode: topology,
        ..Config::default()
    };
    let mut net = Network::setup(&p.path, &cfg).expect("setup");
    let tap = net.tap_fd(0, 0).unwrap().as_raw_fd();
    lease_and_renewal(
        &p,
        tap,
        server_mac(&p, topology),
        0x0005_eed0,
        &format!("rp_filter={mode}"),
    );
    // A dual-stack pod's DHCPv4 is served by the IPv6 server's packet
    // socket: no UDP socket on port 67 at all (so this test can only pass
    // through that path); a v4-only pod's by a UDP socket on port 67.
    assert_eq!(udp67(&p), usize::from(!dual), "UDP sockets on port 67");
    if dual {
        let want = if loaded { vec![] } else { vec![21] };
        assert_eq!(classic_filters(&p), want, "classic filters");
    }
    // The state says which way DHCPv4 is served, and says it only when
    // through the IPv6 socket (older libraries read every other state).
    let json = net.result_json().unwrap();
    assert_eq!(json.contains("\"dhcp4_on_tap\":true"), dual, "{json}");
    assert_eq!(json.contains("dhcp4_on_tap"), dual, "{json}");

    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
}

#[test]
fn renewal_is_answered_without_reverse_path_filter() {
    renewal_is_answered("0");
}

#[test]
fn renewal_is_answered_with_strict_reverse_path_filter() {
    renewal_is_answered("1");
}

#[test]
fn renewal_is_answered_with_loose_reverse_path_filter() {
    renewal_is_answered("2");
}

#[test]
fn redirect_renewal_is_answered_without_reverse_path_filter() {
    renewal_in("0", Mode::Redirect, Pod::ipv4);
}

#[test]
fn redirect_renewal_is_answered_with_strict_reverse_path_filter() {
    renewal_in("1", Mode::Redirect, Pod::ipv4);
}

#[test]
fn redirect_renewal_is_answered_with_loose_reverse_path_filter_macvlan() {
    renewal_in("2", Mode::Redirect, Pod::macvlan_bridge);
}

#[test]
fn redirect_renewal_is_answered_with_strict_reverse_path_filter_macvlan() {
    renewal_in("1", Mode::Redirect, Pod::macvlan_private);
}

#[test]
fn dual_stack_renewal_is_answered_on_the_ipv6_socket() {
    renewal_in("1", Mode::Bridge, Pod::dual_stack);
}

#[test]
fn redirect_dual_stack_renewal_is_answered_on_the_ipv6_socket() {
    renewal_in("2", Mode::Redirect, Pod::dual_stack);
}

/// With a second IPv6 server started beside a first (two neighbour pods),
/// the filter is loaded once on the runtime's thread, and the next
/// dual-stack pod's socket attaches that program: its DHCPv4 renewal is
/// still answered. The program goes when the last IPv6 server stops.
fn renewal_through_the_loaded_filter(topology: Mode) {
    if !need_root() {
        return;
    }
    let _g = serial();
    assert_eq!(programs_held(), 0, "a program held before any server");
    let cfg = Config {
        mode: topology,
        ..Config::default()
    };
    let mut neighbours = Vec::new();
    for tag in ["renewn1", "renewn2"] {
        let n = Pod::dual_stack(tag);
        n.settle_dad();
        let net = Network::setup(&n.path, &cfg).expect("neighbour setup");
        // Nothing loaded yet when each opened its socket.
        assert_eq!(classic_filters(&n), [21], "{tag}'s socket");
        neighbours.push((n, net));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while programs_held() == 0 {
        assert!(std::time::Instant::now() < deadline, "no program loaded");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    renew("1", topology, Pod::dual_stack, true);
    for (_, mut net) in neighbours {
        net.teardown().expect("neighbour teardown");
    }
    assert_eq!(programs_held(), 0, "a program held with no server left");
}

#[test]
fn dual_stack_renewal_is_answered_through_the_loaded_filter() {
    renewal_through_the_loaded_filter(Mode::Bridge);
}

#[test]
fn redirect_dual_stack_renewal_is_answered_through_the_loaded_filter() {
    renewal_through_the_loaded_filter(Mode::Redirect);
}

/// Recover serves DHCPv4 the way the state records, and for a dual-stack
/// state from a library that did not record it, the way the pod's filter
/// table was built: libraries before DHCPv4 moved to the IPv6 socket
/// installed a table that lets DHCPv4 through to a UDP socket (remade
/// here with `nft`, rule for rule), the one just before recording it, the
/// table of today. Each time the VM's first lease and a unicast renewal
/// are answered, and no datagram meets a closed port.
fn recover_as_recorded(topology: Mode) {
    if !need_root() {
        return;
    }
    let _g = serial();
    let p = Pod::dual_stack("recover4");
    p.settle_dad();
    let before = p.dump();
    let cfg = Config {
        mode: topology,
        ..Config::default()
    };
    let net = Network::setup(&p.path, &cfg).expect("setup");
    let json = net.result_json().unwrap();
    assert_eq!(
        (udp67(&p), classic_filters(&p)),
        (0, vec![21]),
        "after setup"
    );
    drop(net);
    let unrecorded = json.replace("\"dhcp4_on_tap\":true,", "");
    assert_ne!(unrecorded, json);
    let server = server_mac(&p, topology);
    let serves = |net: &Network, xid: u32, what: &str| {
        lease_and_renewal(&p, net.tap_fd(0, 0).unwrap().as_raw_fd(), server, xid, what);
    };
    for (state, what) in [(&json, "recorded"), (&unrecorded, "today's table")] {
        let net = Network::recover(&p.path, state).expect(what);
        assert_eq!((udp67(&p), classic_filters(&p)), (0, vec![21]), "{what}");
        serves(&net, 0x0007_0000, what);
        drop(net);
    }
    // The table a library before DHCPv4 moved built for this pod.
    let nft = |args: &str| {
        let mut cmd = vec!["ip", "netns", "exec", &p.pod, "nft"];
        cmd.extend(args.split(' '));
        sh(&cmd);
    };
    match topology {
        Mode::Bridge => {
            nft("flush chain bridge vnet dhcp");
            for dir in ["iifname", "oifname"] {
                nft(&format!(
                    "add rule bridge vnet dhcp {dir} eth0 ether type ip udp dport 67-68 drop"
                ));
                nft(&format!(
                    "add rule bridge vnet dhcp {dir} eth0 ether type ip6 udp dport 546-547 drop"
                ));
            }
        }
        Mode::Redirect => nft("insert rule netdev vnet dhcp_vm ether type ip udp dport 67 accept"),
    }
    let net = Network::recover(&p.path, &unrecorded).expect("an older table");
    // A UDP socket for DHCPv4, and the IPv6-only filter.
    assert_eq!(
        (udp67(&p), classic_filters(&p)),
        (1, vec![13]),
        "an older table"
    );
    serves(&net, 0x0007_1000, "an older table");
    drop(net);
    // A state cannot record it with an IPv4 lease lacking an IPv6 one.
    let mut doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    doc["vnet"]["interfaces"][0]["lease6"] = serde_json::Value::Null;
    let bad = Network::recover(&p.path, &doc.to_string())
        .err()
        .expect("refused");
    assert!(bad.to_string().contains("dhcp4_on_tap"), "{bad}");
    let mut net = Network::recover(&p.path, &json).expect("recover");
    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
}

#[test]
fn dual_stack_recover_serves_dhcpv4_as_recorded_or_as_the_table_was_built() {
    recover_as_recorded(Mode::Bridge);
}

#[test]
fn redirect_dual_stack_recover_serves_dhcpv4_as_recorded_or_as_the_table_was_built() {
    recover_as_recorded(Mode::Redirect);
}
