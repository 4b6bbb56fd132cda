#!/usr/bin/env bash
# Install the Debian packages the tests and the demo need (idempotent).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(iproute2 nftables busybox-static qemu-system-x86 linux-image-amd64 valgrind
      golang-go pkg-config tcpdump gcc g++ make python3 kmod cpio iputils-ping jq
      containernetworking-plugins golang-github-appc-cni-dev dhcpcd-base isc-dhcp-client
      iptables)
[ "${1:-}" = "--demo" ] && pkgs=(iproute2 gcc)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
