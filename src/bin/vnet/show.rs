//! `vnet show`: what the library sees in a namespace, read with its own
//! netlink and nf_tables code on a thread inside the namespace.

use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};

use vnet::filter::Nft;
use vnet::netlink::{link_attr, Netlink};
use vnet::netns::Netns;
use vnet::network::{FILTER_TABLE, LINK_GROUP};
use vnet::snapshot::{address_ip, route_destination, route_gateway};
use vnet::{plan, Error, Mode, Result};

use crate::CmdResult;

struct Seen {
    links: Vec<LinkMessage>,
    addrs: Vec<AddressMessage>,
    routes: Vec<RouteMessage>,
    table: std::io::Result<bool>,
    redirect: std::io::Result<bool>,
}

fn read(ns: &Netns) -> Result<Seen> {
    ns.run(|| {
        let nl_err = |e: std::io::Error| Error::Netlink {
            step: "dump".into(),
            source: e,
        };
        let mut nl = Netlink::open().map_err(nl_err)?;
        // Every route, not only those a snapshot keeps.
        let (links, addrs, routes) = (
            nl.links().map_err(nl_err)?,
            nl.addresses().map_err(nl_err)?,
            nl.routes().map_err(nl_err)?,
        );
        let table = Nft::open().and_then(|n| n.table_exists(FILTER_TABLE));
        let redirect = Nft::open().and_then(|n| n.redirect_exists(FILTER_TABLE));
        Ok(Seen {
            links,
            addrs,
            routes,
            table,
            redirect,
        })
    })
}

fn mac_str(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(r.header.table as u32)
}

fn route_oif(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

pub fn run(path: &str) -> CmdResult {
    let ns = Netns::open(path)?;
    let seen = read(&ns)?;
    let name_of = |ix: u32| {
        seen.links
            .iter()
            .find(|l| l.header.index == ix)
            .and_then(link_attr::name)
            .map_or_else(|| format!("if{ix}"), str::to_string)
    };
    println!("namespace {path}");
    println!("links:");
    for l in &seen.links {
        let mut extra = Vec::new();
        if let Some(c) = link_attr::controller(l) {
            extra.push(format!("master {}", name_of(c)));
        }
        if link_attr::group(l) == LINK_GROUP {
            extra.push("group vnet".into());
        }
        println!(
            "  {:>3} {:<15} {:<8} {:<4} mtu {:<5} {} {}",
            l.header.index,
            link_attr::name(l).unwrap_or("?"),
            link_attr::kind(l).map_or_else(|| "-".to_string(), |k| k.to_string()),
            if l.header.flags.contains(LinkFlags::Up) {
                "up"
            } else {
                "down"
            },
            link_attr::mtu(l).unwrap_or(0),
            link_attr::mac(l).map(mac_str).unwrap_or_default(),
            extra.join(" "),
        );
    }
    println!("addresses:");
    for a in &seen.addrs {
        if let Some(ip) = address_ip(a) {
            println!("  {:<15} {ip}", name_of(a.header.index));
        }
    }
    println!("routes (all tables but local):");
    for r in &seen.routes {
        let table = route_table(r);
        if table == libc::RT_TABLE_LOCAL as u32 {
            continue;
        }
        let Some(dst) = route_destination(r) else {
            continue;
        };
        let dst = if dst.prefix() == 0 {
            "default".to_string()
        } else {
            dst.to_string()
        };
        let via = route_gateway(r)
            .map(|g| format!(" via {g}"))
            .unwrap_or_default();
        let dev = route_oif(r)
            .map(|i| format!(" dev {}", name_of(i)))
            .unwrap_or_default();
        let tbl = if table == libc::RT_TABLE_MAIN as u32 {
            String::new()
        } else {
            format!(" table {table}")
        };
        println!("  {dst}{via}{dev}{tbl}");
    }
    let mut leftovers: Vec<String> = seen
        .links
        .iter()
        .filter(|l| link_attr::group(l) == LINK_GROUP)
        .filter_map(|l| link_attr::name(l).map(|n| format!("link {n}")))
        .collect();
    for v in plan::find_veths(&seen.links) {
        if let Some(c) = link_attr::controller(v) {
            leftovers.push(format!(
                "{} enslaved to {}",
                link_attr::name(v).unwrap_or("?"),
                name_of(c)
            ));
        }
    }
    match &seen.table {
        Ok(true) => leftovers.push(format!("nf_tables table bridge {FILTER_TABLE}")),
        Ok(false) => {}
        Err(e) => eprintln!("vnet: could not read nf_tables: {e}"),
    }
    match &seen.redirect {
        Ok(true) => leftovers.push(format!("nf_tables table netdev {FILTER_TABLE}")),
        Ok(false) => {}
        Err(e) => eprintln!("vnet: could not read nf_tables: {e}"),
    }
    println!("vnet:");
    if leftovers.is_empty() {
        println!("  leftovers: none");
    } else {
        println!(
            "  leftovers: {} (set up by vnet; undo with vnet teardown --state FILE)",
            leftovers.join(", ")
        );
    }
    if seen.redirect.as_ref().is_ok_and(|r| *r) {
        redirect_rules(&ns, &name_of);
    }
    for mode in [Mode::Bridge, Mode::Redirect] {
        let m = mode.as_str();
        match plan::find_interfaces(&seen.links, None, path, mode) {
            Ok(_) if !leftovers.is_empty() => println!("  {m} mode setup would fail: leftovers"),
            Ok(chosen) => {
                let names: Vec<&str> = chosen.iter().filter_map(|l| link_attr::name(l)).collect();
                let ours = if mode == Mode::Bridge {
                    "tap0/br0"
                } else {
                    "tap0"
                };
                println!(
                    "  {m} mode setup would hand over: {} ({ours})",
                    names.join(", ")
                );
            }
            Err(e) => println!("  {m} mode setup without a CNI result would fail: {e}"),
        }
    }
    Ok(())
}

/// The redirect rules of the netdev table, as the kernel holds them.
fn redirect_rules(ns: &Netns, name_of: &dyn Fn(u32) -> String) {
    match ns.run(|| {
        Nft::open()
            .and_then(|n| n.list_redirect(FILTER_TABLE))
            .map_err(|e| Error::Filter {
                step: "list".into(),
                source: e,
            })
    }) {
        Ok(rules) => {
            println!("  redirect rules (nf_tables table netdev {FILTER_TABLE}):");
            for r in rules {
                println!("    {}", r.describe(name_of));
            }
        }
        Err(e) => println!("  redirect rules: could not read: {e}"),
    }
}
