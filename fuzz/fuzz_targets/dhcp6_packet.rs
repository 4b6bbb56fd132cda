//! Fuzz the DHCPv6 core: any UDP payload must yield `None` or a reply that
//! fits one frame, never a panic. Run: `cargo fuzz run dhcp6_packet`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vnet::dhcp6::dhcp_reply;

#[path = "common6.rs"]
mod common6;
use common6::lease;

fuzz_target!(|data: &[u8]| {
    if let Some(r) = dhcp_reply(lease(), data) {
        assert!(r.len() + 48 <= 1280, "reply of {} bytes", r.len());
        // Replies are only ever ADVERTISE (2) or REPLY (7), same xid.
        assert!(r[0] == 2 || r[0] == 7);
        assert_eq!(&r[1..4], &data[1..4]);
    }
});
