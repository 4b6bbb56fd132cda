//! The IPv6 server's socket filters as loaded eBPF programs, shared by
//! every socket while any IPv6 server runs.
//!
//! Why: attaching a classic filter (`SO_ATTACH_FILTER`) makes the kernel
//! convert and JIT it for each socket, a fixed ~45-60 µs here whatever the
//! program, which alone was 5% of a redirect-mode setup. Attaching a loaded
//! program by descriptor (`SO_ATTACH_BPF`) takes a reference, ~7 µs.
//! Loading costs ~400 µs once, so it never runs on a caller's path: when
//! an IPv6 server starts beside another, its filter is loaded on the
//! `vnet-dhcp` thread, and sockets opened after that attach the loaded
//! program. Until then, wherever loading is refused (no `CAP_BPF`, ...),
//! and in a process under a seccomp filter (which may kill it for a
//! `bpf(2)` it did not expect from us, as systemd's `SystemCallFilter=`
//! does), the classic filter is attached as before: behaviour never
//! depends on it.
//!
//! The programs live only as long as a server holds them ([`Held`]): when
//! the last IPv6 server stops, its descriptors close, and an idle process
//! holds nothing of ours.
//!
//! [`translate`] turns the classic program into an eBPF program that does
//! the same, for the few opcodes ours use, as the kernel's own converter
//! does for them; the tests check it against a classic interpreter through
//! `BPF_PROG_TEST_RUN`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::dhcp::setsockopt;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Registers: classic A in R0 (where LD_ABS/LD_IND put their result), X in
// R7, the skb in R6 (which LD_ABS/LD_IND read), R8 to keep A across MSH.
const A: u8 = 0;
const CTX_IN: u8 = 1;
const CTX: u8 = 6;
const X: u8 = 7;
const TMP: u8 = 8;

const MOV64_X: u8 = 0xbf;
const MOV32_K: u8 = 0xb4;
const AND32_K: u8 = 0x54;
const LSH32_K: u8 = 0x64;
const JA: u8 = 0x05;
const JMP32_JNE_K: u8 = 0x56;
const EXIT: u8 = 0x95;

// The classic opcodes our filters use (`linux/filter.h`).
const LD_ABS_H: u16 = 0x28;
const LD_ABS_B: u16 = 0x30;
const LD_IND_H: u16 = 0x48;
const LDX_MSH_B: u16 = 0xb1;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// How many eBPF instructions classic instruction `f` becomes.
fn size(f: &libc::sock_filter) -> io::Result<usize> {
    Ok(match f.code {
        LD_ABS_H | LD_ABS_B | LD_IND_H => 1,
        LDX_MSH_B => 6,
        JEQ_K if f.jt == 0 || f.jf == 0 => 1,
        JSET_K if f.jf == 0 => 1,
        JEQ_K | JSET_K => 2,
        RET_K => 2,
        code => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("classic BPF opcode {code:#x}"),
            ))
        }
    })
}

/// The eBPF program that does what classic program `classic` does (A and X
/// start at 0; a load past the frame's end drops it, as in classic BPF).
pub(crate) fn translate(classic: &[libc::sock_filter]) -> io::Result<Vec<Insn>> {
    const PROLOGUE: usize = 3;
    let mut at = Vec::with_capacity(classic.len() + 1);
    let mut n = PROLOGUE;
    for f in classic {
        at.push(n);
        n += size(f)?;
    }
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "jump out of the program");
    // The offset from the instruction after `from` to classic `target`.
    let jump = |from: usize, target: usize| -> io::Result<i16> {
        let to = *at.get(target).ok_or_else(bad)?;
        i16::try_from(to as i64 - from as i64 - 1).map_err(|_| bad())
    };
    let mut out = vec![
        insn(MOV64_X, CTX, CTX_IN, 0, 0),
        insn(MOV32_K, A, 0, 0, 0),
        insn(MOV32_K, X, 0, 0, 0),
    ];
    for (i, f) in classic.iter().enumerate() {
        let k = f.k as i32;
        let (t, e) = (i + 1 + f.jt as usize, i + 1 + f.jf as usize);
        match f.code {
            // Same encoding in both: class LD, mode ABS/IND, the size.
            LD_ABS_H | LD_ABS_B => out.push(insn(f.code as u8, 0, 0, 0, k)),
            LD_IND_H => out.push(insn(f.code as u8, 0, X, 0, k)),
            LDX_MSH_B => out.extend([
                insn(MOV64_X, TMP, A, 0, 0),
                insn(LD_ABS_B as u8, 0, 0, 0, k),
                insn(AND32_K, A, 0, 0, 0xf),
                insn(LSH32_K, A, 0, 0, 2),
                insn(MOV64_X, X, A, 0, 0),
                insn(MOV64_X, A, TMP, 0, 0),
            ]),
            JEQ_K | JSET_K => {
                // JMP32: compare A's 32 bits, as classic BPF does.
                let op = 0x06 | (f.code as u8 & 0xf0);
                if f.jf == 0 {
                    out.push(insn(op, A, 0, jump(out.len(), t)?, k));
                } else if f.jt == 0 && f.code == JEQ_K {
                    out.push(insn(JMP32_JNE_K, A, 0, jump(out.len(), e)?, k));
                } else {
                    out.push(insn(op, A, 0, jump(out.len(), t)?, k));
                    out.push(insn(JA, 0, 0, jump(out.len(), e)?, 0));
                }
            }
            _ => out.extend([insn(MOV32_K, A, 0, 0, k), insn(EXIT, 0, 0, 0, 0)]),
        }
    }
    Ok(out)
}

