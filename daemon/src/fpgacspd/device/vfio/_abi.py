"""The slice of ``<linux/vfio.h>`` this transport uses, as ctypes.

Python has no binding for VFIO, so the structs and ioctl numbers are restated here. A restatement can
drift from the header it copies; ``tests/daemon/test_device_vfio.py`` compiles a C probe against the
system's ``linux/vfio.h`` and compares every size, offset, constant and ioctl number with this module.
Names are the kernel's, so the header is the documentation.
"""

from __future__ import annotations

import ctypes
import platform
from typing import TypeVar

# ---- ioctl number encoding (include/uapi/asm-generic/ioctl.h; powerpc, mips and sparc differ) ----

_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_ALT_IOC_ARCH = platform.machine().startswith(("ppc", "powerpc", "mips", "sparc"))
_IOC_SIZEBITS = 13 if _ALT_IOC_ARCH else 14
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE = 1 if _ALT_IOC_ARCH else 0


def _IOC(direction: int, type_: int, nr: int, size: int) -> int:  # noqa: N802 - the kernel's macro name
    return (direction << _IOC_DIRSHIFT) | (type_ << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def _IO(type_: int, nr: int) -> int:  # noqa: N802 - the kernel's macro name
    """VFIO encodes every ioctl with ``_IO`` (no size, no direction); the argsz field carries the size."""
    return _IOC(_IOC_NONE, type_, nr, 0)


# ---- constants ----

VFIO_API_VERSION = 0
VFIO_TYPE = ord(";")
VFIO_BASE = 100

VFIO_TYPE1_IOMMU = 1
VFIO_TYPE1v2_IOMMU = 3

VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1

VFIO_DEVICE_FLAGS_RESET = 1 << 0
VFIO_DEVICE_FLAGS_PCI = 1 << 1

VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_REGION_INFO_FLAG_CAPS = 1 << 3

VFIO_IRQ_INFO_EVENTFD = 1 << 0

VFIO_IRQ_SET_DATA_NONE = 1 << 0
VFIO_IRQ_SET_DATA_BOOL = 1 << 1
VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2
VFIO_IRQ_SET_ACTION_MASK = 1 << 3
VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4
VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5

VFIO_IOMMU_INFO_PGSIZES = 1 << 0

VFIO_DMA_MAP_FLAG_READ = 1 << 0
VFIO_DMA_MAP_FLAG_WRITE = 1 << 1

# vfio-pci's fixed region and irq indexes (anonymous enums in the header)
VFIO_PCI_BAR0_REGION_INDEX = 0
VFIO_PCI_CONFIG_REGION_INDEX = 7
VFIO_PCI_INTX_IRQ_INDEX = 0
VFIO_PCI_MSI_IRQ_INDEX = 1
VFIO_PCI_MSIX_IRQ_INDEX = 2

# ---- ioctls ----

VFIO_GET_API_VERSION = _IO(VFIO_TYPE, VFIO_BASE + 0)
VFIO_CHECK_EXTENSION = _IO(VFIO_TYPE, VFIO_BASE + 1)
VFIO_SET_IOMMU = _IO(VFIO_TYPE, VFIO_BASE + 2)
VFIO_GROUP_GET_STATUS = _IO(VFIO_TYPE, VFIO_BASE + 3)
VFIO_GROUP_SET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 4)
VFIO_GROUP_UNSET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 5)
VFIO_GROUP_GET_DEVICE_FD = _IO(VFIO_TYPE, VFIO_BASE + 6)
VFIO_DEVICE_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 7)
VFIO_DEVICE_GET_REGION_INFO = _IO(VFIO_TYPE, VFIO_BASE + 8)
VFIO_DEVICE_GET_IRQ_INFO = _IO(VFIO_TYPE, VFIO_BASE + 9)
VFIO_DEVICE_SET_IRQS = _IO(VFIO_TYPE, VFIO_BASE + 10)
VFIO_DEVICE_RESET = _IO(VFIO_TYPE, VFIO_BASE + 11)
VFIO_IOMMU_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12)
VFIO_IOMMU_MAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 13)
VFIO_IOMMU_UNMAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 14)

