//! `vnet-cni`: a chained CNI plugin (spec 1.0.0; 0.3.x and 0.4.0 confs too)
//! over the library's core. ADD hands the pod interface that the previous
//! plugin made over to a VM ([`Network::setup`]), leaves the persistent TAP
//! for a VMM to open by name, and, with DHCP on, starts itself again as a
//! detached per-pod responder (`vnet-cni serve STATE`) that recovers the
//! handle without TAP queues and serves the lease. DEL stops the responder
//! and restores the namespace from the state file; CHECK compares.

#[path = "vnet-cni/daemon.rs"]
mod daemon;
#[path = "vnet/signals.rs"]
mod signals;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;

use serde_json::{json, Map, Value};
use vnet::ffi::vnet_status;
use vnet::{Config, Error, Network, RecoverOptions, SetupOptions};

const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
const DEFAULT_STATE_DIR: &str = "/run/vnet/cni/";
/// Conf fields that belong to CNI, not to the library's config.
const ENVELOPE: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "prevResult",
    "runtimeConfig",
    "args",
    "capabilities",
    "stateDir",
];
const MAX_STDIN: u64 = 4 << 20;
/// Version of our state file.
const STATE_VERSION: u64 = 1;

/// A CNI error object.
pub struct CniError {
    code: u32,
    msg: String,
    details: String,
}

fn cni_err(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError {
        code,
        msg: msg.into(),
        details: details.into(),
    }
}

/// Library errors are plugin-specific codes: 100 + the C `vnet_status`.
impl From<Error> for CniError {
    fn from(e: Error) -> CniError {
        let code = 100 + vnet_status::from(&e) as u32;
        let msg = match &e {
            Error::Config(_) => "bad vnet configuration",
            Error::Netns { .. } => "cannot use the network namespace",
            Error::Leftovers(_) => "the namespace holds leftovers of an earlier setup",
            Error::Incomplete(_) => "the namespace could not be restored completely",
            Error::State(_) => "saved state does not match the namespace",
            _ => "vnet failed",
        };
        cni_err(code, msg, e.to_string())
    }
}

type R<T> = Result<T, CniError>;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("serve") {
        return match argv.get(2) {
            Some(path) => daemon::serve(path),
            None => ExitCode::from(64),
        };
    }
    let mut version = "1.0.0".to_string();
    let r = run(&mut version);
    let mut out = std::io::stdout().lock();
    match r {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            let v =
                json!({"cniVersion": version, "code": e.code, "msg": e.msg, "details": e.details});
            let _ = writeln!(out, "{v}");
            ExitCode::from(1)
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn need_env(name: &str) -> R<String> {
    env(name).ok_or_else(|| cni_err(4, format!("{name} is not set"), ""))
}

/// The parsed network configuration.
struct Conf {
    version: String,
    name: String,
    state_dir: String,
    prev: Option<Value>,
    /// The library's config fields (everything that is not CNI's).
    rest: Map<String, Value>,
}

fn read_conf(version: &mut String) -> R<Conf> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_STDIN)
        .read_to_string(&mut text)
        .map_err(|e| cni_err(6, "cannot read the network configuration", e.to_string()))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| cni_err(6, "the network configuration is not JSON", e.to_string()))?;
    let Value::Object(mut obj) = v else {
        return Err(cni_err(
            6,
            "the network configuration must be an object",
            "",
        ));
    };
    let ver = match obj.get("cniVersion") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(cni_err(7, "cniVersion is missing or not a string", "")),
    };
    if !SUPPORTED.contains(&ver.as_str()) {
        return Err(cni_err(
            1,
            format!("unsupported cniVersion {ver:?}"),
            format!("supported: {}", SUPPORTED.join(", ")),
        ));
    }
    *version = ver.clone();
    let name = match obj.get("name") {
        Some(Value::String(s)) if valid_id(s) => s.clone(),
        _ => {
            return Err(cni_err(
                7,
                "name is missing or not [A-Za-z0-9_.-]{1,128}",
                "",
            ))
        }
    };
    let state_dir = match obj.get("stateDir") {
        None => DEFAULT_STATE_DIR.to_string(),
        Some(Value::String(s)) if s.starts_with('/') && !s.contains('\0') && s.len() < 1024 => {
            s.clone()
        }
        Some(_) => return Err(cni_err(7, "stateDir must be an absolute path", "")),
    };
    let prev = match obj.remove("prevResult") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => Some(p),
        Some(_) => return Err(cni_err(7, "prevResult must be an object", "")),
    };
    for k in ENVELOPE {
        obj.remove(*k);
    }
    Ok(Conf {
        version: ver,
        name,
        state_dir,
        prev,
        rest: obj,
    })
}

