//! The nf_tables table that keeps DHCP off the pod network, spoken over netlink.
//!
//! # Rule set
//!
//! One bridge-family table per VM: two base chains (`type filter`, priority
//! 0, policy accept) that each hold one guard rule, and one regular chain
//! `dhcp` with the per-veth drops. For every pod veth `V` on the bridge:
//!
//! ```text
//! table bridge NAME {
//!   chain dhcp {
//!     iifname V ether type ip  udp dport 67-68   drop  # pod network DHCP -> VM / our server
//!     iifname V ether type ip6 udp dport 546-547 drop
//!     oifname V ether type ip  udp dport 67-68   drop  # VM DHCP -> pod network
//!     oifname V ether type ip6 udp dport 546-547 drop
//!   }
//!   chain forward { type filter hook forward priority 0; policy accept;
//!     meta l4proto udp udp dport 67-547 jump dhcp
//!   }
//!   chain input  { type filter hook input  priority 0; policy accept; (same guard) }
//! }
//! ```
//!
//! When we serve IPv6 to the VM (issue 17), `install_with(.., true)` adds
//! a regular chain `nd` and a second guard in both base chains:
//!
//! ```text
//!   chain nd {
//!     icmpv6 type 133-134 drop                      # RS and RA, both ways
//!     icmpv6 type nd-neighbor-solicit @th,64,128 fe80::a9fe:fe02 drop
//!   }                                               # NS for our router
//!   chain forward { ...; meta l4proto ipv6-icmp jump nd }
//!   chain input   { ...; meta l4proto ipv6-icmp jump nd }
//! ```
//!
//! The `nd` rules name no interface: `forward` only sees frames between
//! the VM and the pod network, so each drop covers both directions, and a
//! RA/RS/NS for our router has no business crossing either way (a VM's
//! RA would be a rogue router on the pod network). Two rules whatever the
//! number of veths, instead of three per veth with an `iifname`/`oifname`
//! each: what IPv6 adds to "install filter" fell from ~53 to ~30 µs
//! (`VNB_AB_DUAL=1 vnet-bench steps`). In `input` they drop only what brN
//! (no IPv6 address) would ignore or wrongly learn from.
//!
//! When the IPv6 servers' packet sockets also take the VM's DHCPv4
//! ([`Serving::dhcp4_on_tap`]: every interface with an IPv4 lease is
//! dual-stack), no DHCP of either family has any business past the TAP:
//! not to the pod network, and not to brN, where no UDP socket listens and
//! a unicast renewal would draw a port unreachable. The `dhcp` chain is
//! then two rules naming no interface, whatever the number of veths:
//!
//! ```text
//!   chain dhcp {
//!     ether type ip  udp dport 67-68   drop
//!     ether type ip6 udp dport 546-547 drop
//!   }
//! ```
//!
//! Our RAs, NAs and DHCPv6 replies are sent out of the TAP by a packet
//! socket and never enter the bridge; the VM's DHCPv6 is already dropped by
//! the `dhcp` chain (546-547). A pod-network RA would give the VM a second
//! router and, with A set, a second address; delivered to brN itself
//! (`input`), it would give the bridge a default route (brN has no address,
//! but accepts RAs), which then takes the key of the pod's own default route
//! when teardown puts that back (found by tests/ipv6.rs).
//!
//! Why this shape:
//! - Every DHCP message is addressed to a well-known port (client->server and
//!   relay->server: 67; server->client: 68; DHCPv6 547/546), so matching the
//!   *destination* port range on both ports catches every message in either
//!   direction; a source-port match adds nothing.
//! - Per-packet cost: every frame on the bridge passes one guard rule and
//!   leaves it after one compare (not UDP) or three (UDP outside 67-547), no
//!   matter how many veths there are. Measured (bench datapath): four rules
//!   per veth led by `iifname` cost ~10% of small-frame throughput; the guard
//!   brings that down. Only UDP to 67-547 reaches the exact rules in `dhcp`.
//! - In the bridge family nf_tables sets the l4 protocol only for IPv4/IPv6
//!   frames (`meta l4proto` breaks otherwise), so the guard needs no `ether
//!   type`; the `dhcp` rules keep it to pair each family with its ports.
//! - Only frames that cross the veth are dropped: the tap <-> bridge path (the
//!   VM talking to our server on brN) matches no `dhcp` rule, so our DHCP keeps
//!   working.
//! - `forward` sees bridged frames (tap <-> veth) and `input` sees frames
//!   delivered to brN itself (pod network -> our server). Our server answers
//!   on the TAP through a packet socket, so its frames never enter the bridge
//!   and need no `output` chain: each hook a table is the first on the node
//!   to use makes the kernel patch its code, and the `output` one cost 7-14%
//!   of a setup here (VM alone on the node). One `dhcp` chain serves both:
//!   `input` has no output device, so its `oifname` rules never match there.
//! - The guard is what `nft` emits for `meta l4proto udp udp dport 67-547`
//!   (checked with `nft --debug=netlink`); ranges are two `cmp` (gte/lte), so
//!   no anonymous set is needed.
//! - Interface names (not ifindexes) so the rules read well in `nft list` and do
//!   not depend on creation order.
//! - DHCPv6 (546/547) costs two more `dhcp` rules per veth, but no per-packet
//!   cost; our server is v4-only, but a VM DHCPv6 client must not reach a
//!   pod-network DHCPv6 server either.
//!
//! # Encoding
//!
//! Hand-written nf_tables batch messages on a `netlink-sys` NETLINK_NETFILTER
//! socket. Rejected: `nftnl` (links the libnftnl/libmnl C libraries, a runtime
//! dependency of our cdylib) and `rustables` (GPL-3.0, and its build script
//! runs bindgen, which needs libclang at build time). The encoder below only
//! knows the handful of attributes this table needs.
//!
//! The kernel processes a netlink request synchronously inside `sendmsg`, so
//! every ack is queued by the time `send` returns; we still read them one by
//! one (with a receive timeout as a safety net) and match them by sequence.

