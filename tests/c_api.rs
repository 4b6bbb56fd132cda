//! The C ABI seen from C: builds `c-tests/frames.c` and `c-tests/hostile.c`
//! with the system compiler against the `libvnet.so` this `cargo test` built,
//! runs them on scratch pods, and checks each left its namespaces as found.
//! `VNET_VALGRIND=1` runs them under valgrind (errors and definite leaks fail).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

/// Where cargo put `libvnet.so`: the test binary is `<dir>/deps/c_api-*`.
/// `cargo test` builds the cdylib into `deps/` and does not always copy it
/// up to `<dir>/` (never from a clean target), and a copy there may be
/// stale, so `deps/` comes first.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let candidates = [deps, deps.parent().expect("profile dir")];
    candidates
        .iter()
        .find(|d| d.join("libvnet.so").is_file())
        .unwrap_or_else(|| panic!("no libvnet.so next to {}", exe.display()))
        .to_path_buf()
}

/// The directory of the C test binaries, holding a `libvnet.so.0` link: the
/// library's SONAME is versioned, so that is the name the loader looks for.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = lib_dir().join("c-tests");
        std::fs::create_dir_all(&dir).expect("c-tests dir");
        let link = dir.join("libvnet.so.0");
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink("../libvnet.so", &link) {
            // Another test binary run may have made it meanwhile.
            assert!(link.exists(), "symlink {}: {e}", link.display());
        }
        dir
    })
}

/// Compile `c-tests/<name>.c` once per test run.
fn build(name: &str) -> PathBuf {
    static FRAMES: OnceLock<PathBuf> = OnceLock::new();
    static HOSTILE: OnceLock<PathBuf> = OnceLock::new();
    let cell = match name {
        "frames" => &FRAMES,
        "hostile" => &HOSTILE,
        _ => panic!("unknown C test {name}"),
    };
    cell.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = bin_dir();
        let tmp = dir.join(format!("{name}.{}", std::process::id()));
        let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-std=c99", "-g", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(root.join("include"))
            .arg(root.join(format!("c-tests/{name}.c")))
            .arg("-L")
            .arg(lib_dir())
            .args(["-lvnet", "-pthread"])
            .arg(format!("-Wl,-rpath,{}", dir.display()))
            .arg("-o")
            .arg(&tmp)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "cc {name}.c failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = dir.join(name);
        std::fs::rename(&tmp, &bin).expect("rename");
        bin
    })
    .clone()
}

/// Run a C test (under valgrind with `VNET_VALGRIND=1`) and echo its
/// output. Returns a check to call once the namespaces are compared (so a
/// failing run still reports what it changed), and its stdout.
fn run(name: &str, args: &[String]) -> (impl FnOnce(), String) {
    let bin = build(name);
    let valgrind = std::env::var("VNET_VALGRIND").is_ok_and(|v| v == "1");
    let mut cmd = if valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "-q",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            // Rust's std keeps a per-thread handle alive on purpose.
            "--show-leak-kinds=definite",
        ])
        .arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let started = Instant::now();
    let out = cmd.args(args).output().expect("run C test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!(
        "$ {name} {}\n{stdout}{}({:?})",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        started.elapsed()
    );
    let name = name.to_string();
    let verdict = move || {
        assert!(
            out.status.success(),
            "{name} exited with {:?}{}",
            out.status,
            if out.status.code() == Some(99) {
                " (valgrind found errors)"
            } else {
                ""
            }
        )
    };
    (verdict, stdout)
}

