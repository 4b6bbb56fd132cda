//! The lease rule against the routing shapes the reference plugins and the
//! big CNIs make (the real plugins are exercised in tests/ and vm/).

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;

use super::{ipv4, V4View};
use crate::mac::Mac;
use crate::snapshot::{InterfaceSnapshot, Raw};

const IF: u32 = 2;

fn net(s: &str) -> Ipv4Network {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A route through the pod link: `dst` via `gw` (None: on-link) in `table`.
fn route(dst: &str, gw: Option<&str>, table: u32, proto: RouteProtocol) -> Raw<RouteMessage> {
    let dst = net(dst);
    let mut r = RouteMessage::default();
    r.header.address_family = AddressFamily::Inet;
    r.header.destination_prefix_length = dst.prefix();
    r.header.protocol = proto;
    r.header.table = if table < 256 { table as u8 } else { 252 };
    r.attributes.push(RouteAttribute::Table(table));
    if dst.prefix() > 0 {
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst.ip())));
    }
    if let Some(g) = gw {
        r.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(ip(g))));
    }
    r.attributes.push(RouteAttribute::Oif(IF));
    Raw(r)
}

fn user(dst: &str, gw: Option<&str>) -> Raw<RouteMessage> {
    route(dst, gw, 254, RouteProtocol::Boot)
}

fn kernel(dst: &str) -> Raw<RouteMessage> {
    route(dst, None, 254, RouteProtocol::Kernel)
}

fn rule(prio: u32, from: Option<&str>, table: u32) -> Raw<RuleMessage> {
    let mut r = RuleMessage::default();
    r.header.family = AddressFamily::Inet;
    r.header.action = RuleAction::ToTable;
    r.attributes.push(RuleAttribute::Priority(prio));
    r.attributes.push(RuleAttribute::Table(table));
    if let Some(f) = from {
        let n = net(f);
        r.header.src_len = n.prefix();
        r.attributes.push(RuleAttribute::Source(IpAddr::V4(n.ip())));
    }
    Raw(r)
}

fn default_rules() -> Vec<Raw<RuleMessage>> {
    vec![
        rule(0, None, 255),
        rule(32766, None, 254),
        rule(32767, None, 253),
    ]
}

fn snap(
    routes: Vec<Raw<RouteMessage>>,
    kernel_routes: Vec<Raw<RouteMessage>>,
    rules: Vec<Raw<RuleMessage>>,
) -> InterfaceSnapshot {
    InterfaceSnapshot {
        ifindex: IF,
        name: "eth0".into(),
        mac: Mac([2, 0, 0, 0, 0, 1]),
        mtu: 1500,
        addresses: Vec::new(),
        routes,
        kernel_routes,
        rules,
    }
}

#[test]
fn bridge_plugin_subnet_is_on_link() {
    let s = snap(
        vec![user("0.0.0.0/0", Some("10.22.0.1"))],
        vec![kernel("10.22.0.0/24")],
        default_rules(),
    );
    assert_eq!(
        ipv4(&s, net("10.22.0.5/24")),
        V4View {
            prefix_len: 24,
            gateway: Some(ip("10.22.0.1")),
            routes: vec![],
        }
    );
}

#[test]
fn ptp_subnet_is_through_the_gateway_so_the_mask_is_32() {
    // What the reference ptp plugin leaves: no prefix route.
    let s = snap(
        vec![
            user("10.23.0.1/32", None),
            user("10.23.0.0/24", Some("10.23.0.1")),
            user("0.0.0.0/0", Some("10.23.0.1")),
        ],
        vec![],
        default_rules(),
    );
    assert_eq!(
        ipv4(&s, net("10.23.0.2/24")),
        V4View {
            prefix_len: 32,
            gateway: Some(ip("10.23.0.1")),
            routes: vec![(net("10.23.0.0/24"), Some(ip("10.23.0.1")))],
        }
    );
}

#[test]
fn calico_host_address_with_a_link_local_gateway() {
    let s = snap(
        vec![
            user("169.254.1.1/32", None),
            user("0.0.0.0/0", Some("169.254.1.1")),
        ],
        vec![],
        default_rules(),
    );
    let v = ipv4(&s, net("10.1.2.3/32"));
    assert_eq!(v.prefix_len, 32);
    assert_eq!(v.gateway, Some(ip("169.254.1.1")));
    assert!(v.routes.is_empty(), "{:?}", v.routes);
}

#[test]
fn sbr_table_behind_a_source_rule_is_what_routes_the_pod() {
    // ptp + sbr: main holds nothing for eth0, table 100 everything.
    let t = |d, g| route(d, g, 100, RouteProtocol::Boot);
    let mut rules = default_rules();
    rules.push(rule(32765, Some("10.23.0.2/32"), 100));
    let s = snap(
        vec![
            t("0.0.0.0/0", Some("10.23.0.1")),
            t("10.23.0.0/24", Some("10.23.0.1")),
            t("10.23.0.1/32", None),
        ],
        vec![],
        rules,
    );
    assert_eq!(
        ipv4(&s, net("10.23.0.2/24")),
        V4View {
            prefix_len: 32,
            gateway: Some(ip("10.23.0.1")),
            routes: vec![(net("10.23.0.0/24"), Some(ip("10.23.0.1")))],
        }
    );
    // The same table behind a rule for another source routes nothing of ours.
    let mut other = default_rules();
    other.push(rule(32765, Some("10.99.0.9/32"), 100));
    let s = snap(s.routes, vec![], other);
    let v = ipv4(&s, net("10.23.0.2/24"));
    assert_eq!((v.gateway, v.routes.len()), (None, 0), "{v:?}");
}

#[test]
fn the_first_table_decides_a_destination_and_on_link_routes_come_first() {
    let mut rules = default_rules();
    rules.push(rule(100, Some("10.0.0.0/8"), 100));
    let s = snap(
        vec![
            user("10.9.0.0/16", Some("10.22.0.9")),
            route("10.9.0.0/16", Some("10.22.0.7"), 100, RouteProtocol::Static),
            user("0.0.0.0/0", Some("10.22.0.1")),
            user("10.50.0.0/16", None),
        ],
        vec![kernel("10.22.0.0/24")],
        rules,
    );
    let v = ipv4(&s, net("10.22.0.5/24"));
    assert_eq!(v.prefix_len, 24);
    assert_eq!(
        v.routes,
        vec![
            (net("10.50.0.0/16"), None),
            (net("10.9.0.0/16"), Some(ip("10.22.0.7"))),
        ]
    );
}

#[test]
fn without_recorded_rules_main_routes() {
    let s = snap(
        vec![user("0.0.0.0/0", Some("10.22.0.1"))],
        vec![kernel("10.22.0.0/24")],
        vec![],
    );
    assert_eq!(ipv4(&s, net("10.22.0.5/24")).prefix_len, 24);
}

#[test]
fn an_on_link_default_route_stays_a_route() {
    let s = snap(
        vec![user("0.0.0.0/0", None)],
        vec![kernel("10.22.0.0/24")],
        default_rules(),
    );
    let v = ipv4(&s, net("10.22.0.5/24"));
    assert_eq!(v.gateway, None);
    assert_eq!(v.routes, vec![(net("0.0.0.0/0"), None)]);
}
