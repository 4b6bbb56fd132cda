//! vnet benchmarks: `vnet-bench [quick|full] [control] [scale] [datapath]
//! [footprint]` (all sections when none is named). Prints markdown. Must run
//! as root; works only in scratch namespaces it creates and deletes.
//! No pass/fail on timing: the tables are for reading.

mod ab;
mod baselines;
mod control;
mod datapath;
mod fixture;
mod floor;
mod footprint;
mod frames;
mod overheads;
mod rawnl;
mod redirect_floor;
mod scale;
mod stats;
mod tun;

use std::path::{Path, PathBuf};
use std::time::Duration;

struct Mode {
    control_n: usize,
    shell_n: usize,
    go_n: usize,
    scale_sizes: Vec<usize>,
    scale_threads: Vec<usize>,
    datapath_secs: u64,
    footprint_cycles: usize,
}

fn mode(name: &str) -> Mode {
    match name {
        "full" => Mode {
            control_n: 200,
            shell_n: 30,
            go_n: 200,
            scale_sizes: vec![1, 50, 200],
            scale_threads: vec![2, 8, 32],
            datapath_secs: 3,
            footprint_cycles: 1000,
        },
        _ => Mode {
            control_n: 40,
            shell_n: 10,
            go_n: 50,
            scale_sizes: vec![1, 50, 200],
            scale_threads: vec![2, 8, 32],
            datapath_secs: 2,
            footprint_cycles: 300,
        },
    }
}

fn anchors() -> Option<PathBuf> {
    let p = std::env::var_os("VNB_ANCHORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/anchors"));
    p.is_dir().then_some(p)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("footprint-child") {
        fixture::install_signal_cleanup();
        let which = args[1].parse().expect("config index");
        let cycles = args[2].parse().expect("cycles");
        footprint::child(which, cycles);
        return;
    }
    if args.first().map(String::as_str) == Some("first-child") {
        control::first_child(&args[1], args[2] == "1");
        return;
    }
    if args.first().map(String::as_str) == Some("first") {
        fixture::install_signal_cleanup();
        control::first(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20));
        fixture::cleanup_all();
        return;
    }
    if args.first().map(String::as_str) == Some("ab") {
        // Two library builds, interleaved: `vnet-bench ab OLD.so NEW.so [N]`.
        let n = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(100);
        ab::run(&args[1], &args[2], n);
        return;
    }
    if args.first().map(String::as_str) == Some("blocks") {
        let pods = fixture::Pods::new("blocks", 1);
        overheads::run(
            &pods.path(0),
            args.get(1).and_then(|n| n.parse().ok()).unwrap_or(50),
        );
        return;
    }
    if args.first().map(String::as_str) == Some("fresh") {
        control::fresh(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20));
        control::fresh_steps(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20));
        return;
    }
    if args.first().map(String::as_str) == Some("steps") {
        // Where setup/teardown time goes, per step: `vnet-bench steps [N]`.
        control::steps(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(50));
        return;
    }
    if args.first().map(String::as_str) == Some("redirect") {
        // Redirect mode against bridge mode, its floor and the Go seed:
        // `vnet-bench redirect [N]`.
        fixture::install_signal_cleanup();
        let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vnb-work");
        let _ = std::fs::create_dir_all(&work);
        let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(60);
        let r = std::panic::catch_unwind(|| redirect_floor::run(n, anchors().as_deref(), &work));
        fixture::cleanup_all();
        if r.is_err() {
            std::process::exit(1);
        }
        return;
    }
    if args.first().map(String::as_str) == Some("probe") {
        // Quick look at setup/teardown only: `vnet-bench probe [N]`.
        fixture::install_signal_cleanup();
        control::probe(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(30));
        fixture::cleanup_all();
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("vnet-bench must run as root (it creates network namespaces)");
        std::process::exit(2);
    }
    fixture::install_signal_cleanup();
    let mut name = "quick";
    let mut sections: Vec<&str> = Vec::new();
    for a in &args {
        match a.as_str() {
            "quick" | "full" => name = a,
            "control" | "scale" | "datapath" | "footprint" => sections.push(a),
            other => {
                eprintln!("unknown argument {other:?}; usage: vnet-bench [quick|full] [control] [scale] [datapath] [footprint]");
                std::process::exit(2);
            }
        }
    }
    if sections.is_empty() {
        sections = vec!["control", "datapath", "scale", "footprint"];
    }
    let m = mode(name);
    let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vnb-work");
    let _ = std::fs::create_dir_all(&work);
    let result = std::panic::catch_unwind(|| {
        for s in &sections {
            match *s {
                "control" => control::run(&control::Opts {
                    n: m.control_n,
                    shell_n: m.shell_n,
                    go_n: m.go_n,
                    anchors: anchors(),
                    work: work.clone(),
                }),
                "scale" => scale::run(
                    &m.scale_sizes,
                    &m.scale_threads,
                    None,
                    "NULL (defaults: DHCP on)",
                ),
                "datapath" => datapath::run(Duration::from_secs(m.datapath_secs)),
                "footprint" => footprint::run(m.footprint_cycles),
                _ => unreachable!(),
            }
        }
    });
    fixture::cleanup_all();
    if result.is_err() {
        std::process::exit(1);
    }
}
