//! Faults on the way back (issue 15): one undo step of a teardown or of the
//! rollback of a failed setup fails, and the call must say so
//! (`Incomplete`, naming that step), everything else must be restored, and
//! a second teardown must finish the job, exactly. A recover that fails at
//! any step leaves the namespace as it was and can be retried. A panic
//! inside the library comes out of the C ABI as `VNET_ERR_PANIC`, with the
//! handle still usable and safe to free.
#![cfg(feature = "fault-injection")]

mod common;

use common::*;
use serde_json::Value;
use vnet::{Config, Error, Mode, Network};

/// Which parts of the dump undoing a step of `kind` may touch (so where a
/// leftover of that step may show), and whether one must show.
fn domain(kind: &str) -> (&'static [&'static str], bool) {
    match kind {
        // The link-local address and its routes follow the MAC.
        "set_mac" => (&["links", "addrs", "routes6"], true),
        "del_route" => (&["routes4", "routes6"], true),
        "del_address" => (&["addrs", "routes4", "routes6"], true),
        // The kernel makes the usual prefix route again by itself.
        "kernel_routes" => (&["routes4", "routes6"], false),
        // A link left behind (unless a group deletion took it anyway), its
        // addresses, routes and queue.
        "create_link" => (&["links", "addrs", "routes4", "routes6", "qdiscs"], false),
        "install_filter" | "install_redirect" => (&["nft"], true),
        "link_up" => (&["links", "addrs", "routes4", "routes6"], true),
        // Released by deleting the bridge or the link they concern.
        "enslave" | "add_address" | "add_route" => (&[], false),
        _ => panic!("unknown step kind {kind}"),
    }
}

