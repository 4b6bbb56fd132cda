//! IPv6 to the VM through a real setup (issue 17): a dual-stack pod with a
//! global gateway (what the bridge plugin with host-local makes). The test
//! is the VM on the TAP and the node on the host end of the veth.

mod common;

use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use dhcproto::v6::{DhcpOption, Message, MessageType, OptionCode, IANA};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use etherparse::{Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use vnet::dhcp6::ROUTER_LL;
use vnet::{Config, Network};

const VM_IP: &str = "fd00:1::5";
const GW: &str = "fd00:1::1";

fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn vm_ll() -> Ipv6Addr {
    "fe80::40a4:a6ff:fe22:802e".parse().unwrap()
}

fn icmp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ty: Icmpv6Type,
    body: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src.octets(), dst.octets(), 255)
        .icmpv6(ty);
    let mut f = Vec::new();
    b.write(&mut f, body).unwrap();
    f
}

fn rs(vm: [u8; 6]) -> Vec<u8> {
    icmp(
        vm,
        [0x33, 0x33, 0, 0, 0, 2],
        vm_ll(),
        "ff02::2".parse().unwrap(),
        Icmpv6Type::RouterSolicitation,
        &[],
    )
}

/// A router advertisement from `src` (MAC `mac`) to all nodes, with a
/// prefix (fd00:66::/64) that has A set: what a rogue router sends.
fn rogue_ra(mac: [u8; 6], src: Ipv6Addr) -> Vec<u8> {
    let mut rabody = vec![0u8; 8];
    rabody.extend_from_slice(&[
        3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0,
    ]);
    rabody.extend_from_slice(&"fd00:66::".parse::<Ipv6Addr>().unwrap().octets());
    let hdr = etherparse::icmpv6::RouterAdvertisementHeader {
        cur_hop_limit: 64,
        managed_address_config: false,
        other_config: false,
        router_lifetime: 1800,
    };
    icmp(
        mac,
        [0x33, 0x33, 0, 0, 0, 1],
        src,
        "ff02::1".parse().unwrap(),
        Icmpv6Type::RouterAdvertisement(hdr),
        &rabody,
    )
}

fn ns(vm: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let o = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    let mut body = o.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&vm);
    icmp(
        vm,
        [0x33, 0x33, 0xff, o[13], o[14], o[15]],
        src,
        group,
        Icmpv6Type::NeighborSolicitation,
        &body,
    )
}

fn dhcp(vm: [u8; 6], m: &Message) -> Vec<u8> {
    let mut payload = Vec::new();
    m.encode(&mut Encoder::new(&mut payload)).unwrap();
    let dst: Ipv6Addr = "ff02::1:2".parse().unwrap();
    let b = PacketBuilder::ethernet2(vm, [0x33, 0x33, 0, 1, 0, 2])
        .ipv6(vm_ll().octets(), dst.octets(), 1)
        .udp(546, 547);
    let mut f = Vec::new();
    b.write(&mut f, &payload).unwrap();
    f
}

fn client(ty: MessageType, xid: [u8; 3], server: Option<&[u8]>) -> Message {
    let mut m = Message::new_with_id(ty, xid);
    let o = m.opts_mut();
    o.insert(DhcpOption::ClientId(vec![
        0, 3, 0, 1, 0x42, 0xa4, 0xa6, 0x22, 0x80, 0x2e,
    ]));
    if let Some(s) = server {
        o.insert(DhcpOption::ServerId(s.to_vec()));
    }
    o.insert(DhcpOption::IANA(IANA {
        id: 1,
        t1: 0,
        t2: 0,
        opts: Default::default(),
    }));
    m
}

/// The DHCPv6 message of type `ty` for `xid` in frame `f`, if it is one.
fn dhcp_in(f: &[u8], ty: MessageType, xid: [u8; 3]) -> Option<Message> {
    let p = SlicedPacket::from_ethernet(f).ok()?;
    let Some(TransportSlice::Udp(u)) = p.transport else {
        return None;
    };
    if u.source_port() != 547 {
        return None;
    }
    let m = Message::decode(&mut Decoder::new(u.payload())).ok()?;
    (m.msg_type() == ty && m.xid() == xid).then_some(m)
}

