//! A small typed wrapper over one rtnetlink socket: the requests vnet
//! makes, each answered by the kernel's ack (we never sleep or poll).
//!
//! The socket is created on the netns thread, so every request acts on the
//! pod namespace, from whichever thread sends it.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::MsgFlags;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, Parseable, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP,
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkFlags, LinkMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::log::Level;
use crate::parse;
use crate::vlog;

/// `<linux/rtnetlink.h>`: the dumps' message types.
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_NEWRULE: u16 = 32;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// `RTNLGRP_LINK` from `<linux/rtnetlink.h>`: link announcements.
const RTNLGRP_LINK: u32 = 1;

/// One blocking rtnetlink socket. The kernel handles a route request inside
/// `sendmsg` and a dump inside `recvmsg`, so a blocking exchange never waits
/// on anything but the kernel's own work. (rtnetlink's async connection did
/// the same through a tokio runtime and a connection task per call, which
/// cost ~70-100 µs of a cold setup on this 2-vCPU VM; messages are still
/// netlink-packet-route's types, built with rtnetlink's builders.)
const RX_BYTES: usize = 64 * 1024;

/// Links, addresses, routes and policy rules of one namespace, as the
/// kernel listed them.
#[derive(Default)]
pub struct NamespaceDump {
    pub links: Vec<LinkMessage>,
    pub addrs: Vec<AddressMessage>,
    pub routes: Vec<RouteMessage>,
    pub rules: Vec<RuleMessage>,
}

/// What one deletion request names: a link group, or a single link.
#[derive(Debug, Clone, Copy)]
pub enum Doomed {
    Group(u32),
    Index(u32),
}

pub struct Netlink {
    sock: Socket,
    seq: u32,
    rx: Vec<u8>,
}

impl Netlink {
    /// Open a socket in the current thread's namespace.
    pub fn open() -> io::Result<Netlink> {
        // Unbound: the kernel binds it on the first send (two syscalls
        // fewer per setup than binding here).
        let sock = Socket::new(NETLINK_ROUTE)?;
        // Never hang on a kernel that does not answer.
        set_recv_timeout(&sock, 5)?;
        Ok(Netlink {
            sock,
            seq: 0,
            // Twice what the kernel packs into one dump datagram (32 KiB).
            rx: Vec::with_capacity(RX_BYTES),
        })
    }