/// The parts of two dumps that differ.
fn differing(before: &Value, after: &Value) -> Vec<String> {
    before
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| after.get(k.as_str()) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// After an undo that failed at a step of `kind`, described as `named` in
/// `msg`: the error names it, nothing outside its domain differs from
/// `before`, and what must remain does.
fn assert_only_that_remains(before: &Value, after: &Value, kind: &str, named: &str, msg: &str) {
    assert!(msg.contains(named), "{named:?} not named in: {msg}");
    let (allowed, must) = domain(kind);
    let diff = differing(before, after);
    let outside: Vec<&String> = diff
        .iter()
        .filter(|d| !allowed.contains(&d.as_str()))
        .collect();
    if !outside.is_empty() {
        println!("after a failed {kind}: {msg}");
        assert_same(before, after);
    }
    assert!(
        !must || !diff.is_empty(),
        "{kind}: nothing remains, yet: {msg}"
    );
}

/// The journal's steps of a set-up handle, as its result JSON lists them.
fn steps(net: &Network) -> Vec<Value> {
    let r: Value = serde_json::from_str(&net.result_json().unwrap()).unwrap();
    r["vnet"]["journal"]["steps"].as_array().unwrap().clone()
}

type Make = fn(&str) -> Pod;

fn lo_down(tag: &str) -> Pod {
    let p = Pod::ipv4(tag);
    p.ip_pod(&["link", "set", "lo", "down"]);
    p
}

/// The scenarios: (tag, pod, CNI result for two interfaces, mode).
const SCENARIOS: [(&str, Make, bool, Mode); 7] = [
    ("uv4", Pod::ipv4, false, Mode::Bridge),
    ("uds", Pod::dual_stack, false, Mode::Bridge),
    ("ulo", lo_down, false, Mode::Bridge),
    ("utwo", Pod::two_interfaces, true, Mode::Bridge),
    ("urv4", Pod::ipv4, false, Mode::Redirect),
    ("urmv", Pod::macvlan_bridge, false, Mode::Redirect),
    ("urtwo", Pod::two_interfaces, true, Mode::Redirect),
];

fn base(p: &Pod, cni: bool, mode: Mode) -> Config {
    Config {
        cni_result: cni.then(|| serde_json::from_str(&p.two_interfaces_cni()).unwrap()),
        mode,
        ..Config::default()
    }
}

#[test]
fn every_undo_step_of_teardown_that_fails_is_reported_and_retried() {
    if !need_root() {
        return;
    }
    let _serial = serial();
    let mut points = 0;
    for (tag, make, cni, mode) in SCENARIOS {
        let p = make(tag);
        let before = p.dump();
        for k in 0.. {
            let cfg = Config {
                fail_undo_at_step: Some(k),
                ..base(&p, cni, mode)
            };
            let mut net = Network::setup(&p.path, &cfg).expect("setup");
            let steps = steps(&net);
            if k >= steps.len() {
                // Redirect mode has no bridge, MAC or enslave steps.
                let floor = if mode == Mode::Bridge { 8 } else { 6 };
                assert!(k > floor, "{tag}: only {k} undo steps?");
                net.teardown()
                    .expect("teardown with the fault past the last step");
                assert_same(&before, &p.dump());
                break;
            }
            // Undo walks the journal backwards.
            let kind = steps[steps.len() - 1 - k]["step"].as_str().unwrap();
            let msg = match net.teardown() {
                Err(Error::Incomplete(m)) => m,
                other => panic!("{tag}: undo fault at {k} ({kind}): {other:?}"),
            };
            let named = format!("injected fault at undo step {k} ({kind}:");
            assert_only_that_remains(&before, &p.dump(), kind, &named, &msg);
            assert!(!net.is_torn_down());
            net.teardown()
                .unwrap_or_else(|e| panic!("{tag}: second teardown after {kind}: {e}"));
            assert_same(&before, &p.dump());
            points += 1;
        }
    }
    println!("teardown undo faults exercised: {points}");
}

/// The last fault point of setup (its steps counted as `fail_at_step`
/// counts them): failing there rolls back a whole journal.
fn last_fault_point(p: &Pod, cfg: &Config) -> usize {
    for j in 0.. {
        let c = Config {
            fail_at_step: Some(j),
            ..cfg.clone()
        };
        match Network::setup(&p.path, &c) {
            Err(Error::Internal(m)) if m.contains("injected fault") => {}
            Err(e) => panic!("fault at {j}: {e}"),
            Ok(mut net) => {
                net.teardown().unwrap();
                return j - 1;
            }
        }
    }
    unreachable!()
}

/// A rollback whose undo fails at one step: setup reports `Incomplete`,
/// naming both the setup error and that step, and everything else is back.
/// No handle comes back to retry with: what remains of our own devices is
/// refused as leftovers by the next setup.
#[test]
fn every_undo_step_of_a_rollback_that_fails_is_reported() {
    if !need_root() {
        return;
    }
    let _serial = serial();
    let mut points = 0;
    for (tag, make, cni, mode) in [
        SCENARIOS[0],
        SCENARIOS[1],
        SCENARIOS[3],
        SCENARIOS[4],
        SCENARIOS[5],
    ] {
        let (full, last) = {
            let p = make(tag);
            let cfg = base(&p, cni, mode);
            let mut net = Network::setup(&p.path, &cfg).unwrap();
            let full = steps(&net);
            net.teardown().unwrap();
            (full, last_fault_point(&p, &cfg))
        };
        for k in 0..full.len() {
            // A fresh pod each time: a rollback leaves no handle to finish with.
            let p = make(tag);
            let before = p.dump();
            let cfg = Config {
                fail_at_step: Some(last),
                fail_undo_at_step: Some(k),
                ..base(&p, cni, mode)
            };
            let kind = full[full.len() - 1 - k]["step"].as_str().unwrap();
            let msg = match Network::setup(&p.path, &cfg) {
                Err(Error::Incomplete(m)) => m,
                Err(e) => panic!("{tag}: rollback fault at {k} ({kind}): {e}"),
                Ok(_) => panic!("{tag}: setup with a fault at step {last} succeeded"),
            };
            assert!(
                msg.starts_with(&format!(
                    "setup failed (internal error: injected fault at step {last} ("
                )),
                "{msg}"
            );
            let named = format!("injected fault at undo step {k} ({kind}:");
            assert_only_that_remains(&before, &p.dump(), kind, &named, &msg);
            points += 1;
        }
    }
    println!("rollback undo faults exercised: {points}");
}

/// A dump of a set-up namespace without what changes by itself there
/// (bridge timers, the TAP's carrier and port state, which follow its
/// open queues).
fn set_up_shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !k.ends_with("_timer") && !matches!(k.as_str(), "operstate" | "state")
                })
                .map(|(k, x)| (k.clone(), set_up_shape(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|x| !matches!(x.as_str(), Some("NO-CARRIER" | "LOWER_UP")))
                .map(set_up_shape)
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// Recover fails at each of its steps in turn, leaving the namespace as
/// set up and no descriptor behind; the next recover works and teardown
/// restores exactly.
#[test]
fn recover_that_fails_at_any_step_changes_nothing_and_can_be_retried() {
    if !need_root() {
        return;
    }
    let _serial = serial();
    let p = Pod::two_interfaces("urec");
    let before = p.dump();
    let net = Network::setup(&p.path, &base(&p, true, Mode::Bridge)).unwrap();
    let json = net.result_json().unwrap();
    drop(net); // a launcher that went away: still set up
    let during = set_up_shape(&p.dump());
    let fds = fd_count();
    let mut points = 0;
    for k in 0.. {
        let mut doc: Value = serde_json::from_str(&json).unwrap();
        doc["vnet"]["journal"]["fail_recover_at"] = k.into();
        match Network::recover(&p.path, &doc.to_string()) {
            Err(Error::Internal(m))
                if m.contains(&format!("injected fault at recover step {k}")) =>
            {
                // Links and routes follow the TAP's carrier (port state,
                // "linkdown"): the rest must be as set up.
                let now = set_up_shape(&p.dump());
                for part in ["addrs", "rules4", "rules6", "qdiscs", "nft"] {
                    assert_eq!(during[part], now[part], "{part} after recover step {k}");
                }
                assert_eq!(fd_count(), fds, "fd left by a recover failing at {k}");
                points += 1;
            }
            Err(e) => panic!("recover step {k}: {e}"),
            Ok(mut net) => {
                // Two interfaces: a check, a TAP and DHCP sockets each.
                assert_eq!(k, 6, "recover has {k} fault points");
                assert_eq!(net.interface_count(), 2);
                net.teardown().expect("teardown after recover");
                assert_same(&before, &p.dump());
                break;
            }
        }
    }
    println!("recover faults exercised: {points}");
}

/// A panic inside the library, at any undo step of a teardown, comes out of
/// the C ABI as `VNET_ERR_PANIC` with a message; the handle still answers,
/// a second teardown restores exactly, and freeing it is safe.
#[test]
fn a_panic_in_teardown_is_vnet_err_panic_and_the_handle_survives() {
    use std::ffi::{CStr, CString};
    use vnet::ffi::*;
    if !need_root() {
        return;
    }
    let _serial = serial();
    let p = Pod::ipv4("upanic");
    let before = p.dump();
    let path = CString::new(p.path.clone()).unwrap();
    for k in [0, 5] {
        let cfg = CString::new(format!("{{\"panic_at_undo_step\": {k}}}")).unwrap();
        let mut h: *mut vnet_handle = std::ptr::null_mut();
        let mut err: *mut std::ffi::c_char = std::ptr::null_mut();
        // SAFETY: valid strings and out-pointers.
        let st = unsafe { vnet_setup(path.as_ptr(), cfg.as_ptr(), &mut h, &mut err) };
        assert_eq!(st, vnet_status::VNET_OK);
        // SAFETY: a live handle and a valid out-pointer.
        let st = unsafe { vnet_teardown(h, &mut err) };
        assert_eq!(st, vnet_status::VNET_ERR_PANIC);
        assert!(!err.is_null());
        // SAFETY: a string vnet returned, freed once below.
        let msg = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { vnet_string_free(err) };
        assert!(
            msg.starts_with(&format!("panic in vnet: injected panic at undo step {k} (")),
            "{msg}"
        );
        // SAFETY: the handle is still live.
        assert_eq!(unsafe { vnet_interface_count(h) }, 1);
        let mut err: *mut std::ffi::c_char = std::ptr::null_mut();
        // SAFETY: as above.
        let st = unsafe { vnet_teardown(h, &mut err) };
        assert_eq!(st, vnet_status::VNET_OK, "second teardown after a panic");
        assert!(err.is_null());
        assert_same(&before, &p.dump());
        // SAFETY: a live handle, not used afterwards.
        unsafe { vnet_free(h) };
    }
}