/// Wait until no address in the pod is still doing DAD, so a dump is stable.
fn settle(p: &Pod) {
    let end = Instant::now() + Duration::from_secs(5);
    while p.ip_pod(&["addr", "show"]).contains("tentative") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn host_path(p: &Pod) -> String {
    format!("/var/run/netns/{}", p.host)
}

/// One `frames` scenario: dump, run, dump, compare.
fn frames(p: &Pod, extra: &[&str]) {
    settle(p);
    let before = p.dump();
    let mut args = vec![p.path.clone(), host_path(p)];
    args.extend(extra.iter().map(|s| s.to_string()));
    let (verdict, out) = run("frames", &args);
    settle(p);
    assert_same(&before, &p.dump());
    verdict();
    assert!(out.contains(", 0 failed"), "{out}");
}

const IF0: &str = "10.1.90.5,10.1.90.1,42:a4:a6:22:80:2e";

#[test]
fn frames_ipv4_default_config() {
    if !need_root() {
        return;
    }
    let p = Pod::ipv4("cf4");
    frames(
        &p,
        &[
            "--config-null",
            "--expect",
            "\"address\":\"10.1.90.5/24\"",
            "--expect",
            "\"gateway\":\"10.1.90.1\"",
            "--iface",
            IF0,
        ],
    );
}

#[test]
fn frames_dual_stack() {
    if !need_root() {
        return;
    }
    let p = Pod::dual_stack("cfd");
    let iface = format!("{IF0},fd00:1::5,fd00:1::1");
    frames(
        &p,
        &[
            "--expect",
            "\"address\":\"fd00:1::5/64\"",
            "--iface",
            &iface,
        ],
    );
}

#[test]
fn frames_extra_routes() {
    if !need_root() {
        return;
    }
    let p = Pod::extra_routes("cfr");
    frames(
        &p,
        &[
            "--expect",
            "\"dst\":\"10.96.0.0/12\"",
            "--expect",
            "\"dst\":\"192.168.77.0/24\"",
            "--iface",
            IF0,
        ],
    );
}

#[test]
fn frames_mtu_9000() {
    if !need_root() {
        return;
    }
    let p = Pod::ipv4_mtu("cfm", 9000);
    frames(
        &p,
        &["--big", "8000", "--expect", "\"mtu\":9000", "--iface", IF0],
    );
}

#[test]
fn frames_two_interfaces() {
    if !need_root() {
        return;
    }
    let p = Pod::two_interfaces("cf2");
    let cfg = format!(
        "{{\"dhcp\": false, \"cni_result\": {}}}",
        p.two_interfaces_cni()
    );
    frames(
        &p,
        &[
            "--config",
            &cfg,
            "--expect",
            "\"tap\":\"tap1\"",
            "--iface",
            IF0,
            "--iface",
            "10.2.0.5,10.2.0.1,42:a4:a6:22:80:3f",
        ],
    );
}

/// A pod namespace with two addressed veths (no CNI result to choose).
fn two_veths() -> Pod {
    let p = Pod::empty("h2v");
    p.veth("eth0", "veth0", POD_MAC, 1500);
    p.veth("net1", "veth1", "42:a4:a6:22:80:3f", 1500);
    p.ip_pod(&["addr", "add", "10.1.90.5/24", "dev", "eth0"]);
    p.ip_pod(&["addr", "add", "10.2.0.5/24", "dev", "net1"]);
    p
}

/// A pod namespace whose one veth holds no address (but IPv6 link-local).
fn veth_without_address() -> Pod {
    let p = Pod::empty("hna");
    p.veth("eth0", "veth0", POD_MAC, 1500);
    p
}

#[test]
fn hostile_inputs() {
    if !need_root() {
        return;
    }
    let pods = [
        ("--good", Pod::ipv4("hg")),
        ("--other", Pod::ipv4("ho")),
        ("--noveth", Pod::empty("hnv")),
        ("--twoveth", two_veths()),
        ("--noaddr", veth_without_address()),
    ];
    pods.iter().for_each(|(_, p)| settle(p));
    let before: Vec<_> = pods.iter().map(|(_, p)| p.dump()).collect();
    let mut args: Vec<String> = pods
        .iter()
        .flat_map(|(k, p)| [k.to_string(), p.path.clone()])
        .collect();
    args.extend(["--version".into(), env!("CARGO_PKG_VERSION").into()]);
    let (verdict, out) = run("hostile", &args);
    for ((k, p), b) in pods.iter().zip(&before) {
        settle(p);
        println!("comparing {k} {}", p.pod);
        assert_same(b, &p.dump());
    }
    verdict();
    assert!(
        out.contains("inputs checked") && out.contains(", 0 failed"),
        "{out}"
    );
}

/// The C library is released with `panic = "unwind"`: with "abort", the
/// panic above would kill the caller instead of becoming VNET_ERR_PANIC.
#[test]
fn release_profile_keeps_panic_unwind() {
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let release = toml
        .split("\n[")
        .find(|s| s.starts_with("profile.release]"))
        .expect("no [profile.release]");
    assert!(
        release
            .lines()
            .any(|l| l.replace(' ', "") == "panic=\"unwind\""),
        "[profile.release] must say panic = \"unwind\":\n{release}"
    );
}

/// A build without the `fault-injection` feature (the release one, and
/// this test when built without it) rejects every fault knob of the config
/// as an unknown field, rather than running with a fault armed.
#[cfg(not(feature = "fault-injection"))]
#[test]
fn without_the_feature_fault_knobs_are_unknown_fields() {
    for knob in [
        "fail_at_step",
        "hang_at_step",
        "fail_undo_at_step",
        "panic_at_undo_step",
    ] {
        let e = vnet::Config::from_json(Some(&format!("{{\"{knob}\": 0}}")))
            .expect_err(knob)
            .to_string();
        assert!(
            e.contains("unknown field") && e.contains(knob),
            "{knob}: {e}"
        );
    }
}
