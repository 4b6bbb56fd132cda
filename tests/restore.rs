//! Exact restore of routing shapes that plugins make (the kernel's prefix
//! route removed, routes in another table behind a rule), and teardown
//! that reports what it could not put back instead of claiming success.
//! The reference plugins themselves are exercised in tests/cni/ and vm/.

mod common;

use common::*;
use vnet::{Config, Error, Network};

/// Root is needed for namespaces; without it this fails unless the run
/// explicitly skips (`VNET_TEST_SKIP=1`).
fn root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os("VNET_TEST_SKIP").is_some() {
        eprintln!("SKIPPED {test}: needs root (VNET_TEST_SKIP is set)");
        return false;
    }
    panic!("{test} needs root (set VNET_TEST_SKIP=1 to skip it)");
}

/// The shape the reference ptp plugin leaves: no prefix route; the gateway
/// on-link, the subnet and the default through it.
fn ptp_shaped(tag: &str) -> Pod {
    let p = Pod::ipv4(tag);
    p.ip_pod(&["route", "del", "10.1.90.0/24", "dev", "eth0"]);
    p.ip_pod(&["route", "add", "10.1.90.1", "dev", "eth0", "scope", "link"]);
    p.ip_pod(&["route", "add", "10.1.90.0/24", "via", "10.1.90.1"]);
    p
}

fn lease(net: &Network) -> serde_json::Value {
    let r: serde_json::Value = serde_json::from_str(&net.result_json().unwrap()).unwrap();
    r["vnet"]["interfaces"][0]["lease"].clone()
}

#[test]
fn a_removed_prefix_route_stays_removed_and_the_lease_says_32() {
    if !root("a_removed_prefix_route_stays_removed_and_the_lease_says_32") {
        return;
    }
    let _s = serial();
    let p = ptp_shaped("ptp");
    let before = p.dump();
    let mut net = Network::setup(&p.path, &Config::default()).expect("setup");
    let l = lease(&net);
    assert_eq!(l["prefix_len"], 32, "{l}");
    assert_eq!(l["gateway"], "10.1.90.1", "{l}");
    assert!(
        l["routes"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["10.1.90.0/24", "10.1.90.1"])),
        "{l}"
    );
    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
    let routes = p.ip_pod(&["route", "show", "10.1.90.0/24"]);
    assert!(routes.contains("via 10.1.90.1"), "{routes}");
    assert!(!routes.contains("proto kernel"), "{routes}");
}

#[test]
fn routes_in_a_table_behind_a_source_rule_come_back_and_decide_the_lease() {
    if !root("routes_in_a_table_behind_a_source_rule_come_back_and_decide_the_lease") {
        return;
    }
    let _s = serial();
    // What the sbr plugin makes of a pod: everything moved to table 100.
    let p = ptp_shaped("sbr");
    for r in ["default via 10.1.90.1", "10.1.90.0/24 via 10.1.90.1"] {
        let mut del = vec!["route", "del"];
        del.extend(r.split(' '));
        p.ip_pod(&del);
        let mut add = vec!["route", "add"];
        add.extend(r.split(' '));
        add.extend(["table", "100"]);
        p.ip_pod(&add);
    }
    p.ip_pod(&["route", "del", "10.1.90.1", "dev", "eth0"]);
    p.ip_pod(&[
        "route",
        "add",
        "10.1.90.1",
        "dev",
        "eth0",
        "scope",
        "link",
        "table",
        "100",
    ]);
    p.ip_pod(&["-6", "route", "del", "fe80::/64", "dev", "eth0"]);
    p.ip_pod(&[
        "-6",
        "route",
        "add",
        "fe80::/64",
        "dev",
        "eth0",
        "proto",
        "kernel",
        "table",
        "100",
    ]);
    p.ip_pod(&[
        "rule",
        "add",
        "from",
        "10.1.90.5",
        "lookup",
        "100",
        "prio",
        "32765",
    ]);
    let before = p.dump();
    let rules_before = p.ip_pod(&["rule", "show"]);
    let mut net = Network::setup(&p.path, &Config::default()).expect("setup");
    let l = lease(&net);
    assert_eq!(
        (l["prefix_len"].clone(), l["gateway"].clone()),
        (32.into(), "10.1.90.1".into()),
        "{l}"
    );
    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
    assert_eq!(rules_before, p.ip_pod(&["rule", "show"]));
    let main6 = p.ip_pod(&["-6", "route", "show", "table", "main"]);
    assert!(!main6.contains("fe80::/64"), "re-created in main: {main6}");
}