use std::io;
use std::sync::Mutex;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

// linux/netlink.h
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

// linux/netfilter/nfnetlink.h, nf_tables.h, netfilter_bridge.h
pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFPROTO_UNSPEC: u8 = 0;
pub(crate) const NFPROTO_BRIDGE: u8 = 7;
pub(crate) const NFPROTO_NETDEV: u8 = 5;
pub(crate) const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
pub(crate) const NFT_MSG_NEWCHAIN: u16 = 3;
pub(crate) const NFT_MSG_NEWRULE: u16 = 6;
pub(crate) const NFTA_TABLE_NAME: u16 = 1;
pub(crate) const NFTA_CHAIN_TABLE: u16 = 1;
pub(crate) const NFTA_CHAIN_NAME: u16 = 3;
pub(crate) const NFTA_CHAIN_HOOK: u16 = 4;
pub(crate) const NFTA_CHAIN_POLICY: u16 = 5;
pub(crate) const NFTA_CHAIN_TYPE: u16 = 7;
pub(crate) const NFTA_HOOK_HOOKNUM: u16 = 1;
pub(crate) const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_HOOK_DEV: u16 = 3;
pub(crate) const NFTA_RULE_TABLE: u16 = 1;
pub(crate) const NFTA_RULE_CHAIN: u16 = 2;
pub(crate) const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
pub(crate) const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NF_BR_LOCAL_IN: u32 = 1;
const NF_BR_FORWARD: u32 = 2;
pub(crate) const NF_DROP: u32 = 0;
pub(crate) const NF_ACCEPT: u32 = 1;
pub(crate) const NFT_JUMP: i32 = -3;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_REG_VERDICT: u32 = 0;
pub(crate) const NFT_REG_1: u32 = 1;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_L4PROTO: u32 = 16;
pub(crate) const NFT_PAYLOAD_LL_HEADER: u32 = 0;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
pub(crate) const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_LTE: u32 = 3;
const NFT_CMP_GTE: u32 = 5;

pub(crate) const IFNAMSIZ: usize = 16;
pub(crate) const TABLE_MAXNAMELEN: usize = 256;
pub(crate) const ETH_P_IP: u16 = 0x0800;
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_UDP: u8 = 17;
/// (ethertype, lowest, highest destination port) of the protocols we block.
pub(crate) const DHCP: [(u16, u16, u16); 2] = [(ETH_P_IP, 67, 68), (ETH_P_IPV6, 546, 547)];

