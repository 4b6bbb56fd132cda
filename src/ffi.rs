//! The C ABI. Only conversions live here: NULL checks, C strings, status
//! codes, and the panic boundary. Everything else is the safe core.
//!
//! Conventions (after rustls-ffi): every fallible call returns a
//! `vnet_status`; an optional `char **error_out` receives a message the caller
//! frees with `vnet_string_free`. No thread-local "last error": cgo callers
//! hop threads between calls.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, CStr, CString};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Mutex;

use crate::config::Config;
use crate::error::Error;
use crate::network::Network;

/// Result of every fallible vnet call. `VNET_OK` is 0; each other value is
/// one class of failure, and `vnet_status_str` names it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum vnet_status {
    /// Success.
    VNET_OK = 0,
    /// A NULL or otherwise unusable argument (empty or relative path, bad index).
    VNET_ERR_INVALID_ARGUMENT = 1,
    /// The netns path could not be opened or is not a network namespace.
    VNET_ERR_NETNS = 2,
    /// No veth in the namespace (and no CNI result naming the interfaces).
    VNET_ERR_NO_VETH = 3,
    /// Several veths in the namespace and no CNI result to choose among them.
    VNET_ERR_SEVERAL_VETHS = 4,
    /// The pod interface holds no address to hand to the VM.
    VNET_ERR_NO_ADDRESS = 5,
    /// The config or CNI JSON is malformed, of the wrong shape, or does not
    /// match the namespace.
    VNET_ERR_CONFIG = 6,
    /// A device vnet would create (tapN, brN) already exists.
    VNET_ERR_NAME_EXISTS = 7,
    /// The kernel refused a netlink request.
    VNET_ERR_NETLINK = 8,
    /// Creating or opening the TAP failed.
    VNET_ERR_TAP = 9,
    /// Installing or removing the nf_tables DHCP filter failed.
    VNET_ERR_FILTER = 10,
    /// The DHCP server could not start.
    VNET_ERR_DHCP = 11,
    /// Bad saved state, or a call that the handle's state does not allow.
    VNET_ERR_STATE = 12,
    /// The namespace holds leftovers of an earlier setup (use vnet_recover).
    VNET_ERR_LEFTOVERS = 13,
    /// Teardown (or a rollback) could not undo everything; the message says
    /// what is left. The call may be repeated.
    VNET_ERR_INCOMPLETE = 14,
    /// An unexpected internal failure.
    VNET_ERR_INTERNAL = 15,
    /// A panic was caught at the ABI boundary (a bug in vnet).
    VNET_ERR_PANIC = 16,
    /// The pod interface is of a kind the requested mode cannot carry (a
    /// macvlan or ipvlan in bridge mode, say); nothing was changed.
    VNET_ERR_UNSUPPORTED = 17,
}

impl vnet_status {
    /// Every status, in discriminant order (0, 1, ... without gaps; a test
    /// checks it). A new status goes at the end of both.
    const ALL: [vnet_status; 18] = {
        use vnet_status::*;
        [
            VNET_OK,
            VNET_ERR_INVALID_ARGUMENT,
            VNET_ERR_NETNS,
            VNET_ERR_NO_VETH,
            VNET_ERR_SEVERAL_VETHS,
            VNET_ERR_NO_ADDRESS,
            VNET_ERR_CONFIG,
            VNET_ERR_NAME_EXISTS,
            VNET_ERR_NETLINK,
            VNET_ERR_TAP,
            VNET_ERR_FILTER,
            VNET_ERR_DHCP,
            VNET_ERR_STATE,
            VNET_ERR_LEFTOVERS,
            VNET_ERR_INCOMPLETE,
            VNET_ERR_INTERNAL,
            VNET_ERR_PANIC,
            VNET_ERR_UNSUPPORTED,
        ]
    };

    /// The status with value `i`, if there is one.
    fn from_int(i: c_int) -> Option<vnet_status> {
        usize::try_from(i)
            .ok()
            .and_then(|i| Self::ALL.get(i))
            .copied()
    }
}

