//! Fuzz config + CNI result parsing: any bytes give a config or an error,
//! and a config that parsed survives a round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = vnet::Config::from_json(Some(text)) {
            let again = serde_json::to_string(&cfg).expect("serialises");
            let back = vnet::Config::from_json(Some(&again)).expect("its own JSON parses");
            assert_eq!(cfg, back, "round trip changed the config: {again}");
        }
    }
});