#[test]
fn teardown_names_what_differs_and_a_second_one_finishes() {
    if !root("teardown_names_what_differs_and_a_second_one_finishes") {
        return;
    }
    let _s = serial();
    let p = ptp_shaped("drift");
    let before = p.dump();
    let mut net = Network::setup(&p.path, &Config::default()).expect("setup");
    // While the VM runs, someone takes the key of a route we must put back
    // and changes the MTU: undo meets EEXIST, which is not "done".
    p.ip_pod(&[
        "route",
        "add",
        "10.1.90.0/24",
        "dev",
        "br0",
        "proto",
        "static",
    ]);
    p.ip_pod(&["link", "set", "eth0", "mtu", "1400"]);
    let err = net.teardown().expect_err("teardown must not claim success");
    let msg = err.to_string();
    assert!(matches!(err, Error::Incomplete(_)), "{msg}");
    assert!(msg.contains("MTU"), "{msg}");
    assert!(msg.contains("10.1.90.0/24 via 10.1.90.1"), "{msg}");
    // Put the namespace in a state the record can be restored into; the
    // route through br0 went with the bridge, the MTU is back.
    p.ip_pod(&["link", "set", "eth0", "mtu", "1500"]);
    net.teardown().expect("second teardown");
    assert_same(&before, &p.dump());
}

#[test]
fn a_cni_route_the_namespace_lacks_is_refused_before_any_change() {
    if !root("a_cni_route_the_namespace_lacks_is_refused_before_any_change") {
        return;
    }
    let _s = serial();
    let p = Pod::ipv4("cnirt");
    let before = p.dump();
    let cni = serde_json::json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": p.path}],
        "ips": [{"address": "10.1.90.5/24", "gateway": "10.1.90.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.96.0.0/12", "gw": "10.1.90.1"}]
    });
    let cfg = Config {
        cni_result: Some(cni),
        ..Config::default()
    };
    let err = Network::setup(&p.path, &cfg).err().expect("refused");
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(
        err.to_string().contains("10.96.0.0/12 via 10.1.90.1"),
        "{err}"
    );
    assert_same(&before, &p.dump());
}

#[test]
fn a_macvlan_pod_is_refused_before_any_change() {
    if !root("a_macvlan_pod_is_refused_before_any_change") {
        return;
    }
    let _s = serial();
    let p = Pod::empty("mv");
    p.ip_host(&["link", "add", "m0", "type", "veth", "peer", "name", "m0p"]);
    p.ip_host(&["link", "set", "m0", "up"]);
    p.ip_host(&[
        "link", "add", "link", "m0", "eth0", "type", "macvlan", "mode", "bridge",
    ]);
    p.ip_host(&["link", "set", "eth0", "netns", &p.pod]);
    p.ip_pod(&["addr", "add", "10.1.90.5/24", "dev", "eth0"]);
    p.ip_pod(&["link", "set", "eth0", "up"]);
    let before = p.dump();
    // With and without a CNI result naming it.
    let named = Config {
        cni_result: Some(serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": p.path}],
            "ips": [{"address": "10.1.90.5/24", "interface": 0}]
        })),
        ..Config::default()
    };
    for cfg in [Config::default(), named] {
        let err = Network::setup(&p.path, &cfg).err().expect("refused");
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("macvlan"), "{err}");
        // It names the mode that works.
        assert!(err.to_string().contains("\"redirect\""), "{err}");
        assert_same(&before, &p.dump());
    }
    // And that mode takes the same pod, both ways, and puts it back.
    for cfg in [Config::default(), named_cfg(&p)] {
        let cfg = Config {
            mode: vnet::Mode::Redirect,
            ..cfg
        };
        let mut net = Network::setup(&p.path, &cfg).expect("redirect mode");
        net.teardown().expect("teardown");
        assert_same(&before, &p.dump());
    }
}

fn named_cfg(p: &Pod) -> Config {
    Config {
        cni_result: Some(serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": p.path}],
            "ips": [{"address": "10.1.90.5/24", "interface": 0}]
        })),
        ..Config::default()
    }
}
