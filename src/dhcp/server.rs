//! Socket setup and the async serve loop on one shared, reference-counted runtime.
//!
//! All servers share one current-thread tokio runtime driven by a single thread named
//! "vnet-dhcp". It is created by the first `spawn` and shut down (thread joined) when the
//! last `ServerHandle` stops, so an idle process has no extra threads (dlclose-safe).
//! No timers are used: an idle server is parked in epoll and costs no CPU.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::lease::Lease;
use super::reply::{handle_packet, CLIENT_PORT};

const SERVER_PORT: u16 = 67;
const THREAD_NAME: &str = "vnet-dhcp";
/// Larger than any sane request (they are ~300-600 bytes); longer datagrams are truncated,
/// which only loses trailing options.
const RECV_BUF: usize = 4096;

/// Create the server socket for one bridge. Must run on a thread inside the pod netns.
/// UDP 0.0.0.0:67, SO_REUSEADDR, SO_BROADCAST, SO_BINDTODEVICE=bridge, nonblocking, CLOEXEC.
pub fn bind_socket(bridge: &str) -> io::Result<UdpSocket> {
    if bridge.is_empty() || bridge.len() >= libc::IFNAMSIZ || bridge.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid interface name",
        ));
    }
    // SAFETY: plain socket(2) call; the fd is owned immediately below.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    setsockopt(&fd, libc::SO_REUSEADDR, &one.to_ne_bytes())?;
    setsockopt(&fd, libc::SO_BROADCAST, &one.to_ne_bytes())?;
    // Bind to the bridge first so several bridges in one netns can each own 0.0.0.0:67.
    setsockopt(&fd, libc::SO_BINDTODEVICE, bridge.as_bytes())?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: SERVER_PORT.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: addr is a valid sockaddr_in and the length matches.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UdpSocket::from(fd))
}

fn setsockopt(fd: &OwnedFd, opt: libc::c_int, val: &[u8]) -> io::Result<()> {
    // SAFETY: val points to val.len() readable bytes for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The shared runtime: its handle, the thread driving it, and how many servers use it.
struct Shared {
    handle: tokio::runtime::Handle,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    users: usize,
}

static RUNTIME: Mutex<Option<Shared>> = Mutex::new(None);

fn lock() -> std::sync::MutexGuard<'static, Option<Shared>> {
    // A panic while holding the lock leaves consistent data (plain fields), so recover.
    RUNTIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Build the runtime here and hand it to its thread: no round trip to wait
/// for, the caller has the handle at once.
fn start_runtime() -> io::Result<Shared> {
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let handle = rt.handle().clone();
    let thread = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .stack_size(256 * 1024)
        .spawn(move || {
            leave_caller_netns();
            // Drives every server task until the last one stops.
            rt.block_on(async {
                let _ = shutdown_rx.await;
            });
        })?;
    Ok(Shared {
        handle,
        shutdown: Some(shutdown_tx),
        thread: Some(thread),
        users: 0,
    })
}

/// The runtime thread inherits the netns of whichever thread called `spawn` (often a pod
/// netns). Move it back to the process's netns so it doesn't pin that pod's namespace after
/// the pod's server is gone. Best effort: sockets already carry their own netns.
fn leave_caller_netns() {
    if let Ok(f) = std::fs::File::open("/proc/self/ns/net") {
        let _ = nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET);
    }
}

/// Running server. `stop()` or drop stops it and waits until its socket is closed.
#[derive(Debug)]
pub struct ServerHandle {
    stop: Option<oneshot::Sender<()>>,
    done: mpsc::Receiver<()>,
}

/// Serve `lease` on `socket` (from [`bind_socket`]) on the shared runtime.
pub fn spawn(socket: UdpSocket, lease: Lease, server_ip: Ipv4Addr) -> io::Result<ServerHandle> {
    let mut guard = lock();
    if guard.is_none() {
        *guard = Some(start_runtime()?);
    }
    let shared = guard
        .as_mut()
        .ok_or_else(|| io::Error::other("no runtime"))?;
    socket.set_nonblocking(true)?;
    let registered = {
        // Registering with the reactor needs the runtime context; the handle works cross-thread.
        let _ctx = shared.handle.enter();
        tokio::net::UdpSocket::from_std(socket)
    };
    let socket = match registered {
        Ok(s) => s,
        Err(e) => {
            if shared.users == 0 {
                shutdown_runtime(&mut guard);
            }
            return Err(e);
        }
    };
    let (stop_tx, stop_rx) = oneshot::channel();
    let (done_tx, done_rx) = mpsc::channel();
    shared.handle.spawn(async move {
        serve(socket, lease, server_ip, stop_rx).await; // socket is dropped (closed) in here
        let _ = done_tx.send(());
    });
    shared.users += 1;
    Ok(ServerHandle {
        stop: Some(stop_tx),
        done: done_rx,
    })
}

async fn serve(
    socket: tokio::net::UdpSocket,
    lease: Lease,
    server_ip: Ipv4Addr,
    mut stop: oneshot::Receiver<()>,
) {
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let n = tokio::select! {
            _ = &mut stop => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => n,
                // Transient (e.g. a queued ICMP error); nothing to do but keep serving.
                Err(_) => continue,
            },
        };
        let Some(reply) = handle_packet(&lease, server_ip, &buf[..n]) else {
            continue;
        };
        send(&socket, &reply.bytes, reply.dest).await;
    }
}

/// Unicast can fail when the pod netns has no usable route to the client's address;
/// the client still listens on port 68, so fall back to a link broadcast.
async fn send(socket: &tokio::net::UdpSocket, bytes: &[u8], dest: SocketAddrV4) {
    if socket.send_to(bytes, dest).await.is_ok() || dest.ip().is_broadcast() {
        return;
    }
    let bcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);
    let _ = socket.send_to(bytes, bcast).await;
}

impl ServerHandle {
    /// Stop serving; returns once the socket is closed. The last stop also shuts the shared
    /// runtime down and joins its thread.
    pub fn stop(self) {
        drop(self);
    }

    fn stop_inner(&mut self) {
        let Some(stop) = self.stop.take() else {
            return;
        };
        let _ = stop.send(());
        let on_runtime_thread = std::thread::current().name() == Some(THREAD_NAME);
        if !on_runtime_thread {
            // Err means the task is gone already (its sender was dropped): also done.
            let _ = self.done.recv();
        }
        let mut guard = lock();
        if let Some(shared) = guard.as_mut() {
            shared.users = shared.users.saturating_sub(1);
            if shared.users == 0 {
                shutdown_runtime(&mut guard);
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Stop the runtime thread and join it (unless we are that thread, which can't join itself).
fn shutdown_runtime(guard: &mut Option<Shared>) {
    let Some(mut shared) = guard.take() else {
        return;
    };
    if let Some(tx) = shared.shutdown.take() {
        let _ = tx.send(());
    }
    if let Some(t) = shared.thread.take() {
        if t.thread().id() != std::thread::current().id() {
            let _ = t.join();
        }
    }
}
