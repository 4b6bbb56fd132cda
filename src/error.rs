//! The one error type of the safe core. Each variant is one failure class and
//! maps 1:1 to a C `vnet_status` in `ffi.rs`.

use std::io;

/// Everything that can go wrong, with a message naming what and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("network namespace {path}: {msg}")]
    Netns { path: String, msg: String },
    #[error("no veth found in {0}")]
    NoVeth(String),
    #[error("several veths found in {path} ({names}); pass a CNI result naming the interfaces")]
    SeveralVeths { path: String, names: String },
    #[error("interface {0} has no IP address to hand to the VM")]
    NoAddress(String),
    #[error("bad config: {0}")]
    Config(String),
    #[error("{0} already exists in the namespace (vnet will not take over a device)")]
    NameExists(String),
    #[error("netlink: {step}: {source}")]
    Netlink { step: String, source: io::Error },
    #[error("tap {name}: {step}: {source}")]
    Tap {
        name: String,
        step: String,
        source: io::Error,
    },
    #[error("nf_tables filter: {step}: {source}")]
    Filter { step: String, source: io::Error },
    #[error("dhcp on {bridge}: {source}")]
    Dhcp { bridge: String, source: io::Error },
    #[error("state: {0}")]
    State(String),
    #[error("leftovers of an earlier setup found in the namespace: {0}; recover it with vnet_recover and the saved result JSON, or remove them")]
    Leftovers(String),
    #[error("teardown incomplete: {0}")]
    Incomplete(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("unsupported pod interface: {0}")]
    Unsupported(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn netlink(step: impl Into<String>, source: io::Error) -> Error {
        Error::Netlink {
            step: step.into(),
            source,
        }
    }
}
