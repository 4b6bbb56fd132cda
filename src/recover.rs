//! Recover inside the pod namespace: check that saved state describes this
//! namespace, then reopen the TAP queues and DHCP sockets.

use crate::dhcp;
use crate::error::{Error, Result};
use crate::filter::Nft;
use crate::netlink::{link_attr, Netlink};
use crate::network::{Opened, RecoverOptions, State, LINK_GROUP};
use crate::tap::{self, TapOptions};

/// In the namespace: check the devices are ours and still there (the veth
/// with the MAC we gave it, in our bridge), then reopen them.
pub(crate) fn recover_in_ns(state: &State, opts: RecoverOptions) -> Result<Opened> {
    let mut nl = Netlink::open().map_err(|e| Error::netlink("open", e))?;
    let links = nl.links().map_err(|e| Error::netlink("dump links", e))?;
    let mut taps = Vec::new();
    let mut dhcp = Vec::new();
    let mut k = 0;
    let mut point = |what: &str| crate::fault::recover_point(state, &mut k, what);
    for i in &state.interfaces {
        point(&format!("check {} and {}", i.tap, i.bridge))?;
        if opts.check_links {
            for (name, ix) in [(&i.tap, i.tap_ifindex), (&i.bridge, i.bridge_ifindex)] {
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
            let ours = veth.is_some_and(|l| {
                link_attr::mac(l) == Some(&i.veth_mac.0[..])
                    && link_attr::controller(l) == Some(i.bridge_ifindex)
            });
            if !ours {
                return Err(Error::State(format!(
                    "{} (index {}) does not carry MAC {} in {}: the state is not of this namespace",
                    i.veth, i.snapshot.ifindex, i.veth_mac, i.bridge
                )));
            }
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
            if let Some(lease) = &i.lease {
                point(&format!("DHCP sockets on {}", i.bridge))?;
                let sock =
                    dhcp::bind_sockets(&i.bridge, i.tap_ifindex).map_err(|e| Error::Dhcp {
                        bridge: i.bridge.clone(),
                        source: e,
                    })?;
                dhcp.push((sock, lease.clone()));
            }
        }
    }
    // Kept for teardown; without them teardown opens its own.
    let control = Nft::open().ok().map(|nft| (nl, nft));
    Ok(Opened {
        taps,
        dhcp,
        control,
    })
}
