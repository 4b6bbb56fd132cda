//! IPv6 for the VM: router advertisements, the neighbour advertisement for
//! our router address, and a stateful DHCPv6 server (RFC 8415, IA_NA) that
//! hands the VM exactly the pod's addresses. Runs on the same `vnet-dhcp`
//! thread as the DHCPv4 server, on one packet socket on the TAP.

mod ebpf;
mod lease;
mod ndp;
mod reply;
mod server;

pub use lease::{Lease6, PodV6, ROUTER_LL};
pub use reply::{dhcp_reply, handle_frame, on_start, Learnt, Out};
pub use server::{spawn, Sockets, Unbound};

#[cfg(test)]
mod tests;
