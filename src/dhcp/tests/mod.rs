//! Pure unit tests for the protocol core (no root, no sockets).

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use super::options::{classless_routes, domain_search};

/// Root-only tests in scratch namespaces (run with `--include-ignored`).
mod netns;
use super::*;

const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
const SERVER: Ipv4Addr = Ipv4Addr::new(169, 254, 254, 2);
const BCAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);

fn lease24() -> Lease {
    Lease {
        client_mac: MAC,
        ip: Ipv4Addr::new(10, 0, 0, 5),
        prefix_len: 24,
        gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
        routes: vec![],
        dns_servers: vec![Ipv4Addr::new(10, 96, 0, 10), Ipv4Addr::new(8, 8, 8, 8)],
        search: vec!["example.com".into(), "sub.example.com".into()],
        domain: Some("example.com".into()),
        hostname: Some("vm1".into()),
        mtu: Some(1450),
        lease_secs: 86400,
    }
}

fn lease32() -> Lease {
    Lease {
        ip: Ipv4Addr::new(10, 244, 1, 5),
        prefix_len: 32,
        gateway: Some(Ipv4Addr::new(169, 254, 1, 1)),
        ..lease24()
    }
}

/// Build a client request with dhcproto (test side only).
fn request(mac: &[u8], mtype: MessageType, ciaddr: Ipv4Addr, extra: Vec<DhcpOption>) -> Vec<u8> {
    let mut m = Message::new_with_id(
        0xdead_beef,
        ciaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        mac,
    );
    m.opts_mut().insert(DhcpOption::MessageType(mtype));
    for o in extra {
        m.opts_mut().insert(o);
    }
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    buf
}

fn decode(r: &Reply) -> Message {
    Message::decode(&mut Decoder::new(&r.bytes)).unwrap()
}

fn opt(m: &Message, c: OptionCode) -> Option<DhcpOption> {
    m.opts().get(c).cloned()
}

/// Option codes in wire order (the codec's decoded map is sorted, so walk the bytes).
fn wire_codes(bytes: &[u8]) -> Vec<u8> {
    let mut codes = Vec::new();
    let mut i = 240;
    while i < bytes.len() {
        match bytes[i] {
            0 => i += 1,
            255 => break,
            c => {
                codes.push(c);
                i += 2 + bytes[i + 1] as usize;
            }
        }
    }
    codes
}

#[test]
fn discover_gets_offer_with_all_options() {
    let mut l = lease24();
    l.routes = vec![("10.96.0.0/12".parse().unwrap(), None)];
    let r = handle_packet(
        &l,
        SERVER,
        &request(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED, vec![]),
    )
    .expect("offer");
    assert_eq!(r.dest, BCAST);
    assert!(r.bytes.len() >= 300);
    let m = decode(&r);
    assert_eq!(m.opcode(), Opcode::BootReply);
    assert_eq!(m.xid(), 0xdead_beef);
    assert_eq!(m.yiaddr(), l.ip);
    assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.chaddr(), &MAC);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
    use DhcpOption as O;
    use OptionCode as C;
    assert_eq!(
        opt(&m, C::ServerIdentifier),
        Some(O::ServerIdentifier(SERVER))
    );
    assert_eq!(
        opt(&m, C::AddressLeaseTime),
        Some(O::AddressLeaseTime(86400))
    );
    assert_eq!(opt(&m, C::Renewal), Some(O::Renewal(43200)));
    assert_eq!(opt(&m, C::Rebinding), Some(O::Rebinding(75600)));
    assert_eq!(
        opt(&m, C::SubnetMask),
        Some(O::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        opt(&m, C::Router),
        Some(O::Router(vec![Ipv4Addr::new(10, 0, 0, 1)]))
    );
    assert_eq!(
        opt(&m, C::DomainNameServer),
        Some(O::DomainNameServer(l.dns_servers.clone()))
    );
    assert_eq!(opt(&m, C::Hostname), Some(O::Hostname("vm1".into())));
    assert_eq!(
        opt(&m, C::DomainName),
        Some(O::DomainName("example.com".into()))
    );
    assert_eq!(opt(&m, C::InterfaceMtu), Some(O::InterfaceMtu(1450)));
    let Some(O::DomainSearch(names)) = opt(&m, C::DomainSearch) else {
        panic!("no option 119");
    };
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    assert_eq!(names, ["example.com.", "sub.example.com."]);
    let Some(O::ClasslessStaticRoute(routes)) = opt(&m, C::ClasslessStaticRoute) else {
        panic!("no option 121");
    };
    let routes: Vec<String> = routes.iter().map(|(n, g)| format!("{n} {g}")).collect();
    assert_eq!(routes, ["10.96.0.0/12 0.0.0.0", "0.0.0.0/0 10.0.0.1"]);
    // Message type and server id lead; End terminates.
    assert_eq!(&wire_codes(&r.bytes)[..2], &[53, 54]);
}

