use std::os::fd::AsRawFd;

use etherparse::PacketBuilder;

use super::*;
use crate::dhcp6::server::filter;

const VM: [u8; 6] = [0x0a, 0x58, 0x0a, 0x01, 0x02, 0x03];
const TAP: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

/// Classic BPF as the kernel runs it, for the opcodes ours use: what the
/// loaded programs must agree with.
fn run_classic(prog: &[libc::sock_filter], frame: &[u8]) -> u32 {
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let byte = |at: u32| frame.get(at as usize).map(|&b| b as u32);
    let half = |at: u32| {
        let at = at as usize;
        frame
            .get(at..at.checked_add(2)?)
            .map(|h| u16::from_be_bytes([h[0], h[1]]) as u32)
    };
    loop {
        let f = prog[pc];
        pc += 1;
        let jump = |cond: bool| if cond { f.jt as usize } else { f.jf as usize };
        match f.code {
            LD_ABS_H => match half(f.k) {
                Some(v) => a = v,
                None => return 0,
            },
            LD_ABS_B => match byte(f.k) {
                Some(v) => a = v,
                None => return 0,
            },
            LD_IND_H => match half(x.wrapping_add(f.k)) {
                Some(v) => a = v,
                None => return 0,
            },
            LDX_MSH_B => match byte(f.k) {
                Some(v) => x = 4 * (v & 0xf),
                None => return 0,
            },
            JEQ_K => pc += jump(a == f.k),
            JSET_K => pc += jump(a & f.k != 0),
            RET_K => return f.k,
            code => panic!("opcode {code:#x} not in the interpreter"),
        }
    }
}

/// `BPF_PROG_TEST_RUN`'s attr, up to what a socket filter's run reads.
#[repr(C)]
struct TestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
}

/// What the kernel's run of loaded program `prog` returns for `frame`.
fn run_loaded(prog: &OwnedFd, frame: &[u8]) -> u32 {
    // The test run pulls an Ethernet header before a socket filter runs;
    // a packet socket's filter sees the frame from its Ethernet header on.
    // So a dummy header goes first, and the program sees `frame` as on
    // the TAP.
    let mut data = vec![0u8; 12];
    data.extend_from_slice(&[0x88, 0xb5]);
    data.extend_from_slice(frame);
    let mut attr = TestRun {
        prog_fd: prog.as_raw_fd() as u32,
        retval: 0,
        data_size_in: data.len() as u32,
        data_size_out: 0,
        data_in: data.as_ptr() as u64,
        data_out: 0,
        repeat: 1,
        duration: 0,
    };
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    // SAFETY: attr and `data` are valid for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRun,
            std::mem::size_of::<TestRun>(),
        )
    };
    assert_eq!(rc, 0, "test run: {}", io::Error::last_os_error());
    attr.retval
}

fn icmpv6(kind: u8) -> Vec<u8> {
    let ll = [
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 8, 0x58, 0x0a, 0xff, 0xfe, 1, 2, 3,
    ];
    let mut f = Vec::new();
    PacketBuilder::ethernet2(VM, TAP)
        .ipv6(ll, [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 255)
        .icmpv6_raw(kind, 0, [0; 4])
        .write(&mut f, &[0; 16])
        .unwrap();
    f
}

fn udp6(port: u16) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(VM, TAP)
        .ipv6(
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2],
            1,
        )
        .udp(546, port)
        .write(&mut f, &[1; 40])
        .unwrap();
    f
}

/// IPv4 UDP to `port`; `options`: IPv4 header words past the fifth.
fn udp4(port: u16, options: usize, frag: u16) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(VM, TAP)
        .ipv4([0, 0, 0, 0], [255, 255, 255, 255], 64)
        .udp(68, port)
        .write(&mut f, &[2; 300])
        .unwrap();
    if options > 0 {
        // Grow the header: IHL, and zero (end-of-list) option words.
        f[14] = 0x40 | (5 + options as u8);
        f.splice(34..34, vec![0u8; 4 * options]);
    }
    f[20..22].copy_from_slice(&frag.to_be_bytes());
    f
}