/// The guard's port range: covers every port in `DHCP`.
pub(crate) const GUARD_PORTS: (u16, u16) = (67, 547);
const _: () = assert!(
    GUARD_PORTS.0 <= DHCP[0].1
        && DHCP[0].2 <= GUARD_PORTS.1
        && GUARD_PORTS.0 <= DHCP[1].1
        && DHCP[1].2 <= GUARD_PORTS.1
);
const IPPROTO_ICMPV6: u8 = 58;
/// The regular chain holding the IPv6 neighbour discovery drops.
const ND_CHAIN: &str = "nd";
/// (ICMPv6 types LO..=HI, NS target) of an `nd` drop, in either direction.
pub(crate) type NdDrop = (u8, u8, Option<std::net::Ipv6Addr>);
/// The VM's RS, RA and NS for our router never reach the pod network; RAs
/// from it never reach the VM. Redirect mode ([`crate::fwd`]) drops the same.
pub(crate) const ND_DROPS: [NdDrop; 2] =
    [(133, 134, None), (135, 135, Some(crate::dhcp6::ROUTER_LL))];
/// The regular chain holding the DHCP drops.
const DHCP_CHAIN: &str = "dhcp";

/// What a VM's table is for, beyond keeping DHCP off the pod network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Serving {
    /// We serve IPv6 to a VM: the `nd` drops.
    pub ipv6: bool,
    /// Our packet socket on each TAP takes the VM's DHCPv4 and DHCPv6
    /// before the bridge does (`dhcp::frame`): no DHCP of either family
    /// has any business beyond the TAP, so the drops name no interface.
    pub dhcp4_on_tap: bool,
}

/// Which interface a rule matches on: `In` from the pod network, `Out` to it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    In,
    Out,
}

/// (base chain name, bridge hook); each holds only the guard rule.
const CHAINS: [(&str, u32); 2] = [("forward", NF_BR_FORWARD), ("input", NF_BR_LOCAL_IN)];

/// An open NETLINK_NETFILTER socket in the netns current at `open()` time.
pub struct Nft {
    // The lock keeps one request/ack exchange from reading another's acks.
    inner: Mutex<Inner>,
}

struct Inner {
    sock: Socket,
    seq: u32,
}

impl Nft {
    /// Open the socket (CLOEXEC) in the calling thread's network namespace.
    pub fn open() -> io::Result<Nft> {
        // Unbound: the kernel binds it on the first send.
        let sock = Socket::new(NETLINK_NETFILTER)?;
        // Errors then echo only the failing message's header, not the batch.
        sock.set_cap_ack(true)?;
        crate::netlink::set_recv_timeout(&sock, 5)?;
        Ok(Nft {
            inner: Mutex::new(Inner { sock, seq: 1 }),
        })
    }

    /// Create table `table` (family bridge) with the chains and rules described
    /// in the module docs for the given veth names, atomically in one batch.
    /// Fails with `AlreadyExists` (EEXIST) if the table exists.
    pub fn install(&self, table: &str, veths: &[String]) -> io::Result<()> {
        self.install_with(table, veths, Serving::default())
    }

