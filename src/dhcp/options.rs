//! Option encoders for replies. Standard options go through dhcproto's codec; option 121
//! (RFC 3442) is built here because its destination must be masked and the network type
//! is ipnetwork's, not the codec's ipnet.

use std::net::Ipv4Addr;

use dhcproto::v4::{encode_long_opt_bytes, DhcpOption, OptionCode};
use dhcproto::{Encodable, Encoder, Name};

use super::lease::{prefix_mask, Lease};

/// One option in wire form (code, len, value; already split per RFC 3396 when > 255 bytes).
#[derive(Debug)]
pub(crate) struct WireOpt {
    pub code: u8,
    pub bytes: Vec<u8>,
}

/// Encode one option with the codec. `None` if the codec refuses it.
pub(crate) fn wire(opt: DhcpOption) -> Option<WireOpt> {
    let code = u8::from(OptionCode::from(&opt));
    let mut bytes = Vec::new();
    opt.encode(&mut Encoder::new(&mut bytes)).ok()?;
    Some(WireOpt { code, bytes })
}

/// Encode raw option data, split into 255-byte pieces (RFC 3396).
fn wire_raw(code: u8, data: &[u8]) -> Option<WireOpt> {
    let mut bytes = Vec::new();
    encode_long_opt_bytes(code.into(), data, &mut Encoder::new(&mut bytes)).ok()?;
    Some(WireOpt { code, bytes })
}

/// Option 119 (RFC 3397): search list with RFC 1035 name compression (done by the codec).
/// Invalid names are skipped; `None` when nothing valid is left.
pub(crate) fn domain_search(search: &[String]) -> Option<WireOpt> {
    let names: Vec<Name> = search
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| Name::from_ascii(s).ok())
        .map(|mut n| {
            // "example.com" and "example.com." must encode identically (terminated by the root).
            n.set_fqdn(true);
            n
        })
        .collect();
    if names.is_empty() {
        return None;
    }
    wire(DhcpOption::DomainSearch(names))
}

/// Option 121 value (RFC 3442), without code/len. Order matters to clients that install
/// routes one by one: host route to an off-subnet gateway first, extra routes, default last.
pub(crate) fn classless_routes_value(lease: &Lease) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(gw) = lease.gateway {
        if !lease.on_subnet(gw) {
            push_route(&mut v, gw, 32, Ipv4Addr::UNSPECIFIED);
        }
    }
    for (dst, gw) in &lease.routes {
        // A default route in `routes` would clash with the one derived from `gateway`.
        if dst.prefix() == 0 && lease.gateway.is_some() {
            continue;
        }
        push_route(
            &mut v,
            dst.network(),
            dst.prefix(),
            gw.unwrap_or(Ipv4Addr::UNSPECIFIED),
        );
    }
    if let Some(gw) = lease.gateway {
        push_route(&mut v, Ipv4Addr::UNSPECIFIED, 0, gw);
    }
    v
}

/// Option 121 in wire form, or `None` when there are no routes at all.
pub(crate) fn classless_routes(lease: &Lease) -> Option<WireOpt> {
    let v = classless_routes_value(lease);
    if v.is_empty() {
        return None;
    }
    wire_raw(u8::from(OptionCode::ClasslessStaticRoute), &v)
}

/// RFC 3442 descriptor: width, significant octets of the (masked) destination, router.
fn push_route(v: &mut Vec<u8>, dst: Ipv4Addr, prefix: u8, gw: Ipv4Addr) {
    let Some(mask) = prefix_mask(prefix) else {
        return;
    };
    let net = (u32::from(dst) & mask).to_be_bytes();
    v.push(prefix);
    v.extend_from_slice(&net[..usize::from(prefix).div_ceil(8)]);
    v.extend_from_slice(&gw.octets());
}
