#!/bin/bash
# Build the vnet test guest: OUTDIR/vmlinuz (Debian's kernel) and
# OUTDIR/initramfs.cpio.gz (static busybox + virtio-net modules + /init).
# Installs its Debian packages when missing; skips the build when the outputs
# are newer than every input.
set -euo pipefail

OUT=${1:?usage: build-initramfs.sh OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

need_pkgs() {
    local p
    for p in qemu-system-x86 linux-image-amd64 busybox-static dhcpcd-base isc-dhcp-client; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 0
    done
    return 1
}
if need_pkgs; then
    pkgs="qemu-system-x86 linux-image-amd64 busybox-static dhcpcd-base isc-dhcp-client"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends $pkgs ||
        { apt-get update && apt-get install -y --no-install-recommends $pkgs; }
fi

# Newest kernel that has both an image and its modules.
KVER=
for k in $(ls /lib/modules | sort -V); do
    [ -r "/boot/vmlinuz-$k" ] && KVER=$k
done
[ -n "$KVER" ] || { echo "build-initramfs: no kernel in /boot with modules" >&2; exit 1; }
KIMG=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER

# dhcpcd (Debian's dhcpcd-base) is the second DHCP client the guest can run
# (vnet.client=dhcpcd); it needs only libc, copied in beside it.
DHCPCD=/usr/sbin/dhcpcd
IPFULL=/usr/bin/ip
# isc-dhcp-client's dhclient is the other DHCPv6 client (vnet.client6=dhclient,
# IA_NA only, the guest kernel handling the RA); it too needs only libc.
DHCLIENT=/sbin/dhclient
INPUTS=("$0" "$HERE/init" "$HERE/udhcpc.sh" "$HERE/dhcpcd.conf" "$HERE/dhcpcd6.conf" "$HERE/dhclient6.sh"
    "$HERE/dhclient6.conf" /bin/busybox "$KIMG" "$MODDIR/modules.dep" "$DHCPCD" "$IPFULL" "$DHCLIENT")
fresh=1
for o in "$OUT/vmlinuz" "$OUT/initramfs.cpio.gz"; do
    [ -e "$o" ] || fresh=0
    for i in "${INPUTS[@]}"; do
        [ -e "$o" ] && [ "$o" -nt "$i" ] || fresh=0
    done
done
if [ $fresh = 1 ]; then
    echo "build-initramfs: up to date ($OUT, kernel $KVER)"
    exit 0
fi

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,sbin,etc,proc,sys,dev,tmp,var,run,lib/modules}
cp /bin/busybox "$STAGE/bin/busybox"
for app in $(/bin/busybox --list); do
    [ "$app" = busybox ] || ln -s busybox "$STAGE/bin/$app"
done
install -m 0755 "$HERE/init" "$STAGE/init"
install -m 0755 "$HERE/udhcpc.sh" "$STAGE/udhcpc.sh"
install -m 0644 "$HERE/dhcpcd.conf" "$STAGE/etc/dhcpcd.conf"
install -m 0644 "$HERE/dhcpcd6.conf" "$STAGE/etc/dhcpcd6.conf"
install -D -m 0755 "$DHCPCD" "$STAGE/sbin/dhcpcd"
install -D -m 0755 "$DHCLIENT" "$STAGE/sbin/dhclient"
install -m 0755 "$HERE/dhclient6.sh" "$STAGE/dhclient6.sh"
install -D -m 0644 "$HERE/dhclient6.conf" "$STAGE/etc/dhcp/dhclient6.conf"
mkdir -p "$STAGE/var/lib/dhcp"
# iproute2's ip as ip-full: busybox ip does not show a route's MTU, which is
# where dhcpcd 9 puts option 26.
install -D -m 0755 "$IPFULL" "$STAGE/sbin/ip-full"
# Their shared libraries, at the paths the dynamic loader looks them up.
for lib in $(ldd "$DHCPCD" "$IPFULL" "$DHCLIENT" | grep -oE '/[^ ]+' | grep -v ':$' | sort -u); do
    install -D -m 0755 "$(readlink -f "$lib")" "$STAGE$lib"
done
# dhcpcd's privilege separation runs as user dhcpcd, chrooted in its home.
mkdir -p "$STAGE/var/lib/dhcpcd" "$STAGE/run/dhcpcd" "$STAGE/usr/lib/dhcpcd"
printf 'root:x:0:0:root:/:/bin/sh\ndhcpcd:x:102:65534:dhcpcd:/usr/lib/dhcpcd:/bin/false\n' >"$STAGE/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$STAGE/etc/group"
# The kernel opens /dev/console before /init runs.
mknod -m 600 "$STAGE/dev/console" c 5 1

# Resolve the module closure from modules.dep (deps first), skipping what is
# built in. Modules ship decompressed so busybox insmod can load them.
declare -A seen=()
order=()
add_mod() {
    local name=$1 line path dep
    name=${name//-/_}
    [ -n "${seen[$name]:-}" ] && return 0
    seen[$name]=1
    line=$(grep -E "(^|/)${name//_/[_-]}\.ko(\.(xz|zst|gz))?:" "$MODDIR/modules.dep" || true)
    if [ -z "$line" ]; then
        if grep -qE "/${name//_/[_-]}\.ko$" "$MODDIR/modules.builtin"; then
            return 0
        fi
        echo "build-initramfs: module $name not found for $KVER" >&2
        exit 1
    fi
    path=${line%%:*}
    for dep in ${line#*:}; do
        dep=$(basename "$dep")
        add_mod "${dep%%.ko*}"
    done
    order+=("$path")
}
for m in virtio_pci virtio_net; do add_mod "$m"; done

: >"$STAGE/lib/modules/order"
for p in "${order[@]}"; do
    src=$MODDIR/$p
    base=$(basename "$p")
    case "$base" in
    *.ko.xz) xz -dc "$src" >"$STAGE/lib/modules/${base%.xz}"; base=${base%.xz} ;;
    *.ko.zst) zstd -dcq "$src" >"$STAGE/lib/modules/${base%.zst}"; base=${base%.zst} ;;
    *.ko.gz) gzip -dc "$src" >"$STAGE/lib/modules/${base%.gz}"; base=${base%.gz} ;;
    *) cp "$src" "$STAGE/lib/modules/$base" ;;
    esac
    echo "$base" >>"$STAGE/lib/modules/order"
done

(cd "$STAGE" && find . | LC_ALL=C sort | /bin/busybox cpio -o -H newc 2>/dev/null) |
    gzip -9n >"$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
cp "$KIMG" "$OUT/vmlinuz.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
echo "build-initramfs: built $OUT (kernel $KVER, modules: $(tr '\n' ' ' <"$STAGE/lib/modules/order"))"
