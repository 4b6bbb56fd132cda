//! # vnet
//!
//! Turn the network namespace of a Kubernetes pod into the network of a
//! virtual machine: record the pod interface's configuration, hand its
//! addresses to the VM through a TAP bridged with the veth and a built-in
//! DHCP server, and put everything back on teardown.
//!
//! The safe Rust API is [`Network`]; the C ABI in [`ffi`] is a thin layer
//! over it. All namespace work runs on a short-lived thread that enters the
//! pod namespace; the caller's thread never changes namespace.

pub mod bridge;
pub mod cni;
pub mod config;
pub mod dhcp;
pub mod dhcp6;
pub mod error;
pub mod fault;
pub mod ffi;
pub mod filter;
pub mod fwd;
pub mod journal;
pub mod log;
pub mod mac;
pub mod netlink;
pub mod netns;
pub mod nettools;
pub mod network;
mod parse;
pub mod plan;
mod recover;
pub mod restore;
mod setup;
pub mod snapshot;
pub mod state;
pub mod tap;
pub mod topology;
pub mod vm_view;

pub use config::Config;
pub use error::{Error, Result};
pub use network::{InterfaceState, Network, RecoverOptions, SetupOptions, State};
pub use topology::Mode;
