//! A bare rtnetlink socket: hand-encoded requests, one send and one ack each.
//! It is the "kernel floor" client (no async runtime, no parsing beyond the
//! ack) and reads link stats for the data-path bench.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_SETLINK: u16 = 19;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_GETRULE: u16 = 34;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_STATS64: u16 = 23;
const IFLA_GROUP: u16 = 27;
const IFLA_EXT_MASK: u16 = 29;
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_BR_AGEING_TIME: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
const NLA_F_NESTED: u16 = 0x8000;
const IFF_UP: u32 = 1;

/// One request's body: the fixed header struct, then attributes.
pub struct Msg(Vec<u8>);

impl Msg {
    /// `struct ifinfomsg` for link `index`; `up` sets IFF_UP in flags+change.
    pub fn link(index: u32, up: bool) -> Msg {
        let mut b = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        b.extend_from_slice(&(index as i32).to_ne_bytes());
        let f = if up { IFF_UP } else { 0 };
        b.extend_from_slice(&f.to_ne_bytes());
        b.extend_from_slice(&f.to_ne_bytes());
        Msg(b)
    }

    /// `struct ifaddrmsg` (IPv4).
    pub fn addr(index: u32, prefix: u8) -> Msg {
        let mut b = vec![libc::AF_INET as u8, prefix, 0, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        Msg(b)
    }

    /// `struct ifaddrmsg` (IPv6) with header `flags` and `scope`.
    pub fn addr6(index: u32, prefix: u8, flags: u8, scope: u8) -> Msg {
        let mut b = vec![libc::AF_INET6 as u8, prefix, flags, scope];
        b.extend_from_slice(&index.to_ne_bytes());
        Msg(b)
    }

    /// `struct rtmsg` for a main-table unicast route (dump: family only).
    pub fn route(family: u8) -> Msg {
        // family, dst_len, src_len, tos, table=main, protocol=boot,
        // scope=universe, type=unicast, flags
        let mut b = vec![family, 0, 0, 0, 254, 3, 0, 1];
        b.extend_from_slice(&0u32.to_ne_bytes());
        Msg(b)
    }

    pub fn attr(mut self, ty: u16, data: &[u8]) -> Msg {
        push_attr(&mut self.0, ty, data);
        self
    }

    pub fn u32(self, ty: u16, v: u32) -> Msg {
        self.attr(ty, &v.to_ne_bytes())
    }

    pub fn str(self, ty: u16, s: &str) -> Msg {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(ty, &d)
    }

    pub fn nest(mut self, ty: u16, f: impl FnOnce(Msg) -> Msg) -> Msg {
        let start = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        let mut m = f(self);
        let len = (m.0.len() - start) as u16;
        m.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        m
    }

    // The link and address requests vnet makes, encoded by hand.

    pub fn set_mac(index: u32, mac: [u8; 6]) -> Msg {
        Msg::link(index, false).attr(IFLA_ADDRESS, &mac)
    }

    pub fn new_bridge(name: &str, mtu: u32, group: u32) -> Msg {
        Msg::link(0, true)
            .str(IFLA_IFNAME, name)
            .u32(IFLA_MTU, mtu)
            .u32(IFLA_GROUP, group)
            .nest(IFLA_LINKINFO, |m| {
                m.str(IFLA_INFO_KIND, "bridge")
                    .nest(IFLA_INFO_DATA, |d| d.u32(IFLA_BR_AGEING_TIME, 0))
            })
    }

    pub fn enslave(index: u32, master: u32, mtu: Option<u32>, group: Option<u32>) -> Msg {
        let mut m = Msg::link(index, true);
        if let Some(mtu) = mtu {
            m = m.u32(IFLA_MTU, mtu);
        }
        if let Some(g) = group {
            m = m.u32(IFLA_GROUP, g);
        }
        m.u32(IFLA_MASTER, master)
    }

    pub fn release(index: u32) -> Msg {
        Msg::link(index, false).u32(IFLA_MASTER, 0)
    }

    pub fn link_group(group: u32) -> Msg {
        Msg::link(0, false).u32(IFLA_GROUP, group)
    }

    pub fn ipv4(index: u32, ip: Ipv4Addr, prefix: u8) -> Msg {
        Msg::addr(index, prefix)
            .attr(IFA_LOCAL, &ip.octets())
            .attr(IFA_ADDRESS, &ip.octets())
    }

    pub fn default_via(index: u32, gw: Ipv4Addr) -> Msg {
        Msg::route(libc::AF_INET as u8)
            .u32(RTA_TABLE, 254)
            .attr(RTA_GATEWAY, &gw.octets())
            .u32(RTA_OIF, index)
    }
}

impl Msg {
    /// vnet's route to the VM's address through the bridge (DHCP on).
    pub fn host_route(index: u32, ip: Ipv4Addr, src: Ipv4Addr) -> Msg {
        let mut m = Msg::route(libc::AF_INET as u8);
        m.0[1] = 32; // dst_len
        m.0[5] = 4; // protocol static
        m.0[6] = 253; // scope link
        m.u32(RTA_TABLE, 254)
            .attr(RTA_DST, &ip.octets())
            .attr(RTA_PREFSRC, &src.octets())
            .u32(RTA_OIF, index)
    }
}

fn push_attr(b: &mut Vec<u8>, ty: u16, data: &[u8]) {
    b.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(data);
    b.resize(b.len().next_multiple_of(4), 0);
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

/// The messages of one datagram: (type, sequence number, payload).
fn messages(buf: &[u8]) -> impl Iterator<Item = io::Result<(u16, u32, &[u8])>> + '_ {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + 16 > buf.len() {
            return None;
        }
        let len = u32_at(buf, off) as usize;
        if len < 16 || off + len > buf.len() {
            off = buf.len();
            return Some(Err(io::Error::from_raw_os_error(libc::EBADMSG)));
        }
        let m = (
            u16_at(buf, off + 4),
            u32_at(buf, off + 8),
            &buf[off + 16..off + len],
        );
        off += len.next_multiple_of(4);
        Some(Ok(m))
    })
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes(b[off..off + 2].try_into().unwrap())
}

