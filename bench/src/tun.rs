//! `/dev/net/tun` ioctls, as a VMM (or the kernel floor) issues them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
pub const IFF_TAP: i16 = 0x0002;
pub const IFF_NO_PI: i16 = 0x1000;
pub const IFF_MULTI_QUEUE: i16 = 0x0100;
pub const IFF_VNET_HDR: i16 = 0x4000;
pub const IFF_TUN_EXCL: i16 = -0x8000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: i16,
    _pad: [u8; 22],
}

/// Open `/dev/net/tun` and attach to (or create) TAP `name` with `flags`.
pub fn attach(name: &str, flags: i16) -> io::Result<OwnedFd> {
    // SAFETY: open(2) of a constant path; the fd is owned right below.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF takes a `struct ifreq`, which `req` is laid out as.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn ioctl_val(fd: BorrowedFd, req: libc::c_ulong, v: libc::c_ulong) -> io::Result<()> {
    // SAFETY: these TUN ioctls take an integer argument by value.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req as _, v) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn set_persist(fd: BorrowedFd, on: bool) -> io::Result<()> {
    ioctl_val(fd, TUNSETPERSIST, on as libc::c_ulong)
}

/// What a VMM does on a vnet_hdr TAP: 12-byte headers (virtio 1.0 /
/// mergeable buffers) and checksum + TSO offloads.
pub fn vmm_offloads(fd: BorrowedFd) -> io::Result<()> {
    let sz: libc::c_int = 12;
    // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ as _, &sz) } < 0 {
        return Err(io::Error::last_os_error());
    }
    ioctl_val(
        fd,
        TUNSETOFFLOAD,
        (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) as libc::c_ulong,
    )
}
