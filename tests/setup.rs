//! Setup and teardown of whole scenarios through the safe API; every test
//! asserts on what the kernel holds.

mod common;

use common::*;
use vnet::{Config, Network};

fn roundtrip(p: &Pod, cfg: &Config) -> serde_json::Value {
    let before = p.dump();
    let mut net = Network::setup(&p.path, cfg).expect("setup");
    let during = p.dump();
    let json = net.result_json().unwrap();
    // `VNET_SEED_DIR=fuzz/seeds/state_json` refreshes the fuzzer's seeds.
    if let Ok(dir) = std::env::var("VNET_SEED_DIR") {
        std::fs::write(
            format!("{dir}/{}.json", p.pod.split('-').nth(1).unwrap()),
            &json,
        )
        .unwrap();
    }
    let result: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_set_up(&during, &result);
    net.teardown().expect("teardown");
    assert_same(&before, &p.dump());
    result
}

/// What a dump taken between setup and teardown must show, per interface
/// of `result`: the veth and the TAP in the bridge, no address on the veth,
/// the DHCP address on the bridge; and our nf_tables table.
fn assert_set_up(during: &serde_json::Value, result: &serde_json::Value) {
    let find = |what: &str, name: &str| -> serde_json::Value {
        during[what]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == name)
            .unwrap_or_else(|| panic!("no {name} in the {what} dump"))
            .clone()
    };
    let ifaces = result["vnet"]["interfaces"].as_array().unwrap();
    assert!(!ifaces.is_empty(), "{result}");
    for i in ifaces {
        let (veth, tap, br) = (
            i["veth"].as_str().unwrap(),
            i["tap"].as_str().unwrap(),
            i["bridge"].as_str().unwrap(),
        );
        assert_eq!(find("links", br)["linkinfo"]["info_kind"], "bridge");
        for port in [veth, tap] {
            assert_eq!(find("links", port)["master"], br, "{port} is not in {br}");
        }
        let on_veth = &find("addrs", veth)["addr_info"];
        assert_eq!(on_veth, &serde_json::json!([]), "{veth} keeps addresses");
        let on_br: Vec<String> = find("addrs", br)["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect();
        assert_eq!(on_br, ["169.254.254.2/24"], "{br}'s addresses");
    }
    let nft = during["nft"].as_str().unwrap();
    assert!(
        nft.contains("table bridge vnet {"),
        "no filter table: {nft}"
    );
}

#[test]
fn ipv4_default_route() {
    if !need_root() {
        return;
    }
    let p = Pod::ipv4("v4");
    let r = roundtrip(&p, &Config::default());
    assert_eq!(r["vnet"]["interfaces"][0]["vm_mac"], POD_MAC);
    assert_eq!(r["ips"][0]["address"], "10.1.90.5/24");
    assert_eq!(r["ips"][0]["gateway"], "10.1.90.1");
}

#[test]
fn dual_stack() {
    if !need_root() {
        return;
    }
    let p = Pod::dual_stack("ds");
    let r = roundtrip(&p, &Config::default());
    let ips: Vec<String> = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap().to_string())
        .collect();
    assert!(ips.contains(&"fd00:1::5/64".to_string()), "{ips:?}");
}

#[test]
fn extra_routes() {
    if !need_root() {
        return;
    }
    let p = Pod::extra_routes("rt");
    roundtrip(&p, &Config::default());
}

#[test]
fn mtu_9000() {
    if !need_root() {
        return;
    }
    let p = Pod::ipv4_mtu("mtu", 9000);
    let r = roundtrip(&p, &Config::default());
    assert_eq!(r["vnet"]["interfaces"][0]["mtu"], 9000);
}

#[test]
fn two_interfaces() {
    if !need_root() {
        return;
    }
    let p = Pod::two_interfaces("two");
    let cfg = Config {
        cni_result: Some(serde_json::from_str(&p.two_interfaces_cni()).unwrap()),
        ..Config::default()
    };
    let r = roundtrip(&p, &cfg);
    assert_eq!(r["vnet"]["interfaces"][1]["tap"], "tap1");
}

