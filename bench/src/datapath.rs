//! Data path: frames written to TAP queue fds, crossing brN and the veth to
//! the host namespace, counted by the host end's rx counters (netlink
//! IFLA_STATS64). vnet's topology against the same one built by hand with
//! iproute2, in the same run.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vnet::ffi;
use vnet::filter::Nft;

use crate::control::{c_setup, c_teardown};
use crate::fixture::{in_ns, ip_batch, Pods};
use crate::frames;
use crate::rawnl::{LinkStats, Rtnl};
use crate::stats::Table;
use crate::tun;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Small,
    Mtu,
    Gso,
    GsoOver,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Small => "64 B",
            Kind::Mtu => "1514 B (1500 B IP)",
            Kind::Gso => "65214 B TSO (vnet_hdr; a guest's largest)",
            Kind::GsoOver => "65549 B TSO (vnet_hdr; over gso_max_size)",
        }
    }
}

struct Outcome {
    written: u64,
    errors: u64,
    delivered: LinkStats,
    secs: f64,
}

fn host_stats(pods: &Pods) -> LinkStats {
    let h = pods.host_if(0);
    in_ns(&pods.host_path(), || {
        Rtnl::open().unwrap().stats(&h).unwrap()
    })
}

/// One writer thread per fd, each writing `frame` for `dur`.
fn blast(pods: &Pods, fds: &[RawFd], frame: &[u8], dur: Duration) -> Outcome {
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let before = host_stats(pods);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for &fd in fds {
            let (stop, written, errors) = (&stop, &written, &errors);
            s.spawn(move || {
                let (mut ok, mut bad) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    // Check the clock once per 64 writes: cheap, still exact enough.
                    for _ in 0..64 {
                        // SAFETY: writing our own buffer to a TAP fd that
                        // stays open for the whole scope.
                        let n = unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
                        if n == frame.len() as isize {
                            ok += 1;
                        } else {
                            bad += 1;
                        }
                    }
                }
                written.fetch_add(ok, Ordering::Relaxed);
                errors.fetch_add(bad, Ordering::Relaxed);
            });
        }
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
    });
    let secs = t0.elapsed().as_secs_f64();
    // Let the host's backlog drain before reading its counters.
    std::thread::sleep(Duration::from_millis(50));
    let after = host_stats(pods);
    Outcome {
        written: written.into_inner(),
        errors: errors.into_inner(),
        delivered: LinkStats {
            rx_packets: after.rx_packets - before.rx_packets,
            tx_packets: after.tx_packets - before.tx_packets,
            rx_bytes: after.rx_bytes - before.rx_bytes,
            rx_dropped: after.rx_dropped - before.rx_dropped,
            tx_dropped: after.tx_dropped - before.tx_dropped,
        },
        secs,
    }
}

fn frame_for(kind: Kind, dst: [u8; 6]) -> Vec<u8> {
    match kind {
        Kind::Small => frames::udp(dst, 64),
        Kind::Mtu => frames::udp(dst, 1514),
        Kind::Gso => frames::gso_tcp(dst, frames::IP_GUEST_TSO),
        Kind::GsoOver => frames::gso_tcp(dst, frames::IP_MAX),
    }
}