    /// [`Nft::install`] with the rules `serving` needs (see the module
    /// docs).
    pub fn install_with(&self, table: &str, veths: &[String], serving: Serving) -> io::Result<()> {
        let ipv6 = serving.ipv6;
        check_name(table, TABLE_MAXNAMELEN)?;
        for v in veths {
            check_name(v, IFNAMSIZ)?;
        }
        let flags = NLM_F_REQUEST | NLM_F_CREATE;
        self.batch(|b| {
            b.msg(NFT_MSG_NEWTABLE, flags | NLM_F_EXCL, |m| {
                m.str(NFTA_TABLE_NAME, table)
            });
            // The jump target must exist before the rules that name it.
            b.msg(NFT_MSG_NEWCHAIN, flags, |m| {
                m.str(NFTA_CHAIN_TABLE, table);
                m.str(NFTA_CHAIN_NAME, DHCP_CHAIN);
            });
            let dhcp_drop = |b: &mut Builder, on: Option<(Dir, &str)>, proto| {
                b.msg(NFT_MSG_NEWRULE, flags | NLM_F_APPEND, |m| {
                    m.str(NFTA_RULE_TABLE, table);
                    m.str(NFTA_RULE_CHAIN, DHCP_CHAIN);
                    m.nest(NFTA_RULE_EXPRESSIONS, |e| drop_rule(e, on, proto));
                });
            };
            if serving.dhcp4_on_tap {
                for proto in DHCP {
                    dhcp_drop(b, None, proto);
                }
            } else {
                for veth in veths {
                    for dir in [Dir::In, Dir::Out] {
                        for proto in DHCP {
                            dhcp_drop(b, Some((dir, veth)), proto);
                        }
                    }
                }
            }
            if ipv6 {
                b.msg(NFT_MSG_NEWCHAIN, flags, |m| {
                    m.str(NFTA_CHAIN_TABLE, table);
                    m.str(NFTA_CHAIN_NAME, ND_CHAIN);
                });
                for rule in ND_DROPS {
                    b.msg(NFT_MSG_NEWRULE, flags | NLM_F_APPEND, |m| {
                        m.str(NFTA_RULE_TABLE, table);
                        m.str(NFTA_RULE_CHAIN, ND_CHAIN);
                        m.nest(NFTA_RULE_EXPRESSIONS, |e| nd_drop(e, rule));
                    });
                }
            }
            for (chain, hook) in CHAINS {
                base_chain(b, table, chain, hook, None);
                b.msg(NFT_MSG_NEWRULE, flags | NLM_F_APPEND, |m| {
                    m.str(NFTA_RULE_TABLE, table);
                    m.str(NFTA_RULE_CHAIN, chain);
                    m.nest(NFTA_RULE_EXPRESSIONS, guard_rule);
                });
                if ipv6 {
                    b.msg(NFT_MSG_NEWRULE, flags | NLM_F_APPEND, |m| {
                        m.str(NFTA_RULE_TABLE, table);
                        m.str(NFTA_RULE_CHAIN, chain);
                        m.nest(NFTA_RULE_EXPRESSIONS, |e| icmpv6_jump(e, ND_CHAIN));
                    });
                }
            }
        })
    }

    /// Delete the whole table in one request. `Ok(false)` if it did not exist.
    pub fn delete_table(&self, table: &str) -> io::Result<bool> {
        self.delete_table_in(NFPROTO_BRIDGE, table)
    }

    /// Delete table `table` of nf_tables family `family` in one request.
    /// `Ok(false)` if it did not exist.
    pub fn delete_table_in(&self, family: u8, table: &str) -> io::Result<bool> {
        check_name(table, TABLE_MAXNAMELEN)?;
        let res = self.batch_in(family, |b| {
            b.msg(NFT_MSG_DELTABLE, NLM_F_REQUEST, |m| {
                m.str(NFTA_TABLE_NAME, table)
            });
        });
        not_found_is_false(res)
    }

    /// Whether the bridge-family table exists.
    pub fn table_exists(&self, table: &str) -> io::Result<bool> {
        self.table_exists_in(NFPROTO_BRIDGE, table)
    }

    /// Whether table `table` of nf_tables family `family` exists.
    pub fn table_exists_in(&self, family: u8, table: &str) -> io::Result<bool> {
        check_name(table, TABLE_MAXNAMELEN)?;
        let mut inner = self.lock();
        let mut b = Builder::new(&mut inner.seq, family);
        let seq = b.msg(NFT_MSG_GETTABLE, NLM_F_REQUEST | NLM_F_ACK, |m| {
            m.str(NFTA_TABLE_NAME, table)
        });
        let buf = b.buf;
        not_found_is_false(inner.talk(&buf, seq, seq))
    }

