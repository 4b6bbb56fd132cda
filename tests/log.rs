//! The log callback receives the library's lines; without one, nothing goes
//! anywhere.

mod common;

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Mutex;

use common::*;
use vnet::ffi::*;

static LINES: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn sink(level: vnet_log_level, msg: *const c_char, ud: *mut c_void) {
    assert_eq!(ud as usize, 0x5eed);
    // SAFETY: vnet passes a valid C string for the duration of the call.
    let m = unsafe { CStr::from_ptr(msg) }
        .to_string_lossy()
        .into_owned();
    LINES.lock().unwrap().push((level as u32, m));
}

#[test]
fn callback_gets_setup_and_teardown_lines() {
    if !need_root() {
        return;
    }
    let p = Pod::ipv4("log");
    let path = CString::new(p.path.clone()).unwrap();
    let cfg = CString::new("{\"dhcp\": false}").unwrap();
    // SAFETY: valid pointers throughout; the handle is freed once.
    unsafe {
        vnet_set_log_callback(
            Some(sink),
            vnet_log_level::VNET_LOG_DEBUG,
            0x5eed as *mut c_void,
        );
        let mut h = std::ptr::null_mut();
        assert_eq!(
            vnet_setup(path.as_ptr(), cfg.as_ptr(), &mut h, std::ptr::null_mut()),
            vnet_status::VNET_OK
        );
        assert_eq!(vnet_teardown(h, std::ptr::null_mut()), vnet_status::VNET_OK);
        vnet_free(h);
        vnet_set_log_callback(None, vnet_log_level::VNET_LOG_ERROR, std::ptr::null_mut());
    }
    let lines = LINES.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|(l, m)| *l == 3 && m.contains("set up") && m.contains("eth0 -> br0/tap0")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|(l, m)| *l == 4 && m.contains("setup step create bridge")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|(l, m)| *l == 3 && m.contains("tore down")),
        "{lines:?}"
    );
    // Silenced again: a second round adds nothing.
    let n = lines.len();
    let mut net = vnet::Network::setup(
        &p.path,
        &vnet::Config {
            dhcp: false,
            ..Default::default()
        },
    )
    .unwrap();
    net.teardown().unwrap();
    assert_eq!(LINES.lock().unwrap().len(), n);
}
