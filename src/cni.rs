//! CNI result types: read versions 0.3.x, 0.4.0 and 1.x, always emit 1.0.0.
//!
//! Fields we do not use are ignored on input (plugins add their own), so a
//! result passes through without loss of what matters to a VM.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The version we emit.
pub const CNI_VERSION: &str = "1.0.0";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<CniInterface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<CniIp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<CniRoute>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CniInterface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Set for interfaces inside the pod (container) namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CniIp {
    /// "4" or "6" in 0.3.x/0.4.0; dropped in 1.0.0 (derived from the address).
    #[serde(default, skip_serializing)]
    pub version: Option<String>,
    pub address: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CniRoute {
    pub dst: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl CniResult {
    /// Parse a CNI result of any supported version and normalise it to 1.0.0.
    pub fn parse(value: serde_json::Value) -> Result<CniResult> {
        check_shape(&value)?;
        let mut r: CniResult =
            serde_json::from_value(value).map_err(|e| Error::Config(format!("cni_result: {e}")))?;
        r.normalise()?;
        Ok(r)
    }

    /// Check the version and the cross references, and move to 1.0.0.
    pub fn normalise(&mut self) -> Result<()> {
        let v = self.cni_version.as_str();
        let supported = v.starts_with("0.3.") || v == "0.4.0" || v.starts_with("1.");
        if !supported {
            return Err(Error::Config(format!(
                "cni_result: unsupported cniVersion {v:?} (0.3.x, 0.4.0 and 1.x are)"
            )));
        }
        for (i, ip) in self.ips.iter().enumerate() {
            if let Some(ver) = &ip.version {
                let want = if ip.address.is_ipv4() { "4" } else { "6" };
                if ver != want {
                    return Err(Error::Config(format!(
                        "cni_result: ips[{i}] says version {ver} for {}",
                        ip.address
                    )));
                }
            }
            if let Some(idx) = ip.interface {
                if idx >= self.interfaces.len() {
                    return Err(Error::Config(format!(
                        "cni_result: ips[{i}].interface = {idx} but there are {} interfaces",
                        self.interfaces.len()
                    )));
                }
            }
        }
        self.cni_version = CNI_VERSION.to_string();
        for ip in &mut self.ips {
            ip.version = None;
        }
        Ok(())
    }

    /// Indexes of the interfaces that live in the pod's sandbox, in CNI order.
    pub fn sandbox_interfaces(&self) -> Vec<usize> {
        (0..self.interfaces.len())
            .filter(|&i| !self.interfaces[i].sandbox.is_empty())
            .collect()
    }
}

/// serde accepts a JSON array where a struct is expected; a CNI result and
/// each of its records are objects, so anything else is a malformed result.
fn check_shape(v: &serde_json::Value) -> Result<()> {
    let bad = |what: &str| {
        Err(Error::Config(format!(
            "cni_result: {what} must be an object"
        )))
    };
    let Some(obj) = v.as_object() else {
        return bad("the result");
    };
    for key in ["interfaces", "ips", "routes"] {
        if let Some(serde_json::Value::Array(items)) = obj.get(key) {
            if items.iter().any(|i| !i.is_object()) {
                return bad(&format!("each of {key}"));
            }
        }
    }
    match obj.get("dns") {
        Some(d) if !d.is_object() && !d.is_null() => bad("dns"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_0_3_1_and_emits_1_0_0() {
        let v = serde_json::json!({
            "cniVersion": "0.3.1",
            "interfaces": [{"name": "eth0", "mac": "42:a4:a6:22:80:2e", "sandbox": "/var/run/netns/x"}],
            "ips": [{"version": "4", "address": "10.1.90.5/24", "gateway": "10.1.90.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}
        });
        let r = CniResult::parse(v).unwrap();
        assert_eq!(r.cni_version, "1.0.0");
        let out = serde_json::to_value(&r).unwrap();
        assert_eq!(out["ips"][0]["address"], "10.1.90.5/24");
        assert!(out["ips"][0].get("version").is_none());
        assert_eq!(r.sandbox_interfaces(), vec![0]);
    }

    #[test]
    fn rejects_arrays_for_records() {
        assert!(CniResult::parse(serde_json::json!(["1.0.0"])).is_err());
        assert!(CniResult::parse(
            serde_json::json!({"cniVersion": "1.0.0", "interfaces": [["eth0"]]})
        )
        .is_err());
        assert!(CniResult::parse(serde_json::json!({"cniVersion": "1.0.0", "dns": [[]]})).is_err());
    }

    #[test]
    fn rejects_bad_version_and_index() {
        assert!(CniResult::parse(serde_json::json!({"cniVersion": "0.2.0"})).is_err());
        let v = serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/24", "interface": 3}]});
        assert!(CniResult::parse(v).is_err());
        let v = serde_json::json!({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.1/24"}]});
        assert!(CniResult::parse(v).is_err());
    }
}