/// A NETLINK_ROUTE socket in the namespace of the thread that opened it.
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
    rx: Vec<u8>,
}

impl Rtnl {
    pub fn open() -> io::Result<Rtnl> {
        // SAFETY: plain socket(2); the fd is owned right below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Rtnl {
            fd,
            seq: 1,
            rx: vec![0; 64 * 1024],
        })
    }

    fn send(&mut self, ty: u16, flags: u16, body: &Msg) -> io::Result<u32> {
        let b = self.encode(ty, flags, body);
        // SAFETY: sending an initialised buffer on our socket (to the kernel:
        // an unbound, unaddressed send goes to port 0).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), b.as_ptr().cast(), b.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.seq)
    }

    fn encode(&mut self, ty: u16, flags: u16, body: &Msg) -> Vec<u8> {
        self.seq += 1;
        let mut b = Vec::with_capacity(16 + body.0.len());
        b.extend_from_slice(&((16 + body.0.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        b.extend_from_slice(&self.seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&body.0);
        b
    }

    /// Delete link group `group` and return once each of `links` has been
    /// announced deleted (out of the namespace), not once the kernel has
    /// freed them: a thread sends the request on a duplicate of this socket
    /// and waits for the kernel there, as vnet's teardown does. Joining the
    /// returned sender waits until the kernel has freed them.
    pub fn del_group_until_gone(
        &mut self,
        group: u32,
        links: &[u32],
    ) -> io::Result<std::thread::JoinHandle<()>> {
        self.del_until_gone(&Msg::link_group(group), links)
    }

    /// As [`Rtnl::del_group_until_gone`], deleting one link by index (what
    /// redirect mode's teardown sends: its TAP is its only link).
    pub fn del_link_until_gone(&mut self, index: u32) -> io::Result<std::thread::JoinHandle<()>> {
        self.del_until_gone(&Msg::link(index, false), &[index])
    }

    fn del_until_gone(
        &mut self,
        body: &Msg,
        links: &[u32],
    ) -> io::Result<std::thread::JoinHandle<()>> {
        let b = self.encode(RTM_DELLINK, NLM_F_ACK, body);
        let dup = self.fd.try_clone()?;
        self.membership(libc::NETLINK_ADD_MEMBERSHIP)?;
        let sender = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                // SAFETY: sending an initialised buffer on our duplicate.
                unsafe { libc::send(dup.as_raw_fd(), b.as_ptr().cast(), b.len(), 0) };
            })?;
        let mut pending = links.to_vec();
        while !pending.is_empty() {
            let n = self.recv_datagram()?;
            for m in messages(&self.rx[..n]) {
                let (ty, _, p) = m?;
                // ifinfomsg: family (u8), pad, type (u16), index (i32).
                if ty == RTM_DELLINK && p.len() >= 8 && p[0] == 0 {
                    let ix = u32_at(p, 4);
                    pending.retain(|&i| i != ix);
                }
            }
        }
        self.membership(libc::NETLINK_DROP_MEMBERSHIP)?;
        Ok(sender)
    }

    fn membership(&self, op: libc::c_int) -> io::Result<()> {
        // RTNLGRP_LINK.
        let group: u32 = 1;
        // SAFETY: a u32 option value of the right size on our socket.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_NETLINK,
                op,
                (&group as *const u32).cast(),
                4,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Read replies to `seq`, calling `each(type, payload)` for every data
    /// message, until the ack (or DONE for dumps). Returns the kernel's error.
    fn recv(&mut self, seq: u32, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        loop {
            let n = self.recv_datagram()?;
            for m in messages(&self.rx[..n]) {
                let (ty, s, payload) = m?;
                if s != seq {
                    continue;
                }
                match ty {
                    NLMSG_ERROR => {
                        let errno = -(u32_at(payload, 0) as i32);
                        return if errno == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(errno))
                        };
                    }
                    NLMSG_DONE => return Ok(()),
                    _ => each(ty, payload),
                }
            }
        }
    }

    /// One datagram into `self.rx`; its length.
    fn recv_datagram(&mut self) -> io::Result<usize> {
        // SAFETY: receiving into our own buffer of the given length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.rx.as_mut_ptr().cast(),
                self.rx.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Send one request and wait for its ack.
    pub fn req(&mut self, ty: u16, flags: u16, body: &Msg) -> io::Result<()> {
        let seq = self.send(ty, flags | NLM_F_ACK, body)?;
        self.recv(seq, |_, _| {})
    }

    /// A dump; returns how many objects the kernel sent.
    /// Messages and payload bytes of one dump.
    pub fn dump(&mut self, ty: u16, body: &Msg) -> io::Result<(usize, usize)> {
        let seq = self.send(ty, NLM_F_DUMP, body)?;
        let (mut n, mut bytes) = (0, 0);
        self.recv(seq, |_, p| {
            n += 1;
            bytes += p.len();
        })?;
        Ok((n, bytes))
    }

    /// Redirect mode's first dumps: as [`Rtnl::dumps`], then the rules.
    pub fn dumps_with_rules(&mut self) -> io::Result<usize> {
        Ok(self.dumps()?
            + self
                .dump(RTM_GETRULE, &Msg::route(libc::AF_UNSPEC as u8))?
                .0)
    }

    /// The dumps vnet starts setup with: links (without statistics),
    /// addresses, and the routes of both families in one dump.
    pub fn dumps(&mut self) -> io::Result<usize> {
        Ok(self
            .dump(
                RTM_GETLINK,
                &Msg::link(0, false).u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS),
            )?
            .0
            + self.dump(RTM_GETADDR, &Msg::addr(0, 0))?.0
            + self
                .dump(RTM_GETROUTE, &Msg::route(libc::AF_UNSPEC as u8))?
                .0)
    }

    /// A link's index by name: `SIOCGIFINDEX` on this socket, as vnet does
    /// (no socket of its own per lookup, as `if_nametoindex` opens).
    pub fn index_of(&self, name: &str) -> io::Result<u32> {
        vnet::netlink::index_of(std::os::fd::AsFd::as_fd(&self.fd), name)
    }

    /// One link's attributes (raw payload after `ifinfomsg`), by name.
    fn link_attrs(&mut self, name: &str) -> io::Result<Vec<u8>> {
        let seq = self.send(
            RTM_GETLINK,
            NLM_F_ACK,
            &Msg::link(0, false).str(IFLA_IFNAME, name),
        )?;
        let mut out = None;
        self.recv(seq, |ty, p| {
            if ty == RTM_NEWLINK && p.len() >= 16 {
                out = Some(p[16..].to_vec());
            }
        })?;
        out.ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    /// `rtnl_link_stats64` of a link: (rx_packets, rx_bytes, rx_dropped).
    pub fn stats(&mut self, name: &str) -> io::Result<LinkStats> {
        let a = self.link_attrs(name)?;
        let s = find_attr(&a, IFLA_STATS64).ok_or_else(|| io::Error::other("no IFLA_STATS64"))?;
        let u = |i: usize| u64::from_ne_bytes(s[i * 8..i * 8 + 8].try_into().unwrap());
        Ok(LinkStats {
            rx_packets: u(0),
            tx_packets: u(1),
            rx_bytes: u(2),
            rx_dropped: u(6),
            tx_dropped: u(7),
        })
    }

    pub fn mac(&mut self, name: &str) -> io::Result<[u8; 6]> {
        let a = self.link_attrs(name)?;
        let m = find_attr(&a, IFLA_ADDRESS).ok_or_else(|| io::Error::other("no IFLA_ADDRESS"))?;
        m.get(..6)
            .and_then(|m| m.try_into().ok())
            .ok_or_else(|| io::Error::other("short MAC"))
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

fn find_attr(mut a: &[u8], ty: u16) -> Option<&[u8]> {
    while a.len() >= 4 {
        let len = u16_at(a, 0) as usize;
        let t = u16_at(a, 2) & !NLA_F_NESTED;
        if len < 4 || len > a.len() {
            return None;
        }
        if t == ty {
            return Some(&a[4..len]);
        }
        a = &a[len.next_multiple_of(4).min(a.len())..];
    }
    None
}

/// Interface index by name in the current namespace.
pub fn index_of(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i)
}
