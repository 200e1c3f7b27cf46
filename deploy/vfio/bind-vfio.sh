#!/usr/bin/env bash
# Bind one PCI function to vfio-pci, so that fpgacspd's vfio transport (--device-backend vfio) can own it.
#
#   usage: sudo deploy/vfio/bind-vfio.sh 0000:01:00.0        (a short 01:00.0 means domain 0000)
#
# Loads vfio-pci, sets the function's driver_override to vfio-pci, unbinds it from its current driver and
# asks the kernel to probe it again, which binds it to vfio-pci. Then prints its IOMMU group and the other
# members of that group: VFIO hands out whole groups, so every other member must be bound to vfio-pci too
# (run this script for each) or be unbound, or fpgacspd reports the group "not viable".
# The override lasts until reboot; see docs/vfio.md for making it permanent.
set -euo pipefail

die() {
    echo "bind-vfio: $*" >&2
    exit 1
}

driver_of() { # the bound driver of a PCI function, or nothing
    if [[ -e /sys/bus/pci/devices/$1/driver ]]; then
        basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
    fi
}

[[ $# -eq 1 ]] || {
    echo "usage: $0 <pci-address>   e.g. $0 0000:01:00.0 (lspci -D lists the addresses)" >&2
    exit 2
}
bdf=${1,,}
[[ $bdf =~ ^[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$ ]] && bdf="0000:$bdf"
[[ $bdf =~ ^[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$ ]] ||
    die "'$1' is not a PCI address: expected domain:bus:device.function, e.g. 0000:01:00.0"

dev=/sys/bus/pci/devices/$bdf
[[ -e $dev ]] || die "no PCI device $bdf (lspci -D lists the devices)"
[[ -e $dev/iommu_group ]] ||
    die "the IOMMU is off: $bdf has no IOMMU group. Enable VT-d / AMD-Vi in the firmware, boot with" \
        "intel_iommu=on (Intel) or amd_iommu=on (AMD) on the kernel command line, and reboot"
group=$(basename "$(readlink "$dev/iommu_group")")
[[ $EUID -eq 0 ]] || die "must run as root (it writes to /sys/bus/pci)"

modprobe vfio-pci || die "could not load vfio-pci (modprobe vfio-pci)"
[[ -e /sys/bus/pci/drivers/vfio-pci ]] || die "vfio-pci did not register after modprobe; check dmesg"

current=$(driver_of "$bdf")
if [[ $current == vfio-pci ]]; then
    echo "$bdf is already bound to vfio-pci"
else
    echo vfio-pci >"$dev/driver_override"
    if [[ -n $current ]]; then
        echo "unbinding $bdf from $current"
        echo "$bdf" >"$dev/driver/unbind"
    fi
    echo "$bdf" >/sys/bus/pci/drivers_probe
    now=$(driver_of "$bdf")
    [[ $now == vfio-pci ]] || die "$bdf did not bind to vfio-pci (now: ${now:-no driver}); check dmesg"
    echo "$bdf is bound to vfio-pci (was: ${current:-no driver})"
fi

echo "iommu group $group: /dev/vfio/$group"
blocking=0
for member in /sys/kernel/iommu_groups/"$group"/devices/*; do
    member=$(basename "$member")
    [[ $member == "$bdf" ]] && continue
    driver=$(driver_of "$member")
    case $driver in
    "" | vfio-pci | pci-stub | pcieport) note="ok" ;;
    *)
        note="must be bound to vfio-pci or unbound: $0 $member"
        blocking=1
        ;;
    esac
    echo "  other member $member (driver: ${driver:-none}): $note"
done
if [[ $blocking -eq 1 ]]; then
    echo "the group is not viable until the members above are dealt with" >&2
    exit 1
fi
