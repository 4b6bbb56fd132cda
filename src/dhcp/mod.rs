//! Built-in DHCPv4 server (RFC 2131) for the VM behind each bridge: one client MAC, one
//! fixed address. `handle_packet` is the pure protocol core; `bind_sockets` + `spawn` run it.
//!
//! Typical use (the sockets must be created on a thread inside the pod netns):
//! `let h = spawn(bind_sockets("br0", tap_ifindex)?, lease, "169.254.254.2".parse()?)?; ... h.stop();`

mod frame;
mod lease;
mod options;
mod reply;
mod server;

pub use frame::FrameServer;
pub use lease::Lease;
pub use reply::{handle_packet, Reply};
pub use server::{bind_sockets, spawn, ServerHandle, Sockets, Unbound};
pub(crate) use server::{setsockopt, spawn_task};

#[cfg(test)]
mod tests;
