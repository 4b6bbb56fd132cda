//! The shared anchors (../shared/anchors), run in the same process run as
//! vnet, their output echoed and their medians parsed for the ratio table.
//! Each is optional: a missing directory or tool skips it with a note.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// One phase of a baseline: median and p90 in µs (p90 NaN when unknown).
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    pub median: f64,
    pub p90: f64,
}

/// A baseline's phases by name ("setup", "teardown", "setup+teardown",
/// "setup cpu", "teardown cpu", ...).
pub type Baseline = BTreeMap<String, Phase>;

fn run(cmd: &mut Command, what: &str) -> Option<String> {
    eprintln!("[bench] running {what} ...");
    match cmd.output() {
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            if !o.status.success() {
                println!(
                    "> {what}: skipped (exit {}): {}",
                    o.status,
                    last_lines(&err, 3)
                );
                return None;
            }
            Some(out)
        }
        Err(e) => {
            println!("> {what}: skipped ({e})");
            None
        }
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(n)..].join(" / ")
}

fn kv(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn med(v: f64) -> Phase {
    Phase {
        median: v,
        p90: f64::NAN,
    }
}

/// `anchors/shell/bench.sh N`: iproute2 + ebtables commands.
pub fn shell(anchors: &Path, n: usize) -> Option<Baseline> {
    let out = run(
        Command::new("bash")
            .arg(anchors.join("shell/bench.sh"))
            .arg(n.to_string()),
        "shell baseline (anchors/shell/bench.sh)",
    )?;
    let line = out.lines().find(|l| l.contains("setup_us_median"))?;
    println!("```\n{line}\n```");
    let (s, t) = (kv(line, "setup_us_median"), kv(line, "teardown_us_median"));
    Some(BTreeMap::from([
        ("setup".into(), med(s)),
        ("teardown".into(), med(t)),
        ("setup+teardown".into(), med(s + t)),
    ]))
}

/// `anchors/shell/floor.sh N`: all requests from one `ip -batch` + `nft -f`.
pub fn shell_floor(anchors: &Path, n: usize) -> Option<Baseline> {
    let out = run(
        Command::new("bash")
            .arg(anchors.join("shell/floor.sh"))
            .arg(n.to_string()),
        "ip -batch floor (anchors/shell/floor.sh)",
    )?;
    let line = out.lines().find(|l| l.contains("setup_batch_us"))?;
    println!("```\n{line}\n```");
    let g = |k| kv(line, k);
    let empty = g("empty_ip_process_us");
    Some(BTreeMap::from([
        (
            "setup".into(),
            med(g("setup_batch_us") - empty + g("nft_add_us") - empty),
        ),
        (
            "teardown".into(),
            med(g("teardown_batch_us") - empty + g("nft_del_us") - empty),
        ),
    ]))
}

/// `anchors/go-nettools/run.sh`, run from a copy (shared/ is read-only and
/// the script builds next to itself). Returns (with ebtables, without).
pub fn go(anchors: &Path, work: &Path, n: usize) -> (Option<Baseline>, Option<Baseline>) {
    let src = anchors.join("go-nettools");
    if !Path::new("/usr/share/gocode/src/github.com/vishvananda/netlink").is_dir()
        || Command::new("go").arg("version").output().is_err()
    {
        println!(
            "> Go baseline: skipped (needs: apt-get install -y golang-go \
             golang-github-vishvananda-netlink-dev golang-github-vishvananda-netns-dev ebtables)"
        );
        return (None, None);
    }
    let dir = work.join("go-nettools");
    let _ = std::fs::create_dir_all(&dir);
    for f in ["main.go", "run.sh"] {
        if let Err(e) = std::fs::copy(src.join(f), dir.join(f)) {
            println!("> Go baseline: skipped (copy {f}: {e})");
            return (None, None);
        }
    }
    let prefix = format!("{}-go-", crate::fixture::prefix());
    let Some(out) = run(
        Command::new("sh")
            .arg(dir.join("run.sh"))
            .args(["-ns-prefix", &prefix])
            .env("N", n.to_string())
            .env("GOCACHE", work.join("gocache")),
        "Go baseline (anchors/go-nettools/run.sh)",
    ) else {
        return (None, None);
    };
    println!("```\n{}```", out);
    let mut variants: BTreeMap<String, Baseline> = BTreeMap::new();
    let mut cur = None;
    for line in out.lines() {
        if let Some(v) = line.strip_prefix("variant=") {
            cur = v.split_whitespace().next().map(str::to_string);
            continue;
        }
        let Some(c) = &cur else { continue };
        // get() rather than split_at: a line may hold multi-byte text.
        let (Some(name), Some(rest)) = (line.get(..16), line.get(16..)) else {
            continue;
        };
        let nums: Vec<f64> = rest
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if nums.len() >= 3 {
            variants.entry(c.clone()).or_default().insert(
                name.trim().to_string(),
                Phase {
                    median: nums[1],
                    p90: nums[2],
                },
            );
        }
    }
    (variants.remove("ebtables"), variants.remove("no-ebtables"))
}
