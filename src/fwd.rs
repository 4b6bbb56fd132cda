//! Redirect mode's kernel mechanism: one nf_tables `netdev` table whose
//! ingress chains move every frame between a VM's TAP and its pod interface,
//! both ways, and keep DHCP where it belongs. Spoken with [`crate::filter`]'s
//! encoder.
//!
//! # Rule set
//!
//! For each pair `N` (TAP `T`, pod interface `P`, `S` = [`BRIDGE_IP`]):
//!
//! ```text
//! table netdev vnet {
//!   chain dhcp_vm {                                 # UDP 67-547 from a VM
//!     ether type ip  udp dport 67      accept       # to our server (TAP's own stack;
//!                                                   #  not with dhcp4_on_tap)
//!     ether type ip  udp dport 67-68   drop         # (68: never to the pod network)
//!     ether type ip6 udp dport 546-547 drop
//!   }
//!   chain dhcp_pod {                                # UDP 67-547 from the pod network
//!     ether type ip  udp dport 67-68   drop
//!     ether type ip6 udp dport 546-547 drop
//!   }
//!   chain nd {                                      # only when IPv6 is served:
//!     icmpv6 type 133-134 drop                      # RS (answered by us), RA
//!     icmpv6 type nd-neighbor-solicit @th,64,128 R drop  # R = dhcp6::ROUTER_LL
//!   }                                               # (bridge mode's, both ways)
//!   chain vmN  { type filter hook ingress device T priority 0; policy accept;
//!     meta l4proto udp udp dport 67-547 jump dhcp_vm
//!     meta l4proto icmpv6 jump nd                   # when IPv6 is served
//!     ether type arp arp daddr ip S accept           # ARP for our server
//!     fwd to P
//!   }
//!   chain podN { type filter hook ingress device P priority 0; policy accept;
//!     meta l4proto udp udp dport 67-547 jump dhcp_pod
//!     meta l4proto icmpv6 jump nd                   # when IPv6 is served
//!     fwd to T
//!   }
//! }
//! ```
//!
//! The IPv6 server ([`crate::dhcp6`]) needs nothing accepted: its packet
//! socket on the TAP takes the VM's RS, NS and DHCPv6 before the ingress
//! hook runs, and the dropped copies go nowhere. Its answers go straight
//! onto the TAP, from the TAP's MAC (the pod interface keeps the VM's); its
//! one solicitation of a global gateway goes out of the pod interface, and
//! the gateway's answer comes back through `podN` to the TAP, where the
//! socket sees it leave.
//!
//! # How DHCP works without a bridge
//!
//! `S/24` lives on the TAP itself, and our server's UDP socket is bound to
//! the TAP. What the `vm` chain accepts (instead of forwarding) goes up the
//! TAP's own receive path: the VM's DHCP to port 67, broadcast or unicast
//! renewals to `S` alike, reaches our socket, and its ARP requests for `S`
//! are answered by the TAP's own stack with the TAP's MAC. The /32 route to
//! the VM's address through the TAP (as through the bridge in bridge mode)
//! keeps those renewals and ARPs past reverse-path filtering. Answers go
//! straight onto the TAP through a packet socket, which no ingress hook
//! sees. Nothing else from the VM enters the TAP's stack, and DHCP from the
//! pod network is dropped before it can reach the VM or the stripped pod
//! interface's stack.
//!
//! On a dual-stack pod ([`Serving::dhcp4_on_tap`]) the IPv6 server's
//! packet socket takes the VM's DHCPv4 too (`dhcp::frame`), before this
//! hook: there is no UDP socket, the `dhcp_vm` chain has no `accept`, and
//! its drop keeps the copy out of the TAP's stack (where nobody listens on
//! port 67, so a unicast renewal would draw a port unreachable). `S` and
//! the /32 route stay, for the TAP's stack to answer the VM's ARP for `S`.
//!
//! # Why nf_tables `fwd` and not tc u32 + mirred
//!
//! Measured by hand on this machine (2 vCPU, 64 B and 1514 B UDP written to
//! the TAP, counted at the veth's far end, 3 s each, 3 rounds): plain
//! redirect 290-405 kframes/s with tc, 263-396k with nft; with the DHCP
//! rules in (tc: u32 `classid` filters that end classification and let
//! the frame into the stack), 294-394k tc, 335-379k nft; a bridge 281-305k.
//! The two are equal within this machine's noise (a later interleaved run,
//! `bench/redirect/dp.sh`, had tc ahead by ~10% at 64 B in one round and
//! nft ahead at 1514 B: see bench/RESULTS.md). nf_tables wins on what
//! else it gives: an explicit `drop` (this kernel has no `act_gact`; u32
//! without an action can only pass a frame to the stack), one atomic batch
//! to install every rule and one request to remove them all (tc needs an
//! ingress qdisc on the pod interface, which another tool may own, and a
//! journal step per qdisc), rules that `nft list` shows, and the encoder
//! bridge mode already uses.

