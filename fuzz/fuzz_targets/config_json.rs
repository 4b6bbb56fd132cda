//! Fuzz config + CNI result parsing: any bytes give a config or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = vnet::Config::from_json(Some(text)) {
            // What parsed must validate and serialise again.
            cfg.validate().expect("a parsed config validates");
            serde_json::to_string(&cfg).expect("serialises");
        }
    }
});