    /// A dump request of `cmd` for `family`, attributes from `body`: the
    /// attributes of every reply (after the nfgenmsg), until NLMSG_DONE.
    pub(crate) fn dump(
        &self,
        family: u8,
        cmd: u16,
        body: impl FnOnce(&mut Builder),
    ) -> io::Result<Vec<Vec<u8>>> {
        const NLM_F_DUMP: u16 = 0x300;
        const NLMSG_DONE: u16 = 3;
        let mut inner = self.lock();
        let mut b = Builder::new(&mut inner.seq, family);
        let seq = b.msg(cmd, NLM_F_REQUEST | NLM_F_DUMP, body);
        let buf = b.buf;
        inner.sock.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
        let mut out = Vec::new();
        let mut rx = Vec::with_capacity(64 * 1024);
        loop {
            rx.clear();
            inner.sock.recv(&mut rx, 0)?;
            let mut off = 0;
            while off + NLMSG_HDRLEN <= rx.len() {
                let len = u32_at(&rx, off) as usize;
                let ty = u16::from_ne_bytes([rx[off + 4], rx[off + 5]]);
                if len < NLMSG_HDRLEN || off + len > rx.len() {
                    return Err(io::Error::from_raw_os_error(libc::EBADMSG));
                }
                if u32_at(&rx, off + 8) == seq {
                    if ty == NLMSG_DONE {
                        return Ok(out);
                    }
                    if ty == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 {
                        let errno = -(u32_at(&rx, off + NLMSG_HDRLEN) as i32);
                        return Err(io::Error::from_raw_os_error(errno));
                    }
                    if len >= NLMSG_HDRLEN + 4 {
                        out.push(rx[off + NLMSG_HDRLEN + 4..off + len].to_vec());
                    }
                }
                off += len.next_multiple_of(4);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic mid-exchange leaves nothing we rely on broken.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wrap the messages built by `f` in BATCH_BEGIN/END, send, read replies.
    /// Only the last message asks for an ack: errors are reported for every
    /// failing message anyway, in message order, so once the last message's
    /// reply is in, every error has been seen (and the ack count stays O(1)).
    fn batch(&self, f: impl FnOnce(&mut Builder)) -> io::Result<()> {
        self.batch_in(NFPROTO_BRIDGE, f)
    }

    /// [`Nft::batch`] for the messages of nf_tables family `family`.
    pub(crate) fn batch_in(&self, family: u8, f: impl FnOnce(&mut Builder)) -> io::Result<()> {
        let mut inner = self.lock();
        let mut b = Builder::new(&mut inner.seq, family);
        let begin = b.control(NFNL_MSG_BATCH_BEGIN);
        f(&mut b);
        let last = b.ack_last();
        b.control(NFNL_MSG_BATCH_END);
        let buf = b.buf;
        inner.talk(&buf, begin, last)
    }
}

impl Inner {
    /// Send `buf` (messages numbered `first..=last`) and read replies until
    /// the ack or error for `last` arrives; return the first error reported.
    /// An error on `first` when it is a BATCH_BEGIN means the kernel rejected
    /// the whole batch (no per-message replies follow). Replies outside the
    /// range (left over from an earlier, timed-out exchange) are ignored.
    fn talk(&self, buf: &[u8], first: u32, last: u32) -> io::Result<()> {
        self.sock.send_to(buf, &SocketAddr::new(0, 0), 0)?;
        let ours = |seq: u32| seq.wrapping_sub(first) <= last.wrapping_sub(first);
        let mut first_err = None;
        let mut rx = Vec::with_capacity(32 * 1024);
        loop {
            rx.clear();
            if let Err(e) = self.sock.recv(&mut rx, 0) {
                return Err(match e.kind() {
                    io::ErrorKind::WouldBlock => io::Error::from_raw_os_error(libc::ETIMEDOUT),
                    _ => e,
                });
            }
            let mut off = 0;
            while off + NLMSG_HDRLEN <= rx.len() {
                let len = u32_at(&rx, off) as usize;
                let ty = u16::from_ne_bytes([rx[off + 4], rx[off + 5]]);
                let seq = u32_at(&rx, off + 8);
                if len < NLMSG_HDRLEN || off + len > rx.len() {
                    return Err(io::Error::from_raw_os_error(libc::EBADMSG));
                }
                if ty == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 && ours(seq) {
                    let errno = -(u32_at(&rx, off + NLMSG_HDRLEN) as i32);
                    if errno != 0 && (seq == first || first_err.is_none()) {
                        first_err = Some(io::Error::from_raw_os_error(errno));
                    }
                    if seq == last || (errno != 0 && seq == first) {
                        return first_err.map_or(Ok(()), Err);
                    }
                }
                off += len.next_multiple_of(4);
            }
        }
    }
}

/// `meta l4proto udp udp dport 67-547 jump dhcp`, as `nft` encodes it:
/// l4proto first so a non-UDP frame leaves after one compare.
fn guard_rule(e: &mut Builder) {
    let (lo, hi) = GUARD_PORTS;
    udp_dport_in(e, lo, hi);
    verdict(e, NFT_JUMP as u32, Some(DHCP_CHAIN));
}

/// `meta l4proto udp udp dport LO-HI`: l4proto first, so a frame that is
/// not UDP leaves after one compare.
pub(crate) fn udp_dport_in(e: &mut Builder, lo: u16, hi: u16) {
    e.expr_meta(NFT_META_L4PROTO);
    e.expr_cmp(NFT_CMP_EQ, &[IPPROTO_UDP]);
    e.expr_payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    e.expr_cmp(NFT_CMP_GTE, &lo.to_be_bytes());
    e.expr_cmp(NFT_CMP_LTE, &hi.to_be_bytes());
}

/// An `immediate` verdict: `code`, and the target chain of a jump.
pub(crate) fn verdict(e: &mut Builder, code: u32, chain: Option<&str>) {
    e.expr("immediate", |d| {
        d.be32(1, NFT_REG_VERDICT); // NFTA_IMMEDIATE_DREG
        d.nest(2, |v| {
            // NFTA_IMMEDIATE_DATA
            v.nest(NFTA_DATA_VERDICT, |c| {
                c.be32(NFTA_VERDICT_CODE, code);
                if let Some(chain) = chain {
                    c.str(NFTA_VERDICT_CHAIN, chain);
                }
            });
        });
    });
}

/// `iifname V` (frames coming in from V) or `oifname V` (going out to it).
fn match_ifname(e: &mut Builder, dir: Dir, veth: &str) {
    let key = match dir {
        Dir::In => NFT_META_IIFNAME,
        Dir::Out => NFT_META_OIFNAME,
    };
    let mut ifname = [0u8; IFNAMSIZ];
    ifname[..veth.len()].copy_from_slice(veth.as_bytes());
    e.expr_meta(key);
    e.expr_cmp(NFT_CMP_EQ, &ifname);
}

/// `[iifname/oifname V] ether type T meta l4proto udp udp dport LO-HI
/// drop`, expression for expression as `nft` encodes it.
fn drop_rule(e: &mut Builder, on: Option<(Dir, &str)>, (ethertype, lo, hi): (u16, u16, u16)) {
    if let Some((dir, veth)) = on {
        match_ifname(e, dir, veth);
    }
    e.expr_payload(NFT_PAYLOAD_LL_HEADER, 12, 2);
    e.expr_cmp(NFT_CMP_EQ, &ethertype.to_be_bytes());
    udp_dport_in(e, lo, hi);
    verdict(e, NF_DROP, None);
}

/// `icmpv6 type LO[-HI] [@th,64,128 == target] drop`, in a chain only
/// jumped to for ICMPv6 (see [`icmpv6_jump`]).
pub(crate) fn nd_drop(e: &mut Builder, (lo, hi, target): NdDrop) {
    e.expr_payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
    if lo == hi {
        e.expr_cmp(NFT_CMP_EQ, &[lo]);
    } else {
        e.expr_cmp(NFT_CMP_GTE, &[lo]);
        e.expr_cmp(NFT_CMP_LTE, &[hi]);
    }
    if let Some(t) = target {
        e.expr_payload(NFT_PAYLOAD_TRANSPORT_HEADER, 8, 16);
        e.expr_cmp(NFT_CMP_EQ, &t.octets());
    }
    verdict(e, NF_DROP, None);
}

/// `meta l4proto icmpv6 jump CHAIN`.
pub(crate) fn icmpv6_jump(e: &mut Builder, chain: &str) {
    e.expr_meta(NFT_META_L4PROTO);
    e.expr_cmp(NFT_CMP_EQ, &[IPPROTO_ICMPV6]);
    verdict(e, NFT_JUMP as u32, Some(chain));
}

/// A base chain on `hook` (on `dev`'s ingress for the netdev family),
/// priority 0, policy accept.
pub(crate) fn base_chain(b: &mut Builder, table: &str, chain: &str, hook: u32, dev: Option<&str>) {
    b.msg(NFT_MSG_NEWCHAIN, NLM_F_REQUEST | NLM_F_CREATE, |m| {
        m.str(NFTA_CHAIN_TABLE, table);
        m.str(NFTA_CHAIN_NAME, chain);
        m.nest(NFTA_CHAIN_HOOK, |h| {
            h.be32(NFTA_HOOK_HOOKNUM, hook);
            h.be32(NFTA_HOOK_PRIORITY, 0);
            if let Some(dev) = dev {
                h.str(NFTA_HOOK_DEV, dev);
            }
        });
        m.be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
        m.str(NFTA_CHAIN_TYPE, "filter");
    });
}

/// Appends netlink messages and attributes to one buffer.
pub(crate) struct Builder<'a> {
    buf: Vec<u8>,
    seq: &'a mut u32,
    /// The nf_tables family of every message (not of the batch markers).
    family: u8,
    /// Offset of the last nf_tables message added.
    last: usize,
}

impl<'a> Builder<'a> {
    fn new(seq: &'a mut u32, family: u8) -> Self {
        Builder {
            buf: Vec::with_capacity(4096),
            seq,
            family,
            last: 0,
        }
    }

    fn header(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) -> (usize, u32) {
        let start = self.buf.len();
        let seq = *self.seq;
        *self.seq = seq.wrapping_add(1);
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched later
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: kernel fills
                                                         // struct nfgenmsg
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        (start, seq)
    }

    fn patch_len(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// BATCH_BEGIN/END for the nf_tables subsystem; returns its seq.
    fn control(&mut self, ty: u16) -> u32 {
        let (start, seq) = self.header(ty, NLM_F_REQUEST, NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES);
        self.patch_len(start);
        seq
    }

    /// One nf_tables message of the builder's family; returns its seq.
    pub(crate) fn msg(&mut self, cmd: u16, flags: u16, body: impl FnOnce(&mut Self)) -> u32 {
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | cmd;
        let (start, seq) = self.header(ty, flags, self.family, 0);
        body(self);
        self.patch_len(start);
        self.last = start;
        seq
    }

    /// Set NLM_F_ACK on the last message added; returns its seq.
    fn ack_last(&mut self) -> u32 {
        let at = self.last + 6;
        let flags = u16::from_ne_bytes([self.buf[at], self.buf[at + 1]]) | NLM_F_ACK;
        self.buf[at..at + 2].copy_from_slice(&flags.to_ne_bytes());
        u32_at(&self.buf, self.last + 8)
    }

    pub(crate) fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
    }

    pub(crate) fn str(&mut self, ty: u16, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.attr(ty, &data);
    }

    pub(crate) fn be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    pub(crate) fn nest(&mut self, ty: u16, body: impl FnOnce(&mut Self)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        body(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// One list element `{ NAME: name, DATA: { ... } }` of NFTA_RULE_EXPRESSIONS.
    pub(crate) fn expr(&mut self, name: &str, data: impl FnOnce(&mut Self)) {
        self.nest(NFTA_LIST_ELEM, |el| {
            el.str(NFTA_EXPR_NAME, name);
            el.nest(NFTA_EXPR_DATA, data);
        });
    }

    /// `meta load KEY => reg 1`
    pub(crate) fn expr_meta(&mut self, key: u32) {
        self.expr("meta", |d| {
            d.be32(2, key); // NFTA_META_KEY
            d.be32(1, NFT_REG_1); // NFTA_META_DREG
        });
    }

    /// `payload load LEN b @ BASE + OFFSET => reg 1`
    pub(crate) fn expr_payload(&mut self, base: u32, offset: u32, len: u32) {
        self.expr("payload", |d| {
            d.be32(1, NFT_REG_1); // NFTA_PAYLOAD_DREG
            d.be32(2, base); // NFTA_PAYLOAD_BASE
            d.be32(3, offset); // NFTA_PAYLOAD_OFFSET
            d.be32(4, len); // NFTA_PAYLOAD_LEN
        });
    }

    /// `cmp OP reg 1 VALUE`
    pub(crate) fn expr_cmp(&mut self, op: u32, value: &[u8]) {
        self.expr("cmp", |d| {
            d.be32(1, NFT_REG_1); // NFTA_CMP_SREG
            d.be32(2, op); // NFTA_CMP_OP
            d.nest(3, |v| v.attr(NFTA_DATA_VALUE, value)); // NFTA_CMP_DATA
        });
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Names must be non-empty, NUL-free and fit (with NUL) in `max` bytes.
pub(crate) fn check_name(name: &str, max: usize) -> io::Result<()> {
    if name.is_empty() || name.len() >= max || name.contains('\0') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(())
}

fn not_found_is_false(res: io::Result<()>) -> io::Result<bool> {
    match res {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}