impl From<&Error> for vnet_status {
    fn from(e: &Error) -> vnet_status {
        use vnet_status::*;
        match e {
            Error::InvalidArgument(_) => VNET_ERR_INVALID_ARGUMENT,
            Error::Netns { .. } => VNET_ERR_NETNS,
            Error::NoVeth(_) => VNET_ERR_NO_VETH,
            Error::SeveralVeths { .. } => VNET_ERR_SEVERAL_VETHS,
            Error::NoAddress(_) => VNET_ERR_NO_ADDRESS,
            Error::Config(_) => VNET_ERR_CONFIG,
            Error::NameExists(_) => VNET_ERR_NAME_EXISTS,
            Error::Netlink { .. } => VNET_ERR_NETLINK,
            Error::Tap { .. } => VNET_ERR_TAP,
            Error::Filter { .. } => VNET_ERR_FILTER,
            Error::Dhcp { .. } => VNET_ERR_DHCP,
            Error::State(_) => VNET_ERR_STATE,
            Error::Leftovers(_) => VNET_ERR_LEFTOVERS,
            Error::Incomplete(_) => VNET_ERR_INCOMPLETE,
            Error::Internal(_) => VNET_ERR_INTERNAL,
            Error::Unsupported(_) => VNET_ERR_UNSUPPORTED,
        }
    }
}

/// An opaque handle on a pod namespace handed over to a VM. Created by
/// `vnet_setup` or `vnet_recover`, freed by `vnet_free`.
pub struct vnet_handle {
    net: Mutex<Network>,
}

impl vnet_handle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Network> {
        // A panic while locked was already reported; the data is still whole.
        self.net.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Store `msg` in `*error_out` if the caller asked for messages.
unsafe fn set_error(error_out: *mut *mut c_char, msg: &str) {
    if error_out.is_null() {
        return;
    }
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: the caller passes a valid `char **` or NULL (checked above).
    unsafe { *error_out = c.into_raw() };
}

/// Run `f`, turning errors and panics into a status and a message.
unsafe fn boundary(
    error_out: *mut *mut c_char,
    f: impl FnOnce() -> Result<(), Error>,
) -> vnet_status {
    if !error_out.is_null() {
        // SAFETY: non-NULL `error_out` points to a writable `char *`.
        unsafe { *error_out = ptr::null_mut() };
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => vnet_status::VNET_OK,
        Ok(Err(e)) => {
            // SAFETY: as above.
            unsafe { set_error(error_out, &e.to_string()) };
            vnet_status::from(&e)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            // SAFETY: as above.
            unsafe { set_error(error_out, &format!("panic in vnet: {what}")) };
            vnet_status::VNET_ERR_PANIC
        }
    }
}

/// Borrow a C string argument as UTF-8, or fail naming the argument.
unsafe fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::InvalidArgument(format!("{name} is not valid UTF-8")))
}

fn non_null<T>(p: *const T, name: &str) -> Result<(), Error> {
    if p.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    Ok(())
}

/// Hand the pod interface(s) of the network namespace at `netns_path` over to
/// a VM: record their configuration, create `tapN` + `brN`, serve DHCP.
///
/// `netns_path`: any network namespace file (`/var/run/netns/NAME`,
/// `/proc/PID/ns/net`). `config_json`: NULL for defaults, or a JSON object
/// with optional `cni_result`, `dhcp`, `vnet_hdr`, `queues`, `dns`,
/// `hostname`, `lease_secs`, `ipv6`; unknown fields are an error.
/// On success `*handle_out` receives a handle to free with `vnet_free`.
/// On failure the namespace is left as it was, `*handle_out` is NULL and
/// `*error_out` (if `error_out` is not NULL) receives a message to free with
/// `vnet_string_free`. The calling thread never changes namespace.
///
/// # Safety
/// Pointers must be NULL or valid as described.
#[no_mangle]
pub unsafe extern "C" fn vnet_setup(
    netns_path: *const c_char,
    config_json: *const c_char,
    handle_out: *mut *mut vnet_handle,
    error_out: *mut *mut c_char,
) -> vnet_status {
    // SAFETY: the caller's pointers are checked or forwarded as documented.
    unsafe {
        boundary(error_out, || {
            non_null(handle_out, "handle_out")?;
            *handle_out = ptr::null_mut();
            let path = arg_str(netns_path, "netns_path")?;
            let json = if config_json.is_null() {
                None
            } else {
                Some(arg_str(config_json, "config_json")?)
            };
            let cfg = Config::from_json(json)?;
            let net = Network::setup(path, &cfg)?;
            *handle_out = Box::into_raw(Box::new(vnet_handle {
                net: Mutex::new(net),
            }));
            Ok(())
        })
    }
}

/// Rebuild a handle in a new process from the JSON that `vnet_result_json`
/// returned: reopens the TAP queues and serves DHCP again, without changing
/// the namespace. Use it after a launcher restart, then tear down or go on.
///
/// # Safety
/// Pointers must be NULL or valid as described.
#[no_mangle]
pub unsafe extern "C" fn vnet_recover(
    netns_path: *const c_char,
    result_json: *const c_char,
    handle_out: *mut *mut vnet_handle,
    error_out: *mut *mut c_char,
) -> vnet_status {
    // SAFETY: as in vnet_setup.
    unsafe {
        boundary(error_out, || {
            non_null(handle_out, "handle_out")?;
            *handle_out = ptr::null_mut();
            let path = arg_str(netns_path, "netns_path")?;
            let json = arg_str(result_json, "result_json")?;
            let net = Network::recover(path, json)?;
            *handle_out = Box::into_raw(Box::new(vnet_handle {
                net: Mutex::new(net),
            }));
            Ok(())
        })
    }
}

