use std::net::Ipv6Addr;

use dhcproto::v6::{DhcpOption, Message, MessageType, OptionCode, IANA};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use etherparse::{Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::*;

const VM: [u8; 6] = [0x0a, 0x58, 0x0a, 0x01, 0x02, 0x03];
const VETH: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
const GW_MAC: [u8; 6] = [0x0e, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];

fn lease(gateway: Option<Ipv6Addr>) -> Lease6 {
    let a: Ipv6Addr = "fd00:24::5".parse().unwrap();
    Lease6 {
        client_mac: VM,
        server_mac: VETH,
        addresses: vec![a],
        router: if gateway.is_some() {
            ROUTER_LL
        } else {
            "fe80::ecee:eeff:feee:eeee".parse().unwrap()
        },
        gateway,
        default_route: true,
        on_link: vec![("fd00:24::".parse().unwrap(), 64)],
        routes: vec![("fd00:99::".parse().unwrap(), 48)],
        dns_servers: vec!["fd00::53".parse().unwrap()],
        search: vec!["svc.cluster.local".into()],
        mtu: 1500,
        lease_secs: 86400,
        duid: vec![0, 3, 0, 1, 2, 0x11, 0x22, 0x33, 0x44, 0x55],
    }
}

fn ll() -> Ipv6Addr {
    "fe80::858:aff:fe01:203".parse().unwrap()
}

fn dhcp_frame(src_mac: [u8; 6], msg: &Message) -> Vec<u8> {
    let mut payload = Vec::new();
    msg.encode(&mut Encoder::new(&mut payload)).unwrap();
    let dst: Ipv6Addr = "ff02::1:2".parse().unwrap();
    let b = PacketBuilder::ethernet2(src_mac, [0x33, 0x33, 0, 1, 0, 2])
        .ipv6(ll().octets(), dst.octets(), 1)
        .udp(546, 547);
    let mut f = Vec::new();
    b.write(&mut f, &payload).unwrap();
    f
}

fn icmp_frame(
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ty: Icmpv6Type,
    body: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, [0x33, 0x33, 0, 0, 0, 2])
        .ipv6(src.octets(), dst.octets(), 255)
        .icmpv6(ty);
    let mut f = Vec::new();
    b.write(&mut f, body).unwrap();
    f
}

fn client_msg(ty: MessageType, server: Option<&[u8]>) -> Message {
    let mut m = Message::new_with_id(ty, [1, 2, 3]);
    let o = m.opts_mut();
    o.insert(DhcpOption::ClientId(vec![
        0, 3, 0, 1, 0x0a, 0x58, 0x0a, 1, 2, 3,
    ]));
    if let Some(s) = server {
        o.insert(DhcpOption::ServerId(s.to_vec()));
    }
    o.insert(DhcpOption::IANA(IANA {
        id: 7,
        t1: 0,
        t2: 0,
        opts: Default::default(),
    }));
    m
}

fn only_tap(out: Vec<Out>) -> Vec<Vec<u8>> {
    out.into_iter()
        .map(|o| match o {
            Out::Tap(f) => f,
            Out::Pod(_) => panic!("unexpected frame to the pod network"),
        })
        .collect()
}

fn decode_reply(frame: &[u8]) -> Message {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Udp(u)) = p.transport else {
        panic!("not UDP")
    };
    assert_eq!((u.source_port(), u.destination_port()), (547, 546));
    Message::decode(&mut Decoder::new(u.payload())).unwrap()
}

