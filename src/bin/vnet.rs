//! `vnet`: the command line over the library's safe API. Exit codes are the
//! C `vnet_status` values (0 ok), and 64 for usage errors.

// Submodules live in src/bin/vnet/ (a plain `mod` would look in src/bin/,
// where cargo would take each file for a binary of its own).
#[path = "vnet/args.rs"]
mod args;
#[path = "vnet/demo.rs"]
mod demo;
#[path = "vnet/frames.rs"]
mod frames;
#[path = "vnet/show.rs"]
mod show;
#[path = "vnet/signals.rs"]
mod signals;

use std::io::Write;
use std::process::ExitCode;

use vnet::ffi::vnet_status;
use vnet::{Config, Error, Network};

use args::Args;

const USAGE: &str = "\
vnet: turn a pod's network namespace into the network of a VM

Usage:
  vnet setup --netns PATH [--config FILE] [--mode bridge|redirect]
             [--state FILE] [--no-wait]
      Hand the pod interface(s) over: create tapN (+ brN in bridge mode),
      serve DHCP. Prints
      the result JSON (and writes it to --state FILE). Then serves DHCP until
      SIGINT/SIGTERM and exits WITHOUT tearing down, so the namespace can be
      recovered from the state file; --no-wait exits at once.
      --config FILE: a JSON config (cni_result, dhcp, vnet_hdr, queues, dns,
      hostname, lease_secs, mode); '-' reads stdin. --mode overrides the
      config's mode: bridge (default) or redirect (no bridge; for macvlan
      and host-device pods).
  vnet teardown --state FILE [--netns PATH]
      Recover from the saved result JSON and put the namespace back as it
      was (--netns defaults to the namespace recorded in the state).
  vnet show --netns PATH
      What vnet sees: links, addresses, routes, the interface setup would
      pick, and leftovers of an earlier setup.
  vnet demo
      Build a scratch pod + host namespace pair, set up, send an ARP request
      through the TAP and read the reply, print the result JSON, tear down,
      check the namespace is restored, delete the namespaces.
  vnet version | --version
  vnet help | --help

Exit status: 0 on success; on failure the C vnet_status code (1 invalid
argument, 2 netns, 3 no veth, 4 several veths, 5 no address, 6 config,
7 name exists, 8 netlink, 9 tap, 10 filter, 11 dhcp, 12 state, 13 leftovers,
14 incomplete, 15 internal, 17 unsupported pod interface); 64 for usage errors.
";

/// Why a command failed: a usage mistake or a library error.
pub enum Failure {
    Usage(String),
    Vnet(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Vnet(e)
    }
}

pub type CmdResult = Result<(), Failure>;

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next();
    let rest: Vec<String> = argv.collect();
    let r = match cmd.as_deref() {
        None => Err(Failure::Usage("no command given".into())),
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            Ok(())
        }
        Some("version" | "--version" | "-V") => {
            println!("vnet {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("setup") => Args::parse(&rest, &["netns", "config", "mode", "state"], &["no-wait"])
            .and_then(|a| setup(&a)),
        Some("teardown") => Args::parse(&rest, &["netns", "state"], &[]).and_then(|a| teardown(&a)),
        Some("show") => {
            Args::parse(&rest, &["netns"], &[]).and_then(|a| show::run(a.need("netns")?))
        }
        Some("demo") => Args::parse(&rest, &[], &[]).and_then(|_| demo::run()),
        Some(other) => Err(Failure::Usage(format!("unknown command {other:?}"))),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("vnet: {msg}\nRun 'vnet --help' for usage.");
            ExitCode::from(64)
        }
        Err(Failure::Vnet(e)) => {
            eprintln!("vnet: {e}");
            ExitCode::from(vnet_status::from(&e) as u8)
        }
    }
}

/// Read a file, or stdin for "-".
fn read_input(path: &str) -> std::io::Result<String> {
    if path == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
}

/// Write the state file whole or not at all: a half-written state would make
/// the namespace unrecoverable.
fn write_state(path: &str, json: &str) -> Result<(), Error> {
    vnet::state::write_file_atomic(path, &format!("{json}\n"))
        .map_err(|e| Error::State(format!("writing {path}: {e}")))
}

fn setup(a: &Args) -> CmdResult {
    let netns = a.need("netns")?;
    let cfg = match a.get("config") {
        Some(file) => {
            let text =
                read_input(file).map_err(|e| Error::Config(format!("reading {file}: {e}")))?;
            Config::from_json(Some(&text))?
        }
        None => Config::default(),
    };
    let mut cfg = cfg;
    if let Some(m) = a.get("mode") {
        cfg.mode = match m {
            "bridge" => vnet::Mode::Bridge,
            "redirect" => vnet::Mode::Redirect,
            other => {
                return Err(Failure::Usage(format!(
                    "--mode must be bridge or redirect, not {other:?}"
                )))
            }
        };
    }
    // Block SIGINT/SIGTERM before any thread exists, so every thread the
    // library starts inherits the mask and a signal during setup only ends
    // the wait below (after the state is saved).
    signals::block_term();
    let net = Network::setup(netns, &cfg)?;
    let json = net.result_json()?;
    if let Some(path) = a.get("state") {
        if let Err(e) = write_state(path, &json) {
            // Without a saved state nobody could undo this setup later.
            let mut net = net;
            let _ = net.teardown();
            return Err(e.into());
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{json}").and_then(|_| out.flush());
    drop(out);
    if a.flag("no-wait") {
        return Ok(());
    }
    eprintln!(
        "vnet: serving DHCP in {netns}; SIGINT/SIGTERM exits and leaves the namespace set up{}",
        match a.get("state") {
            Some(s) => format!(" (undo: vnet teardown --netns {netns} --state {s})"),
            None => String::new(),
        }
    );
    let sig = signals::wait_term();
    eprintln!("vnet: got signal {sig}; exiting without teardown");
    // Dropping the handle stops DHCP and closes the fds; it never tears down.
    drop(net);
    Ok(())
}

fn teardown(a: &Args) -> CmdResult {
    let path = a.need("state")?;
    let json = read_input(path).map_err(|e| Error::State(format!("reading {path}: {e}")))?;
    let netns = match a.get("netns") {
        Some(n) => n.to_string(),
        None => serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v["vnet"]["netns"].as_str().map(str::to_string))
            .ok_or_else(|| Error::State(format!("{path} names no namespace; pass --netns")))?,
    };
    let mut net = Network::recover(&netns, &json)?;
    net.teardown()?;
    eprintln!("vnet: {netns} restored");
    Ok(())
}
