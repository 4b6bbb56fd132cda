//! `vnet-bench ab OLD.so NEW.so [N]`: two builds of libvnet, loaded side by
//! side with dlopen and called alternately on the same pod namespace, so
//! machine noise (other guests, frequency, cache state) hits both alike.
//! Prints medians and the median of the per-round ratios NEW/OLD.

use std::ffi::{c_char, c_void, CString};
use std::ptr;
use std::time::{Duration, Instant};

use crate::fixture::Pods;
use crate::stats::{us, Samples, Table};

type Setup =
    unsafe extern "C" fn(*const c_char, *const c_char, *mut *mut c_void, *mut *mut c_char) -> i32;
type Teardown = unsafe extern "C" fn(*mut c_void, *mut *mut c_char) -> i32;
type Free = unsafe extern "C" fn(*mut c_void);

struct Lib {
    setup: Setup,
    teardown: Teardown,
    free: Free,
}

fn load(path: &str) -> Lib {
    let p = CString::new(path).unwrap();
    // SAFETY: loading a library we built; RTLD_LOCAL keeps the two apart.
    let h = unsafe { libc::dlopen(p.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!h.is_null(), "dlopen {path} failed");
    let sym = |name: &str| {
        let n = CString::new(name).unwrap();
        // SAFETY: a live handle and a C string.
        let s = unsafe { libc::dlsym(h, n.as_ptr()) };
        assert!(!s.is_null(), "{path}: no {name}");
        s
    };
    // SAFETY: the C ABI's own signatures (include/vnet.h).
    unsafe {
        Lib {
            setup: std::mem::transmute::<*mut c_void, Setup>(sym("vnet_setup")),
            teardown: std::mem::transmute::<*mut c_void, Teardown>(sym("vnet_teardown")),
            free: std::mem::transmute::<*mut c_void, Free>(sym("vnet_free")),
        }
    }
}

fn cycle(l: &Lib, path: &CString, cfg: &CString) -> (Duration, Duration) {
    let mut h = ptr::null_mut();
    let mut err = ptr::null_mut();
    // VNB_AB_IDLE_MS: the node idles this long before the pod starts.
    if let Some(ms) = std::env::var("VNB_AB_IDLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let t0 = Instant::now();
    // SAFETY: valid strings and out pointers.
    let st = unsafe { (l.setup)(path.as_ptr(), cfg.as_ptr(), &mut h, &mut err) };
    let s = t0.elapsed();
    assert_eq!(st, 0, "vnet_setup failed");
    // A VM runs between setup and teardown; VNB_AB_GAP_MS stands for it.
    if let Some(ms) = std::env::var("VNB_AB_GAP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let t1 = Instant::now();
    // SAFETY: a live handle.
    let st = unsafe { (l.teardown)(h, &mut err) };
    let t = t1.elapsed();
    assert_eq!(st, 0, "vnet_teardown failed");
    // SAFETY: a live handle, not used again.
    unsafe { (l.free)(h) };
    // VNB_AB_SETTLE=1: the next setup waits until the kernel has freed the
    // deleted links, as after a teardown that waits for it.
    if std::env::var("VNB_AB_SETTLE").is_ok_and(|v| v == "1") {
        crate::fixture::short_lived_threads_gone();
    }
    (s, t)
}

pub fn run(old: &str, new: &str, n: usize) {
    let (a, b) = (load(old), load(new));
    let pods = Pods::new("ab", 2);
    let path = CString::new(pods.path(0)).unwrap();
    // VNB_AB_DUAL=1: the pod is dual stack (a global /64 and a default
    // route via the node), so IPv6 is served where the config says so:
    // the IPv6 service's cost is OLD '{"ipv6":false}' against NEW '{}'.
    // The neighbour, if any, is dual stack too.
    if std::env::var("VNB_AB_DUAL").is_ok_and(|v| v == "1") {
        pods.add_v6(0);
        if std::env::var_os("VNB_AB_NEIGHBOUR").is_some() {
            pods.add_v6(1);
        }
    }
    // VNB_AB_NEIGHBOUR=CONFIG: another pod on the node stays set up with
    // CONFIG (by NEW) for the whole run, as on a node running more than one
    // VM. In redirect mode this matters: the first netdev ingress hook on a
    // machine switches the kernel's ingress static keys on (code patching:
    // ~125 µs of a redirect setup here), and the last one off.
    let neighbour = std::env::var("VNB_AB_NEIGHBOUR").ok().map(|c| {
        let (p, c) = (
            CString::new(pods.path(1)).unwrap(),
            CString::new(c).unwrap(),
        );
        let (mut h, mut err) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: valid strings and out pointers.
        let st = unsafe { (b.setup)(p.as_ptr(), c.as_ptr(), &mut h, &mut err) };
        assert_eq!(st, 0, "neighbour vnet_setup failed");
        h
    });
    // VNB_AB_DHCP=1: the default config (DHCP on) instead of DHCP off.
    let dhcp = std::env::var("VNB_AB_DHCP").is_ok_and(|v| v == "1");
    // VNB_AB_OLD_CONFIG: OLD's own config instead (and so NEW's default).
    let cfg = std::env::var("VNB_AB_OLD_CONFIG")
        .map(|c| CString::new(c).unwrap())
        .unwrap_or_else(|_| CString::new(if dhcp { "{}" } else { r#"{"dhcp": false}"# }).unwrap());
    // VNB_AB_NEW_CONFIG: NEW's own config, e.g. the same build in redirect
    // mode against bridge mode: `ab L.so L.so` with '{"dhcp":false,"mode":"redirect"}'.
    let new_cfg = std::env::var("VNB_AB_NEW_CONFIG")
        .map(|c| CString::new(c).unwrap())
        .unwrap_or_else(|_| cfg.clone());
    let before = pods.dump(0);
    let (mut sa, mut sb, mut ta, mut tb) = Default::default();
    let (mut rs, mut rt) = (Vec::new(), Vec::new());
    for i in 0..n + 3 {
        // Alternate which goes first, so neither always follows the other.
        let (x, y) = if i % 2 == 0 {
            ((&a, &cfg), (&b, &new_cfg))
        } else {
            ((&b, &new_cfg), (&a, &cfg))
        };
        let (xs, xt) = cycle(x.0, &path, x.1);
        let (ys, yt) = cycle(y.0, &path, y.1);
        let ((s_a, t_a), (s_b, t_b)) = if i % 2 == 0 {
            ((xs, xt), (ys, yt))
        } else {
            ((ys, yt), (xs, xt))
        };
        if i < 3 {
            continue;
        }
        let push = |s: &mut Samples, d| s.push(d);
        push(&mut sa, s_a);
        push(&mut sb, s_b);
        push(&mut ta, t_a);
        push(&mut tb, t_b);
        rs.push(s_b.as_secs_f64() / s_a.as_secs_f64());
        rt.push(t_b.as_secs_f64() / t_a.as_secs_f64());
    }
    assert_eq!(pods.dump(0), before, "pod namespace not restored");
    if let Some(h) = neighbour {
        let mut err = ptr::null_mut();
        // SAFETY: a live handle, not used again.
        unsafe {
            assert_eq!(
                (b.teardown)(h, &mut err),
                0,
                "neighbour vnet_teardown failed"
            );
            (b.free)(h);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.total_cmp(y));
        v[v.len() / 2]
    };
    let mut t = Table::new(&[
        "build",
        "setup p50 µs",
        "setup p90 µs",
        "teardown p50 µs",
        "teardown p90 µs",
    ]);
    for (name, lib, setup, teardown) in [("old", old, &sa, &ta), ("new", new, &sb, &tb)] {
        t.row(vec![
            format!("{name}: {lib}"),
            us(setup.median()),
            us(setup.p90()),
            us(teardown.median()),
            us(teardown.p90()),
        ]);
    }
    t.print();
    println!(
        "median of per-round new/old: setup {:.2}×, teardown {:.2}× (n={n}, config old {} new {}, interleaved{})",
        med(&mut rs),
        med(&mut rt),
        cfg.to_string_lossy(),
        new_cfg.to_string_lossy(),
        std::env::var("VNB_AB_NEIGHBOUR")
            .map(|c| format!(", a neighbour pod set up with {c}"))
            .unwrap_or_default()
    );
}