    /// Send one request (not a dump: those go through [`Netlink::dump_raw`]);
    /// collect the messages of its reply up to the ack, which plain requests
    /// always ask for.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let (buf, seq) = self.encode(msg, flags);
        self.sock.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
        let mut out = Vec::new();
        loop {
            self.recv_datagram()?;
            let mut off = 0;
            while off < self.rx.len() {
                let (m, len) = next_message(&self.rx[off..])?;
                off += len;
                if m.header.sequence_number != seq {
                    continue; // a late reply to an earlier, timed-out request
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(_) => Err(e.to_io()),
                            None => Ok(out), // the ack
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    _ => {}
                }
            }
        }
    }

    /// Send dump request `msg` and hand each message of the reply (type and
    /// payload, unparsed) to `each`, up to the end of the dump.
    fn dump_raw(
        &mut self,
        msg: RouteNetlinkMessage,
        mut each: impl FnMut(u16, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let (buf, seq) = self.encode(msg, NLM_F_DUMP);
        self.sock.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
        loop {
            self.recv_datagram()?;
            let mut rest = &self.rx[..];
            while !rest.is_empty() {
                let m = NetlinkBuffer::new_checked(rest).map_err(invalid)?;
                let (len, ty, payload) = (m.length() as usize, m.message_type(), m.payload());
                let ours = m.sequence_number() == seq;
                rest = rest.get((len + 3) & !3..).unwrap_or_default();
                if !ours {
                    continue; // a late reply to an earlier, timed-out request
                }
                match ty {
                    // Both carry the dump's result: 0, or a negative errno.
                    NLMSG_ERROR | NLMSG_DONE => {
                        return match payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        {
                            Some(code) if code < 0 => Err(io::Error::from_raw_os_error(-code)),
                            _ => Ok(()),
                        };
                    }
                    NLMSG_NOOP => {}
                    ty => each(ty, payload)?,
                }
            }
        }
    }

    /// `msg` as a request with the next sequence number; plain requests ask
    /// for an ack.
    fn encode(&mut self, msg: RouteNetlinkMessage, flags: u16) -> (Vec<u8>, u32) {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        (buf, self.seq)
    }

    /// The next datagram into `self.rx`; EAGAIN from the receive timeout
    /// becomes ETIMEDOUT.
    fn recv_datagram(&mut self) -> io::Result<()> {
        self.rx.clear();
        // MSG_TRUNC: the datagram's real length, so a reply that did not fit
        // is an error, never a silently shortened dump.
        match self.sock.recv(&mut self.rx, libc::MSG_TRUNC) {
            Ok(n) if n > self.rx.len() => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("netlink reply of {n} bytes is over {RX_BYTES}"),
            )),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(io::Error::from_raw_os_error(libc::ETIMEDOUT))
            }
            Err(e) => Err(e),
        }
    }

    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.request(msg, flags).map(drop)
    }

    /// Links, addresses (both families), the routes a snapshot may keep
    /// (IPv4 then IPv6, every table) and the policy rules: what setup and
    /// the nettools calls read. One dump at a time: the kernel runs a single
    /// dump per socket.
    pub fn dump_all(&mut self) -> io::Result<NamespaceDump> {
        Ok(NamespaceDump {
            links: self.links()?,
            addrs: self.addresses()?,
            routes: self.unicast_routes()?,
            rules: self.rules()?,
        })
    }

    /// The policy routing rules of both families (`ip rule`), in priority
    /// order per family.
    pub fn rules(&mut self) -> io::Result<Vec<RuleMessage>> {
        self.dump_of(
            RouteNetlinkMessage::GetRule(RuleMessage::default()),
            RTM_NEWRULE,
        )
    }

    /// All links of the namespace, each with only the attributes
    /// [`link_attr`] reads ([`crate::parse::link`]). Without their counters
    /// too: nothing reads them, and leaving them out (link and IPv6
    /// statistics) makes the dump a quarter smaller for the kernel to fill
    /// (2.9 to 2.2 KB for a pod's `lo` and `eth0`).
    pub fn links(&mut self) -> io::Result<Vec<LinkMessage>> {
        let mut m = LinkMessage::default();
        m.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let mut links = Vec::new();
        self.dump_raw(RouteNetlinkMessage::GetLink(m), |ty, payload| {
            if ty == RTM_NEWLINK {
                links.push(parse::link(payload).map_err(invalid)?);
            }
            Ok(())
        })?;
        Ok(links)
    }

    /// One link by index.
    pub fn link(&mut self, index: u32) -> io::Result<LinkMessage> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        let replies = self.request(RouteNetlinkMessage::GetLink(m), 0)?;
        replies
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    /// All addresses of both families.
    pub fn addresses(&mut self) -> io::Result<Vec<AddressMessage>> {
        let req = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        self.dump_of(req, RTM_NEWADDR)
    }

    /// Every message of type `ty` in the dump that `req` asks for, parsed.
    fn dump_of<T: Parseable<[u8]>>(
        &mut self,
        req: RouteNetlinkMessage,
        ty: u16,
    ) -> io::Result<Vec<T>> {
        let mut out = Vec::new();
        self.dump_raw(req, |t, payload| {
            if t == ty {
                out.push(T::parse(payload).map_err(invalid)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The routes a snapshot may keep ([`crate::parse::route_worth_parsing`]):
    /// the rest of the dump is skipped unparsed.
    pub fn unicast_routes(&mut self) -> io::Result<Vec<RouteMessage>> {
        self.routes_where(parse::route_worth_parsing)
    }

    /// All IPv4 and IPv6 routes in every table, in one dump (IPv4 first).
    /// A dump of every family also lists multicast forwarding entries
    /// (families `RTNL_FAMILY_IPMR`/`IP6MR`), which are not routes to keep.
    pub fn routes(&mut self) -> io::Result<Vec<RouteMessage>> {
        self.routes_where(parse::route_is_ip)
    }

    /// The routes of one dump of every family whose raw payload `keep`
    /// accepts, parsed.
    fn routes_where(&mut self, keep: fn(&[u8]) -> bool) -> io::Result<Vec<RouteMessage>> {
        let mut routes = Vec::new();
        self.dump_raw(
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            |ty, payload| {
                if ty == RTM_NEWROUTE && keep(payload) {
                    routes.push(RouteMessage::parse(payload).map_err(invalid)?);
                }
                Ok(())
            },
        )?;
        Ok(routes)
    }

    /// Create a link; fails with EEXIST if its name is taken.
    pub fn new_link(&mut self, msg: LinkMessage) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Change an existing link (by `msg.header.index`).
    pub fn set_link(&mut self, msg: LinkMessage) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Delete one link by index.
    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.ack(RouteNetlinkMessage::DelLink(m), 0)
    }

    /// Delete every link of a group in one request: the kernel then pays the
    /// RCU grace periods of unregistering once for all of them.
    pub fn del_link_group(&mut self, group: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::Group(group));
        self.ack(RouteNetlinkMessage::DelLink(m), 0)
    }

    /// [`Netlink::del_link_group`] (or [`Netlink::del_link`]), returning as soon as the kernel has
    /// taken each of `links` out of the namespace rather than once it has
    /// freed them; returns those not seen to go (the kernel's answer came
    /// first, as when its notifications were lost).
    ///
    /// Unregistering takes links out of the namespace after one RCU grace
    /// period and announces each with an `RTM_DELLINK`; the answer to the
    /// request follows only after a second wait (`rcu_barrier` and the last
    /// references: ~20 ms of ~36 here), and the kernel does all of it inside
    /// the sender's `sendmsg`. So a short-lived thread sends the request on
    /// a duplicate of this socket and waits there, then closes `keep`
    /// (closing some sockets waits for grace periods too), while this thread
    /// reads the announcements and the answer on this one.
    pub fn del_links_until_gone(
        &mut self,
        which: Doomed,
        links: &[u32],
        keep: Box<dyn Send>,
    ) -> io::Result<Vec<u32>> {
        let mut m = LinkMessage::default();
        match which {
            Doomed::Group(group) => m.attributes.push(LinkAttribute::Group(group)),
            Doomed::Index(index) => m.header.index = index,
        }
        let (buf, seq) = self.encode(RouteNetlinkMessage::DelLink(m), 0);
        let dup = self.sock.as_fd().try_clone_to_owned()?; // close-on-exec
        self.sock.add_membership(RTNLGRP_LINK)?;
        let sent = std::thread::Builder::new()
            .name("vnet-unregister".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let r = nix::sys::socket::send(dup.as_raw_fd(), &buf, MsgFlags::empty());
                if let Err(e) = r {
                    vlog!(Level::Warn, "deleting {which:?}: {e}");
                }
                drop(dup);
                drop(keep);
            });
        let r = match sent {
            Ok(_) => self.until_gone(seq, links),
            Err(e) => Err(e),
        };
        let _ = self.sock.drop_membership(RTNLGRP_LINK);
        r
    }

    /// Read announcements until every one of `links` is deleted, or the
    /// answer to request `seq` arrives; return the links not seen to go.
    fn until_gone(&mut self, seq: u32, links: &[u32]) -> io::Result<Vec<u32>> {
        let mut pending: Vec<u32> = links.to_vec();
        // Receive timeouts (5 s each) in a row before giving up: the kernel
        // answers unless the request never reached it (the send failed on
        // the other thread); RTNL held by other namespaces' work can delay
        // it by seconds on a busy node. Giving up falls back to deleting the
        // links one by one, which is right either way.
        let mut patience = 6;
        while !pending.is_empty() {
            match self.recv_datagram() {
                Ok(()) => patience = 6,
                // Announcements lost: the answer still comes.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) && patience > 1 => {
                    patience -= 1;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let mut off = 0;
            while off < self.rx.len() {
                // An announcement we cannot parse is not ours to judge.
                let Ok((m, len)) = next_message(&self.rx[off..]) else {
                    break;
                };
                off += len;
                match m.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l))
                        if l.header.interface_family == AddressFamily::Unspec =>
                    {
                        pending.retain(|&i| i != l.header.index);
                    }
                    NetlinkPayload::Error(e) if m.header.sequence_number == seq => {
                        return match e.code {
                            Some(_) => Err(e.to_io()),
                            None => Ok(pending),
                        };
                    }
                    _ => {}
                }
            }
        }
        Ok(pending)
    }

    pub fn add_address(&mut self, msg: AddressMessage) -> io::Result<()> {
        self.ack(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn del_address(&mut self, msg: AddressMessage) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::DelAddress(msg), 0)
    }

    pub fn add_route(&mut self, msg: RouteMessage) -> io::Result<()> {
        self.ack(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn del_route(&mut self, msg: RouteMessage) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::DelRoute(msg), 0)
    }

    /// The index of a link by name, asked on this socket (see [`index_of`]).
    pub fn index_of(&self, name: &str) -> io::Result<u32> {
        use std::os::fd::AsFd;
        index_of(self.sock.as_fd(), name)
    }

    /// Set link flags IFF_UP on or off, touching no other flag.
    pub fn set_up(&mut self, index: u32, up: bool) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
        self.set_link(m)
    }
}

