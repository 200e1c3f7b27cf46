"""The ``vfio`` transport: a real card, owned by this process through Linux VFIO (vfio-pci, Type1 IOMMU).

Setup follows the kernel's recipe (Documentation/driver-api/vfio.rst): a container, the device's IOMMU
group attached to it, the IOMMU model chosen, then the device fd, its BAR0 and its MSI-X (or MSI)
vectors wired to eventfds. Most ways this goes wrong are host configuration, not bugs, so each step
checks its precondition first and fails with a :class:`VfioError` that names the PCI address, the step
and the fix; docs/vfio.md lists them. Every system call goes through :class:`Syscalls`, so the tests
run this whole sequence against a fake device.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...logs import get_logger, log_event
from .. import _regmap as regs
from ..transport import DmaBuffer, TransportError
from . import _abi as abi
from ._sys import IoctlArg, Syscalls

_log = get_logger("device.vfio")

SYSFS_PCI_DEVICES = "/sys/bus/pci/devices"
SYSFS_IOMMU_GROUPS = "/sys/kernel/iommu_groups"
VFIO_DEV = "/dev/vfio"
CONTAINER_PATH = f"{VFIO_DEV}/vfio"
MIN_BAR0_BYTES = regs.BAR0_SIZE  # the register map's BAR (fpga_bitstream/regmap)
BIND_SCRIPT = "deploy/vfio/bind-vfio.sh"

_BDF = re.compile(r"(?:(?P<domain>[0-9a-f]{4,8}):)?(?P<bus>[0-9a-f]{2}):(?P<dev>[01][0-9a-f])\.(?P<fn>[0-7])")
_IOMMU_ON = "boot with the IOMMU on (intel_iommu=on or amd_iommu=on on the kernel command line)"
_PERMISSION = (
    "Run fpgacspd as root, or give its user access to /dev/vfio: install deploy/vfio/99-fpgacsp-vfio.rules "
    "(see docs/vfio.md)"
)
_ERRNO_REMEDY = {
    errno.EPERM: _PERMISSION,
    errno.EACCES: _PERMISSION,
    errno.EBUSY: "Another process (a VM, or another fpgacspd) is using the device or its group: stop it",
    errno.ENODEV: "The device went away: check it is still present and bound to vfio-pci",
    errno.ENXIO: "The device went away: check it is still present and bound to vfio-pci",
    errno.ENOTTY: "The kernel does not know this VFIO request: is the fd a VFIO file, is the kernel too old?",
}


class VfioError(TransportError):
    """A VFIO step failed; the message names the PCI address, the step, and what to do."""


def parse_bdf(text: str) -> str:
    """The canonical sysfs spelling (``0000:01:00.0``) of a PCI address; the domain defaults to 0000."""
    match = _BDF.fullmatch(text.strip().lower())
    if match is None:
        raise VfioError(
            f"vfio {text!r}: parse the PCI address: not of the form domain:bus:device.function "
            "(e.g. 0000:01:00.0, or 01:00.0 for domain 0000). `lspci -D` lists the addresses"
        )
    domain = match["domain"] or "0000"
    return f"{domain}:{match['bus']}:{match['dev']}.{match['fn']}"


def _round_up(value: int, align: int) -> int:
    return -(-value // align) * align


@dataclass(eq=False)
class _Dma:
    """One pinned buffer: the ``handle`` of the :class:`DmaBuffer` handed out."""

    mem: mmap.mmap
    iova: int
    size: int


class _IovaSpace:
    """First-fit allocator of I/O virtual addresses above a base, reusing freed ranges.

    Without reuse a long-running daemon that allocates per batch would walk off the top of the IOMMU's
    address width (39 bits on many hosts) after enough batches.
    """

    def __init__(self, base: int) -> None:
        self._top = base
        self._free: list[tuple[int, int]] = []  # (iova, size), sorted, coalesced

    def take(self, size: int) -> int:
        for i, (iova, room) in enumerate(self._free):
            if room >= size:
                if room == size:
                    del self._free[i]
                else:
                    self._free[i] = (iova + size, room - size)
                return iova
        iova, self._top = self._top, self._top + size
        return iova

    def give(self, iova: int, size: int) -> None:
        self._free.append((iova, size))
        self._free.sort()
        merged: list[tuple[int, int]] = []
        for start, length in self._free:
            if merged and merged[-1][0] + merged[-1][1] == start:
                merged[-1] = (merged[-1][0], merged[-1][1] + length)
            else:
                merged.append((start, length))
        if merged and merged[-1][0] + merged[-1][1] == self._top:
            self._top = merged.pop()[0]
        self._free = merged


class VfioTransport:
    """BAR0, DMA memory and interrupts of one PCIe function bound to vfio-pci."""

    name = "vfio"

    def __init__(self, bdf: str, sys: Syscalls, dma_iova_base: int) -> None:
        """Use :meth:`open`; this only sets up the bookkeeping that :meth:`close` unwinds."""
        self.bdf = bdf
        self.description = f"vfio-pci {bdf}"
        self.group = -1
        self._sys = sys
        self._fds: list[tuple[str, int]] = []  # in the order opened; closed in reverse
        self._container = self._group_fd = self._device = -1
        self._group_attached = False
        self._iommu_model = abi.VFIO_TYPE1v2_IOMMU
        self._dma_align = sys.page_size()
        self._iova_base = dma_iova_base
        self._iova = _IovaSpace(_round_up(dma_iova_base, self._dma_align))
        self._dma: dict[int, _Dma] = {}
        self._pinned = 0
        self._bar_size = self._bar_offset = 0
        self._bar_mem: mmap.mmap | None = None
        self._bar32: np.ndarray | None = None
        self._eventfds: list[int] = []
        self._irq_index: int | None = None
        self._can_reset = False
        self._closed = False

    @classmethod
    def open(
        cls, bdf: str, *, sys: Syscalls | None = None, irq_vectors: int = 2, dma_iova_base: int = 0x1_0000_0000
    ) -> VfioTransport:
        """Take ownership of the function at ``bdf``; on any failure everything taken so far is released."""
        if irq_vectors < 0:
            raise VfioError(f"vfio {bdf}: open: irq_vectors must be >= 0, not {irq_vectors}")
        self = cls(parse_bdf(bdf), sys or Syscalls(), dma_iova_base)
        try:
            self._open_container()
            group = self._find_group()
            self._check_driver()
            self._open_group(group)
            self._attach_group()
            self._open_device()
            self._map_bar0()
            if irq_vectors:
                self._enable_irqs(irq_vectors)
        except BaseException:
            self.close()
            raise
        log_event(_log, logging.INFO, "vfio_open", bdf=self.bdf, group=self.group, bar0_bytes=self._bar_size)
        return self

    # ---- errors ----

    def _error(self, step: str, problem: str, remedy: str) -> VfioError:
        return VfioError(f"vfio {self.bdf}: {step}: {problem}. {remedy}")

    def _os_error(self, step: str, exc: OSError, remedies: dict[int, str] | None = None) -> VfioError:
        code = exc.errno or 0
        remedy = (remedies or {}).get(code) or _ERRNO_REMEDY.get(code) or "See docs/vfio.md"
        problem = f"failed with {errno.errorcode.get(code, code)} ({os.strerror(code)})"
        return self._error(step, problem, remedy)

    def _ioctl(self, fd: int, request: int, arg: IoctlArg = 0, remedies: dict[int, str] | None = None) -> int:
        try:
            return self._sys.ioctl(fd, request, arg)
        except OSError as exc:
            raise self._os_error(abi.IOCTL_NAMES[request], exc, remedies) from exc

    def _open_fd(self, role: str, path: str, remedies: dict[int, str]) -> int:
        try:
            fd = self._sys.open(path)
        except OSError as exc:
            raise self._os_error(f"open {path}", exc, remedies) from exc
        self._fds.append((role, fd))
        return fd

    # ---- setup, in order ----

    def _open_container(self) -> None:
        missing = f"VFIO is not available ({CONTAINER_PATH} is missing). Load vfio-pci (modprobe vfio-pci) and "
        self._container = self._open_fd("container", CONTAINER_PATH, {errno.ENOENT: missing + _IOMMU_ON})
        version = self._ioctl(self._container, abi.VFIO_GET_API_VERSION)
        if version != abi.VFIO_API_VERSION:
            raise self._error(
                "VFIO_GET_API_VERSION",
                f"the kernel speaks VFIO API {version}, this transport {abi.VFIO_API_VERSION}",
                "Run a kernel whose VFIO API matches",
            )
        for model in (abi.VFIO_TYPE1v2_IOMMU, abi.VFIO_TYPE1_IOMMU):
            if self._ioctl(self._container, abi.VFIO_CHECK_EXTENSION, model) > 0:
                self._iommu_model = model
                return
        raise self._error(
            "VFIO_CHECK_EXTENSION",
            "no IOMMU: the VFIO container offers neither the Type1v2 nor the Type1 IOMMU model",
            f"Enable the IOMMU ({_IOMMU_ON}) and load vfio_iommu_type1",
        )

    def _find_group(self) -> int:
        device_dir = f"{SYSFS_PCI_DEVICES}/{self.bdf}"
        if not self._sys.exists(device_dir):
            raise self._error(
                "find the device",
                f"no PCI device {self.bdf} ({device_dir} does not exist)",
                "Check the address: lspci -D",
            )
        try:
            group_text = os.path.basename(self._sys.readlink(f"{device_dir}/iommu_group"))
        except FileNotFoundError:
            raise self._error(
                "find the IOMMU group",
                f"no IOMMU group: the IOMMU is off ({device_dir}/iommu_group is missing)",
                f"Enable it in the firmware (VT-d / AMD-Vi) and {_IOMMU_ON}",
            ) from None
        if not group_text.isdigit():
            raise self._error("find the IOMMU group", f"unexpected iommu_group {group_text!r}", "See docs/vfio.md")
        self.group = int(group_text)
        self.description = f"vfio-pci {self.bdf} (iommu group {self.group})"
        return self.group

    def _check_driver(self) -> None:
        driver = self._driver_of(self.bdf)
        if driver != "vfio-pci":
            bound = f"bound to driver {driver!r}" if driver else "bound to no driver"
            raise self._error(
                "check the driver", f"{self.bdf} is {bound}, not vfio-pci", f"Bind it: sudo {BIND_SCRIPT} {self.bdf}"
            )

    def _driver_of(self, bdf: str) -> str | None:
        try:
            return os.path.basename(self._sys.readlink(f"{SYSFS_PCI_DEVICES}/{bdf}/driver"))
        except FileNotFoundError:
            return None

    def _open_group(self, group: int) -> None:
        path = f"{VFIO_DEV}/{group}"
        self._group_fd = self._open_fd(
            "group",
            path,
            {
                errno.EACCES: f"Permission denied on {path}. {_PERMISSION}",
                errno.EPERM: f"Permission denied on {path}. {_PERMISSION}",
                errno.EBUSY: f"Group {group} is open in another process (a VM, or another fpgacspd): stop it",
                errno.ENOENT: "The group has no VFIO file: is vfio-pci loaded and the device bound to it?",
            },
        )

    def _attach_group(self) -> None:
        status = abi.with_argsz(abi.vfio_group_status)
        self._ioctl(self._group_fd, abi.VFIO_GROUP_GET_STATUS, status)
        if not status.flags & abi.VFIO_GROUP_FLAGS_VIABLE:
            raise self._not_viable()
        self._ioctl(self._group_fd, abi.VFIO_GROUP_SET_CONTAINER, (ctypes.c_int32 * 1)(self._container))
        self._group_attached = True
        self._ioctl(self._container, abi.VFIO_SET_IOMMU, self._iommu_model)
        info = abi.with_argsz(abi.vfio_iommu_type1_info)
        self._ioctl(self._container, abi.VFIO_IOMMU_GET_INFO, info)
        if info.flags & abi.VFIO_IOMMU_INFO_PGSIZES and info.iova_pgsizes:
            smallest = info.iova_pgsizes & -info.iova_pgsizes  # DMA mappings must be multiples of it
            self._dma_align = max(self._dma_align, smallest)
            self._iova = _IovaSpace(_round_up(self._iova_base, self._dma_align))

    def _not_viable(self) -> VfioError:
        devices = f"{SYSFS_IOMMU_GROUPS}/{self.group}/devices"
        try:
            members = [f"{m} ({self._driver_of(m) or 'no driver'})" for m in self._sys.listdir(devices)]
        except OSError:
            members = ["(unreadable)"]
        return self._error(
            "VFIO_GROUP_GET_STATUS",
            f"iommu group {self.group} is not viable: every device of iommu group {self.group} must be bound "
            f"to vfio-pci or unbound; members ({devices}): {', '.join(members)}",
            f"Bind or unbind the others (sudo {BIND_SCRIPT} <address>); PCIe ports may stay on pcieport",
        )

    def _open_device(self) -> None:
        name = ctypes.create_string_buffer(self.bdf.encode("ascii"))
        self._device = self._ioctl(self._group_fd, abi.VFIO_GROUP_GET_DEVICE_FD, name)
        self._fds.append(("device", self._device))
        info = abi.with_argsz(abi.vfio_device_info)
        self._ioctl(self._device, abi.VFIO_DEVICE_GET_INFO, info)
        if not info.flags & abi.VFIO_DEVICE_FLAGS_PCI:
            raise self._error("VFIO_DEVICE_GET_INFO", "not a vfio-pci device", "Give the address of a PCI function")
        self._can_reset = bool(info.flags & abi.VFIO_DEVICE_FLAGS_RESET)

    def _map_bar0(self) -> None:
        region = abi.with_argsz(abi.vfio_region_info, index=abi.VFIO_PCI_BAR0_REGION_INDEX)
        self._ioctl(self._device, abi.VFIO_DEVICE_GET_REGION_INFO, region)
        rw = abi.VFIO_REGION_INFO_FLAG_READ | abi.VFIO_REGION_INFO_FLAG_WRITE
        if region.flags & rw != rw or region.size < MIN_BAR0_BYTES:
            raise self._error(
                "VFIO_DEVICE_GET_REGION_INFO",
                f"BAR0 is {region.size} bytes (flags {region.flags:#x}); the fpgacsp register map needs a "
                f"readable and writable BAR0 of at least {MIN_BAR0_BYTES} bytes",
                "Check the address names the fpgacsp function and its bitstream is loaded (lspci -vv)",
            )
        self._bar_size, self._bar_offset = int(region.size), int(region.offset)
        if region.flags & abi.VFIO_REGION_INFO_FLAG_MMAP:
            try:
                self._bar_mem = self._sys.mmap_device(self._device, self._bar_size, self._bar_offset)
            except OSError as exc:
                raise self._os_error("mmap BAR0", exc) from exc
            self._bar32 = np.frombuffer(self._bar_mem, dtype="<u4")

    def _enable_irqs(self, vectors: int) -> None:
        offered: dict[str, int] = {}
        for index, kind in ((abi.VFIO_PCI_MSIX_IRQ_INDEX, "MSI-X"), (abi.VFIO_PCI_MSI_IRQ_INDEX, "MSI")):
            info = abi.with_argsz(abi.vfio_irq_info, index=index)
            self._ioctl(self._device, abi.VFIO_DEVICE_GET_IRQ_INFO, info)
            if info.flags & abi.VFIO_IRQ_INFO_EVENTFD and info.count >= vectors:
                break
            offered[kind] = int(info.count)
        else:
            raise self._error(
                "VFIO_DEVICE_GET_IRQ_INFO",
                f"too few interrupt vectors: the driver needs {vectors}, the device offers "
                + ", ".join(f"{kind} {count}" for kind, count in offered.items()),
                "Check the bitstream enables MSI-X (lspci -vv shows MSI-X: Enable ... Count=)",
            )
        for _ in range(vectors):
            try:
                fd = self._sys.eventfd()
            except OSError as exc:
                raise self._os_error("eventfd", exc) from exc
            self._eventfds.append(fd)
            self._fds.append(("eventfd", fd))
        self._ioctl(self._device, abi.VFIO_DEVICE_SET_IRQS, abi.irq_set_eventfds(index, tuple(self._eventfds)))
        self._irq_index = index

    # ---- the Transport protocol ----

    def read32(self, offset: int) -> int:
        self._check_register(offset)
        if self._bar32 is not None:
            return int(self._bar32[offset >> 2])
        try:
            data = self._sys.pread(self._device, 4, self._bar_offset + offset)
        except OSError as exc:
            raise self._os_error(f"read32 at BAR0 {offset:#x}", exc) from exc
        if len(data) != 4:
            raise self._error(f"read32 at BAR0 {offset:#x}", f"short read ({len(data)} bytes)", "See docs/vfio.md")
        return int.from_bytes(data, "little")

    def write32(self, offset: int, value: int) -> None:
        self._check_register(offset)
        if not 0 <= value <= 0xFFFF_FFFF:
            raise self._error(
                f"write32 at BAR0 {offset:#x}", f"value {value} is not a 32-bit unsigned", "Fix the caller"
            )
        if self._bar32 is not None:
            self._bar32[offset >> 2] = value
            return
        try:
            written = self._sys.pwrite(self._device, value.to_bytes(4, "little"), self._bar_offset + offset)
        except OSError as exc:
            raise self._os_error(f"write32 at BAR0 {offset:#x}", exc) from exc
        if written != 4:
            raise self._error(f"write32 at BAR0 {offset:#x}", f"short write ({written} bytes)", "See docs/vfio.md")

    def _check_register(self, offset: int) -> None:
        self._check_open("register access")
        if offset % 4 or not 0 <= offset <= self._bar_size - 4:
            raise self._error(
                "register access",
                f"offset {offset:#x} is not a 4-byte aligned offset inside BAR0 (0..{self._bar_size - 4:#x})",
                "Fix the register offset in the caller",
            )

    def alloc_dma(self, size: int) -> DmaBuffer:
        self._check_open("alloc_dma")
        if size <= 0:
            raise self._error("alloc_dma", f"size {size} is not positive", "Fix the caller")
        length = _round_up(size, self._dma_align)
        self._check_memlock(length)
        try:
            mem = self._sys.mmap_anonymous(length)
        except OSError as exc:
            raise self._os_error(f"alloc_dma: mmap {length} bytes", exc) from exc
        data = np.frombuffer(mem, dtype=np.uint8)
        data[:] = 0
        iova = self._iova.take(length)
        dma_map = abi.with_argsz(
            abi.vfio_iommu_type1_dma_map,
            flags=abi.VFIO_DMA_MAP_FLAG_READ | abi.VFIO_DMA_MAP_FLAG_WRITE,
            vaddr=self._sys.address_of(mem),
            iova=iova,
            size=length,
        )
        try:
            self._ioctl(self._container, abi.VFIO_IOMMU_MAP_DMA, dma_map, self._map_remedies(length))
        except VfioError:
            self._iova.give(iova, length)
            del data
            self._sys.munmap(mem)
            raise
        entry = self._dma[iova] = _Dma(mem, iova, length)
        self._pinned += length
        return DmaBuffer(iova=iova, data=data, handle=entry)

    def _map_remedies(self, length: int) -> dict[int, str]:
        memlock = f"Pinning {length} bytes exceeded the locked-memory limit. {self._raise_memlock()}"
        return {
            errno.ENOMEM: memlock,
            errno.EDQUOT: memlock,
            errno.ENOSPC: "Too many DMA mappings (vfio_iommu_type1 dma_entry_limit): free buffers first",
            errno.EFAULT: "The buffer's host address is invalid; this is a bug in the transport",
        }

    @staticmethod
    def _raise_memlock() -> str:
        return (
            "Raise RLIMIT_MEMLOCK with LimitMEMLOCK= in the systemd unit (deploy/fpgacspd.service), "
            "or `ulimit -l` (KiB) in the shell that starts fpgacspd; see docs/vfio.md"
        )

    def _check_memlock(self, length: int) -> None:
        """VFIO pins DMA pages and charges them to RLIMIT_MEMLOCK; checking first gives a clear message
        instead of the bare ENOMEM the kernel returns from MAP_DMA."""
        if self._sys.can_lock_unlimited():
            return
        limit = self._sys.memlock_limit()
        need = self._pinned + length
        if limit is not None and need > limit:
            raise self._error(
                "alloc_dma",
                f"RLIMIT_MEMLOCK is {limit} bytes but the DMA buffers need {need} bytes pinned "
                f"({self._pinned} already, {length} more)",
                self._raise_memlock(),
            )

    def free_dma(self, buf: DmaBuffer) -> None:
        self._check_open("free_dma")
        entry = buf.handle
        if not isinstance(entry, _Dma) or self._dma.get(entry.iova) is not entry:
            raise self._error("free_dma", f"no live DMA buffer at iova {buf.iova:#x}", "Free each buffer once")
        self._unmap_dma(entry)
        buf.data = np.empty(0, dtype=np.uint8)  # drop the caller's view so the memory can really go
        buf.handle = None
        self._release_dma(entry)

    def _unmap_dma(self, entry: _Dma) -> None:
        unmap = abi.with_argsz(abi.vfio_iommu_type1_dma_unmap, iova=entry.iova, size=entry.size)
        self._ioctl(self._container, abi.VFIO_IOMMU_UNMAP_DMA, unmap)
        if unmap.size != entry.size:
            raise self._error(
                "VFIO_IOMMU_UNMAP_DMA",
                f"unmapped {unmap.size} of {entry.size} bytes at iova {entry.iova:#x}",
                "The IOMMU mappings are inconsistent: restart fpgacspd",
            )

    def _release_dma(self, entry: _Dma) -> None:
        del self._dma[entry.iova]
        self._pinned -= entry.size
        self._iova.give(entry.iova, entry.size)
        self._sys.munmap(entry.mem)

    def irq_fds(self) -> tuple[int, ...]:
        return tuple(self._eventfds)

    def function_reset(self) -> None:
        self._check_open("function_reset")
        if not self._can_reset:
            raise self._error(
                "VFIO_DEVICE_RESET",
                "the device offers no reset to vfio-pci (no FLR, PM or bus reset)",
                "Power-cycle the host or reload the bitstream",
            )
        self._ioctl(self._device, abi.VFIO_DEVICE_RESET)

    def _check_open(self, step: str) -> None:
        if self._closed:
            raise self._error(step, "the transport is closed", "Open a new one")

    # ---- teardown ----

    def close(self) -> None:
        """Undo :meth:`open` in reverse; each step is attempted even when an earlier one fails (logged)."""
        if self._closed:
            return
        self._closed = True
        if self._irq_index is not None:
            disable = abi.irq_disable(self._irq_index)
            self._quietly("disable interrupts", self._ioctl, self._device, abi.VFIO_DEVICE_SET_IRQS, disable)
            self._irq_index = None
        for entry in list(self._dma.values()):
            self._quietly("unmap DMA", self._unmap_dma, entry)
            self._release_dma(entry)
        self._bar32 = None
        if self._bar_mem is not None:
            self._sys.munmap(self._bar_mem)
            self._bar_mem = None
        self._eventfds = []
        for role, fd in reversed(self._fds):
            if role == "group" and self._group_attached:
                self._quietly("detach group", self._ioctl, fd, abi.VFIO_GROUP_UNSET_CONTAINER)
            self._quietly(f"close {role} fd", self._sys.close, fd)
        self._fds.clear()
        log_event(_log, logging.INFO, "vfio_closed", bdf=self.bdf)

    def _quietly(self, step: str, action: Callable[..., object], *args: object) -> None:
        try:
            action(*args)
        except (OSError, VfioError) as exc:
            log_event(_log, logging.WARNING, "vfio_close_step_failed", bdf=self.bdf, step=step, error=str(exc))

    def __repr__(self) -> str:
        return f"<VfioTransport {self.description}{' closed' if self._closed else ''}>"