/// Container IDs and network names: what the spec allows in them, bounded.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && !s.starts_with('.')
}

/// The library's config from the conf's own fields, with `prevResult` as
/// its CNI result. An unknown field is CNI error 2.
fn library_config(conf: &Conf) -> R<Config> {
    if conf.rest.contains_key("cni_result") {
        return Err(cni_err(
            2,
            "unknown field \"cni_result\" in the network configuration",
            "the CNI result comes from prevResult",
        ));
    }
    let text = serde_json::to_string(&conf.rest).map_err(|e| cni_err(7, "conf", e.to_string()))?;
    let mut cfg = Config::from_json(Some(&text)).map_err(|e| {
        let d = e.to_string();
        if d.contains("unknown field") {
            cni_err(2, "unknown field in the network configuration", d)
        } else {
            cni_err(7, "invalid network configuration", d)
        }
    })?;
    cfg.cni_result = conf.prev.clone();
    cfg.validate().map_err(|e| {
        cni_err(
            7,
            "invalid network configuration (prevResult)",
            e.to_string(),
        )
    })?;
    Ok(cfg)
}

struct Ids {
    container: String,
    ifname: String,
}

fn ids() -> R<Ids> {
    let container = need_env("CNI_CONTAINERID")?;
    if !valid_id(&container) {
        return Err(cni_err(
            4,
            "CNI_CONTAINERID is not [A-Za-z0-9_.-]{1,128}",
            "",
        ));
    }
    let ifname = need_env("CNI_IFNAME")?;
    vnet::tap::check_ifname(&ifname)
        .map_err(|e| cni_err(4, "CNI_IFNAME is not an interface name", e.to_string()))?;
    Ok(Ids { container, ifname })
}

/// CNI_NETNS, refused when it is the plugin's own namespace (the node's):
/// the pod interface is never handed over there.
fn pod_netns() -> R<String> {
    let ns = need_env("CNI_NETNS")?;
    let own = std::fs::metadata("/proc/self/ns/net")
        .map_err(|e| cni_err(5, "cannot stat /proc/self/ns/net", e.to_string()))?;
    match std::fs::metadata(&ns) {
        Ok(m) if (m.dev(), m.ino()) == (own.dev(), own.ino()) => Err(cni_err(
            4,
            "CNI_NETNS is the plugin's own network namespace",
            ns,
        )),
        Ok(_) => Ok(ns),
        Err(e) => Err(cni_err(
            3,
            format!("CNI_NETNS {ns} cannot be opened"),
            e.to_string(),
        )),
    }
}

fn state_path(conf: &Conf, ids: &Ids) -> String {
    format!(
        "{}/{}-{}-{}.json",
        conf.state_dir.trim_end_matches('/'),
        conf.name,
        ids.container,
        ids.ifname
    )
}

fn run(version: &mut String) -> R<Option<Value>> {
    let cmd = need_env("CNI_COMMAND")?;
    if cmd == "VERSION" {
        let mut text = String::new();
        let _ = std::io::stdin().take(MAX_STDIN).read_to_string(&mut text);
        let asked = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
            .filter(|v| SUPPORTED.contains(&v.as_str()))
            .unwrap_or_else(|| "1.0.0".into());
        *version = asked.clone();
        return Ok(Some(
            json!({"cniVersion": asked, "supportedVersions": SUPPORTED}),
        ));
    }
    match cmd.as_str() {
        "ADD" | "DEL" | "CHECK" => {}
        _ => return Err(cni_err(4, format!("unknown CNI_COMMAND {cmd:?}"), "")),
    }
    let conf = read_conf(version)?;
    let ids = ids()?;
    match cmd.as_str() {
        "ADD" => add(&conf, &ids).map(Some),
        "DEL" => del(&conf, &ids).map(|_| None),
        _ => check(&conf, &ids).map(|_| None),
    }
}

/// The saved state of one attachment.
pub struct Saved {
    pub netns: String,
    /// The library's result JSON (what `Network::recover` reads).
    pub result: String,
    pub daemon: Option<daemon::Ident>,
}

impl Saved {
    fn to_json(&self, conf: &Conf, ids: &Ids) -> String {
        json!({
            "version": STATE_VERSION,
            "network": conf.name,
            "containerId": ids.container,
            "ifname": ids.ifname,
            "netns": self.netns,
            "daemon": self.daemon.as_ref().map(|d| json!({"pid": d.pid, "start": d.start})),
            "result": self.result,
        })
        .to_string()
    }

