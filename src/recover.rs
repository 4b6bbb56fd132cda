//! Recover inside the pod namespace: check that saved state describes this
//! namespace, then reopen the TAP queues and DHCP sockets.

use crate::dhcp;
use crate::error::{Error, Result};
use crate::filter::Nft;
use crate::netlink::{link_attr, Netlink};
use crate::network::RecoverOptions;
use crate::state::{InterfaceState, Opened, State, FILTER_TABLE, LINK_GROUP};
use crate::tap::{self, TapOptions};
use crate::topology::Mode;
use netlink_packet_route::link::LinkMessage;

/// In the namespace: check the devices are ours and still there
/// ([`check_links`], unless `opts` says not to), then reopen what `opts`
/// asks for: the TAP queues, the DHCP and DHCPv6 sockets.
pub(crate) fn recover_in_ns(state: &State, opts: RecoverOptions) -> Result<Opened> {
    let mut nl = Netlink::open().map_err(|e| Error::netlink("open", e))?;
    let links = nl.links().map_err(|e| Error::netlink("dump links", e))?;
    let mut taps = Vec::new();
    let mut dhcp = Vec::new();
    let mut dhcp6 = Vec::new();
    let mut k = 0;
    let mut point = |what: &str| crate::fault::recover_point(state, &mut k, what);
    let nft = Nft::open().map_err(|e| Error::Filter {
        step: "open".into(),
        source: e,
    })?;
    let on_tap = if state.dhcp && opts.serve_dhcp {
        dhcp4_on_tap(state, &nft)?
    } else {
        state.dhcp4_on_tap
    };
    for i in &state.interfaces {
        point(&format!("check {} and {}", i.tap, i.server_link()))?;
        if opts.check_links {
            check_links(&links, i)?;
        }
        point(&format!("reopen {}", i.tap))?;
        if opts.open_taps {
            let tap_opts = TapOptions {
                queues: i.queues,
                vnet_hdr: i.vnet_hdr,
            };
            taps.push(tap::reopen(&i.tap, tap_opts).map_err(|e| Error::Tap {
                name: i.tap.clone(),
                step: "reopen".into(),
                source: e,
            })?);
        } else {
            taps.push(Vec::new());
        }
        if state.dhcp && opts.serve_dhcp {
            if let Some(lease) = i.lease.as_ref().filter(|_| !on_tap) {
                let link = i.server_link();
                point(&format!("DHCP sockets on {link}"))?;
                let sock = dhcp::bind_sockets(link, i.tap_ifindex).map_err(|e| Error::Dhcp {
                    bridge: link.to_string(),
                    source: e,
                })?;
                dhcp.push((sock, lease.clone()));
            }
            if let Some(lease6) = &i.lease6 {
                point(&format!("IPv6 socket on {}", i.tap))?;
                let v4 = i.lease.clone().filter(|_| on_tap);
                let sock = crate::dhcp6::Unbound::open(v4.is_some())
                    .and_then(|u| u.bind(i.tap_ifindex, i.snapshot.ifindex))
                    .map_err(|e| Error::Dhcp {
                        bridge: i.bridge.clone(),
                        source: e,
                    })?;
                dhcp6.push((sock, lease6.clone(), v4));
            }
        }
    }
    // Kept for teardown.
    let control = Some((nl, nft));
    Ok(Opened {
        taps,
        dhcp,
        dhcp6,
        control,
    })
}

/// Whether the IPv6 servers' sockets serve DHCPv4 too: as the state
/// records, and for a dual-stack state written before that was recorded
/// (by a library that served DHCPv4 either way), as the filter table in
/// the kernel was built: one for `dhcp4_on_tap` takes DHCPv4 off the
/// server link's stack (bridge mode: its `dhcp` drops name no interface;
/// redirect mode: `dhcp_vm` accepts nothing to the TAP's stack), and a
/// UDP socket there would never hear the VM.
fn dhcp4_on_tap(state: &State, nft: &Nft) -> Result<bool> {
    if state.dhcp4_on_tap || !crate::state::dhcp4_on_tap_for(&state.interfaces) {
        return Ok(state.dhcp4_on_tap);
    }
    let (family, chain) = match state.interfaces[0].mode {
        Mode::Bridge => (crate::filter::NFPROTO_BRIDGE, "dhcp"),
        Mode::Redirect => (crate::filter::NFPROTO_NETDEV, "dhcp_vm"),
    };
    let rules = nft
        .list_rules(family, FILTER_TABLE)
        .map_err(|e| Error::Filter {
            step: "list rules".into(),
            source: e,
        })?;
    let dhcp: Vec<_> = rules.iter().filter(|r| r.chain == chain).collect();
    if dhcp.is_empty() {
        return Err(Error::State(format!(
            "no {chain} rules in nf_tables table {FILTER_TABLE}: the state is not of this namespace"
        )));
    }
    Ok(match state.interfaces[0].mode {
        Mode::Bridge => !dhcp.iter().any(|r| r.names_an_interface()),
        Mode::Redirect => !dhcp.iter().any(|r| r.accepts()),
    })
}

/// The devices of one interface are ours and still there: the TAP (and in
/// bridge mode the bridge) by index, name and link group; the pod interface
/// with the MAC the state says (bridge mode: ours, in our bridge; redirect
/// mode: its own, in no bridge).
fn check_links(links: &[LinkMessage], i: &InterfaceState) -> Result<()> {
    let mut ours = vec![(&i.tap, i.tap_ifindex)];
    if i.mode == Mode::Bridge {
        ours.push((&i.bridge, i.bridge_ifindex));
    }
    for (name, ix) in ours {
        match links.iter().find(|l| l.header.index == ix) {
            Some(l)
                if link_attr::name(l) == Some(name.as_str())
                    && link_attr::group(l) == LINK_GROUP => {}
            Some(_) => {
                return Err(Error::State(format!(
                    "link {ix} is not our {name}: the state is not of this namespace"
                )))
            }
            None => return Err(Error::State(format!("{name} (index {ix}) is gone"))),
        }
    }
    let veth = links.iter().find(|l| l.header.index == i.snapshot.ifindex);
    let controller = (i.mode == Mode::Bridge).then_some(i.bridge_ifindex);
    let ours = veth.is_some_and(|l| {
        link_attr::mac(l) == Some(&i.veth_mac.0[..])
            && link_attr::controller(l).filter(|c| *c != 0) == controller
    });
    if !ours {
        return Err(Error::State(format!(
            "{} (index {}) does not carry MAC {} {}: the state is not of this namespace",
            i.veth,
            i.snapshot.ifindex,
            i.veth_mac,
            match i.mode {
                Mode::Bridge => format!("in {}", i.bridge),
                Mode::Redirect => "outside any bridge".to_string(),
            }
        )));
    }
    Ok(())
}
