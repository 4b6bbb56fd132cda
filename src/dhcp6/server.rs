//! The IPv6 server's one socket and its task on the shared `vnet-dhcp`
//! runtime.
//!
//! One `AF_PACKET` socket bound to the TAP with `ETH_P_ALL`: a packet socket
//! bound to a bridge port must take every protocol to see the port's frames
//! before the bridge consumes them (protocol-specific handlers run after the
//! bridge's rx handler). A BPF filter in the kernel (see `ebpf.rs`) lets through
//! only ICMPv6 RS/NS/NA and UDP to port 547, so all other traffic on the TAP
//! never wakes us, and the bridge needs no IPv6 address at all: no DAD, MLD
//! or RS of ours can reach the pod network. The same socket sends, on the
//! TAP (to the VM) or, for the one gateway solicitation, on the veth. No
//! timer (see `lease::ROUTER_LIFETIME`): idle, the task is parked in epoll.
//! On a dual-stack pod the filter also passes DHCPv4 requests, and the
//! same task answers them ([`crate::dhcp::FrameServer`]): one socket and
//! one filter per TAP for both families.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::lease::Lease6;
use super::reply::{handle_frame, on_start, Learnt, Out};
use crate::dhcp::{spawn_task, FrameServer, ServerHandle};

/// Whether `frame`'s ether type is IPv4.
fn is_ipv4(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x08, 0x00][..])
}

const RECV_BUF: usize = 2048;
const ETH_P_ALL: u16 = 0x0003;

/// The socket, created in the pod netns but not yet bound.
#[derive(Debug)]
pub struct Unbound {
    fd: OwnedFd,
}

/// The bound socket and the links it answers on.
#[derive(Debug)]
pub struct Sockets {
    fd: OwnedFd,
    tap: i32,
    veth: i32,
}

/// The IPv6 part of both filters, from `ldb [20]` on: next header 58
/// (type 133, 135 or 136 at [54]) or 17 (port 547 at [56]). No extension
/// headers: ND and DHCPv6 from the VM carry none. It ends with the accept
/// and the drop that every jump of a filter lands on.
const V6: [libc::sock_filter; 11] = [
    bpf(0x30, 0, 0, 20),     // ldb [20]
    bpf(0x15, 0, 4, 58),     // jeq ICMPv6 ? next : udp
    bpf(0x30, 0, 0, 54),     // ldb [54]
    bpf(0x15, 5, 0, 133),    // RS: accept
    bpf(0x15, 4, 0, 135),    // NS: accept
    bpf(0x15, 3, 4, 136),    // NA: accept, else drop
    bpf(0x15, 0, 3, 17),     // udp: jeq UDP ? next : drop
    bpf(0x28, 0, 0, 56),     // ldh [56]
    bpf(0x15, 0, 1, 547),    // jeq 547 ? accept : drop
    bpf(0x06, 0, 0, 0xffff), // accept
    bpf(0x06, 0, 0, 0),      // drop
];

/// `ldh [12]; ether type 0x86dd`, then [`V6`]: accept the whole frame, else
/// drop.
const FILTER: [libc::sock_filter; 13] = join(
    &[
        bpf(0x28, 0, 0, 12),      // ldh [12]
        bpf(0x15, 0, 10, 0x86dd), // jeq IPv6 ? V6 : drop
    ],
    &V6,
);

/// [`FILTER`], plus IPv4 UDP to port 67 (unfragmented; the UDP header
/// found past the IPv4 options): the DHCPv4 requests that
/// [`crate::dhcp::FrameServer`] answers.
const FILTER_WITH_V4: [libc::sock_filter; 21] = join(
    &[
        bpf(0x28, 0, 0, 12),      // ldh [12]
        bpf(0x15, 8, 0, 0x86dd),  // jeq IPv6 ? V6 : next
        bpf(0x15, 0, 17, 0x0800), // jeq IPv4 ? next : drop
        bpf(0x30, 0, 0, 23),      // ldb [23]: protocol
        bpf(0x15, 0, 15, 17),     // jeq UDP ? next : drop
        bpf(0x28, 0, 0, 20),      // ldh [20]: flags, fragment offset
        bpf(0x45, 13, 0, 0x3fff), // jset MF|offset ? drop : next
        bpf(0xb1, 0, 0, 14),      // ldxb 4*([14]&0xf): IPv4 header length
        bpf(0x48, 0, 0, 16),      // ldh [x+16]: UDP destination port
        bpf(0x15, 9, 10, 67),     // jeq 67 ? accept : drop
    ],
    &V6,
);

/// The classic program of the filter `with_v4` selects.
pub(super) fn filter(with_v4: bool) -> &'static [libc::sock_filter] {
    if with_v4 {
        &FILTER_WITH_V4
    } else {
        &FILTER
    }
}

