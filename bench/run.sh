#!/bin/bash
# vnet benchmarks, one command:  bench/run.sh [quick|full] [section...]
#   quick (default): a few minutes;  full: more rounds, 1000-cycle footprint.
#   sections: control scale datapath footprint (default: all)
# Quick looks, after a build (bench/target/release/vnet-bench, as root):
#   vnet-bench steps [N]          where setup/teardown time goes, per step
#   vnet-bench blocks [N]         thread, socket, request costs, warm and cold
#   vnet-bench probe [N]          C ABI and safe API medians + kernel floor
#   vnet-bench fresh [N]          first setup in a fresh pod namespace, per step
#   vnet-bench first [N]          first setup in a fresh process, per step
#   vnet-bench ab OLD.so NEW.so [N]  two library builds, interleaved (dlopen);
#                                 VNB_AB_IDLE_MS=300 idles before each setup,
#                                 VNB_AB_GAP_MS=300 between setup and teardown,
#                                 VNB_AB_SETTLE=1 waits for the kernel to free
#                                 the links after each teardown; VNB_AB_OLD_CONFIG /
#                                 VNB_AB_NEW_CONFIG give each build its config,
#                                 VNB_AB_DUAL=1 a dual-stack pod (IPv6 served)
# Builds bench/ in release (same profile as the library) into bench/target,
# runs as root in scratch namespaces only, prints markdown to stdout (and
# progress to stderr). Baselines from ../shared/anchors run when present.
# Optional Go baseline deps (Debian): golang-go
#   golang-github-vishvananda-netlink-dev golang-github-vishvananda-netns-dev ebtables
#   iptables (its ebtables-nft: kernels without legacy ebtables reject ebtables-legacy)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: must run as root (creates network namespaces)" >&2
	exit 2
fi

export VNB_RUN="vnb$$"
if [ -d "$root/../shared/anchors" ]; then
	export VNB_ANCHORS="$root/../shared/anchors"
fi

# Whatever happens, leave no namespace of this run behind (the binary also
# cleans up on its own; this catches SIGKILL of the binary).
cleanup() {
	ip netns list 2>/dev/null | awk -v p="$VNB_RUN" 'index($1, p) == 1 {print "netns del " $1}' |
		ip -force -batch - 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

echo "[bench] building (release) ..." >&2
cargo build --release --quiet --manifest-path "$here/Cargo.toml" >&2

cat <<EOF
# vnet benchmark results

- Date: $(date -u +%FT%TZ); mode: ${1:-quick}
- Machine: $(nproc) vCPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo); kernel $(uname -r); $(. /etc/os-release && echo "$PRETTY_NAME")
- Kernel: $(uname -v); $( (zcat /proc/config.gz 2>/dev/null || cat "/boot/config-$(uname -r)" 2>/dev/null) | grep -E '^CONFIG_(HZ|RCU_LAZY|PREEMPT_DYNAMIC)=' | tr '\n' ' ' || true)
- Toolchain: $(rustc --version); vnet $(grep -m1 '^version' "$root/Cargo.toml" | cut -d'"' -f2) at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted changes in src/')
- Load before the run: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min); bench and baselines run at nice ${VNB_NICE:--10}
- Go baseline: $(go version 2>/dev/null || echo 'go not installed'); ebtables: $(ebtables --version 2>/dev/null || echo 'not installed'); $(ip -V)

EOF
# Other work on the machine skews the numbers; by default the whole run
# (vnet and the baselines alike) runs at nice -10. VNB_NICE=0 to disable.
nice -n "${VNB_NICE:--10}" "$here/target/release/vnet-bench" "$@"
echo "Load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
