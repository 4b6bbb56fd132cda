//! Fuzz the IPv6 frame core (ICMPv6/NDP and DHCPv6 over UDP, parsed by
//! etherparse): any Ethernet frame, either way through the TAP, yields
//! frames only to the VM's MAC (or its multicast groups) or the one
//! gateway solicitation, and never a panic. Run: `cargo fuzz run ndp_frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vnet::dhcp6::{handle_frame, Learnt, Out};

#[path = "common6.rs"]
mod common6;

fuzz_target!(|data: &[u8]| {
    let l = common6::lease();
    for outgoing in [false, true] {
        let mut learnt = Learnt::default();
        for o in handle_frame(l, &mut learnt, data, outgoing) {
            match o {
                Out::Tap(f) => assert!(f[..6] == l.client_mac || f[..2] == [0x33, 0x33]),
                Out::Pod(f) => assert_eq!(&f[6..12], &l.client_mac),
            }
        }
        if outgoing {
            // Learning only from the pod network's NA for the gateway.
            assert!(learnt.gw_mac.is_none() || data.len() >= 78);
        } else {
            assert!(learnt.gw_mac.is_none());
        }
    }
    // With the source MAC forced to the VM's, the parsers run deeper.
    if data.len() >= 14 {
        let mut f = data.to_vec();
        f[6..12].copy_from_slice(&l.client_mac);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let mut learnt = Learnt::default();
        let _ = handle_frame(l, &mut learnt, &f, false);
    }
});