/// Frames each filter must take or leave, named, with (without DHCPv4,
/// with it) verdicts.
fn crafted() -> Vec<(&'static str, Vec<u8>, (bool, bool))> {
    let mut arp = udp4(67, 0, 0);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    vec![
        ("RS", icmpv6(133), (true, true)),
        ("RA", icmpv6(134), (false, false)),
        ("NS", icmpv6(135), (true, true)),
        ("NA", icmpv6(136), (true, true)),
        ("echo request", icmpv6(128), (false, false)),
        ("DHCPv6 to 547", udp6(547), (true, true)),
        ("UDPv6 to 546", udp6(546), (false, false)),
        ("DHCPv4", udp4(67, 0, 0), (false, true)),
        ("DHCPv4 with IPv4 options", udp4(67, 3, 0), (false, true)),
        ("DHCPv4, DF set", udp4(67, 0, 0x4000), (false, true)),
        ("IPv4 first fragment", udp4(67, 0, 0x2000), (false, false)),
        ("IPv4 later fragment", udp4(67, 0, 0x0001), (false, false)),
        ("UDPv4 to 68", udp4(68, 0, 0), (false, false)),
        ("ARP", arp, (false, false)),
        ("runt", vec![0; 13], (false, false)),
        (
            "IPv6 header cut",
            icmpv6(133)[..40].to_vec(),
            (false, false),
        ),
    ]
}

/// Frames near the crafted ones: bytes changed where the filters look,
/// and cut short at every length around their loads.
fn mutated(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let base: Vec<Vec<u8>> = crafted().into_iter().map(|(_, f, _)| f).collect();
    let spots = [
        12, 13, 14, 20, 21, 23, 34, 35, 36, 37, 38, 39, 46, 47, 48, 49, 54, 56, 57,
    ];
    (0..n)
        .map(|_| {
            let mut f = base[next() as usize % base.len()].clone();
            for _ in 0..1 + next() % 3 {
                let at = spots[next() as usize % spots.len()];
                if let Some(b) = f.get_mut(at) {
                    *b = match next() % 4 {
                        0 => 0,
                        1 => 0xff,
                        _ => next() as u8,
                    };
                }
            }
            if next() % 4 == 0 {
                f.truncate(next() as usize % 80);
            }
            f
        })
        .collect()
}

#[test]
fn both_filters_translate_and_every_jump_lands_inside() {
    for with_v4 in [false, true] {
        let prog = translate(filter(with_v4)).unwrap();
        for (i, ins) in prog.iter().enumerate() {
            let class = ins.code & 0x07;
            if (class == 0x05 || class == 0x06) && ins.code != EXIT {
                let to = i as i64 + 1 + ins.off as i64;
                assert!(
                    (0..prog.len() as i64).contains(&to),
                    "{with_v4}: jump at {i}"
                );
            }
        }
        assert_eq!(prog.last().unwrap().code, EXIT);
    }
}

#[test]
fn an_opcode_not_translated_is_refused() {
    let f = [libc::sock_filter {
        code: 0x00,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    assert_eq!(
        translate(&f).unwrap_err().kind(),
        io::ErrorKind::Unsupported
    );
}

#[test]
fn loaded_programs_give_the_classic_verdicts() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("VNET_TEST_SKIP").is_ok_and(|v| v == "1"),
            "needs root (bpf(2)); set VNET_TEST_SKIP=1 to skip it"
        );
        return;
    }
    for with_v4 in [false, true] {
        let classic = filter(with_v4);
        let loaded = load(&translate(classic).unwrap(), "vnet_test").unwrap();
        for (what, frame, want) in crafted() {
            let want = if with_v4 { want.1 } else { want.0 };
            let c = run_classic(classic, &frame);
            assert_eq!(c != 0, want, "classic, with_v4 {with_v4}: {what}");
            assert_eq!(
                run_loaded(&loaded, &frame),
                c,
                "loaded, with_v4 {with_v4}: {what}"
            );
        }
        let frames = mutated(0x9e37_79b9_7f4a_7c15, 4000);
        let taken = frames
            .iter()
            .filter(|f| run_classic(classic, f) != 0)
            .count();
        // Enough of both verdicts that agreement means something.
        assert!(
            taken > 200 && taken < 3800,
            "with_v4 {with_v4}: {taken} of 4000 taken"
        );
        for f in &frames {
            assert_eq!(
                run_loaded(&loaded, f),
                run_classic(classic, f),
                "with_v4 {with_v4}: {f:02x?}"
            );
        }
    }
}

#[test]
fn under_seccomp_sees_a_filtered_thread() {
    let here = under_seccomp();
    let filtered = std::thread::spawn(|| {
        // An allow-all filter on this thread alone (with no_new_privs,
        // also this thread's alone).
        let allow = [libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: allow.as_ptr().cast_mut(),
        };
        // SAFETY: prctl with valid arguments; `prog` outlives the call.
        unsafe {
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            assert_eq!(
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const _
                ),
                0,
                "seccomp: {}",
                io::Error::last_os_error()
            );
        }
        under_seccomp()
    })
    .join()
    .unwrap();
    assert!(filtered, "a seccomp-filtered thread seen as free");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    if status
        .lines()
        .any(|l| l.starts_with("Seccomp:") && l.ends_with('0'))
    {
        assert!(!here, "a thread without seccomp seen as filtered");
    }
}