/// `head` then `tail` (jumps are relative, so [`V6`] works after any head).
const fn join<const A: usize, const B: usize, const C: usize>(
    head: &[libc::sock_filter; A],
    tail: &[libc::sock_filter; B],
) -> [libc::sock_filter; C] {
    assert!(A + B == C);
    let mut out = [bpf(0, 0, 0, 0); C];
    let mut i = 0;
    while i < C {
        out[i] = if i < A { head[i] } else { tail[i - A] };
        i += 1;
    }
    out
}

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

impl Unbound {
    /// Open the socket (protocol 0: hooked nowhere until bound) with its
    /// filter, on a thread inside the pod netns; `with_v4`: the filter
    /// also takes DHCPv4 requests, for a [`crate::dhcp::FrameServer`].
    pub fn open(with_v4: bool) -> io::Result<Unbound> {
        // SAFETY: plain socket(2); the fd is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        super::ebpf::attach(&fd, with_v4, filter(with_v4))?;
        Ok(Unbound { fd })
    }

    /// Listen on the TAP (index `tap`), solicit the gateway on `veth`.
    pub fn bind(self, tap: u32, veth: u32) -> io::Result<Sockets> {
        let bad = |_| io::Error::from(io::ErrorKind::InvalidInput);
        let tap = i32::try_from(tap).map_err(bad)?;
        let veth = i32::try_from(veth).map_err(bad)?;
        let sa = sockaddr(tap, ETH_P_ALL, None);
        // SAFETY: sa is a valid sockaddr_ll of the given length.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Sockets {
            fd: self.fd,
            tap,
            veth,
        })
    }
}

fn sockaddr(ifindex: i32, proto: u16, mac: Option<&[u8]>) -> libc::sockaddr_ll {
    // SAFETY: an all-zero sockaddr_ll is valid.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = proto.to_be();
    sa.sll_ifindex = ifindex;
    if let Some(m) = mac.filter(|m| m.len() >= 6) {
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&m[..6]);
    }
    sa
}

impl AsRawFd for Sockets {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Sockets {
    fn send(&self, ifindex: i32, frame: &[u8]) {
        let proto = frame
            .get(12..14)
            .map_or(0x86dd, |t| u16::from_be_bytes([t[0], t[1]]));
        let sa = sockaddr(ifindex, proto, frame.get(..6));
        // SAFETY: frame and sa are valid for the lengths given. A lost frame
        // is like a lost datagram: the client asks again.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
    }

    fn send_all(&self, out: Vec<Out>) {
        for o in out {
            match o {
                Out::Tap(f) => self.send(self.tap, &f),
                Out::Pod(f) => self.send(self.veth, &f),
            }
        }
    }

    /// One frame: its length and whether it was on its way out of the TAP.
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        // SAFETY: zeroed sockaddr_ll is valid; the kernel fills it.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buf and sa are valid for the lengths given.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                (&mut sa as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n > buf.len() {
            // Truncated: nothing we answer is that long.
            return Ok((0, false));
        }
        Ok((n, sa.sll_pkttype == libc::PACKET_OUTGOING))
    }
}

/// Serve `lease` on `sockets` on the shared runtime, and DHCPv4 with `v4`
/// (the socket must then have been opened `with_v4`).
pub fn spawn(sockets: Sockets, lease: Lease6, v4: Option<FrameServer>) -> io::Result<ServerHandle> {
    let with_v4 = v4.is_some();
    spawn_task(move |stop| {
        let held = super::ebpf::hold(with_v4, filter(with_v4));
        // SAFETY: `Sockets` owns its fd and always returns that one; it
        // stays open until `into_inner` hands the `Sockets` back.
        let fd = unsafe { AsyncFd::register_with_interest(sockets, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Box::pin(async move {
            serve(&fd, lease, v4, stop).await;
            drop(held);
            Some(fd.into_inner().fd)
        }))
    })
}

async fn serve(
    fd: &AsyncFd<Sockets>,
    lease: Lease6,
    v4: Option<FrameServer>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut learnt = Learnt::default();
    fd.get_ref().send_all(on_start(&lease, &learnt));
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let mut guard = tokio::select! {
            _ = &mut stop => break,
            r = fd.readable() => match r {
                Ok(g) => g,
                Err(_) => break,
            },
        };
        match guard.try_io(|s| s.get_ref().recv(&mut buf)) {
            Ok(Ok((n, outgoing))) if n > 0 => {
                let frame = &buf[..n];
                if let Some(v4) = v4.as_ref().filter(|_| !outgoing && is_ipv4(frame)) {
                    if let Some(answer) = v4.answer(frame) {
                        fd.get_ref().send(fd.get_ref().tap, &answer);
                    }
                    continue;
                }
                let out = handle_frame(&lease, &mut learnt, frame, outgoing);
                fd.get_ref().send_all(out);
            }
            Ok(_) => {}
            Err(_would_block) => {}
        }
    }
}