fn addr_of(m: &Message) -> Option<Ipv6Addr> {
    let Some(DhcpOption::IANA(ia)) = m.opts().get(OptionCode::IANA) else {
        return None;
    };
    match ia.opts.get(OptionCode::IAAddr) {
        Some(DhcpOption::IAAddr(a)) => Some(a.addr),
        _ => None,
    }
}

fn server_id(m: &Message) -> Vec<u8> {
    match m.opts().get(OptionCode::ServerId) {
        Some(DhcpOption::ServerId(s)) => s.clone(),
        _ => panic!("no server id"),
    }
}

/// ICMPv6 type and (for NS/NA) target of frame `f`.
fn icmp_of(f: &[u8]) -> Option<(u8, Option<Ipv6Addr>, Ipv6Addr)> {
    let p = SlicedPacket::from_ethernet(f).ok()?;
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        return None;
    };
    let Some(TransportSlice::Icmpv6(i)) = &p.transport else {
        return None;
    };
    let target = (i.type_u8() == 135 || i.type_u8() == 136)
        .then(|| {
            <[u8; 16]>::try_from(i.payload().get(..16)?)
                .ok()
                .map(Ipv6Addr::from)
        })
        .flatten();
    Some((i.type_u8(), target, ip.header().source_addr()))
}

fn is_dhcp6(f: &[u8]) -> bool {
    matches!(SlicedPacket::from_ethernet(f).ok().and_then(|p| p.transport),
        Some(TransportSlice::Udp(u)) if matches!(u.destination_port(), 546 | 547))
}

/// A dump without the bridge's running timers (they tick while we look).
fn untimed(mut v: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|k, _| !k.ends_with("_timer"));
                m.values_mut().for_each(walk);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

#[test]
fn dual_stack_global_gateway() {
    global_gateway("v6gw", "{}");
}

/// The same in redirect mode: no bridge, the pod interface keeps the VM's
/// MAC, the netdev table keeps RA/ND/DHCPv6 apart.
#[test]
fn dual_stack_global_gateway_redirect() {
    global_gateway("v6rd", "{\"mode\": \"redirect\"}");
}

