//! The per-pod DHCP responder: `vnet-cni serve STATE`, started detached by
//! ADD (new session, stdio on /dev/null, only fd 3 inherited: a pipe that
//! says when it serves, or why not), found again through the state file by
//! pid and start time, and stopped through a pidfd so a reused pid is never
//! signalled.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use vnet::{Network, RecoverOptions};

use crate::{cni_err, signals, CniError, Saved};

/// A process, as the state file names it.
#[derive(Clone, Copy, Debug)]
pub struct Ident {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat (clock ticks after boot).
    pub start: u64,
}

const READY_FD: i32 = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Start the responder for the state at `path`; returns once it serves.
pub fn spawn(path: &str) -> Result<Ident, CniError> {
    let (r, w) = pipe().map_err(|e| cni_err(5, "pipe", e.to_string()))?;
    let wfd = w.as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("vnet-cni")
        .arg("serve")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_clear();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if wfd == READY_FD {
                libc::fcntl(wfd, libc::F_SETFD, 0);
            } else if libc::dup2(wfd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Nothing else of the runtime's reaches the daemon.
            libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| cni_err(5, "starting the DHCP responder", e.to_string()))?;
    drop(w);
    let pid = child.id() as i32;
    // Not waited for: it outlives this process and is reaped by init.
    drop(child);
    let said = read_ready(r);
    match said {
        Ok(s) if s == "ok" => {}
        Ok(s) => {
            return Err(cni_err(
                111,
                "the DHCP responder failed to start",
                if s.is_empty() { "it exited".into() } else { s },
            ))
        }
        Err(e) => {
            kill_pid(pid);
            return Err(cni_err(111, "the DHCP responder did not start", e));
        }
    }
    let start = start_time(pid)
        .ok_or_else(|| cni_err(111, "the DHCP responder exited after it started", ""))?;
    Ok(Ident { pid, start })
}

fn read_ready(r: OwnedFd) -> Result<String, String> {
    let mut pfd = libc::pollfd {
        fd: r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, READY_TIMEOUT.as_millis() as i32) };
    if n <= 0 {
        return Err(format!("no answer within {READY_TIMEOUT:?}"));
    }
    let mut s = String::new();
    let _ = std::fs::File::from(r).take(4096).read_to_string(&mut s);
    Ok(s.trim().to_string())
}

fn kill_pid(pid: i32) {
    if let Ok(fd) = pidfd_open(pid) {
        let _ = pidfd_signal(&fd, libc::SIGKILL);
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The daemon itself: recover without TAP queues, serve DHCP, say so on fd
/// 3, and wait for SIGTERM (parked in sigwait and epoll: no CPU).
pub fn serve(path: &str) -> ExitCode {
    signals::block_term();
    // SAFETY: fd 3 is the ready pipe ADD gave us (or nothing: then writes fail).
    let mut ready = unsafe { std::fs::File::from_raw_fd(READY_FD) };
    let started = (|| -> Result<Network, String> {
        let saved = Saved::read(path)
            .map_err(|e| format!("{}: {}", e.msg, e.details))?
            .ok_or_else(|| format!("no state at {path}"))?;
        Network::recover_with(
            &saved.netns,
            &saved.result,
            RecoverOptions {
                open_taps: false,
                serve_dhcp: true,
                check_links: true,
            },
        )
        .map_err(|e| e.to_string())
    })();
    let net = match started {
        Ok(n) => n,
        Err(e) => {
            let _ = ready.write_all(e.as_bytes());
            return ExitCode::from(1);
        }
    };
    let _ = ready.write_all(b"ok");
    drop(ready);
    signals::wait_term();
    // Stops DHCP; never tears down (DEL does).
    drop(net);
    ExitCode::SUCCESS
}

/// Start time of `pid`, if it runs.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // f[0] is field 3 (state); a zombie has exited.
    if f.first() == Some(&"Z") {
        return None;
    }
    f.get(19)?.parse().ok()
}

/// `ident` is our responder for `path`: same start time and command line.
fn is_ours(ident: &Ident, path: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", ident.pid)).unwrap_or_default();
    let want = format!("serve\0{path}\0");
    start_time(ident.pid) == Some(ident.start)
        && cmdline.windows(want.len()).any(|w| w == want.as_bytes())
}

pub fn alive(ident: &Ident, path: &str) -> bool {
    is_ours(ident, path)
}

/// Stop the responder (SIGTERM, then SIGKILL after 3 s) and wait until it
/// has exited. A pid that is no longer ours is left alone.
pub fn stop(ident: &Ident, path: &str) {
    if let Some(fd) = signal_stop(ident, path) {
        wait_stopped(&fd);
    }
}

/// SIGTERM the responder if it is ours; its pidfd, to wait on.
pub fn signal_stop(ident: &Ident, path: &str) -> Option<OwnedFd> {
    let fd = pidfd_open(ident.pid).ok()?;
    // Checked after the pidfd pins the process: the pid cannot be reused
    // between this check and the signal.
    if !is_ours(ident, path) {
        return None;
    }
    pidfd_signal(&fd, libc::SIGTERM).ok()?;
    Some(fd)
}

/// Wait for a signalled responder to exit; SIGKILL it after 3 s.
pub fn wait_stopped(fd: &OwnedFd) {
    if !wait_exit(fd, 3000) {
        let _ = pidfd_signal(fd, libc::SIGKILL);
        wait_exit(fd, 3000);
    }
}

fn wait_exit(fd: &OwnedFd, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) with no flags; returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_signal(fd: &OwnedFd, sig: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal(2) with no siginfo and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