#[test]
fn request_for_leased_ip_gets_ack() {
    let l = lease24();
    let req = request(
        &MAC,
        MessageType::Request,
        Ipv4Addr::UNSPECIFIED,
        vec![
            DhcpOption::RequestedIpAddress(l.ip),
            DhcpOption::ServerIdentifier(SERVER),
        ],
    );
    let r = handle_packet(&l, SERVER, &req).expect("ack");
    assert_eq!(r.dest, BCAST);
    let m = decode(&r);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(m.yiaddr(), l.ip);
    assert!(m.opts().get(OptionCode::AddressLeaseTime).is_some());
    assert!(m.opts().get(OptionCode::ClasslessStaticRoute).is_some());
}

#[test]
fn renewal_is_acked_by_unicast_to_ciaddr() {
    let l = lease24();
    let req = request(&MAC, MessageType::Request, l.ip, vec![]);
    let r = handle_packet(&l, SERVER, &req).expect("ack");
    assert_eq!(r.dest, SocketAddrV4::new(l.ip, 68));
    let m = decode(&r);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(m.ciaddr(), l.ip);
    assert_eq!(m.yiaddr(), l.ip);
}

#[test]
fn request_for_other_ip_gets_nak() {
    let l = lease24();
    for (ciaddr, extra) in [
        (
            Ipv4Addr::UNSPECIFIED,
            vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 99))],
        ),
        (Ipv4Addr::new(192, 168, 1, 7), vec![]), // renewing an old address
    ] {
        let r = handle_packet(
            &l,
            SERVER,
            &request(&MAC, MessageType::Request, ciaddr, extra),
        )
        .expect("nak");
        assert_eq!(r.dest, BCAST);
        let m = decode(&r);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
        assert_eq!(
            opt(&m, OptionCode::ServerIdentifier),
            Some(DhcpOption::ServerIdentifier(SERVER))
        );
    }
}

#[test]
fn request_to_other_server_is_ignored() {
    let l = lease24();
    let req = request(
        &MAC,
        MessageType::Request,
        Ipv4Addr::UNSPECIFIED,
        vec![
            DhcpOption::RequestedIpAddress(l.ip),
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 254)),
        ],
    );
    assert_eq!(handle_packet(&l, SERVER, &req), None);
    // Neither option 50 nor ciaddr: malformed, ignored.
    let req = request(&MAC, MessageType::Request, Ipv4Addr::UNSPECIFIED, vec![]);
    assert_eq!(handle_packet(&l, SERVER, &req), None);
}

#[test]
fn other_mac_or_bad_header_is_ignored() {
    let l = lease24();
    let other = [0x02, 0, 0, 0, 0, 1];
    let d = request(&other, MessageType::Discover, Ipv4Addr::UNSPECIFIED, vec![]);
    assert_eq!(handle_packet(&l, SERVER, &d), None);

    let good = request(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED, vec![]);
    assert!(handle_packet(&l, SERVER, &good).is_some());
    let mut b = good.clone();
    b[0] = 2; // BOOTREPLY
    assert_eq!(handle_packet(&l, SERVER, &b), None);
    let mut b = good.clone();
    b[1] = 6; // IEEE 802
    assert_eq!(handle_packet(&l, SERVER, &b), None);
    let mut b = good.clone();
    b[2] = 16; // hlen
    assert_eq!(handle_packet(&l, SERVER, &b), None);
    let mut b = good.clone();
    b[24..28].copy_from_slice(&[10, 0, 0, 1]); // relayed
    assert_eq!(handle_packet(&l, SERVER, &b), None);
    let mut b = good.clone();
    b[236] = 0; // no magic cookie: plain BOOTP
    assert_eq!(handle_packet(&l, SERVER, &b), None);
}

#[test]
fn release_decline_and_server_messages_are_ignored() {
    let l = lease24();
    for t in [
        MessageType::Release,
        MessageType::Decline,
        MessageType::Offer,
        MessageType::Ack,
        MessageType::Unknown(200),
    ] {
        let p = request(&MAC, t, l.ip, vec![DhcpOption::ServerIdentifier(SERVER)]);
        assert_eq!(handle_packet(&l, SERVER, &p), None, "{t:?}");
    }
}

#[test]
fn inform_gets_ack_without_lease_times() {
    let l = lease24();
    let r = handle_packet(
        &l,
        SERVER,
        &request(&MAC, MessageType::Inform, l.ip, vec![]),
    )
    .expect("ack");
    assert_eq!(r.dest, SocketAddrV4::new(l.ip, 68));
    let m = decode(&r);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.ciaddr(), l.ip);
    for c in [
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ] {
        assert!(m.opts().get(c).is_none(), "{c:?}");
    }
    assert!(m.opts().get(OptionCode::DomainNameServer).is_some());
}