fn global_gateway(tag: &str, config: &str) {
    if !need_root() {
        return;
    }
    let _g = serial();
    let p = Pod::dual_stack(tag);
    p.settle_dad();
    let host_mac = {
        let v: serde_json::Value =
            serde_json::from_str(&p.ip_host(&["-j", "link", "show", "veth0"])).unwrap();
        mac(v[0]["address"].as_str().unwrap())
    };
    let before = p.dump();
    let host = HostSide::open(&p, "veth0");
    let cfg = Config::from_json(Some(config)).unwrap();
    let net = Network::setup(&p.path, &cfg).expect("setup");
    let tap = net.tap_fd(0, 0).unwrap().as_raw_fd();
    let vm = mac(POD_MAC);
    assert!(net.state().interfaces[0].lease6.is_some(), "no IPv6 served");
    let vm_ip: Ipv6Addr = VM_IP.parse().unwrap();
    let gw: Ipv6Addr = GW.parse().unwrap();

    // Router solicitation: an RA from our router address, M on, the pod's
    // /64 on-link without autoconf.
    tap_write(tap, &rs(vm));
    let ra = read_tap_until(tap, 5, |f| {
        let (ty, _, src) = icmp_of(f)?;
        (ty == 134).then(|| f.to_vec()).filter(|_| src == ROUTER_LL)
    })
    .expect("no RA");
    // From a MAC of ours, never the VM's own (redirect mode leaves that on
    // the pod interface).
    assert_ne!(ra[6..12], vm, "RA from the VM's own MAC");
    assert_eq!(
        ra[6..12],
        net.state().interfaces[0]
            .lease6
            .as_ref()
            .unwrap()
            .server_mac
    );
    let pk = SlicedPacket::from_ethernet(&ra).unwrap();
    let Some(TransportSlice::Icmpv6(i)) = &pk.transport else {
        panic!()
    };
    let Icmpv6Type::RouterAdvertisement(h) = i.icmp_type() else {
        panic!()
    };
    assert!(h.managed_address_config && h.router_lifetime > 0);
    let opts = &i.payload()[8..];
    let pio = opts
        .windows(2)
        .position(|w| w == [3, 4])
        .expect("no prefix option");
    assert_eq!(opts[pio + 2], 64);
    assert_eq!(opts[pio + 3], 0x80, "L on, A off");
    assert_eq!(
        &opts[pio + 16..pio + 32],
        &"fd00:1::".parse::<Ipv6Addr>().unwrap().octets()
    );

    // NS for our router: answered with the gateway's (host veth's) MAC,
    // learnt from the gateway.
    let tlla = (0..20).find_map(|_| {
        tap_write(tap, &ns(vm, vm_ll(), ROUTER_LL));
        read_tap_until(tap, 1, |f| {
            let (ty, target, _) = icmp_of(f)?;
            (ty == 136 && target == Some(ROUTER_LL)).then(|| f[f.len() - 6..].to_vec())
        })
    });
    assert_eq!(
        tlla.as_deref(),
        Some(&host_mac[..]),
        "router NA with the gateway's MAC"
    );

    // DHCPv6: exactly the pod's address.
    tap_write(
        tap,
        &dhcp(vm, &client(MessageType::Solicit, [1, 1, 1], None)),
    );
    let adv = read_tap_until(tap, 5, |f| dhcp_in(f, MessageType::Advertise, [1, 1, 1]))
        .expect("no ADVERTISE");
    assert_eq!(addr_of(&adv), Some(vm_ip));
    let sid = server_id(&adv);
    tap_write(
        tap,
        &dhcp(vm, &client(MessageType::Request, [2, 2, 2], Some(&sid))),
    );
    let rep =
        read_tap_until(tap, 5, |f| dhcp_in(f, MessageType::Reply, [2, 2, 2])).expect("no REPLY");
    assert_eq!(addr_of(&rep), Some(vm_ip));
    // Renewal: the same binding, from the same server, no new SOLICIT.
    tap_write(
        tap,
        &dhcp(vm, &client(MessageType::Renew, [3, 3, 3], Some(&sid))),
    );
    let ren = read_tap_until(tap, 5, |f| dhcp_in(f, MessageType::Reply, [3, 3, 3]))
        .expect("renewal not answered");
    assert_eq!((addr_of(&ren), server_id(&ren)), (Some(vm_ip), sid.clone()));
    // Hostile: another MAC gets nothing.
    let stranger = [0x02, 9, 9, 9, 9, 9];
    tap_write(
        tap,
        &dhcp(stranger, &client(MessageType::Solicit, [4, 4, 4], None)),
    );
    tap_write(tap, &rs(stranger));
    assert!(read_tap_until(tap, 1, |f| dhcp_in(f, MessageType::Advertise, [4, 4, 4])).is_none());

    // Hostile frames from the TAP get no answer and change nothing: cut
    // short, bad checksum, a forged NA for the gateway from the VM, a
    // DHCPv6 REQUEST for another server, an RS with hop limit 64.
    let mid = untimed(p.dump());
    let good = dhcp(vm, &client(MessageType::Solicit, [8, 8, 8], None));
    let mut bad_sum = good.clone();
    let n = bad_sum.len();
    bad_sum[n - 1] ^= 0x5a;
    let mut low_hops = rs(vm);
    low_hops[21] = 64;
    let mut forged_body = gw.octets().to_vec();
    forged_body.extend_from_slice(&[2, 1, 2, 6, 6, 6, 6, 6]);
    let na_hdr = etherparse::icmpv6::NeighborAdvertisementHeader {
        router: true,
        solicited: false,
        r#override: true,
    };
    let forged = icmp(
        vm,
        [0x33, 0x33, 0, 0, 0, 1],
        gw,
        "ff02::1".parse().unwrap(),
        Icmpv6Type::NeighborAdvertisement(na_hdr),
        &forged_body,
    );
    let hostile = [
        good[..good.len() - 7].to_vec(),
        good[..20].to_vec(),
        bad_sum,
        low_hops,
        forged,
        dhcp(
            vm,
            &client(
                MessageType::Request,
                [8, 8, 9],
                Some(&[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]),
            ),
        ),
    ];
    for f in &hostile {
        tap_write(tap, f);
    }
    let answered = read_tap_until(tap, 1, |f| {
        let p = SlicedPacket::from_ethernet(f).ok()?;
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            return None;
        };
        (ip.header().source_addr() == ROUTER_LL).then_some(())
    });
    assert!(answered.is_none(), "a hostile frame was answered");
    assert_same(&mid, &untimed(p.dump()));
    // The forged NA taught nothing: the router is still the gateway's MAC.
    tap_write(tap, &ns(vm, vm_ll(), ROUTER_LL));
    let again = read_tap_until(tap, 2, |f| {
        let (ty, target, _) = icmp_of(f)?;
        (ty == 136 && target == Some(ROUTER_LL)).then(|| f[f.len() - 6..].to_vec())
    });
    assert_eq!(again.as_deref(), Some(&host_mac[..]));

    // Nothing of ours, nor the VM's RS / RA / DHCPv6 / NS for our router,
    // reaches the node; the control (an NS for the real gateway) does.
    tap_write(tap, &rs(vm));
    tap_write(tap, &rogue_ra(vm, vm_ll()));
    tap_write(tap, &ns(vm, vm_ll(), ROUTER_LL));
    tap_write(
        tap,
        &dhcp(vm, &client(MessageType::Solicit, [5, 5, 5], None)),
    );
    tap_write(tap, &ns(vm, vm_ip, gw));
    let mut leaks = Vec::new();
    let mut control = false;
    host.receive(Duration::from_secs(2), |f| {
        match icmp_of(f) {
            Some((135, Some(t), _)) if t == gw => control = true,
            Some((133 | 134, _, _)) => leaks.push(f.to_vec()),
            Some((135 | 136, Some(t), _)) if t == ROUTER_LL => leaks.push(f.to_vec()),
            _ if is_dhcp6(f) => leaks.push(f.to_vec()),
            _ => {}
        }
        false
    });
    assert!(
        control,
        "the control NS for the gateway never reached the node"
    );
    assert!(
        leaks.is_empty(),
        "{} frames leaked to the node",
        leaks.len()
    );

    // A pod-network RA never reaches the VM; the control (an NS from the
    // node, flooded to the VM) does.
    let node_ll: Ipv6Addr = "fe80::1".parse().unwrap();
    let rogue = rogue_ra(host_mac, node_ll);
    let probe_target: Ipv6Addr = "fd00:1::77".parse().unwrap();
    let probe = ns(host_mac, gw, probe_target);
    host.send(&rogue);
    host.send(&probe);
    let mut rogue_seen = false;
    let mut probe_seen = false;
    read_tap_until(tap, 2, |f| {
        match icmp_of(f) {
            Some((134, _, src)) if src == node_ll => rogue_seen = true,
            Some((135, Some(t), _)) if t == probe_target => probe_seen = true,
            _ => {}
        }
        None::<()>
    });
    assert!(
        probe_seen,
        "the control NS from the node never reached the VM"
    );
    assert!(!rogue_seen, "a pod-network RA reached the VM");

    // The server DUID survives recover.
    let json = net.result_json().unwrap();
    drop(net);
    let mut net = Network::recover(&p.path, &json).expect("recover");
    let tap = net.tap_fd(0, 0).unwrap().as_raw_fd();
    tap_write(
        tap,
        &dhcp(vm, &client(MessageType::Renew, [6, 6, 6], Some(&sid))),
    );
    let ren = read_tap_until(tap, 5, |f| dhcp_in(f, MessageType::Reply, [6, 6, 6]))
        .expect("no REPLY after recover");
    assert_eq!(server_id(&ren), sid);

    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
}

