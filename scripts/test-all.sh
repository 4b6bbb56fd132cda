#!/usr/bin/env bash
# The test command (README.md): lint, header check, Rust + C tests, the real
# VM end to end, the install/dlopen/Go tests, and bounded fuzzing.
# Run as root on a Debian machine; everything happens in scratch namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n=== %s\n' "$*"; }
cleanup() { bash scripts/clean-netns.sh; }
bash scripts/deps.sh
trap cleanup EXIT INT TERM
cleanup

step "format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --features fault-injection -- -D warnings
# The benchmark crate is not run here (timing is not pass/fail), but it must
# keep building and stay lint-clean.
cargo fmt --manifest-path bench/Cargo.toml -- --check
cargo clippy --manifest-path bench/Cargo.toml --all-targets -- -D warnings

step "header is current"
cargo build
if git rev-parse --git-dir >/dev/null 2>&1; then
  git diff --exit-code -- include/vnet.h || { echo "include/vnet.h is stale: commit the regenerated header"; exit 1; }
fi

step "Rust unit + integration tests, C tests (fault injection on)"
cargo test --features fault-injection -- --include-ignored

step "C tests under valgrind (memcheck: no definite leaks, no invalid access)"
VNET_VALGRIND=1 cargo test --test c_api

step "release build"
cargo build --release

step "test guest without vnet (busybox udhcpd: the guest's DHCP client and report are sound)"
bash vm/guest-selftest.sh

if [ -f vm/e2e.sh ]; then
  step "real VM end to end (QEMU TCG, busybox udhcpc)"
  bash vm/e2e.sh
fi

if [ -f vm/redirect-e2e.sh ]; then
  step "real VM in redirect mode on reference-plugin pods (macvlan + neighbour, ptp, host-device)"
  bash vm/redirect-e2e.sh
fi

step "CNI plugin vnet-cni (direct per the spec, hostile inputs, libcni chains with a QEMU guest)"
bash tests/cni.sh

if [ -f tests/ecosystem.sh ]; then
  step "install, pkg-config, dlopen, C/C++ header, Go"
  bash tests/ecosystem.sh
fi

if [ "${VNET_FUZZ_SECONDS:-35}" != 0 ]; then
  step "fuzzing (bounded)"
  bash scripts/fuzz.sh "${VNET_FUZZ_SECONDS:-35}"
fi
echo "all test stages passed"