#[test]
fn garbage_truncated_and_empty_are_ignored() {
    let l = lease24();
    assert_eq!(handle_packet(&l, SERVER, &[]), None);
    assert_eq!(handle_packet(&l, SERVER, &[1, 1, 6, 0]), None);
    assert_eq!(handle_packet(&l, SERVER, &[0xff; 1000]), None);
    assert_eq!(handle_packet(&l, SERVER, &[0; 600]), None);
    let good = request(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED, vec![]);
    for n in 0..240 {
        assert_eq!(handle_packet(&l, SERVER, &good[..n]), None, "len {n}");
    }
    for n in 240..good.len() {
        let _ = handle_packet(&l, SERVER, &good[..n]);
    }
    // Option 53 with a bad length, or the option list cut mid-option.
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 2, 1, 1, 255]);
    assert_eq!(handle_packet(&l, SERVER, &b), None);
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 9, 1]);
    assert_eq!(handle_packet(&l, SERVER, &b), None);
}

#[test]
fn option_121_vector_slash24() {
    let o = classless_routes(&lease24()).unwrap();
    // 0.0.0.0/0 via 10.0.0.1
    assert_eq!(o.bytes, [121, 5, 0, 10, 0, 0, 1]);
}

#[test]
fn option_121_vector_slash32_offlink_gateway() {
    let o = classless_routes(&lease32()).unwrap();
    #[rustfmt::skip]
    let want = [
        121, 14,
        32, 169, 254, 1, 1, 0, 0, 0, 0, // 169.254.1.1/32 on-link, first
        0, 169, 254, 1, 1,              // default via 169.254.1.1
    ];
    assert_eq!(o.bytes, want);
}

#[test]
fn option_121_extra_routes_are_masked_and_no_duplicate_default() {
    let mut l = lease24();
    l.routes = vec![
        (
            "10.96.0.0/12".parse().unwrap(),
            Some(Ipv4Addr::new(10, 0, 0, 2)),
        ),
        ("172.16.5.9/24".parse().unwrap(), None), // host bits must be cleared
        (
            "0.0.0.0/0".parse().unwrap(),
            Some(Ipv4Addr::new(10, 0, 0, 3)),
        ),
    ];
    #[rustfmt::skip]
    let want = [
        121, 20,
        12, 10, 96, 10, 0, 0, 2,
        24, 172, 16, 5, 0, 0, 0, 0,
        0, 10, 0, 0, 1,
    ];
    assert_eq!(classless_routes(&l).unwrap().bytes, want);
    l.gateway = None;
    l.routes.clear();
    assert!(classless_routes(&l).is_none());
}

#[test]
fn option_119_vector_with_compression() {
    let o = domain_search(&["example.com".into(), "sub.example.com".into()]).unwrap();
    #[rustfmt::skip]
    let want = [
        119, 19,
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0,
        3, b's', b'u', b'b', 0xc0, 0x00, // pointer to offset 0 ("example.com")
    ];
    assert_eq!(o.bytes, want);
    // Trailing dots don't change the encoding; empty/invalid entries are dropped.
    let o2 = domain_search(&["example.com.".into(), "".into(), "sub.example.com.".into()]);
    assert_eq!(o2.unwrap().bytes, want);
    assert!(domain_search(&[]).is_none());
}

#[test]
fn parameter_request_list_orders_optional_options() {
    let l = lease24();
    let prl = vec![
        OptionCode::ClasslessStaticRoute,
        OptionCode::DomainNameServer,
        OptionCode::Router,
    ];
    let req = request(
        &MAC,
        MessageType::Discover,
        Ipv4Addr::UNSPECIFIED,
        vec![DhcpOption::ParameterRequestList(prl)],
    );
    let r = handle_packet(&l, SERVER, &req).unwrap();
    let codes = wire_codes(&r.bytes);
    assert_eq!(codes, [53, 54, 51, 58, 59, 1, 121, 6, 3, 12, 15, 26, 119]);
}