use std::io;

use crate::bridge::BRIDGE_IP;
use crate::filter::{
    base_chain, check_name, icmpv6_jump, nd_drop, udp_dport_in, verdict, Builder, Nft, Serving,
    DHCP, GUARD_PORTS, IFNAMSIZ, ND_DROPS, NFPROTO_NETDEV, NFTA_CHAIN_NAME, NFTA_CHAIN_TABLE,
    NFTA_DATA_VALUE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS, NFTA_RULE_TABLE, NFTA_TABLE_NAME,
    NFT_CMP_EQ, NFT_JUMP, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE, NFT_MSG_NEWTABLE,
    NFT_PAYLOAD_LL_HEADER, NFT_REG_1, NF_ACCEPT, NF_DROP, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST, TABLE_MAXNAMELEN,
};

const NF_NETDEV_INGRESS: u32 = 0;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const ETH_P_ARP: u16 = 0x0806;
/// Offset of the target protocol address in an Ethernet/IPv4 ARP packet.
const ARP_TPA: u32 = 24;
const DHCP_VM: &str = "dhcp_vm";
const DHCP_POD: &str = "dhcp_pod";
const ND: &str = "nd";

/// One TAP and the pod interface its frames go to and come from.
#[derive(Clone, Debug)]
pub struct Pair {
    pub tap: String,
    pub tap_ifindex: u32,
    pub pod: String,
    pub pod_ifindex: u32,
}

impl Nft {
    /// Create netdev table `table` with the chains and rules in the module
    /// docs (the `nd` one when `ipv6`), in one batch. Fails with EEXIST
    /// if the table exists.
    pub fn install_redirect(
        &self,
        table: &str,
        pairs: &[Pair],
        serving: Serving,
    ) -> io::Result<()> {
        let ipv6 = serving.ipv6;
        check_name(table, TABLE_MAXNAMELEN)?;
        for p in pairs {
            check_name(&p.tap, IFNAMSIZ)?;
            check_name(&p.pod, IFNAMSIZ)?;
        }
        let flags = NLM_F_REQUEST | NLM_F_CREATE;
        let rule = |b: &mut Builder, chain: &str, body: &dyn Fn(&mut Builder)| {
            b.msg(NFT_MSG_NEWRULE, flags | NLM_F_APPEND, |m| {
                m.str(NFTA_RULE_TABLE, table);
                m.str(NFTA_RULE_CHAIN, chain);
                m.nest(NFTA_RULE_EXPRESSIONS, body);
            });
        };
        self.batch_in(NFPROTO_NETDEV, |b| {
            b.msg(NFT_MSG_NEWTABLE, flags | NLM_F_EXCL, |m| {
                m.str(NFTA_TABLE_NAME, table)
            });
            let nd: &[&str] = if ipv6 { &[ND] } else { &[] };
            for &chain in [DHCP_VM, DHCP_POD].iter().chain(nd) {
                b.msg(NFT_MSG_NEWCHAIN, flags, |m| {
                    m.str(NFTA_CHAIN_TABLE, table);
                    m.str(NFTA_CHAIN_NAME, chain);
                });
            }
            let (v4, v6) = (DHCP[0], DHCP[1]);
            if !serving.dhcp4_on_tap {
                // To our UDP socket on the TAP (with `dhcp4_on_tap` our
                // packet socket took it before this hook ran).
                rule(b, DHCP_VM, &|e| {
                    proto_ports(e, (v4.0, 67, 67));
                    verdict(e, NF_ACCEPT, None);
                });
            }
            for proto in [v4, v6] {
                rule(b, DHCP_VM, &|e| {
                    proto_ports(e, proto);
                    verdict(e, NF_DROP, None);
                });
                rule(b, DHCP_POD, &|e| {
                    proto_ports(e, proto);
                    verdict(e, NF_DROP, None);
                });
            }
            if ipv6 {
                // Bridge mode's drops: one chain for both directions.
                for d in ND_DROPS {
                    rule(b, ND, &|e| nd_drop(e, d));
                }
            }
            for (n, p) in pairs.iter().enumerate() {
                let (vm, pod) = (format!("vm{n}"), format!("pod{n}"));
                base_chain(b, table, &vm, NF_NETDEV_INGRESS, Some(&p.tap));
                rule(b, &vm, &|e| guard(e, DHCP_VM));
                if ipv6 {
                    rule(b, &vm, &|e| icmpv6_jump(e, ND));
                }
                rule(b, &vm, &|e| {
                    e.expr_payload(NFT_PAYLOAD_LL_HEADER, 12, 2);
                    e.expr_cmp(NFT_CMP_EQ, &ETH_P_ARP.to_be_bytes());
                    e.expr_payload(NFT_PAYLOAD_NETWORK_HEADER, ARP_TPA, 4);
                    e.expr_cmp(NFT_CMP_EQ, &BRIDGE_IP.octets());
                    verdict(e, NF_ACCEPT, None);
                });
                rule(b, &vm, &|e| fwd(e, p.pod_ifindex));
                base_chain(b, table, &pod, NF_NETDEV_INGRESS, Some(&p.pod));
                rule(b, &pod, &|e| guard(e, DHCP_POD));
                if ipv6 {
                    rule(b, &pod, &|e| icmpv6_jump(e, ND));
                }
                rule(b, &pod, &|e| fwd(e, p.tap_ifindex));
            }
        })
    }

