//! Socket setup and the async serve loop on one shared, reference-counted runtime.
//!
//! All servers share one current-thread tokio runtime driven by a single thread named
//! "vnet-dhcp". It is created by the first `spawn` and shut down (thread joined) when the
//! last `ServerHandle` stops, so an idle process has no extra threads (dlclose-safe).
//! No timers are used: an idle server is parked in epoll and costs no CPU.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::lease::Lease;
use super::reply::{handle_packet, Reply, SERVER_PORT};

const THREAD_NAME: &str = "vnet-dhcp";
/// Larger than any sane request (they are ~300-600 bytes); longer datagrams are truncated,
/// which only loses trailing options.
const RECV_BUF: usize = 4096;

/// What one server listens and answers on when the pod has no IPv6 to
/// serve (else see `frame.rs`), made on a thread inside the pod
/// netns: UDP port 67 on the bridge to hear the VM, and a send-only packet
/// socket on the VM's TAP to answer it there directly. Answers that never
/// enter the bridge need no nf_tables `output` chain to keep them off the pod
/// network (that chain cost 7-14% of a setup here: the kernel patches its
/// code for each hook a table is the first to use), and unicast answers need
/// no route back to the client.
#[derive(Debug)]
pub struct Sockets {
    udp: UdpSocket,
    out: OwnedFd,
    out_ifindex: i32,
}

/// Open the [`Sockets`] for the server on `bridge` whose client is behind
/// the port with index `port` (the TAP; setup and recovery already know it).
pub fn bind_sockets(bridge: &str, port: u32) -> io::Result<Sockets> {
    Unbound::open()?.bind(bridge, port)
}

/// The two sockets of [`Sockets`], created but not yet bound: made on a
/// thread inside the pod netns (a socket belongs to the namespace it was
/// created in), bound later from any thread, once the bridge exists.
#[derive(Debug)]
pub struct Unbound {
    udp: OwnedFd,
    out: OwnedFd,
}

impl Unbound {
    pub fn open() -> io::Result<Unbound> {
        let udp = socket(libc::AF_INET, libc::IPPROTO_UDP)?;
        // Protocol 0: the socket is never hooked into the receive path, so
        // it costs the data path nothing.
        let out = socket(libc::AF_PACKET, 0)?;
        Ok(Unbound { udp, out })
    }

    /// Listen on `bridge`, answer on the link with index `port`.
    pub fn bind(self, bridge: &str, port: u32) -> io::Result<Sockets> {
        let out_ifindex =
            i32::try_from(port).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(Sockets {
            udp: bind_socket(self.udp, bridge)?,
            out: self.out,
            out_ifindex,
        })
    }
}

/// A nonblocking, close-on-exec datagram socket.
fn socket(family: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the fd is owned immediately below.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check_ifname(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid interface name",
        ));
    }
    Ok(())
}