/// Number of pod interfaces (and so of TAPs) the handle manages; 0 for NULL.
///
/// # Safety
/// `h` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn vnet_interface_count(h: *const vnet_handle) -> u32 {
    // SAFETY: NULL or a live handle.
    let Some(h) = (unsafe { h.as_ref() }) else {
        return 0;
    };
    catch_unwind(AssertUnwindSafe(|| h.lock().interface_count() as u32)).unwrap_or(0)
}

/// The fd of TAP queue `queue` of interface `interface`, or -1 if there is
/// none (NULL handle, index out of range, after teardown). The fd belongs to
/// the handle and is `O_CLOEXEC`: dup it to pass it to QEMU.
///
/// # Safety
/// `h` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn vnet_tap_fd(h: *const vnet_handle, interface: u32, queue: u32) -> c_int {
    // SAFETY: NULL or a live handle.
    let Some(h) = (unsafe { h.as_ref() }) else {
        return -1;
    };
    catch_unwind(AssertUnwindSafe(|| {
        h.lock()
            .tap_fd(interface as usize, queue as usize)
            .map_or(-1, |fd| fd.as_raw_fd())
    }))
    .unwrap_or(-1)
}

/// The result JSON: a CNI 1.0.0 result (original MACs) plus a `vnet` object
/// with, per interface, `tap`, `bridge`, `mtu`, `vm_mac`, `veth_mac`,
/// `queues`, `vnet_hdr`, and the state `vnet_recover` needs. Save it to
/// recover after a restart. `*json_out` is freed with `vnet_string_free`.
///
/// # Safety
/// Pointers must be NULL or valid as described.
#[no_mangle]
pub unsafe extern "C" fn vnet_result_json(
    h: *const vnet_handle,
    json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> vnet_status {
    // SAFETY: as documented.
    unsafe {
        boundary(error_out, || {
            non_null(json_out, "json_out")?;
            *json_out = ptr::null_mut();
            let h = h
                .as_ref()
                .ok_or_else(|| Error::InvalidArgument("handle is NULL".into()))?;
            let json = h.lock().result_json()?;
            *json_out = CString::new(json)
                .map_err(|e| Error::Internal(e.to_string()))?
                .into_raw();
            Ok(())
        })
    }
}

/// Put the namespace back exactly as it was before setup: stop DHCP, close
/// the TAP fds, remove the filter, bridge and TAP, restore MAC, MTU,
/// addresses and routes. Returns once the bridge and TAP are out of the
/// namespace; the kernel frees them afterwards, waited on by a library
/// thread that exits by itself (~20 ms later). The handle stays valid (free
/// it with `vnet_free`).
/// Calling it again after success does nothing; after
/// `VNET_ERR_INCOMPLETE` it retries what is left.
///
/// # Safety
/// Pointers must be NULL or valid as described.
#[no_mangle]
pub unsafe extern "C" fn vnet_teardown(
    h: *mut vnet_handle,
    error_out: *mut *mut c_char,
) -> vnet_status {
    // SAFETY: as documented.
    unsafe {
        boundary(error_out, || {
            let h = h
                .as_ref()
                .ok_or_else(|| Error::InvalidArgument("handle is NULL".into()))?;
            h.lock().teardown()
        })
    }
}

/// Free a handle: close its fds and stop its DHCP servers. It does not tear
/// down; a namespace left set up can be recovered. NULL is a no-op.
///
/// # Safety
/// `h` must be NULL or a live handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn vnet_free(h: *mut vnet_handle) {
    if h.is_null() {
        return;
    }
    // SAFETY: a live handle from Box::into_raw, freed once.
    let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(h) })));
}

/// Free a string returned by vnet. NULL is a no-op.
///
/// # Safety
/// `s` must be NULL or a string vnet returned, not freed before.
#[no_mangle]
pub unsafe extern "C" fn vnet_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: `s` came from CString::into_raw.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// Severity of a log line, most severe first.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum vnet_log_level {
    VNET_LOG_ERROR = 1,
    VNET_LOG_WARN = 2,
    VNET_LOG_INFO = 3,
    VNET_LOG_DEBUG = 4,
}