    /// Delete the netdev table in one request. `Ok(false)` if it was gone.
    pub fn delete_redirect(&self, table: &str) -> io::Result<bool> {
        self.delete_table_in(NFPROTO_NETDEV, table)
    }

    /// Whether the netdev table exists.
    pub fn redirect_exists(&self, table: &str) -> io::Result<bool> {
        self.table_exists_in(NFPROTO_NETDEV, table)
    }
}

/// `meta l4proto udp udp dport 67-547 jump CHAIN`: a frame that is not UDP
/// leaves after one compare, as in bridge mode's guard.
fn guard(e: &mut Builder, chain: &str) {
    let (lo, hi) = GUARD_PORTS;
    udp_dport_in(e, lo, hi);
    verdict(e, NFT_JUMP as u32, Some(chain));
}

/// `ether type T meta l4proto udp udp dport LO-HI`.
fn proto_ports(e: &mut Builder, (ethertype, lo, hi): (u16, u16, u16)) {
    e.expr_payload(NFT_PAYLOAD_LL_HEADER, 12, 2);
    e.expr_cmp(NFT_CMP_EQ, &ethertype.to_be_bytes());
    udp_dport_in(e, lo, hi);
}

/// `fwd to IFINDEX`: the ifindex into register 1 (host order, as `nft`
/// encodes it), then `fwd sreg_dev 1`; the frame leaves by that device's
/// transmit path and goes no further here.
fn fwd(e: &mut Builder, ifindex: u32) {
    e.expr("immediate", |d| {
        d.be32(1, NFT_REG_1); // NFTA_IMMEDIATE_DREG
        d.nest(2, |v| v.attr(NFTA_DATA_VALUE, &ifindex.to_ne_bytes())); // NFTA_IMMEDIATE_DATA
    });
    e.expr("fwd", |d| d.be32(1, NFT_REG_1)); // NFTA_FWD_SREG_DEV
}

/// Netlink attributes: (type without flags, payload).
pub type Attrs = Vec<(u16, Vec<u8>)>;

/// One rule of the netdev table, as the kernel lists it.
#[derive(Debug)]
pub struct RuleView {
    pub chain: String,
    /// `(expression name, its attributes: (type, payload))`, in order.
    pub exprs: Vec<(String, Attrs)>,
}

impl RuleView {
    /// Whether the rule matches on an interface name (`iifname`/`oifname`).
    pub fn names_an_interface(&self) -> bool {
        const NFT_META_IIFNAME: u32 = 6;
        const NFT_META_OIFNAME: u32 = 7;
        self.exprs.iter().any(|(name, attrs)| {
            name == "meta"
                && attrs.iter().any(|(t, v)| {
                    *t == 2
                        && v.get(..4).is_some_and(|k| {
                            let k = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
                            k == NFT_META_IIFNAME || k == NFT_META_OIFNAME
                        })
                })
        })
    }

    /// Whether the rule's verdict is `accept`.
    pub fn accepts(&self) -> bool {
        self.exprs.iter().any(|(name, attrs)| {
            // NFTA_IMMEDIATE_DATA holds the verdict.
            let data = attrs.iter().find(|(t, _)| *t == 2);
            name == "immediate"
                && data.is_some_and(|(_, d)| verdict_str(&inner_attrs(d)) == "accept")
        })
    }

