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
        std::thread::Builder::new()
            .name("vnet-netns".into())
            .spawn(move || {
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
            })
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