#[test]
fn solicit_request_renew_rebind_release() {
    let l = lease(Some("fd00:24::1".parse().unwrap()));
    let mut learnt = Learnt::default();
    let out = only_tap(handle_frame(
        &l,
        &mut learnt,
        &dhcp_frame(VM, &client_msg(MessageType::Solicit, None)),
        false,
    ));
    assert_eq!(out.len(), 2, "advertise + RA");
    assert_eq!(&out[0][..6], &VM);
    let adv = decode_reply(&out[0]);
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    assert_eq!(adv.xid(), [1, 2, 3]);
    let Some(DhcpOption::IANA(ia)) = adv.opts().get(OptionCode::IANA) else {
        panic!("no IA_NA")
    };
    assert_eq!(ia.id, 7);
    assert_eq!((ia.t1, ia.t2), (21600, 34560));
    let Some(DhcpOption::IAAddr(a)) = ia.opts.get(OptionCode::IAAddr) else {
        panic!("no address")
    };
    assert_eq!(a.addr, l.addresses[0]);
    assert_eq!(a.valid_life, 86400);
    assert!(
        matches!(adv.opts().get(OptionCode::DomainNameServers), Some(DhcpOption::DomainNameServers(d)) if d == &l.dns_servers)
    );
    assert!(adv.opts().get(OptionCode::DomainSearchList).is_some());
    for ty in [MessageType::Request, MessageType::Renew] {
        let out = only_tap(handle_frame(
            &l,
            &mut learnt,
            &dhcp_frame(VM, &client_msg(ty, Some(&l.duid))),
            false,
        ));
        let r = decode_reply(&out[0]);
        assert_eq!(r.msg_type(), MessageType::Reply);
        assert!(r.opts().get(OptionCode::IANA).is_some());
        // Not for us: silence.
        assert!(handle_frame(
            &l,
            &mut learnt,
            &dhcp_frame(VM, &client_msg(ty, Some(&[0, 3, 9]))),
            false
        )
        .is_empty());
    }
    let out = only_tap(handle_frame(
        &l,
        &mut learnt,
        &dhcp_frame(VM, &client_msg(MessageType::Rebind, None)),
        false,
    ));
    assert_eq!(decode_reply(&out[0]).msg_type(), MessageType::Reply);
    for ty in [MessageType::Release, MessageType::Decline] {
        let out = only_tap(handle_frame(
            &l,
            &mut learnt,
            &dhcp_frame(VM, &client_msg(ty, Some(&l.duid))),
            false,
        ));
        let r = decode_reply(&out[0]);
        assert!(
            matches!(r.opts().get(OptionCode::StatusCode), Some(DhcpOption::StatusCode(s)) if s.status == dhcproto::v6::Status::Success)
        );
    }
    let mut info = Message::new_with_id(MessageType::InformationRequest, [4, 5, 6]);
    info.opts_mut()
        .insert(DhcpOption::ClientId(vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6]));
    let out = only_tap(handle_frame(&l, &mut learnt, &dhcp_frame(VM, &info), false));
    let r = decode_reply(&out[0]);
    assert_eq!(r.msg_type(), MessageType::Reply);
    assert!(r.opts().get(OptionCode::IANA).is_none());
}

#[test]
fn other_macs_and_garbage_get_nothing() {
    let l = lease(Some("fd00:24::1".parse().unwrap()));
    let mut learnt = Learnt::default();
    let f = dhcp_frame([2, 0, 0, 0, 0, 9], &client_msg(MessageType::Solicit, None));
    assert!(handle_frame(&l, &mut learnt, &f, false).is_empty());
    // Corrupt checksum.
    let mut f = dhcp_frame(VM, &client_msg(MessageType::Solicit, None));
    let n = f.len();
    f[n - 1] ^= 0xff;
    assert!(handle_frame(&l, &mut learnt, &f, false).is_empty());
    for n in 0..f.len() {
        let _ = handle_frame(&l, &mut learnt, &f[..n], false);
        let _ = handle_frame(&l, &mut learnt, &f[..n], true);
    }
    assert!(learnt.gw_mac.is_none());
}

#[test]
fn rs_gets_ra_with_m_flag_no_autoconf() {
    let l = lease(Some("fd00:24::1".parse().unwrap()));
    let mut learnt = Learnt::default();
    let rs = icmp_frame(
        VM,
        ll(),
        "ff02::2".parse().unwrap(),
        Icmpv6Type::RouterSolicitation,
        &[],
    );
    let out = handle_frame(&l, &mut learnt, &rs, false);
    // Gateway MAC unknown yet: solicit it on the pod network, and answer.
    assert!(matches!(&out[0], Out::Pod(_)));
    let Out::Tap(ra) = &out[1] else { panic!() };
    let p = SlicedPacket::from_ethernet(ra).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source_addr(), ROUTER_LL);
    assert_eq!(ip.header().hop_limit(), 255);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!()
    };
    let Icmpv6Type::RouterAdvertisement(h) = icmp.icmp_type() else {
        panic!()
    };
    assert!(h.managed_address_config);
    assert_eq!(h.router_lifetime, 65535);
    // Options after the 8 bytes of reachable/retrans: MTU, PIO (L, no A), RIO.
    let opts = &icmp.payload()[8..];
    assert_eq!(&opts[..8], &[5, 1, 0, 0, 0, 0, 0x05, 0xdc]);
    assert_eq!(opts[8], 3);
    assert_eq!(opts[11], 0x80, "L on, A off");
    assert_eq!(&opts[40..44], &[24, 2, 48, 0]);
}