/// A log sink: called with the level, a NUL-terminated message valid only
/// during the call, and the `userdata` given at registration. It may be
/// called from any thread, including vnet's own, and must not block long.
pub type vnet_log_callback = Option<
    unsafe extern "C" fn(
        level: vnet_log_level,
        message: *const c_char,
        userdata: *mut std::ffi::c_void,
    ),
>;

/// Send vnet's log lines up to `max_level` to `callback`. vnet writes
/// nothing to stdout/stderr by default; pass NULL to silence it again.
/// Process-wide; safe to call at any time from any thread.
///
/// # Safety
/// `callback` must be safe to call from any thread with `userdata` until it
/// is replaced.
#[no_mangle]
pub unsafe extern "C" fn vnet_set_log_callback(
    callback: vnet_log_callback,
    max_level: vnet_log_level,
    userdata: *mut std::ffi::c_void,
) {
    use crate::log::{set_sink, Level};
    let level = match max_level {
        vnet_log_level::VNET_LOG_ERROR => Level::Error,
        vnet_log_level::VNET_LOG_WARN => Level::Warn,
        vnet_log_level::VNET_LOG_INFO => Level::Info,
        vnet_log_level::VNET_LOG_DEBUG => Level::Debug,
    };
    let Some(cb) = callback else {
        set_sink(None, level);
        return;
    };
    // The pointer is the caller's business; carry it across threads as an integer.
    let ud = userdata as usize;
    set_sink(
        Some(std::sync::Arc::new(move |l: Level, msg: &str| {
            let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
            let l = match l {
                Level::Error => vnet_log_level::VNET_LOG_ERROR,
                Level::Warn => vnet_log_level::VNET_LOG_WARN,
                Level::Info => vnet_log_level::VNET_LOG_INFO,
                Level::Debug => vnet_log_level::VNET_LOG_DEBUG,
            };
            // A panic must not unwind into C: the callback is C, this frame is ours.
            // SAFETY: the caller promised `cb` is callable with `userdata`.
            unsafe { cb(l, c.as_ptr(), ud as *mut std::ffi::c_void) };
        })),
        level,
    );
}

/// A static, human-readable name for a status (never NULL); "unknown
/// status" for a value that is none of `enum vnet_status`. Takes a plain int
/// (an enum converts implicitly): an out-of-range value received as the
/// Rust enum would be undefined behaviour.
#[no_mangle]
pub extern "C" fn vnet_status_str(status: c_int) -> *const c_char {
    use vnet_status::*;
    let Some(s) = vnet_status::from_int(status) else {
        return c"unknown status".as_ptr();
    };
    let text: &'static CStr = match s {
        VNET_OK => c"ok",
        VNET_ERR_INVALID_ARGUMENT => c"invalid argument",
        VNET_ERR_NETNS => c"network namespace error",
        VNET_ERR_NO_VETH => c"no veth in the namespace",
        VNET_ERR_SEVERAL_VETHS => c"several veths in the namespace",
        VNET_ERR_NO_ADDRESS => c"interface has no address",
        VNET_ERR_CONFIG => c"bad config or CNI result",
        VNET_ERR_NAME_EXISTS => c"device name already exists",
        VNET_ERR_NETLINK => c"netlink error",
        VNET_ERR_TAP => c"tap error",
        VNET_ERR_FILTER => c"nf_tables filter error",
        VNET_ERR_DHCP => c"dhcp error",
        VNET_ERR_STATE => c"bad state",
        VNET_ERR_LEFTOVERS => c"leftovers of an earlier setup",
        VNET_ERR_INCOMPLETE => c"teardown incomplete",
        VNET_ERR_INTERNAL => c"internal error",
        VNET_ERR_PANIC => c"panic",
        VNET_ERR_UNSUPPORTED => c"unsupported pod interface",
    };
    text.as_ptr()
}

/// The library version, e.g. "0.1.0" (static, never NULL).
#[no_mangle]
pub extern "C" fn vnet_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_list_is_every_value_in_order() {
        for (i, s) in vnet_status::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?} out of place");
        }
        assert_eq!(
            vnet_status::ALL.last(),
            Some(&vnet_status::VNET_ERR_UNSUPPORTED)
        );
    }

    #[test]
    fn status_str_names_known_values_only() {
        let name = |i| {
            // SAFETY: vnet_status_str returns a static NUL-terminated string.
            unsafe { CStr::from_ptr(vnet_status_str(i)) }
                .to_str()
                .unwrap()
        };
        for s in vnet_status::ALL {
            assert_ne!(name(s as c_int), "unknown status", "{s:?}");
        }
        let past = vnet_status::ALL.len() as c_int;
        for i in [-1, past, 1000, c_int::MIN, c_int::MAX] {
            assert_eq!(name(i), "unknown status", "{i}");
        }
    }
}
