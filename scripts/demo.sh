#!/usr/bin/env bash
# The README demo: a scratch pod + host namespace, setup through the C ABI,
# frames across br0, the result JSON, teardown, the namespace restored.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --demo
cargo build --release --quiet --bin vnet
exec target/release/vnet demo
