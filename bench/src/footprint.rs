//! Footprint: library size, and threads / RSS / fds of a process that sets
//! up and tears down many times. Each config runs in a fresh child process
//! (this binary, `footprint-child`) so one config's heap does not colour the
//! next one's numbers.

use std::ffi::CString;
use std::path::Path;
use std::process::Command;

use crate::control::{c_setup, c_teardown, CONFIGS};
use crate::fixture::{self, Pods};
use crate::stats::Table;

fn status(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn snap(tag: &str) -> String {
    format!(
        "{tag}_threads={} {tag}_rss_kib={} {tag}_fds={}",
        status("Threads:"),
        status("VmRSS:"),
        fds()
    )
}

/// In the child: `cycles` setup/teardown rounds with config `which`; prints
/// one `FOOT k=v ...` line.
pub fn child(which: usize, cycles: usize) {
    let (_, cfg) = CONFIGS[which];
    let pods = Pods::new(&format!("fp{which}"), 1);
    let path = CString::new(pods.path(0)).unwrap();
    let mut line = vec![snap("start")];
    for i in 0..cycles {
        let h = c_setup(&path, cfg);
        if i == 0 {
            fixture::short_lived_threads_gone();
            line.push(snap("setup"));
        }
        c_teardown(h);
        if i == 0 {
            fixture::short_lived_threads_gone();
            line.push(snap("one"));
        }
    }
    fixture::short_lived_threads_gone();
    line.push(snap("end"));
    line.push(format!("peak_rss_kib={}", status("VmHWM:")));
    println!("FOOT {}", line.join(" "));
}

fn size(p: &Path) -> String {
    match std::fs::metadata(p) {
        Ok(m) => format!("{} bytes ({:.2} MiB)", m.len(), m.len() as f64 / 1048576.0),
        Err(_) => "not built".into(),
    }
}

pub fn run(cycles: usize) {
    println!("## 4. Footprint\n");
    let exe = std::env::current_exe().expect("current_exe");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut t = Table::new(&["library file", "size"]);
    if let Some(dir) = exe.parent() {
        t.row(vec![
            "bench/target/release/deps/libvnet.so (same release profile, built with the bench)"
                .into(),
            size(&dir.join("deps/libvnet.so")),
        ]);
    }
    t.row(vec![
        "target/release/libvnet.so (the project's own release build, if present)".into(),
        size(&root.join("target/release/libvnet.so")),
    ]);
    t.print();

    println!(
        "Threads / RSS / open fds of one process: at start (fixture built, no vnet call yet), \
         while the first network is set up, after 1 setup+teardown, after {cycles}. \
         Fresh process per config. 'extra threads while set up' is the count above start, \
         taken once setup's namespace thread (which answers, then exits) is gone.\n"
    );
    let mut t = Table::new(&[
        "config",
        "threads: start / set up / after 1 / after N",
        "extra threads while set up",
        "RSS KiB: start / after 1 / after N",
        "fds: start / after 1 / after N",
        "peak RSS KiB",
    ]);
    for (i, (name, _)) in CONFIGS.iter().enumerate() {
        eprintln!("[bench] footprint: {name}, {cycles} cycles ...");
        let out = Command::new(&exe)
            .args(["footprint-child", &i.to_string(), &cycles.to_string()])
            .output()
            .expect("run footprint child");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find_map(|l| l.strip_prefix("FOOT ")) else {
            println!(
                "> footprint {name}: child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        };
        let g = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(-1)
        };
        t.row(vec![
            format!("{name}, N={cycles}"),
            format!(
                "{} / {} / {} / {}",
                g("start_threads"),
                g("setup_threads"),
                g("one_threads"),
                g("end_threads")
            ),
            (g("setup_threads") - g("start_threads")).to_string(),
            format!(
                "{} / {} / {}",
                g("start_rss_kib"),
                g("one_rss_kib"),
                g("end_rss_kib")
            ),
            format!("{} / {} / {}", g("start_fds"), g("one_fds"), g("end_fds")),
            g("peak_rss_kib").to_string(),
        ]);
    }
    t.print();
}
