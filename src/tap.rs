//! TAP devices through `/dev/net/tun` ioctls (after cloud-hypervisor's
//! `net_util/src/tap.rs`). The control fd must be opened on a thread inside
//! the pod namespace: the device is created in the namespace of the opener.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

// From <linux/if_tun.h>.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const IFF_TAP: i16 = 0x0002;
const IFF_MULTI_QUEUE: i16 = 0x0100;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
/// Fail with EBUSY if the name exists: we create, we never take over.
const IFF_TUN_EXCL: i16 = -0x8000;

/// `struct ifreq` with the flags member of its union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: i16,
    _pad: [u8; 22],
}

/// How the TAP is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapOptions {
    pub queues: u32,
    pub vnet_hdr: bool,
}

impl TapOptions {
    fn flags(&self) -> i16 {
        let mut f = IFF_TAP | IFF_NO_PI;
        if self.vnet_hdr {
            f |= IFF_VNET_HDR;
        }
        if self.queues > 1 {
            f |= IFF_MULTI_QUEUE;
        }
        f
    }
}

/// Validate a Linux interface name (1..=15 bytes, no '/', ':' or spaces).
pub fn check_ifname(name: &str) -> io::Result<()> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ))
    }
}

/// `/dev/net/tun`, opened but not yet attached to a device. The device
/// `TUNSETIFF` makes later is created in the namespace this was opened in,
/// whichever thread issues the ioctl.
pub fn open_control() -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
}

fn attach(name: &str, flags: i16) -> io::Result<OwnedFd> {
    attach_on(open_control()?, name, flags)
}

fn attach_on(file: File, name: &str, flags: i16) -> io::Result<OwnedFd> {
    check_ifname(name)?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}

/// Create persistent TAP `name` in the current namespace and open all its
/// queues. Persistence makes the device outlive our fds, so a crashed
/// launcher leaves a namespace that `recover` can reattach to.
pub fn create(name: &str, opts: TapOptions) -> io::Result<Vec<OwnedFd>> {
    create_on(open_controls(opts)?, name, opts)
}

/// One [`open_control`] per queue of a TAP opened with `opts`.
pub fn open_controls(opts: TapOptions) -> io::Result<Vec<File>> {
    (0..opts.queues.max(1)).map(|_| open_control()).collect()
}

/// [`create`] on control files from [`open_controls`]: the TAP goes to the
/// namespace they were opened in.
pub fn create_on(files: Vec<File>, name: &str, opts: TapOptions) -> io::Result<Vec<OwnedFd>> {
    let mut files = files.into_iter();
    let Some(first) = files.next() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no queue"));
    };
    let first = attach_on(first, name, opts.flags() | IFF_TUN_EXCL)?;
    set_persist(&first, true)?;
    let mut fds = vec![first];
    for f in files {
        match attach_on(f, name, opts.flags()) {
            Ok(fd) => fds.push(fd),
            Err(e) => {
                // Leave nothing behind: the device goes when no longer persistent.
                let _ = set_persist(&fds[0], false);
                return Err(e);
            }
        }
    }
    Ok(fds)
}

/// Open the queues of an existing TAP again (after a restart).
pub fn reopen(name: &str, opts: TapOptions) -> io::Result<Vec<OwnedFd>> {
    (0..opts.queues)
        .map(|_| attach(name, opts.flags()))
        .collect()
}

fn set_persist(fd: &OwnedFd, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes an integer argument by value.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST as _, on as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