    pub fn read(path: &str) -> R<Option<Saved>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(cni_err(5, format!("reading {path}"), e.to_string())),
        };
        let bad =
            |what: &str| cni_err(5, format!("state file {path} is damaged"), what.to_string());
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
        if v["version"].as_u64() != Some(STATE_VERSION) {
            return Err(bad("unknown version"));
        }
        let s = |k: &str| v[k].as_str().map(str::to_string).ok_or_else(|| bad(k));
        let daemon = match &v["daemon"] {
            Value::Null => None,
            d => Some(daemon::Ident {
                pid: d["pid"].as_i64().ok_or_else(|| bad("daemon.pid"))? as i32,
                start: d["start"].as_u64().ok_or_else(|| bad("daemon.start"))?,
            }),
        };
        Ok(Some(Saved {
            netns: s("netns")?,
            result: s("result")?,
            daemon,
        }))
    }
}

/// Write whole or not at all (see [`vnet::state::write_file_atomic`]).
fn write_atomic(path: &str, text: &str) -> R<()> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| cni_err(5, format!("creating {}", dir.display()), e.to_string()))?;
    }
    vnet::state::write_file_atomic(path, text)
        .map_err(|e| cni_err(5, format!("writing state {path}"), e.to_string()))
}

/// Whether the library's result serves DHCP to at least one interface.
fn serves_dhcp(result: &Value) -> bool {
    result["vnet"]["dhcp"].as_bool() == Some(true)
        && result["vnet"]["interfaces"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| !i["lease"].is_null()))
}

fn add(conf: &Conf, ids: &Ids) -> R<Value> {
    let Some(prev) = &conf.prev else {
        return Err(cni_err(
            7,
            "missing prevResult: vnet-cni runs chained after the plugin that made the pod interface",
            "",
        ));
    };
    let cfg = library_config(conf)?;
    let netns = pod_netns()?;
    let named = prev["interfaces"].as_array().is_some_and(|a| {
        a.iter().any(|i| {
            i["name"].as_str() == Some(ids.ifname.as_str())
                && i["sandbox"].as_str().is_some_and(|s| !s.is_empty())
        })
    });
    if !named {
        return Err(cni_err(
            7,
            format!("prevResult names no interface {} in a sandbox", ids.ifname),
            "",
        ));
    }
    let path = state_path(conf, ids);
    if std::path::Path::new(&path).exists() {
        return Err(cni_err(
            7,
            "this attachment is already set up (state exists)",
            path,
        ));
    }
    signals::block_term();
    // DHCP is served by the responder, not by this short-lived process.
    let net = Network::setup_with(&netns, &cfg, SetupOptions { serve_dhcp: false })?;
    let result = net.result_json()?;
    // The plugin holds nothing once it returns: the TAPs are persistent.
    drop(net);
    let mut saved = Saved {
        netns: netns.clone(),
        result,
        daemon: None,
    };
    let undo = |why: CniError| -> CniError {
        if let Ok(mut n) = Network::recover_with(
            &netns,
            &saved_result_of(&path).unwrap_or_default(),
            NO_QUEUES,
        ) {
            let _ = n.teardown();
        }
        let _ = std::fs::remove_file(&path);
        why
    };
    if let Err(e) = write_atomic(&path, &saved.to_json(conf, ids)) {
        // Nothing saved: undo with the result still in memory.
        if let Ok(mut n) = Network::recover_with(&netns, &saved.result, NO_QUEUES) {
            let _ = n.teardown();
        }
        return Err(e);
    }
    let lib: Value = serde_json::from_str(&saved.result)
        .map_err(|e| undo(cni_err(5, "result JSON", e.to_string())))?;
    if serves_dhcp(&lib) {
        let ident = daemon::spawn(&path).map_err(undo)?;
        saved.daemon = Some(ident);
        if let Err(e) = write_atomic(&path, &saved.to_json(conf, ids)) {
            daemon::stop(&ident, &path);
            return Err(undo(e));
        }
    }
    let mut out = prev.clone();
    out["cniVersion"] = Value::String(conf.version.clone());
    if !out["interfaces"].is_array() {
        out["interfaces"] = json!([]);
    }
    let list = out["interfaces"].as_array_mut().expect("an array");
    for i in lib["vnet"]["interfaces"].as_array().into_iter().flatten() {
        list.push(json!({"name": i["tap"], "mac": i["vm_mac"], "sandbox": netns}));
    }
    Ok(out)
}

