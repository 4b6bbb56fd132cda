//! Each building block of the public Rust API, and the find/extract errors.

mod common;

use common::*;
use vnet::netns::Netns;
use vnet::nettools::*;
use vnet::tap::TapOptions;
use vnet::Error;

#[test]
fn find_veth_one_none_several() {
    if !need_root() {
        return;
    }
    let p = Pod::ipv4("fv");
    assert_eq!(find_veth(&Netns::open(&p.path).unwrap()).unwrap(), "eth0");
    let e = Pod::empty("fv0");
    assert!(matches!(
        find_veth(&Netns::open(&e.path).unwrap()),
        Err(Error::NoVeth(_))
    ));
    let two = Pod::two_interfaces("fv2");
    match find_veth(&Netns::open(&two.path).unwrap()) {
        Err(Error::SeveralVeths { names, .. }) => {
            assert!(names.contains("eth0") && names.contains("net1"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn extract_link_info_and_errors() {
    if !need_root() {
        return;
    }
    let p = Pod::dual_stack("ex");
    let ns = Netns::open(&p.path).unwrap();
    let (snap, cni) = extract_link_info(&ns, "eth0").unwrap();
    assert_eq!(snap.mac.to_string(), POD_MAC);
    assert_eq!(snap.mtu, 1500);
    let cni = serde_json::to_value(&cni).unwrap();
    assert_eq!(cni["cniVersion"], "1.0.0");
    assert_eq!(cni["interfaces"][0]["mac"], POD_MAC);
    let ips: Vec<&str> = cni["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["10.1.90.5/24", "fd00:1::5/64"]);
    assert_eq!(cni["ips"][0]["gateway"], "10.1.90.1");
    assert_eq!(cni["ips"][1]["gateway"], "fd00:1::1");
    assert!(matches!(
        extract_link_info(&ns, "nope0"),
        Err(Error::Config(_))
    ));
    p.ip_pod(&["addr", "flush", "dev", "eth0", "scope", "global"]);
    assert!(matches!(
        extract_link_info(&ns, "eth0"),
        Err(Error::NoAddress(_))
    ));
}

#[test]
fn strip_and_restore_link() {
    if !need_root() {
        return;
    }
    let p = Pod::extra_routes("st");
    let before = p.dump();
    let ns = Netns::open(&p.path).unwrap();
    let snap = strip_link(&ns, "eth0").unwrap();
    let addrs = p.ip_pod(&["-4", "addr", "show", "eth0"]);
    assert!(!addrs.contains("10.1.90.5"), "{addrs}");
    assert!(p.ip_pod(&["-4", "route", "show"]).trim().is_empty());
    restore_link(&ns, &snap).unwrap();
    assert_same(&before, &p.dump());
}

#[test]
fn bridge_tap_configure_and_mac() {
    if !need_root() {
        return;
    }
    let p = Pod::ipv4("br");
    let ns = Netns::open(&p.path).unwrap();
    let (_, cni) = extract_link_info(&ns, "eth0").unwrap();
    strip_link(&ns, "eth0").unwrap();
    let fds = open_tap(
        &ns,
        "tap7",
        TapOptions {
            queues: 2,
            vnet_hdr: true,
        },
    )
    .unwrap();
    assert_eq!(fds.len(), 2);
    let br = setup_bridge(&ns, "br7", &["tap7", "eth0"], 1500).unwrap();
    assert!(br > 0);
    let show = p.ip_pod(&["-d", "link", "show", "tap7"]);
    assert!(
        show.contains("master br7") && show.contains("multi_queue") && show.contains("vnet_hdr"),
        "{show}"
    );
    assert!(p.ip_pod(&["link", "show", "eth0"]).contains("master br7"));
    teardown_bridge(&ns, "br7").unwrap();
    assert!(!p.ip_pod(&["link", "show", "eth0"]).contains("master"));
    assert!(matches!(
        teardown_bridge(&ns, "eth0"),
        Err(Error::Config(_))
    ));
    configure_link(&ns, "eth0", &cni).unwrap();
    assert!(p.ip_pod(&["addr", "show", "eth0"]).contains("10.1.90.5/24"));
    assert!(p
        .ip_pod(&["route", "show"])
        .contains("default via 10.1.90.1 dev eth0"));
    let (a, b) = (generate_mac().unwrap(), generate_mac().unwrap());
    assert_ne!(a, b);
    assert_eq!(a.0[0] & 3, 2);
}

#[test]
fn escape_veth_carries_traffic() {
    if !need_root() {
        return;
    }
    let p = Pod::empty("esc");
    let (a, b) = (
        Netns::open(&p.path).unwrap(),
        Netns::open(&format!("/var/run/netns/{}", p.host)).unwrap(),
    );
    create_escape_veth(&a, "esc0", &b, "esc1").unwrap();
    p.ip_pod(&["addr", "add", "10.9.0.1/24", "dev", "esc0"]);
    p.ip_host(&["addr", "add", "10.9.0.2/24", "dev", "esc1"]);
    sh(&[
        "ip", "netns", "exec", &p.pod, "ping", "-c", "1", "-W", "2", "10.9.0.2",
    ]);
}

/// Setup reads links with only the attributes it uses and routes only where
/// a snapshot could keep them: both must agree with the full parse.
#[test]
fn lean_dumps_agree_with_the_full_parse() {
    if !need_root() {
        return;
    }
    let p = Pod::dual_stack("lean");
    p.ip_pod(&[
        "route",
        "add",
        "10.96.0.0/12",
        "via",
        "10.1.90.1",
        "metric",
        "50",
    ]);
    p.ip_pod(&[
        "route",
        "add",
        "10.97.0.0/16",
        "via",
        "10.1.90.1",
        "table",
        "100",
    ]);
    p.ip_pod(&[
        "route",
        "add",
        "10.98.0.0/16",
        "via",
        "10.1.90.1",
        "table",
        "1000",
    ]);
    p.ip_pod(&[
        "-6",
        "route",
        "add",
        "fd00:9::/64",
        "via",
        "fd00:1::1",
        "proto",
        "static",
    ]);
    p.ip_pod(&["link", "set", "eth0", "group", "7"]);
    let ns = Netns::open(&p.path).unwrap();
    ns.run(|| {
        use vnet::netlink::{link_attr, Netlink};
        use vnet::snapshot::InterfaceSnapshot;
        let mut nl = Netlink::open().unwrap();
        let d = nl.dump_all().unwrap();
        let (links, addrs, some_routes) = (&d.links, &d.addrs, &d.routes);
        let all_routes = nl.routes().unwrap();
        assert!(some_routes.len() < all_routes.len());
        assert_eq!(links.len(), 2, "lo and eth0");
        for lean in links {
            let full = nl.link(lean.header.index).unwrap();
            assert_eq!(lean.header, full.header);
            assert_eq!(link_attr::name(lean), link_attr::name(&full));
            assert_eq!(link_attr::mac(lean), link_attr::mac(&full));
            assert_eq!(link_attr::mtu(lean), link_attr::mtu(&full));
            assert_eq!(link_attr::controller(lean), link_attr::controller(&full));
            assert_eq!(link_attr::group(lean), link_attr::group(&full));
            assert_eq!(link_attr::kind(lean), link_attr::kind(&full));
        }
        let eth0 = links
            .iter()
            .find(|l| link_attr::name(l) == Some("eth0"))
            .unwrap();
        assert_eq!(link_attr::group(eth0), 7);
        let lean = InterfaceSnapshot::take(eth0, addrs, some_routes, &d.rules).unwrap();
        let full = InterfaceSnapshot::take(eth0, addrs, &all_routes, &d.rules).unwrap();
        assert_eq!(format!("{:?}", lean.routes), format!("{:?}", full.routes));
        assert_eq!(
            format!("{:?}", lean.kernel_routes),
            format!("{:?}", full.kernel_routes)
        );
        // Both defaults, the metric route, tables 100 and 1000, the IPv6 one.
        assert_eq!(lean.routes.len(), 6, "{:?}", lean.routes);
        Ok(())
    })
    .unwrap();
}