#[test]
fn bridge_and_tap_stay_off_ipv6() {
    if !need_root() {
        return;
    }
    let p = Pod::dual_stack("nov6");
    let mut net = Network::setup(&p.path, &Config::default()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    for dev in ["br0", "tap0", "eth0"] {
        let a = p.ip_pod(&["-6", "addr", "show", "dev", dev]);
        assert!(a.trim().is_empty(), "{dev} has IPv6 addresses: {a}");
    }
    net.teardown().unwrap();
}

#[test]
fn lease_carries_dns_hostname_and_per_link_routes() {
    if !need_root() {
        return;
    }
    let p = Pod::two_interfaces("lease");
    let mut cni: serde_json::Value = serde_json::from_str(&p.two_interfaces_cni()).unwrap();
    cni["dns"] = serde_json::json!({"nameservers": ["10.96.0.10", "fd00::10"], "search": ["ns.svc.cluster.local"]});
    let cfg = Config {
        cni_result: Some(cni),
        hostname: Some("vm1".into()),
        ..Config::default()
    };
    let mut net = Network::setup(&p.path, &cfg).unwrap();
    let r: serde_json::Value = serde_json::from_str(&net.result_json().unwrap()).unwrap();
    let l0 = &r["vnet"]["interfaces"][0]["lease"];
    assert_eq!(l0["ip"], "10.1.90.5");
    assert_eq!(l0["gateway"], "10.1.90.1");
    assert_eq!(l0["dns_servers"], serde_json::json!(["10.96.0.10"]));
    assert_eq!(l0["search"], serde_json::json!(["ns.svc.cluster.local"]));
    assert_eq!(l0["hostname"], "vm1");
    // net1 has no default route in the pod: no router for it, only its own route.
    let l1 = &r["vnet"]["interfaces"][1]["lease"];
    assert_eq!(l1["ip"], "10.2.0.5");
    assert!(l1["gateway"].is_null(), "{l1}");
    let routes = l1["routes"].to_string();
    assert!(
        routes.contains("10.20.0.0/16") && routes.contains("10.2.0.1"),
        "{routes}"
    );
    assert!(!routes.contains("0.0.0.0/0"), "{routes}");
    // A config `dns` replaces the CNI one.
    net.teardown().unwrap();
    let cfg = Config {
        dns: Some(serde_json::from_value(serde_json::json!({"nameservers": ["1.1.1.1"]})).unwrap()),
        ..cfg
    };
    let mut net = Network::setup(&p.path, &cfg).unwrap();
    let r: serde_json::Value = serde_json::from_str(&net.result_json().unwrap()).unwrap();
    assert_eq!(
        r["vnet"]["interfaces"][0]["lease"]["dns_servers"],
        serde_json::json!(["1.1.1.1"])
    );
    assert_eq!(r["dns"]["nameservers"], serde_json::json!(["1.1.1.1"]));
    net.teardown().unwrap();
}

#[test]
fn lo_brought_up_and_put_back_down() {
    if !need_root() {
        return;
    }
    let p = Pod::ipv4("lo");
    p.ip_pod(&["link", "set", "lo", "down"]);
    let before = p.dump();
    let mut net = Network::setup(&p.path, &Config::default()).unwrap();
    assert!(
        p.ip_pod(&["link", "show", "lo"]).contains(",UP"),
        "lo is not up"
    );
    net.teardown().unwrap();
    assert_same(&before, &p.dump());
    assert!(
        !p.ip_pod(&["link", "show", "lo"]).contains(",UP"),
        "lo is still up"
    );
}

#[test]
fn incomplete_cni_result_is_filled_from_the_namespace() {
    if !need_root() {
        return;
    }
    let p = Pod::extra_routes("fill");
    let cni = serde_json::json!({"cniVersion": "0.4.0", "interfaces": [{"name": "eth0", "sandbox": p.path}]});
    let cfg = Config {
        cni_result: Some(cni),
        ..Config::default()
    };
    let r = roundtrip(&p, &cfg);
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["interfaces"][0]["mac"], POD_MAC);
    assert_eq!(r["ips"][0]["address"], "10.1.90.5/24");
    assert_eq!(r["ips"][0]["gateway"], "10.1.90.1");
    let routes = r["routes"].to_string();
    for dst in ["0.0.0.0/0", "10.96.0.0/12", "192.168.77.0/24"] {
        assert!(routes.contains(dst), "{dst} missing from {routes}");
    }
}