#[test]
fn ipv6_false_serves_none() {
    if !need_root() {
        return;
    }
    let _g = serial();
    let p = Pod::dual_stack("v6off");
    p.settle_dad();
    let before = p.dump();
    let cfg = Config::from_json(Some("{\"ipv6\": false}")).unwrap();
    let mut net = Network::setup(&p.path, &cfg).expect("setup");
    assert!(net.state().interfaces[0].lease6.is_none());
    let tap = net.tap_fd(0, 0).unwrap().as_raw_fd();
    tap_write(tap, &rs(mac(POD_MAC)));
    assert!(read_tap_until(tap, 1, |f| icmp_of(f).filter(|(t, _, _)| *t == 134)).is_none());
    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
}

/// Calico's shape, IPv6 only: a /128 and `default via
/// fe80::ecee:eeff:feee:eeee`, the node's own link-local address.
#[test]
fn calico_style_ipv6_only() {
    if !need_root() {
        return;
    }
    let _g = serial();
    let p = Pod::empty("v6cal");
    let gw_ll: Ipv6Addr = "fe80::ecee:eeff:feee:eeee".parse().unwrap();
    p.ip_host(&[
        "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", &p.pod,
    ]);
    p.ip_host(&["link", "set", "veth0", "addrgenmode", "none"]);
    p.ip_host(&["link", "set", "veth0", "address", "ee:ee:ee:ee:ee:ee", "up"]);
    p.ip_host(&[
        "addr",
        "add",
        "fe80::ecee:eeff:feee:eeee/64",
        "dev",
        "veth0",
        "nodad",
    ]);
    p.ip_pod(&["link", "set", "eth0", "address", POD_MAC, "up"]);
    p.ip_pod(&["addr", "add", "fd00:33::5/128", "dev", "eth0", "nodad"]);
    p.ip_pod(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fe80::ecee:eeff:feee:eeee",
        "dev",
        "eth0",
    ]);
    p.settle_dad();
    let before = p.dump();
    let mut net = Network::setup(&p.path, &Config::default()).expect("setup");
    let i = &net.state().interfaces[0];
    assert!(i.lease.is_none(), "no IPv4");
    let l6 = i.lease6.clone().expect("IPv6 lease");
    assert_eq!((l6.router, l6.gateway, l6.on_link.len()), (gw_ll, None, 0));
    let tap = net.tap_fd(0, 0).unwrap().as_raw_fd();
    let vm = mac(POD_MAC);

    tap_write(tap, &rs(vm));
    let ra = read_tap_until(tap, 5, |f| {
        let (ty, _, src) = icmp_of(f)?;
        (ty == 134 && src == gw_ll).then(|| f.to_vec())
    })
    .expect("no RA from the node's link-local address");
    let pk = SlicedPacket::from_ethernet(&ra).unwrap();
    let Some(TransportSlice::Icmpv6(ic)) = &pk.transport else {
        panic!()
    };
    assert!(
        !ic.payload()[8..].chunks(8).any(|c| c[0] == 3),
        "no prefix option for a /128"
    );

    tap_write(
        tap,
        &dhcp(vm, &client(MessageType::Solicit, [7, 7, 7], None)),
    );
    let adv = read_tap_until(tap, 5, |f| dhcp_in(f, MessageType::Advertise, [7, 7, 7]))
        .expect("no ADVERTISE");
    assert_eq!(addr_of(&adv), Some("fd00:33::5".parse().unwrap()));

    // The VM resolves the gateway with the node itself.
    let resolved = (0..5).any(|_| {
        tap_write(tap, &ns(vm, vm_ll(), gw_ll));
        read_tap_until(tap, 1, |f| {
            let (ty, target, _) = icmp_of(f)?;
            (ty == 136 && target == Some(gw_ll) && f[6..12] == [0xee; 6]).then_some(())
        })
        .is_some()
    });
    assert!(
        resolved,
        "the node did not answer the VM for its link-local gateway"
    );

    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
}
