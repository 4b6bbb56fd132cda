//! Scratch namespaces, built like ../shared/anchors: pod netns with eth0
//! 42:a4:a6:22:80:2e 10.1.90.5/24 default via 10.1.90.1, peer in a host
//! netns. Built with `ip -batch` (the bench may run `ip`; the library never
//! does) and deleted on drop, on panic, and on SIGINT/SIGTERM/SIGHUP (see
//! `install_signal_cleanup`). Nothing is ever created in the root namespace.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

pub const POD_MAC: &str = "42:a4:a6:22:80:2e";

/// How long the VM "runs" between setup and teardown in the control-plane
/// rounds (vnet's and the floor's alike). Teardown returns once our links
/// are out of the namespace and the kernel frees them for ~20 ms more; back
/// to back, the next round's teardown would queue behind that, which no node
/// whose VMs live longer than a moment sees.
pub const VM_RUNS: std::time::Duration = std::time::Duration::from_millis(50);

/// Every namespace we created and have not deleted yet.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// A prefix unique to this run: `$VNB_RUN` (set by run.sh) or `vnb<pid>`.
pub fn prefix() -> String {
    std::env::var("VNB_RUN").unwrap_or_else(|_| format!("vnb{}", std::process::id()))
}

/// Run `ip [pre...] -batch -` with `lines` on stdin; panic on failure.
pub fn ip_batch(pre: &[&str], lines: &[String]) {
    let mut child = Command::new("ip")
        .args(pre)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ip");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(lines.join("\n").as_bytes())
            .expect("write ip batch");
        stdin.write_all(b"\n").expect("write ip batch");
    }
    let out = child.wait_with_output().expect("wait ip");
    assert!(
        out.status.success(),
        "ip {pre:?} -batch failed: {}\nbatch:\n{}",
        String::from_utf8_lossy(&out.stderr),
        lines.join("\n")
    );
}

/// Run a command, return stdout; panic on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn add_netns(names: &[String]) {
    LIVE.lock().unwrap().extend(names.iter().cloned());
    let lines: Vec<String> = names.iter().map(|n| format!("netns add {n}")).collect();
    ip_batch(&[], &lines);
}

fn del_netns(names: &[String]) {
    // `-force`: keep going past a name that is already gone.
    let lines: Vec<String> = names.iter().map(|n| format!("netns del {n}")).collect();
    let _ = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .expect("stdin")
                .write_all(lines.join("\n").as_bytes())?;
            c.wait()
        });
    let mut live = LIVE.lock().unwrap();
    for n in names {
        live.remove(n);
    }
}

/// Delete every namespace still registered (signal path and exit path).
pub fn cleanup_all() {
    let names: Vec<String> = LIVE
        .lock()
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default();
    if !names.is_empty() {
        del_netns(&names);
    }
}

/// Block SIGINT/SIGTERM/SIGHUP in this thread (and so in every thread made
/// after it) and handle them on one thread: delete our namespaces, exit 130.
/// Call first thing in main. Child processes get a clean mask from std.
pub fn install_signal_cleanup() {
    // SAFETY: plain sigset manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let set2 = set;
        std::thread::Builder::new()
            .name("vnb-signals".into())
            .spawn(move || {
                let mut sig = 0;
                libc::sigwait(&set2, &mut sig);
                eprintln!("vnet-bench: signal {sig}, deleting scratch namespaces");
                cleanup_all();
                std::process::exit(130);
            })
            .expect("signal thread");
    }
}

/// `n` pods and the host namespace their veth peers live in.
pub struct Pods {
    pub host: String,
    pub pods: Vec<String>,
}

impl Pods {
    /// With n == 1 the host end is `veth0` with 10.1.90.1/24 (the anchors'
    /// fixture exactly); with more, the host ends are `h0`, `h1`, ... (one
    /// shared host namespace, no address: setup never talks to it).
    pub fn new(tag: &str, n: usize) -> Pods {
        let base = format!("{}-{tag}", prefix());
        let host = format!("{base}-h");
        let pods: Vec<String> = (0..n).map(|i| format!("{base}-{i}")).collect();
        let mut all = vec![host.clone()];
        all.extend(pods.iter().cloned());
        let p = Pods { host, pods };
        add_netns(&all);
        let mut lines = Vec::new();
        for (i, pod) in p.pods.iter().enumerate() {
            let h = p.host_if(i);
            lines.push(format!(
                "link add {h} type veth peer name eth0 address {POD_MAC} netns {pod}"
            ));
            lines.push(format!("link set {h} up"));
        }
        if n == 1 {
            lines.push("addr add 10.1.90.1/24 dev veth0".into());
        }
        ip_batch(&["-n", &p.host], &lines);
        let pod_lines: Vec<String> = [
            "link set lo up",
            "link set eth0 up",
            "addr add 10.1.90.5/24 dev eth0",
            "route add default via 10.1.90.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for pod in &p.pods {
            ip_batch(&["-n", pod], &pod_lines);
        }
        p
    }

    /// Give pod `i` fd00:90::5/64 and a default route via the node's
    /// fd00:90::1 (no DAD on either side, so setup never waits on it).
    pub fn add_v6(&self, i: usize) {
        let h = self.host_if(i);
        ip_batch(
            &["-n", &self.host],
            &[format!("addr add fd00:90::1/64 dev {h} nodad")],
        );
        ip_batch(
            &["-n", &self.pods[i]],
            &[
                "addr add fd00:90::5/64 dev eth0 nodad".to_string(),
                "route add default via fd00:90::1 dev eth0".to_string(),
            ],
        );
    }

    pub fn host_if(&self, i: usize) -> String {
        if self.pods.len() == 1 {
            "veth0".into()
        } else {
            format!("h{i}")
        }
    }

    pub fn path(&self, i: usize) -> String {
        format!("/var/run/netns/{}", self.pods[i])
    }

    pub fn host_path(&self) -> String {
        format!("/var/run/netns/{}", self.host)
    }

    /// What a correct teardown must restore: links, addresses, routes.
    pub fn dump(&self, i: usize) -> String {
        let n = &self.pods[i];
        let mut s = sh(&["ip", "-n", n, "-br", "link"]);
        s += &sh(&["ip", "-n", n, "-br", "addr"]);
        s += &sh(&["ip", "-n", n, "route"]);
        s += &sh(&["ip", "-n", n, "-6", "route"]);
        s
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        let mut all = self.pods.clone();
        all.push(self.host.clone());
        del_netns(&all);
    }
}

/// Run `f` on a fresh thread inside the namespace at `path`.
pub fn in_ns<T: Send>(path: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(path).expect("open netns");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a valid namespace fd, on this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Whether a control-plane round waits, after teardown, until the kernel
/// has freed the deleted links before the next setup starts. Every baseline
/// (Go, shell, the floor's until-freed rounds) deletes synchronously, so its
/// next setup meets a kernel done with the last round; vnet's teardown (and
/// the floor's until-gone one) returns ~20 ms earlier, and a setup started
/// at once shares the CPUs with that freeing. Settled rounds compare like
/// with like; the unsettled rows show what a setup racing it costs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum After {
    Settled,
    AtOnce,
}

/// Wait (up to 1 s) for vnet's short-lived threads to be gone: setup's
/// namespace thread, which answers first and exits on its own just after,
/// and teardown's, which waits for the kernel to free the deleted links.
pub fn short_lived_threads_gone() {
    let named = || {
        std::fs::read_dir("/proc/self/task").is_ok_and(|d| {
            d.flatten().any(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| ["vnet-netns", "vnet-unregister"].contains(&c.trim()))
            })
        })
    };
    for _ in 0..1000 {
        if !named() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