/// The first netlink message of `buf`, and how far the next one starts
/// (messages are 4-byte aligned within a datagram).
fn next_message(buf: &[u8]) -> io::Result<(NetlinkMessage<RouteNetlinkMessage>, usize)> {
    let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let len = m.header.length as usize;
    if len == 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADMSG));
    }
    Ok((m, (len + 3) & !3))
}

/// The index of link `name` in the namespace of socket `sock`:
/// `SIOCGIFINDEX`, which any socket answers for its own namespace
/// (`if_nametoindex` would open and close a socket of its own every time).
pub fn index_of(sock: std::os::fd::BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFINDEX reads the NUL-terminated name of `req` and writes
    // the index into its union.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the union's ifindex member.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex } as u32)
}

/// SO_RCVTIMEO on a netlink socket: a kernel that never answers becomes
/// EAGAIN after `secs` instead of a hang.
pub(crate) fn set_recv_timeout(sock: &Socket, secs: libc::time_t) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: secs,
        tv_usec: 0,
    };
    // SAFETY: valid fd and a correctly sized timeval.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Helpers to read attributes of a link message.
pub mod link_attr {
    use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};

    pub fn name(l: &LinkMessage) -> Option<&str> {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.as_str()),
            _ => None,
        })
    }
    pub fn mac(l: &LinkMessage) -> Option<&[u8]> {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(m) => Some(m.as_slice()),
            _ => None,
        })
    }
    pub fn mtu(l: &LinkMessage) -> Option<u32> {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
    }
    pub fn controller(l: &LinkMessage) -> Option<u32> {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Controller(m) => Some(*m),
            _ => None,
        })
    }
    pub fn group(l: &LinkMessage) -> u32 {
        l.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Group(g) => Some(*g),
                _ => None,
            })
            .unwrap_or(0)
    }
    pub fn kind(l: &LinkMessage) -> Option<&InfoKind> {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Kind(k) => Some(k),
                _ => None,
            }),
            _ => None,
        })
    }
}