IOCTL_NAMES: dict[int, str] = {
    VFIO_GET_API_VERSION: "VFIO_GET_API_VERSION",
    VFIO_CHECK_EXTENSION: "VFIO_CHECK_EXTENSION",
    VFIO_SET_IOMMU: "VFIO_SET_IOMMU",
    VFIO_GROUP_GET_STATUS: "VFIO_GROUP_GET_STATUS",
    VFIO_GROUP_SET_CONTAINER: "VFIO_GROUP_SET_CONTAINER",
    VFIO_GROUP_UNSET_CONTAINER: "VFIO_GROUP_UNSET_CONTAINER",
    VFIO_GROUP_GET_DEVICE_FD: "VFIO_GROUP_GET_DEVICE_FD",
    VFIO_DEVICE_GET_INFO: "VFIO_DEVICE_GET_INFO",
    VFIO_DEVICE_GET_REGION_INFO: "VFIO_DEVICE_GET_REGION_INFO",
    VFIO_DEVICE_GET_IRQ_INFO: "VFIO_DEVICE_GET_IRQ_INFO",
    VFIO_DEVICE_SET_IRQS: "VFIO_DEVICE_SET_IRQS",
    VFIO_DEVICE_RESET: "VFIO_DEVICE_RESET",
    VFIO_IOMMU_GET_INFO: "VFIO_IOMMU_GET_INFO",
    VFIO_IOMMU_MAP_DMA: "VFIO_IOMMU_MAP_DMA",
    VFIO_IOMMU_UNMAP_DMA: "VFIO_IOMMU_UNMAP_DMA",
}
"""Request number -> name: messages and the tests' call records name ioctls, not numbers."""

# ---- structs ----

_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64


class vfio_info_cap_header(ctypes.Structure):  # noqa: N801 - the kernel's struct names
    _fields_ = [("id", _u16), ("version", _u16), ("next", _u32)]


class vfio_group_status(ctypes.Structure):  # noqa: N801
    _fields_ = [("argsz", _u32), ("flags", _u32)]


class vfio_device_info(ctypes.Structure):  # noqa: N801
    _fields_ = [
        ("argsz", _u32),
        ("flags", _u32),
        ("num_regions", _u32),
        ("num_irqs", _u32),
        ("cap_offset", _u32),
    ]


class vfio_region_info(ctypes.Structure):  # noqa: N801
    _fields_ = [
        ("argsz", _u32),
        ("flags", _u32),
        ("index", _u32),
        ("cap_offset", _u32),
        ("size", _u64),
        ("offset", _u64),
    ]


class vfio_irq_info(ctypes.Structure):  # noqa: N801
    _fields_ = [("argsz", _u32), ("flags", _u32), ("index", _u32), ("count", _u32)]


class vfio_irq_set(ctypes.Structure):  # noqa: N801
    """The fixed header; ``data[]`` follows it (see :func:`irq_set_eventfds`)."""

    _fields_ = [("argsz", _u32), ("flags", _u32), ("index", _u32), ("start", _u32), ("count", _u32)]


class vfio_iommu_type1_info(ctypes.Structure):  # noqa: N801
    _fields_ = [("argsz", _u32), ("flags", _u32), ("iova_pgsizes", _u64), ("cap_offset", _u32)]


class vfio_iommu_type1_dma_map(ctypes.Structure):  # noqa: N801
    _fields_ = [("argsz", _u32), ("flags", _u32), ("vaddr", _u64), ("iova", _u64), ("size", _u64)]


class vfio_iommu_type1_dma_unmap(ctypes.Structure):  # noqa: N801
    _fields_ = [("argsz", _u32), ("flags", _u32), ("iova", _u64), ("size", _u64)]


S = TypeVar("S", bound=ctypes.Structure)

STRUCTS: tuple[type[ctypes.Structure], ...] = (
    vfio_info_cap_header,
    vfio_group_status,
    vfio_device_info,
    vfio_region_info,
    vfio_irq_info,
    vfio_irq_set,
    vfio_iommu_type1_info,
    vfio_iommu_type1_dma_map,
    vfio_iommu_type1_dma_unmap,
)


def with_argsz(struct_type: type[S], **fields: int) -> S:
    """A struct with ``argsz`` set to its size, as every VFIO info/map call requires."""
    return struct_type(argsz=ctypes.sizeof(struct_type), **fields)


def irq_set_eventfds(index: int, fds: tuple[int, ...]) -> ctypes.Structure:
    """``vfio_irq_set`` followed by ``__s32 data[len(fds)]``: DATA_EVENTFD|ACTION_TRIGGER for vectors 0.."""

    class _IrqSetEventfds(ctypes.Structure):
        _fields_ = [("hdr", vfio_irq_set), ("data", ctypes.c_int32 * len(fds))]

    arg = _IrqSetEventfds()
    arg.hdr = vfio_irq_set(
        argsz=ctypes.sizeof(_IrqSetEventfds),
        flags=VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        index=index,
        start=0,
        count=len(fds),
    )
    arg.data[:] = fds
    return arg


def irq_disable(index: int) -> vfio_irq_set:
    """DATA_NONE|ACTION_TRIGGER with count 0: the header's documented way to disable a whole index."""
    return with_argsz(
        vfio_irq_set, flags=VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index=index, start=0, count=0
    )
