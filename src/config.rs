//! `Config`: what a caller may ask of setup. Unknown fields are an error so a
//! typo never silently falls back to a default.

use serde::{Deserialize, Serialize};

use crate::cni::{CniResult, Dns};
use crate::error::{Error, Result};
use crate::topology::Mode;

/// Upper bound on TAP queues per interface (the kernel allows 256; more than
/// the number of vCPUs is never useful).
pub const MAX_QUEUES: u32 = 256;
/// Largest config we accept; anything bigger is a caller bug, not a config.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// A CNI result naming the pod's interfaces; when absent, the single veth
    /// in the namespace is used and described from what the kernel holds.
    pub cni_result: Option<serde_json::Value>,
    /// Serve DHCP to the VM on each bridge.
    pub dhcp: bool,
    /// Open the TAP with `IFF_VNET_HDR`.
    pub vnet_hdr: bool,
    /// TAP queues per interface (multiqueue when > 1).
    pub queues: u32,
    /// DNS for the VM; overrides the CNI result's `dns`.
    pub dns: Option<Dns>,
    /// Hostname handed to the VM by DHCP (option 12).
    pub hostname: Option<String>,
    /// DHCP lease time in seconds.
    pub lease_secs: u32,
    /// How the TAP is joined to the pod interface: `"bridge"` (brN, the
    /// pod interface gets a new MAC) or `"redirect"` (no bridge; frames
    /// moved at ingress, the pod interface keeps its MAC).
    pub mode: Mode,
    /// Serve IPv6 (router advertisements, DHCPv6) to the VM when the pod
    /// interface has global IPv6 addresses (and `dhcp` is on).
    pub ipv6: bool,
    /// Test-only: make setup step `k` (0-based) fail, to prove rollback.
    #[cfg(feature = "fault-injection")]
    pub fail_at_step: Option<usize>,
    /// Test-only: stop forever before step `k`, to be killed there (a crash
    /// in the middle of setup).
    #[cfg(feature = "fault-injection")]
    pub hang_at_step: Option<usize>,
    /// Test-only: make undo step `k` (0 = the last step done) fail in the
    /// first teardown or rollback, to prove it reports what remains.
    #[cfg(feature = "fault-injection")]
    pub fail_undo_at_step: Option<usize>,
    /// Test-only: panic at undo step `k` of the first teardown or rollback,
    /// to prove a panic comes out of the C ABI as `VNET_ERR_PANIC`.
    #[cfg(feature = "fault-injection")]
    pub panic_at_undo_step: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cni_result: None,
            dhcp: true,
            vnet_hdr: false,
            queues: 1,
            dns: None,
            hostname: None,
            lease_secs: 86400,
            mode: Mode::Bridge,
            ipv6: true,
            #[cfg(feature = "fault-injection")]
            fail_at_step: None,
            #[cfg(feature = "fault-injection")]
            hang_at_step: None,
            #[cfg(feature = "fault-injection")]
            fail_undo_at_step: None,
            #[cfg(feature = "fault-injection")]
            panic_at_undo_step: None,
        }
    }
}

impl Config {
    /// Parse and validate a JSON config; `None` or empty means defaults.
    pub fn from_json(json: Option<&str>) -> Result<Config> {
        let Some(text) = json.filter(|t| !t.trim().is_empty()) else {
            return Ok(Config::default());
        };
        if text.len() > MAX_CONFIG_BYTES {
            return Err(Error::Config(format!(
                "config is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                text.len()
            )));
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config JSON: {e}")))?;
        // serde would also take an array for a struct; a config is an object.
        if !value.is_object() {
            return Err(Error::Config("config JSON must be an object".into()));
        }
        if value
            .get("dns")
            .is_some_and(|d| !d.is_object() && !d.is_null())
        {
            return Err(Error::Config("config JSON: dns must be an object".into()));
        }
        // From the text, not the value: only the text still shows a
        // duplicated field, which is an error too.
        let cfg: Config =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config JSON: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.queues == 0 || self.queues > MAX_QUEUES {
            return Err(Error::Config(format!(
                "queues must be 1..={MAX_QUEUES}, got {}",
                self.queues
            )));
        }
        if self.lease_secs < 60 {
            return Err(Error::Config("lease_secs must be at least 60".into()));
        }
        if let Some(h) = &self.hostname {
            if h.is_empty() || h.len() > 253 {
                return Err(Error::Config("hostname must be 1..=253 bytes".into()));
            }
        }
        self.cni()?;
        Ok(())
    }

    /// The CNI result, parsed and normalised to 1.0.0.
    pub fn cni(&self) -> Result<Option<CniResult>> {
        self.cni_result.clone().map(CniResult::parse).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c = Config::from_json(None).unwrap();
        assert!(c.dhcp && !c.vnet_hdr && c.queues == 1);
        assert!(Config::from_json(Some("{\"dhcpp\": true}")).is_err());
        assert!(Config::from_json(Some("{\"queues\": 0}")).is_err());
        assert!(Config::from_json(Some("[1]")).is_err());
        assert!(Config::from_json(Some("[]")).is_err());
        assert!(Config::from_json(Some("{\"dhcp\": true, \"dhcp\": false}")).is_err());
        assert!(Config::from_json(Some("[null, false]")).is_err());
        assert!(Config::from_json(Some("{\"cni_result\": [\"1.0.0\"]}")).is_err());
        assert!(Config::from_json(Some("{\"dns\": [[]]}")).is_err());
        assert!(Config::from_json(Some("{\"mode\": \"Bridge\"}")).is_err());
        assert!(Config::from_json(Some("{\"mode\": 1}")).is_err());
        assert!(Config::from_json(Some("{\"mode\": null}")).is_err());
        let c = Config::from_json(Some("{\"mode\": \"redirect\"}")).unwrap();
        assert_eq!(c.mode, Mode::Redirect);
        let c = Config::from_json(Some("{\"queues\": 4, \"vnet_hdr\": true}")).unwrap();
        assert_eq!((c.queues, c.vnet_hdr), (4, true));
    }
}