/// Queue fds of the hand-built topology: `ip tuntap` + bridge + veth.
fn hand_build(pods: &Pods, queues: u32, vnet_hdr: bool) -> Vec<OwnedFd> {
    let mut tuntap = "tuntap add tap0 mode tap".to_string();
    if vnet_hdr {
        tuntap += " vnet_hdr";
    }
    if queues > 1 {
        tuntap += " multi_queue";
    }
    let lines: Vec<String> = [
        "route del default via 10.1.90.1",
        "addr del 10.1.90.5/24 dev eth0",
        "link set eth0 address 02:65:02:11:22:33",
        &tuntap,
        "link add br0 type bridge ageing_time 0",
        "link set br0 up",
        "link set tap0 master br0",
        "link set eth0 master br0",
        "link set tap0 up",
        "addr add 169.254.254.2/24 dev br0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ip_batch(&["-n", &pods.pods[0]], &lines);
    let mut flags = tun::IFF_TAP | tun::IFF_NO_PI;
    if vnet_hdr {
        flags |= tun::IFF_VNET_HDR;
    }
    if queues > 1 {
        flags |= tun::IFF_MULTI_QUEUE;
    }
    in_ns(&pods.path(0), || {
        (0..queues)
            .map(|_| tun::attach("tap0", flags).expect("attach tap0"))
            .collect()
    })
}

fn prepare(fd: BorrowedFd, vnet_hdr: bool) {
    if vnet_hdr {
        tun::vmm_offloads(fd).expect("TUNSETVNETHDRSZ/TUNSETOFFLOAD");
    }
}

pub fn run(dur: Duration) {
    println!("## 3. Data path\n");
    println!(
        "Writer thread(s) write one frame over and over to the TAP queue fd(s) for {:.0} s; \
         'delivered' is what the host end of the veth received (rx_packets / rx_bytes from \
         IFLA_STATS64, read in the host namespace). Frames go to the host end's MAC, IPv4 to \
         10.1.90.99 (dropped by the host after routing). Gbit/s counts Ethernet bytes \
         (no FCS/preamble). 'hand' = the same topology built with `ip tuntap` + bridge + veth, \
         no nf_tables table; 'hand + vnet's nft table' adds vnet's table to it. Both bridges have \
         ageing 0. TSO frames: 45 segments of 1448 B in one 65214-byte frame, the most a Linux \
         guest's TCP sends with virtio-net's default gso_max_size (65536), crosses whole. \
         The 65549-byte frame (one 65535-byte IPv4 packet) is over the veth's gso_max_size, so \
         the kernel segments it in software before the veth (46 frames delivered per frame \
         written, see 'delivered / written'): Gbit/s is the number to compare.\n",
        dur.as_secs_f64()
    );
    let mut t = Table::new(&[
        "frames",
        "queues",
        "topology",
        "written/s",
        "delivered frames/s",
        "delivered Gbit/s",
        "delivered / written",
        "vnet / hand",
    ]);
    // (queues, kind, topology) -> delivered Gbit/s, for the vnet_hdr gain.
    let mut gbit: Vec<(u32, Kind, &str, f64)> = Vec::new();
    for queues in [1u32, 2] {
        for vnet_hdr in [false, true] {
            let kinds: &[Kind] = if vnet_hdr {
                &[Kind::Gso, Kind::GsoOver]
            } else {
                &[Kind::Small, Kind::Mtu]
            };
            eprintln!("[bench] data path: queues {queues}, vnet_hdr {vnet_hdr} ...");
            // vnet's topology.
            let vp = Pods::new("dpv", 1);
            let dst = in_ns(&vp.host_path(), || {
                Rtnl::open().unwrap().mac("veth0").unwrap()
            });
            let cfg = CString::new(format!(
                "{{\"dhcp\": false, \"vnet_hdr\": {vnet_hdr}, \"queues\": {queues}}}"
            ))
            .unwrap();
            let h = c_setup(&CString::new(vp.path(0)).unwrap(), Some(&cfg));
            let vfds: Vec<RawFd> = (0..queues)
                // SAFETY: a live handle; the fds stay valid until teardown.
                .map(|q| unsafe { ffi::vnet_tap_fd(h.0, 0, q) })
                .collect();
            assert!(vfds.iter().all(|&f| f >= 0), "vnet_tap_fd");
            for &fd in &vfds {
                // SAFETY: fd is open for the life of the handle.
                prepare(unsafe { BorrowedFd::borrow_raw(fd) }, vnet_hdr);
            }
            // The same by hand.
            let hp = Pods::new("dph", 1);
            let hdst = in_ns(&hp.host_path(), || {
                Rtnl::open().unwrap().mac("veth0").unwrap()
            });
            let hfds = hand_build(&hp, queues, vnet_hdr);
            for fd in &hfds {
                prepare(fd.as_fd(), vnet_hdr);
            }
            let hraw: Vec<RawFd> = hfds.iter().map(|f| f.as_raw_fd()).collect();
            for &kind in kinds {
                let v = blast(&vp, &vfds, &frame_for(kind, dst), dur);
                let hh = blast(&hp, &hraw, &frame_for(kind, hdst), dur);
                // The hand topology plus vnet's nf_tables table (installed
                // with vnet's own encoder): isolates what the filter costs.
                in_ns(&hp.path(0), || {
                    Nft::open()
                        .unwrap()
                        .install("vnet", &["eth0".to_string()])
                        .unwrap()
                });
                let hf = blast(&hp, &hraw, &frame_for(kind, hdst), dur);
                in_ns(&hp.path(0), || {
                    Nft::open().unwrap().delete_table("vnet").unwrap()
                });
                let fps = |o: &Outcome| o.delivered.rx_packets as f64 / o.secs;
                for (name, o) in [
                    ("vnet", &v),
                    ("hand", &hh),
                    ("hand + vnet's nft table", &hf),
                ] {
                    gbit.push((
                        queues,
                        kind,
                        name,
                        o.delivered.rx_bytes as f64 * 8.0 / o.secs / 1e9,
                    ));
                    if o.errors > 0 {
                        eprintln!("[bench] {name} {}: {} write errors", kind.name(), o.errors);
                    }
                    t.row(vec![
                        kind.name().into(),
                        queues.to_string(),
                        name.into(),
                        format!("{:.0}", o.written as f64 / o.secs),
                        format!("{:.0}", fps(o)),
                        format!("{:.2}", o.delivered.rx_bytes as f64 * 8.0 / o.secs / 1e9),
                        format!(
                            "{:.2}",
                            o.delivered.rx_packets as f64 / o.written.max(1) as f64
                        ),
                        if name == "vnet" {
                            format!("{:.2}×", fps(&v) / fps(&hh))
                        } else {
                            String::new()
                        },
                    ]);
                }
            }
            drop(hfds);
            c_teardown(h);
        }
    }
    t.print();

    println!(
        "vnet_hdr gain: delivered Gbit/s of TSO frames over that of 1514-byte frames, \
         same topology and queue count.\n"
    );
    let mut g = Table::new(&[
        "queues",
        "topology",
        "65214 B TSO / 1514 B",
        "65549 B TSO / 1514 B",
    ]);
    let find = |q: u32, k: Kind, n: &str| {
        gbit.iter()
            .find(|e| e.0 == q && e.1 == k && e.2 == n)
            .map_or(f64::NAN, |e| e.3)
    };
    for queues in [1u32, 2] {
        for name in ["vnet", "hand"] {
            let base = find(queues, Kind::Mtu, name);
            g.row(vec![
                queues.to_string(),
                name.into(),
                format!("{:.1}×", find(queues, Kind::Gso, name) / base),
                format!("{:.1}×", find(queues, Kind::GsoOver, name) / base),
            ]);
        }
    }
    g.print();
}