fn saved_result_of(path: &str) -> Option<String> {
    Saved::read(path).ok().flatten().map(|s| s.result)
}

const NO_QUEUES: RecoverOptions = RecoverOptions {
    open_taps: false,
    serve_dhcp: false,
    check_links: true,
};

fn del(conf: &Conf, ids: &Ids) -> R<()> {
    let path = state_path(conf, ids);
    let Some(saved) = Saved::read(&path)? else {
        return Ok(());
    };
    // Signalled now, waited for once the namespace is restored: its exit
    // (closing its packet socket waits for a grace period) overlaps ours.
    let stopping = saved
        .daemon
        .as_ref()
        .and_then(|d| daemon::signal_stop(d, &path));
    let r = del_restore(&saved, &path);
    if let Some(fd) = stopping {
        daemon::wait_stopped(&fd);
    }
    r
}

fn del_restore(saved: &Saved, path: &str) -> R<()> {
    let netns = env("CNI_NETNS").unwrap_or(saved.netns.clone());
    if std::fs::metadata(&netns).is_err() {
        // The namespace is gone, and everything of ours with it.
        let _ = std::fs::remove_file(path);
        return Ok(());
    }
    match Network::recover_with(&netns, &saved.result, NO_QUEUES) {
        Ok(mut net) => net.teardown()?,
        Err(e) => {
            // Our links are gone (or this is another namespace now): done
            // when nothing of ours is left there.
            let left = Network::leftovers(&netns).unwrap_or_default();
            if !left.is_empty() {
                // Some of it changed meanwhile (a TAP deleted by hand):
                // undo what can be undone in this same namespace, and say
                // what could not.
                let lenient = RecoverOptions {
                    check_links: false,
                    ..NO_QUEUES
                };
                let mut net =
                    Network::recover_with(&netns, &saved.result, lenient).map_err(|e2| {
                        cni_err(
                            100 + vnet_status::from(&e2) as u32,
                            "cannot restore the namespace",
                            format!("{e}; {e2}; left: {}", left.join(", ")),
                        )
                    })?;
                net.teardown()?;
            }
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

fn check(conf: &Conf, ids: &Ids) -> R<()> {
    if conf.version.starts_with("0.3.") {
        return Err(cni_err(1, "CHECK needs cniVersion 0.4.0 or later", ""));
    }
    let netns = pod_netns()?;
    let path = state_path(conf, ids);
    let Some(saved) = Saved::read(&path)? else {
        return Err(cni_err(3, "no state for this attachment", path));
    };
    let Some(prev) = &conf.prev else {
        return Err(cni_err(7, "missing prevResult", ""));
    };
    let lib: Value = serde_json::from_str(&saved.result)
        .map_err(|e| cni_err(5, "state result JSON", e.to_string()))?;
    let mut drift = Vec::new();
    // The result the runtime holds names each TAP with the VM's MAC.
    for i in lib["vnet"]["interfaces"].as_array().into_iter().flatten() {
        let listed = prev["interfaces"].as_array().is_some_and(|a| {
            a.iter()
                .any(|p| p["name"] == i["tap"] && p["mac"] == i["vm_mac"])
        });
        if !listed {
            drift.push(format!(
                "prevResult lacks {} (mac {})",
                i["tap"], i["vm_mac"]
            ));
        }
    }
    if let Err(e) = Network::recover_with(&netns, &saved.result, NO_QUEUES) {
        drift.push(e.to_string());
    }
    // Bridge mode keeps DHCP apart with a bridge-family table; redirect
    // mode moves frames with a netdev-family one.
    let family = match lib["vnet"]["interfaces"][0]["mode"].as_str() {
        Some("redirect") => "netdev",
        _ => "bridge",
    };
    let table = format!("table {family} vnet");
    if !Network::leftovers(&netns)?.contains(&table) {
        drift.push(format!("nf_tables {table} is missing"));
    }
    if serves_dhcp(&lib) {
        match &saved.daemon {
            Some(d) if daemon::alive(d, &path) => {}
            Some(d) => drift.push(format!("the DHCP responder (pid {}) is not running", d.pid)),
            None => drift.push("no DHCP responder was recorded".into()),
        }
    }
    if drift.is_empty() {
        Ok(())
    } else {
        Err(cni_err(
            100 + vnet_status::VNET_ERR_STATE as u32,
            "the namespace differs from the saved state",
            drift.join("; "),
        ))
    }
}