/// `union bpf_attr` as `BPF_PROG_LOAD` reads it (the kernel zero-fills
/// what a shorter attr leaves out).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// Load `prog` as a socket filter named `name` (close-on-exec, as every
/// bpf(2) descriptor is).
pub(crate) fn load(prog: &[Insn], name: &str) -> io::Result<OwnedFd> {
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: u32::try_from(prog.len()).map_err(|_| io::ErrorKind::InvalidInput)?,
        insns: prog.as_ptr() as u64,
        license: c"Apache-2.0".as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
    };
    // SAFETY: attr and the memory it points to are valid for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The loaded programs, one per filter (`[without DHCPv4, with it]`);
/// an unset slot is not loaded yet.
#[derive(Default)]
struct Programs([OnceLock<OwnedFd>; 2]);

/// Held by each running IPv6 server: the programs stay loaded while one
/// is held.
pub(crate) struct Held(#[allow(dead_code)] Arc<Programs>);

static PROGRAMS: Mutex<Weak<Programs>> = Mutex::new(Weak::new());
/// Loading was refused once: don't try again in this process.
static REFUSED: AtomicBool = AtomicBool::new(false);

fn programs() -> Option<Arc<Programs>> {
    PROGRAMS.lock().unwrap_or_else(|e| e.into_inner()).upgrade()
}

/// Attach filter `with_v4` (whose classic program is `classic`) to socket
/// `fd`: the loaded program when there is one, else `classic`.
pub(crate) fn attach(fd: &OwnedFd, with_v4: bool, classic: &[libc::sock_filter]) -> io::Result<()> {
    // Held across the call: the descriptor stays open until the kernel
    // has taken its own reference to the program.
    let progs = programs();
    if let Some(prog) = progs.as_ref().and_then(|p| p.0[with_v4 as usize].get()) {
        let prog = prog.as_raw_fd().to_ne_bytes();
        if setsockopt(fd, libc::SO_ATTACH_BPF, &prog).is_ok() {
            return Ok(());
        }
    }
    let prog = libc::sock_fprog {
        len: classic.len() as u16,
        filter: classic.as_ptr().cast_mut(),
    };
    // SAFETY: a sock_fprog is plain bytes, and it points to `classic`,
    // valid for the call.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&prog as *const libc::sock_fprog).cast::<u8>(),
            std::mem::size_of::<libc::sock_fprog>(),
        )
    };
    setsockopt(fd, libc::SO_ATTACH_FILTER, bytes)
}

/// For a server that starts now, inside the runtime's context: hold the
/// programs, and when another IPv6 server is running already, load filter
/// `with_v4` on the runtime's thread if it is not loaded yet. (A process
/// that serves one VM at a time, or loads us for one setup, never pays
/// for a program it would not use again.)
pub(crate) fn hold(with_v4: bool, classic: &'static [libc::sock_filter]) -> Held {
    let (progs, beside) = {
        let mut slot = PROGRAMS.lock().unwrap_or_else(|e| e.into_inner());
        match slot.upgrade() {
            Some(p) => (p, true),
            None => {
                let p = Arc::new(Programs::default());
                *slot = Arc::downgrade(&p);
                (p, false)
            }
        }
    };
    let load_now = beside && !REFUSED.load(Ordering::Relaxed);
    if load_now && progs.0[with_v4 as usize].get().is_none() {
        let p = progs.clone();
        tokio::spawn(async move {
            let cell = &p.0[with_v4 as usize];
            if cell.get().is_some() {
                return;
            }
            if under_seccomp() {
                REFUSED.store(true, Ordering::Relaxed);
                return;
            }
            let name = if with_v4 { "vnet_dhcp46" } else { "vnet_dhcp6" };
            match translate(classic).and_then(|prog| load(&prog, name)) {
                Ok(fd) => drop(cell.set(fd)),
                Err(_) => REFUSED.store(true, Ordering::Relaxed),
            }
        });
    }
    Held(progs)
}

/// Whether this thread runs under a seccomp filter (or its state cannot
/// be read): then `bpf(2)` is not ours to try.
fn under_seccomp() -> bool {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .is_none_or(|v| v.trim() != "0")
}

#[cfg(test)]
mod tests;
