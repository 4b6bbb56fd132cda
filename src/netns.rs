//! Network namespaces: open one by path and run work on a short-lived OS
//! thread that has entered it. The caller's thread never changes namespace;
//! sockets and TAP fds created on that thread keep the namespace for life,
//! so they can be used from anywhere afterwards.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use nix::sched::{setns, CloneFlags};

use crate::error::{Error, Result};

/// `NS_GET_NSTYPE` from `<linux/nsfs.h>`: `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// An open network namespace file, checked to be a network namespace.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: String,
}

impl Netns {
    /// Open `path` (`/var/run/netns/NAME`, `/proc/PID/ns/net`, ...). The path
    /// must be absolute and name a network namespace, not any other file.
    pub fn open(path: &str) -> Result<Netns> {
        let err = |msg: String| Error::Netns {
            path: path.to_string(),
            msg,
        };
        if path.is_empty() {
            return Err(Error::InvalidArgument("netns path is empty".into()));
        }
        if !Path::new(path).is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "netns path {path:?} is not absolute"
            )));
        }
        // std opens with O_CLOEXEC.
        let file = File::open(path).map_err(|e| err(format!("open: {e}")))?;
        // SAFETY: an ioctl without arguments on a valid fd.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
        if kind < 0 {
            return Err(err(format!(
                "not a namespace file ({})",
                std::io::Error::last_os_error()
            )));
        }
        if kind != libc::CLONE_NEWNET {
            return Err(err("a namespace, but not a network namespace".into()));
        }
        Ok(Netns {
            file,
            path: path.to_string(),
        })
    }

    /// The namespace file's descriptor (e.g. for `IFLA_NET_NS_FD`).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    /// The namespace's identity (device and inode of its nsfs file): the
    /// same for every path that names the same namespace.
    pub fn id(&self) -> Result<(u64, u64)> {
        let st = nix::sys::stat::fstat(&self.file).map_err(|e| Error::Netns {
            path: self.path.clone(),
            msg: format!("fstat: {e}"),
        })?;
        Ok((st.st_dev, st.st_ino))
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Run `f` on a fresh OS thread inside this namespace and return its
    /// result. A panic in `f` is carried to the caller (the FFI boundary
    /// catches it there).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        let fd = self.file.as_fd();
        std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name("vnet-netns".into())
                .spawn_scoped(s, move || {
                    setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
                        path: self.path.clone(),
                        msg: format!("setns: {e}"),
                    })?;
                    f()
                })
                .map_err(|e| Error::Internal(format!("spawning the netns thread: {e}")))?;
            match worker.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Like [`Netns::run`] for work that owns its data, with one difference:
    /// the caller gets the answer as soon as `f` returns, and the thread
    /// exits on its own afterwards, off the caller's path (giving back its
    /// stack and waking a joiner on another vCPU took ~30 µs of a setup
    /// here). Everything `f` opened and did not return is closed before the
    /// answer is sent, so the caller never sees a leftover fd; the thread
    /// itself is gone microseconds later.
    pub fn run_owned<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        // Our own descriptor for the thread (dup, close-on-exec), closed
        // right after setns: the caller's `Netns` may go before the thread.
        let ns = self.file.try_clone().map_err(|e| Error::Netns {
            path: self.path.clone(),
            msg: format!("dup: {e}"),
        })?;
        let path = self.path.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        spawn_here(Box::new(move || {
            let entered = setns(&ns, CloneFlags::CLONE_NEWNET);
            drop(ns);
            let answer = match entered {
                Ok(()) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)),
                Err(e) => Ok(Err(Error::Netns {
                    path,
                    msg: format!("setns: {e}"),
                })),
            };
            // The caller waits on the other end, so this cannot fail.
            let _ = tx.send(answer);
        }))
        .map_err(|e| Error::Internal(format!("spawning the netns thread: {e}")))?;
        match rx.recv() {
            Ok(Ok(r)) => r,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(Error::Internal(
                "the netns thread ended without an answer".into(),
            )),
        }
    }
}

/// Stack of the namespace thread: its deepest work is parsing netlink
/// dumps, a few KiB; the rest is margin.
const STACK_SIZE: usize = 512 * 1024;

type Work = Box<dyn FnOnce() + Send>;

/// Start a detached thread named `vnet-netns` running `f`, on the CPU the
/// caller runs on. The caller only waits for it, so the thread finds that
/// CPU's caches warm and both wake-ups stay on one CPU, instead of waking a
/// halted vCPU and back (ab: setup 0.94-0.96×). A bare `pthread_create`,
/// because std's spawn also maps and unmaps an alternate signal stack per
/// thread and keeps join state nobody uses here. `f` must not panic
/// (`run_owned` catches inside it); one that did would abort the process
/// rather than unwind into C.
fn spawn_here(f: Work) -> std::io::Result<()> {
    match spawn(f, true) {
        // The caller's CPU is outside the allowed set after all (its
        // affinity changed meanwhile): let the scheduler choose.
        Err((f, e)) if e.raw_os_error() == Some(libc::EINVAL) => {
            spawn(f, false).map_err(|(_, e)| e)
        }
        r => r.map_err(|(_, e)| e),
    }
}

fn spawn(f: Work, pin: bool) -> std::result::Result<(), (Work, std::io::Error)> {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the Box leaked in `spawn`, handed over once.
        let f = unsafe { Box::from_raw(arg as *mut Work) };
        // SAFETY: a NUL-terminated name of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"vnet-netns".as_ptr()) };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            std::process::abort();
        }
        std::ptr::null_mut()
    }
    let arg = Box::into_raw(Box::new(f)) as *mut libc::c_void;
    // SAFETY: attr is initialised before use and destroyed after; when
    // pthread_create fails the thread never ran, so the Box is reclaimed
    // exactly once.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let mut rc = libc::pthread_attr_init(&mut attr);
        if rc != 0 {
            return Err((
                *Box::from_raw(arg as *mut Work),
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        rc = libc::pthread_attr_setstacksize(&mut attr, STACK_SIZE);
        if rc == 0 {
            rc = libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        }
        let cpu = libc::sched_getcpu();
        if rc == 0 && pin && (0..libc::CPU_SETSIZE).contains(&cpu) {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut set);
            rc = libc::pthread_attr_setaffinity_np(
                &mut attr,
                std::mem::size_of::<libc::cpu_set_t>(),
                &set,
            );
        }
        let mut thread: libc::pthread_t = 0;
        if rc == 0 {
            rc = libc::pthread_create(&mut thread, &attr, start, arg);
        }
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return Err((
                *Box::from_raw(arg as *mut Work),
                std::io::Error::from_raw_os_error(rc),
            ));
        }
    }
    Ok(())
}
