//! Bridge mode: `brN` holds `tapN` and the pod's veth, which gets a fresh
//! random MAC so the VM can keep the pod's; our server lives on `brN`, and
//! a bridge-family nf_tables table keeps DHCP off the veth.

use std::fs::File;
use std::os::fd::OwnedFd;

use super::{create_tap, no_ipv6_autoconf, server_address, vm_route, Made, Topology};
use crate::bridge;
use crate::dhcp::Lease;
use crate::error::{Error, Result};
use crate::filter::{Nft, Serving};
use crate::journal::{Journal, Step};
use crate::mac::Mac;
use crate::netlink::Netlink;
use crate::plan::IfacePlan;
use crate::state::{FILTER_TABLE, LINK_GROUP};
use crate::tap::TapOptions;

pub(crate) struct Bridge;

impl Topology for Bridge {
    fn create(
        &self,
        nl: &mut Netlink,
        j: &mut Journal,
        p: &IfacePlan,
        files: Vec<File>,
        opts: TapOptions,
        taps: &mut Vec<Vec<OwnedFd>>,
    ) -> Result<Made> {
        let mtu = p.snapshot.mtu;
        j.begin("create bridge")?;
        nl.new_link(bridge::new_bridge(&p.bridge, mtu, LINK_GROUP))
            .map_err(|e| exists_or(e, &p.bridge, "create bridge"))?;
        let br = nl
            .index_of(&p.bridge)
            .map_err(|e| Error::netlink(format!("find {}", p.bridge), e))?;
        j.record(Step::CreateLink {
            ifindex: br,
            name: p.bridge.clone(),
            group: LINK_GROUP,
        });
        j.begin("bridge: no IPv6 autoconf, up")?;
        no_ipv6_autoconf(nl, br, &p.bridge)?;
        nl.set_up(br, true)
            .map_err(|e| Error::netlink(format!("set {} up", p.bridge), e))?;
        j.done();

        let tap = create_tap(nl, j, p, files, opts, taps, None)?;
        j.begin("enslave tap")?;
        nl.set_link(bridge::enslave(tap, br, Some(mtu), Some(LINK_GROUP)))
            .map_err(|e| Error::netlink(format!("add {} to {}", p.tap, p.bridge), e))?;
        j.record(Step::Enslave {
            port: tap,
            bridge: br,
        });
        Ok(Made {
            tap,
            bridge: br,
            server_mac: None,
        })
    }

    /// A fresh random MAC (OS CSPRNG): the VM takes the pod's, and the
    /// bridge would otherwise see it on two ports.
    fn pod_mac(&self, nl: &mut Netlink, j: &mut Journal, p: &IfacePlan) -> Result<Mac> {
        let s = &p.snapshot;
        j.begin("set veth MAC")?;
        let mac = Mac::random()?;
        nl.set_link(bridge::set_mac(s.ifindex, mac))
            .map_err(|e| Error::netlink(format!("set MAC ({})", s.name), e))?;
        j.record(Step::SetMac {
            ifindex: s.ifindex,
            from: s.mac,
            to: mac,
        });
        Ok(mac)
    }

    fn attach(
        &self,
        nl: &mut Netlink,
        j: &mut Journal,
        p: &IfacePlan,
        made: Made,
        lease: Option<&Lease>,
    ) -> Result<()> {
        let s = &p.snapshot;
        j.begin("enslave veth")?;
        nl.set_link(bridge::enslave(s.ifindex, made.bridge, None, None))
            .map_err(|e| Error::netlink(format!("add {} to {}", s.name, p.bridge), e))?;
        j.record(Step::Enslave {
            port: s.ifindex,
            bridge: made.bridge,
        });
        server_address(nl, j, made.bridge, &p.bridge, "bridge address")?;
        vm_route(nl, j, made.bridge, &p.bridge, lease)
    }

    fn install(
        &self,
        nft: &Nft,
        j: &mut Journal,
        plans: &[IfacePlan],
        _: &[Made],
        serving: Serving,
    ) -> Result<()> {
        j.begin("install filter")?;
        let veths: Vec<String> = plans.iter().map(|p| p.snapshot.name.clone()).collect();
        nft.install_with(FILTER_TABLE, &veths, serving)
            .map_err(|e| Error::Filter {
                step: "install".into(),
                source: e,
            })?;
        j.record(Step::InstallFilter {
            table: FILTER_TABLE.into(),
        });
        Ok(())
    }
}

fn exists_or(e: std::io::Error, name: &str, step: &str) -> Error {
    if e.raw_os_error() == Some(libc::EEXIST) {
        Error::NameExists(name.to_string())
    } else {
        Error::netlink(format!("{step} {name}"), e)
    }
}