#[test]
fn reply_respects_max_message_size() {
    let mut l = lease24();
    l.dns_servers = (0..60).map(|i| Ipv4Addr::new(10, 0, 1, i)).collect(); // 240 bytes
    l.search = (0..20).map(|i| format!("d{i}.svc.cluster.local")).collect();
    let disc = |extra| request(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED, extra);
    // No option 57: 576-byte datagram, 548 bytes of DHCP.
    let r = handle_packet(&l, SERVER, &disc(vec![])).unwrap();
    assert!(r.bytes.len() <= 548, "{}", r.bytes.len());
    assert!(decode(&r).opts().get(OptionCode::SubnetMask).is_some());
    // A client allowing 1500 bytes gets everything.
    let r = handle_packet(&l, SERVER, &disc(vec![DhcpOption::MaxMessageSize(1500)])).unwrap();
    assert!(r.bytes.len() <= 1472);
    let m = decode(&r);
    assert!(m.opts().get(OptionCode::DomainNameServer).is_some());
    assert!(m.opts().get(OptionCode::DomainSearch).is_some());
    // Values below the RFC minimum are treated as 576.
    let r = handle_packet(&l, SERVER, &disc(vec![DhcpOption::MaxMessageSize(100)])).unwrap();
    assert!(r.bytes.len() >= 300 && r.bytes.len() <= 548);
    // Never more than one frame at the link's MTU, whatever the client allows.
    l.mtu = Some(700);
    let r = handle_packet(&l, SERVER, &disc(vec![DhcpOption::MaxMessageSize(9000)])).unwrap();
    assert!(r.bytes.len() <= 700 - 28, "{}", r.bytes.len());
    assert!(decode(&r).opts().get(OptionCode::SubnetMask).is_some());
}

#[test]
fn minimal_lease_and_invalid_prefix() {
    let mut l = lease24();
    l.gateway = None;
    l.dns_servers.clear();
    l.search.clear();
    l.domain = None;
    l.hostname = Some(String::new());
    l.mtu = None;
    let d = request(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED, vec![]);
    let r = handle_packet(&l, SERVER, &d).unwrap();
    assert_eq!(r.bytes.len(), 300);
    assert_eq!(wire_codes(&r.bytes), [53, 54, 51, 58, 59, 1]);
    l.prefix_len = 33;
    assert_eq!(handle_packet(&l, SERVER, &d), None);
}

#[test]
fn lease_serde_roundtrip() {
    let mut l = lease32();
    l.routes = vec![("10.96.0.0/12".parse().unwrap(), None)];
    let s = serde_json::to_string(&l).unwrap();
    assert!(s.contains("\"10.96.0.0/12\""), "{s}");
    let back: Lease = serde_json::from_str(&s).unwrap();
    assert_eq!(back, l);
}

/// xorshift64*: deterministic, dependency-free randomness for the robustness loop.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn never_panics_on_random_and_mutated_packets() {
    let l = lease32();
    let seeds: Vec<Vec<u8>> = vec![
        request(&MAC, MessageType::Discover, Ipv4Addr::UNSPECIFIED, vec![]),
        request(
            &MAC,
            MessageType::Request,
            Ipv4Addr::UNSPECIFIED,
            vec![
                DhcpOption::RequestedIpAddress(l.ip),
                DhcpOption::ServerIdentifier(SERVER),
                DhcpOption::MaxMessageSize(1500),
                DhcpOption::ParameterRequestList(vec![
                    OptionCode::Router,
                    OptionCode::Unknown(249),
                ]),
            ],
        ),
        request(&MAC, MessageType::Inform, l.ip, vec![]),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut replies = 0usize;
    for i in 0..100_000 {
        let pkt: Vec<u8> = if i % 10 == 0 {
            // Pure noise, sometimes with a valid header prefix.
            let len = rng.below(700);
            let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len >= 240 && i % 20 == 0 {
                p[..240].copy_from_slice(&seeds[0][..240]);
            }
            p
        } else {
            let mut p = seeds[i % seeds.len()].clone();
            for _ in 0..=rng.below(8) {
                match rng.below(4) {
                    0 => {
                        let j = rng.below(p.len());
                        p[j] = rng.next() as u8;
                    }
                    1 => p.truncate(rng.below(p.len() + 1)),
                    2 => {
                        // Append a random option, possibly with a lying length.
                        let code = rng.next() as u8;
                        let len = rng.next() as u8;
                        p.push(code);
                        p.push(len);
                        let n = rng.below(usize::from(len) + 2);
                        p.extend((0..n).map(|_| rng.next() as u8));
                    }
                    _ => {
                        let start = 240.min(p.len());
                        let j = start + rng.below(p.len() - start + 1);
                        p.insert(j, rng.next() as u8);
                    }
                }
                if p.is_empty() {
                    break;
                }
            }
            p
        };
        if let Some(r) = handle_packet(&l, SERVER, &pkt) {
            replies += 1;
            assert!(r.bytes.len() >= 300 && r.bytes.len() <= 1472);
        }
    }
    // The mutations must leave many packets valid, or the loop tests nothing interesting.
    assert!(replies > 10_000, "only {replies} replies");
}
