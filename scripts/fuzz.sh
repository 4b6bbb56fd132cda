#!/usr/bin/env bash
# Bounded fuzzing of every target (seconds per target as $1, default 60).
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
# accept them (the only toolchain this project's machines have).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
# The grown corpus lives outside the checkout so that CI runs on this machine
# keep building on it (a fresh machine starts again from fuzz/seeds).
corpus_root=${VNET_FUZZ_CORPUS:-/var/cache/vnet/fuzz-corpus}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in dhcp_packet config_json state_json dhcp6_packet ndp_frame; do
  mkdir -p "$corpus_root/$t"
  echo "fuzzing $t for ${secs}s"
  log="target/fuzz-$t.log"
  mkdir -p target
  seeds=(); [ -d "seeds/$t" ] && seeds=("seeds/$t")
  if ! cargo fuzz run "$t" "$corpus_root/$t" "${seeds[@]}" -- -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $t failed"
    exit 1
  fi
  grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$log" || true
done
