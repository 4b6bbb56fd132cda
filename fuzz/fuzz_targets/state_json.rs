//! Fuzz parsing of a saved result JSON (what `vnet_recover` reads): any bytes
//! give state or an error, and parsed state survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((cni, state)) = vnet::network::parse_result_json(text) {
            // The result JSON's own shape: the CNI result with `vnet` beside it.
            let mut doc = serde_json::to_value(&cni).expect("CNI result serialises");
            doc["vnet"] = serde_json::to_value(&state).expect("state serialises");
            let again = doc.to_string();
            let (cni2, state2) =
                vnet::network::parse_result_json(&again).expect("its own JSON parses");
            assert_eq!(cni, cni2, "round trip changed the CNI result: {again}");
            // As JSON: the state has no PartialEq, and its JSON is what
            // recover reads.
            assert_eq!(
                serde_json::to_value(&state).unwrap(),
                serde_json::to_value(&state2).unwrap(),
                "round trip changed the state: {again}"
            );
        }
    }
});