/// Bind UDP socket `fd` to 0.0.0.0:67 on `bridge` (SO_REUSEADDR, SO_BINDTODEVICE).
fn bind_socket(fd: OwnedFd, bridge: &str) -> io::Result<UdpSocket> {
    check_ifname(bridge)?;
    let one: libc::c_int = 1;
    setsockopt(&fd, libc::SO_REUSEADDR, &one.to_ne_bytes())?;
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

/// `setsockopt(fd, SOL_SOCKET, opt, val)` (also the IPv6 server's).
pub(crate) fn setsockopt(fd: &OwnedFd, opt: libc::c_int, val: &[u8]) -> io::Result<()> {
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

/// Running server. `stop()` or drop stops it and waits until its sockets are closed.
#[derive(Debug)]
pub struct ServerHandle {
    stop: Option<oneshot::Sender<()>>,
    /// The answer socket, handed back once the UDP socket is closed.
    done: mpsc::Receiver<OwnedFd>,
}

/// Serve `lease` on `sockets` (from [`bind_sockets`]) on the shared runtime.
pub fn spawn(sockets: Sockets, lease: Lease, server_ip: Ipv4Addr) -> io::Result<ServerHandle> {
    let Sockets {
        udp: socket,
        out,
        out_ifindex,
    } = sockets;
    let out = Answer {
        fd: out,
        ifindex: out_ifindex,
        client_mac: lease.client_mac,
        from: server_ip,
    };
    spawn_task(move |stop_rx| {
        socket.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        Ok(Box::pin(async move {
            // The UDP socket is closed in here; the answer socket comes back.
            Some(serve(socket, out, lease, stop_rx).await.fd)
        }))
    })
}

/// A server task: runs until its stop signal, hands back a socket to close
/// later (or none).
pub(crate) type Task = std::pin::Pin<Box<dyn std::future::Future<Output = Option<OwnedFd>> + Send>>;

/// Run the task `make` builds on the shared runtime (starting it if
/// needed). `make` runs inside the runtime's context, so it can register
/// sockets with the reactor.
pub(crate) fn spawn_task(
    make: impl FnOnce(oneshot::Receiver<()>) -> io::Result<Task>,
) -> io::Result<ServerHandle> {
    let mut guard = lock();
    if guard.is_none() {
        *guard = Some(start_runtime()?);
    }
    let shared = guard
        .as_mut()
        .ok_or_else(|| io::Error::other("no runtime"))?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = {
        // Registering with the reactor needs the runtime context; the handle works cross-thread.
        let _ctx = shared.handle.enter();
        make(stop_rx)
    };
    let task = match task {
        Ok(t) => t,
        Err(e) => {
            if shared.users == 0 {
                shutdown_runtime(&mut guard);
            }
            return Err(e);
        }
    };
    let (done_tx, done_rx) = mpsc::channel();
    shared.handle.spawn(async move {
        if let Some(fd) = task.await {
            let _ = done_tx.send(fd);
        }
    });
    shared.users += 1;
    Ok(ServerHandle {
        stop: Some(stop_tx),
        done: done_rx,
    })
}

async fn serve(
    socket: tokio::net::UdpSocket,
    out: Answer,
    lease: Lease,
    mut stop: oneshot::Receiver<()>,
) -> Answer {
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
        let Some(reply) = handle_packet(&lease, out.from, &buf[..n]) else {
            continue;
        };
        // A lost answer is like a lost datagram: the client asks again.
        let _ = out.send(&reply);
    }
    out
}

/// The send-only packet socket on the TAP and what its frames need (`from`:
/// the server's address).
struct Answer {
    fd: OwnedFd,
    ifindex: i32,
    client_mac: [u8; 6],
    from: Ipv4Addr,
}

impl Answer {
    /// Send `reply` as an IPv4/UDP datagram from `from`:67, to the client's
    /// MAC, or to the Ethernet broadcast address when the IP destination is
    /// the broadcast address. The kernel adds the Ethernet header.
    fn send(&self, reply: &Reply) -> io::Result<()> {
        let packet = reply.datagram(self.from, None)?;
        let mac = reply.dest_mac(self.client_mac);
        // SAFETY: an all-zero sockaddr_ll is valid.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        to.sll_ifindex = self.ifindex;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&mac);
        // SAFETY: `packet` and `to` are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                libc::MSG_DONTWAIT,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl ServerHandle {
    /// Stop serving; returns once the sockets are closed. The last stop also shuts the shared
    /// runtime down and joins its thread.
    pub fn stop(self) {
        drop(self);
    }

    /// Stop serving like [`ServerHandle::stop`], but hand the answer socket
    /// back instead of closing it: closing a packet socket waits for an RCU
    /// grace period, which a teardown can overlap with the ones it waits for
    /// anyway. The UDP socket is closed when this returns.
    pub fn stop_and_keep_answer(mut self) -> Option<OwnedFd> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Option<OwnedFd> {
        let stop = self.stop.take()?;
        let _ = stop.send(());
        let on_runtime_thread = std::thread::current().name() == Some(THREAD_NAME);
        // Err means the task is gone already (its sender was dropped): also done.
        let out = if on_runtime_thread {
            None
        } else {
            self.done.recv().ok()
        };
        let mut guard = lock();
        if let Some(shared) = guard.as_mut() {
            shared.users = shared.users.saturating_sub(1);
            if shared.users == 0 {
                shutdown_runtime(&mut guard);
            }
        }
        out
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        drop(self.stop_inner());
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