#[test]
fn gateway_mac_learnt_then_ns_for_router_answered() {
    let gw: Ipv6Addr = "fd00:24::1".parse().unwrap();
    let l = lease(Some(gw));
    let mut learnt = Learnt::default();
    let ns_body = |t: Ipv6Addr| t.octets().to_vec();
    let ns = icmp_frame(
        VM,
        ll(),
        "ff02::1:ffe:fe02".parse().unwrap(),
        Icmpv6Type::NeighborSolicitation,
        &ns_body(ROUTER_LL),
    );
    let out = handle_frame(&l, &mut learnt, &ns, false);
    assert!(matches!(&out[..], [Out::Pod(_)]));
    // A forged NA from the VM teaches nothing.
    let mut na_body = vec![0x60, 0, 0, 0];
    na_body.extend_from_slice(&gw.octets());
    na_body.extend_from_slice(&[2, 1, 9, 9, 9, 9, 9, 9]);
    let hdr = etherparse::icmpv6::NeighborAdvertisementHeader {
        router: true,
        solicited: true,
        r#override: true,
    };
    let forged = icmp_frame(
        VM,
        gw,
        l.addresses[0],
        Icmpv6Type::NeighborAdvertisement(hdr),
        &na_body[4..],
    );
    assert!(handle_frame(&l, &mut learnt, &forged, false).is_empty());
    assert!(learnt.gw_mac.is_none());
    let real = icmp_frame(
        GW_MAC,
        gw,
        l.addresses[0],
        Icmpv6Type::NeighborAdvertisement(hdr),
        &na_body[4..20],
    );
    assert!(handle_frame(&l, &mut learnt, &real, true).is_empty());
    assert_eq!(learnt.gw_mac, Some(GW_MAC));
    let out = only_tap(handle_frame(&l, &mut learnt, &ns, false));
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!()
    };
    assert!(
        matches!(icmp.icmp_type(), Icmpv6Type::NeighborAdvertisement(h) if h.solicited && h.router)
    );
    assert_eq!(&icmp.payload()[..16], &ROUTER_LL.octets());
    assert_eq!(
        &icmp.payload()[16..24],
        &[2, 1, 0x0e, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]
    );
    // NS for anything else: not ours to answer.
    let other = icmp_frame(
        VM,
        ll(),
        "ff02::1:ff00:1".parse().unwrap(),
        Icmpv6Type::NeighborSolicitation,
        &ns_body(gw),
    );
    assert!(handle_frame(&l, &mut learnt, &other, false).is_empty());
}

#[test]
fn link_local_gateway_is_the_router() {
    let l = lease(None);
    let mut learnt = Learnt::default();
    let out = on_start(&l, &learnt);
    assert_eq!(out.len(), 1, "nothing to learn");
    let ns = {
        let b = l.router.octets();
        icmp_frame(
            VM,
            ll(),
            "ff02::1:ffee:eeee".parse().unwrap(),
            Icmpv6Type::NeighborSolicitation,
            &b,
        )
    };
    assert!(
        handle_frame(&l, &mut learnt, &ns, false).is_empty(),
        "the node answers"
    );
}

#[test]
fn dhcproto_overflows_are_refused_first() {
    // Found by fuzz/dhcp6_packet: a status code option shorter than its
    // code made dhcproto subtract past zero.
    let crash = include_bytes!("../../fuzz/seeds/dhcp6_packet/status-underflow.bin");
    let l = lease(Some("fd00:24::1".parse().unwrap()));
    assert!(dhcp_reply(&l, crash).is_none());
    // And a vendor class made to look long enough by a short elapsed time.
    let crash = include_bytes!("../../fuzz/seeds/dhcp6_packet/vendor-underflow.bin");
    assert!(dhcp_reply(&l, crash).is_none());
    // And one nested in vendor options.
    let crash = include_bytes!("../../fuzz/seeds/dhcp6_packet/vendor-nested.bin");
    assert!(dhcp_reply(&l, crash).is_none());
    for (code, len) in [(13u16, 1u16), (16, 3), (17, 0), (9, 0)] {
        let mut m = vec![1, 1, 2, 3];
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(0, usize::from(len)));
        assert!(dhcp_reply(&l, &m).is_none());
        // The same inside an IA_NA.
        let mut m = vec![1, 1, 2, 3, 0, 3];
        m.extend_from_slice(&(12 + 4 + len).to_be_bytes());
        m.extend_from_slice(&[0; 12]);
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(0, usize::from(len)));
        assert!(dhcp_reply(&l, &m).is_none());
    }
}