    /// One line in `nft --debug=netlink` style, ifindexes named by `name_of`.
    pub fn describe(&self, name_of: &dyn Fn(u32) -> String) -> String {
        let mut out = format!("{:<8}", self.chain);
        let mut reg1 = None;
        for (name, attrs) in &self.exprs {
            let a = |t: u16| attrs.iter().find(|(ty, _)| *ty == t).map(|(_, v)| v);
            let be = |t: u16| {
                a(t).and_then(|v| v.get(..4))
                    .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            };
            let part = match name.as_str() {
                "meta" => format!("meta key {}", be(2).unwrap_or(0)),
                "payload" => format!(
                    "payload base {} +{} len {}",
                    be(2).unwrap_or(0),
                    be(3).unwrap_or(0),
                    be(4).unwrap_or(0)
                ),
                "cmp" => format!(
                    "cmp op {} {}",
                    be(2).unwrap_or(0),
                    a(3).map(|v| hex(&inner_attrs(v)
                        .into_iter()
                        .map(|x| x.1)
                        .next()
                        .unwrap_or_default()))
                        .unwrap_or_default()
                ),
                "immediate" => {
                    let data = a(2).map(|v| inner_attrs(v)).unwrap_or_default();
                    match data.iter().find(|(t, _)| *t == NFTA_DATA_VALUE) {
                        Some((_, v)) if v.len() == 4 => {
                            reg1 = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
                            continue;
                        }
                        _ => verdict_str(&data),
                    }
                }
                "fwd" => format!("fwd to {}", reg1.map(name_of).unwrap_or_else(|| "?".into())),
                other => other.to_string(),
            };
            out.push_str(&format!(" [ {part} ]"));
        }
        out
    }
}

impl Nft {
    /// Every rule of netdev table `table`, chain by chain.
    pub fn list_redirect(&self, table: &str) -> io::Result<Vec<RuleView>> {
        self.list_rules(NFPROTO_NETDEV, table)
    }

    /// Every rule of table `table` of nf_tables family `family`.
    pub fn list_rules(&self, family: u8, table: &str) -> io::Result<Vec<RuleView>> {
        const NFT_MSG_GETRULE: u16 = 7;
        check_name(table, TABLE_MAXNAMELEN)?;
        let replies = self.dump(
            family,
            (crate::filter::NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
            |m| m.str(NFTA_RULE_TABLE, table),
        )?;
        let mut rules = Vec::new();
        for r in replies {
            let attrs = inner_attrs(&r);
            let get = |t: u16| {
                attrs
                    .iter()
                    .find(|(ty, _)| *ty == t)
                    .map(|(_, v)| v.clone())
            };
            let chain = get(NFTA_RULE_CHAIN)
                .map(|v| {
                    String::from_utf8_lossy(&v)
                        .trim_end_matches('\0')
                        .to_string()
                })
                .unwrap_or_default();
            let mut exprs = Vec::new();
            for (_, el) in get(NFTA_RULE_EXPRESSIONS)
                .map(|v| inner_attrs(&v))
                .unwrap_or_default()
            {
                let el = inner_attrs(&el);
                let name = el
                    .iter()
                    .find(|(t, _)| *t == 1)
                    .map(|(_, v)| {
                        String::from_utf8_lossy(v)
                            .trim_end_matches('\0')
                            .to_string()
                    })
                    .unwrap_or_default();
                let data = el
                    .iter()
                    .find(|(t, _)| *t == 2)
                    .map(|(_, v)| inner_attrs(v))
                    .unwrap_or_default();
                exprs.push((name, data));
            }
            rules.push(RuleView { chain, exprs });
        }
        Ok(rules)
    }
}

/// The attributes in `buf`, as (type without flags, payload).
fn inner_attrs(buf: &[u8]) -> Attrs {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & 0x3fff;
        if len < 4 || off + len > buf.len() {
            break;
        }
        out.push((ty, buf[off + 4..off + len].to_vec()));
        off += len.next_multiple_of(4);
    }
    out
}

fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

/// `NFTA_DATA_VERDICT { code, chain }` as `accept`, `drop`, `jump CHAIN`.
fn verdict_str(data: &[(u16, Vec<u8>)]) -> String {
    let Some((_, v)) = data.iter().find(|(t, _)| *t == 2) else {
        return "immediate ?".into();
    };
    let v = inner_attrs(v);
    let code = v
        .iter()
        .find(|(t, _)| *t == 1)
        .and_then(|(_, c)| c.get(..4))
        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .unwrap_or(i32::MIN);
    let chain = v.iter().find(|(t, _)| *t == 2).map(|(_, c)| {
        String::from_utf8_lossy(c)
            .trim_end_matches('\0')
            .to_string()
    });
    match (code, chain) {
        (0, _) => "drop".into(),
        (1, _) => "accept".into(),
        (-3, Some(c)) => format!("jump {c}"),
        (c, _) => format!("verdict {c}"),
    }
}
