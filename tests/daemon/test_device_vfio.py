"""The vfio transport without a card: its ABI against the system's <linux/vfio.h>, its setup sequence and
operations against a fake vfio-pci device, and one clear error per host misconfiguration.

(a) A C probe compiled against /usr/include/linux/vfio.h prints every size, offset, constant and ioctl
    number that ``_abi`` restates; each is one parametrized case. No gcc or no header is a failure, not a
    skip: without the probe nothing checks the ABI.
(b) ``FakeSyscalls`` answers ioctls like a well-behaved vfio-pci device (and refuses them in the wrong
    state or on the wrong fd, as the kernel does), so the order of setup, the DMA and interrupt plumbing,
    and the teardown are checked call by call.
(c) ``Card`` describes the host; each misconfiguration test changes one field and checks the message.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import re
import resource
import shutil
import subprocess
import termios
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fpgacspd.device.transport import DmaBuffer, Transport, TransportError, wait_interrupt
from fpgacspd.device.vfio import Syscalls, VfioError, VfioTransport, parse_bdf
from fpgacspd.device.vfio import _abi as abi
from fpgacspd.device.vfio._sys import IoctlArg

BDF = "0000:01:00.0"
GROUP = 12
VFIO_HEADER = Path("/usr/include/linux/vfio.h")

# ---------------------------------------------------------------------------------------------------
# (a) the C probe
# ---------------------------------------------------------------------------------------------------

CONSTANTS = sorted(name for name in dir(abi) if name.startswith("VFIO_") and isinstance(getattr(abi, name), int))
STRUCTS = {s.__name__: s for s in abi.STRUCTS}


def _fields(struct: type[ctypes.Structure]) -> list[tuple[str, Any]]:
    """(name, ctypes type) of each field: the probe needs the names, the signedness check the types."""
    return [(f[0], f[1]) for f in struct._fields_]


def _probe_source() -> str:
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/vfio.h>", "int main(void) {"]
    for name, struct in STRUCTS.items():
        lines.append(f'  printf("sizeof {name} %zu\\n", sizeof(struct {name}));')
        for fname, _ in _fields(struct):
            member = f"((struct {name} *)0)->{fname}"
            lines.append(
                f'  printf("field {name}.{fname} %zu %zu %d\\n", offsetof(struct {name}, {fname}), '
                f"sizeof({member}), (int)((__typeof__({member}))-1 < 0));"
            )
    for name in CONSTANTS:
        lines.append(f'  printf("const {name} %llu\\n", (unsigned long long)({name}));')
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, ...]]:
    """What the C compiler says about the header: ``sizeof S``, ``field S.f`` and ``const C`` rows."""
    gcc = shutil.which("gcc")
    if gcc is None or not VFIO_HEADER.exists():
        pytest.fail(f"the ABI probe needs gcc and {VFIO_HEADER} (gcc={gcc}); install gcc and linux-libc-dev")
    work = tmp_path_factory.mktemp("vfio_probe")
    (work / "probe.c").write_text(_probe_source())
    build = subprocess.run(
        [gcc, "-Wall", "-o", str(work / "probe"), str(work / "probe.c")], capture_output=True, text=True
    )
    assert build.returncode == 0, f"probe did not compile:\n{build.stderr}"
    run = subprocess.run([str(work / "probe")], capture_output=True, text=True, check=True)
    rows: dict[str, tuple[int, ...]] = {}
    for line in run.stdout.splitlines():
        kind, name, *values = line.split()
        rows[f"{kind} {name}"] = tuple(int(v) for v in values)
    return rows


@pytest.mark.parametrize("name", list(STRUCTS))
def test_struct_layout_matches_the_header(probe: dict[str, tuple[int, ...]], name: str) -> None:
    struct = STRUCTS[name]
    assert ctypes.sizeof(struct) == probe[f"sizeof {name}"][0]
    for fname, ftype in _fields(struct):
        desc = getattr(struct, fname)
        signed = int(ftype(-1).value < 0)
        assert (desc.offset, desc.size, signed) == probe[f"field {name}.{fname}"], f"{name}.{fname}"


@pytest.mark.parametrize("name", CONSTANTS)
def test_constant_matches_the_header(probe: dict[str, tuple[int, ...]], name: str) -> None:
    assert getattr(abi, name) == probe[f"const {name}"][0]


def test_the_probe_covers_every_ioctl_the_transport_names() -> None:
    assert set(abi.IOCTL_NAMES.values()) <= set(CONSTANTS)
    assert len(abi.IOCTL_NAMES) == 15  # distinct numbers: a clash would lose one


# ---------------------------------------------------------------------------------------------------
# (b) the fake device
# ---------------------------------------------------------------------------------------------------

RW = abi.VFIO_REGION_INFO_FLAG_READ | abi.VFIO_REGION_INFO_FLAG_WRITE
CONTAINER_IOCTLS = {"GET_API_VERSION", "CHECK_EXTENSION", "SET_IOMMU", "IOMMU_GET_INFO", "IOMMU_MAP_DMA"}
CONTAINER_IOCTLS |= {"IOMMU_UNMAP_DMA"}
GROUP_IOCTLS = {"GROUP_GET_STATUS", "GROUP_SET_CONTAINER", "GROUP_UNSET_CONTAINER", "GROUP_GET_DEVICE_FD"}
ROLE_OF_IOCTL = {f"VFIO_{n}": "container" for n in CONTAINER_IOCTLS} | {f"VFIO_{n}": "group" for n in GROUP_IOCTLS}


@dataclass
class Card:
    """The host and the card as the fake presents them; a test changes one field for one misconfiguration."""

    present: bool = True
    group: int | None = GROUP
    members: dict[str, str | None] = field(default_factory=lambda: {BDF: "vfio-pci"})
    api_version: int = abi.VFIO_API_VERSION
    extensions: frozenset[int] = frozenset({abi.VFIO_TYPE1_IOMMU, abi.VFIO_TYPE1v2_IOMMU})
    viable: bool = True
    device_flags: int = abi.VFIO_DEVICE_FLAGS_PCI | abi.VFIO_DEVICE_FLAGS_RESET
    bar_size: int = 0x10000
    bar_flags: int = RW | abi.VFIO_REGION_INFO_FLAG_MMAP
    bar_offset: int = 0
    msix: int = 8
    msi: int = 1
    iova_pgsizes: int = 0x4020_1000  # 4 KiB, 2 MiB, 1 GiB
    memlock: int | None = 64 << 20
    cap_ipc_lock: bool = False
    open_errors: dict[str, int] = field(default_factory=dict)
    ioctl_errors: dict[str, int] = field(default_factory=dict)

    @property
    def driver(self) -> str | None:
        return self.members.get(BDF)


@dataclass
class IrqSet:
    flags: int
    index: int
    start: int
    count: int
    fds: tuple[int, ...]


class FakeSyscalls(Syscalls):
    """A vfio-pci device and its host, answering by ioctl number and keeping a log of what was done.

    Like the kernel it refuses requests on the wrong kind of fd, in the wrong state (SET_IOMMU before a
    group is attached, UNSET_CONTAINER while the device fd is open), with a wrong argsz, or for DMA that
    overlaps or was never mapped, so a transport that gets the protocol wrong fails here too.
    """

    def __init__(self, card: Card) -> None:
        self.card = card
        self.log: list[str] = []
        self.roles: dict[int, str] = {}  # open fds
        self._next_fd = 1000
        self.attached = False
        self.iommu: int | None = None
        self.mappings: dict[int, tuple[int, int, int]] = {}  # iova -> (vaddr, size, flags)
        self.map_calls: list[tuple[int, int, int, int]] = []  # (vaddr, iova, size, flags)
        self.unmap_calls: list[tuple[int, int]] = []
        self.irq_sets: list[IrqSet] = []
        self.anon: dict[int, int] = {}  # vaddr -> size of the anonymous maps handed out
        self.bar: mmap.mmap | None = None
        self.bar_bytes = bytearray(card.bar_size)

    # -- files --

    def _new_fd(self, role: str) -> int:
        self._next_fd += 1
        self.roles[self._next_fd] = role
        return self._next_fd

    def open(self, path: str) -> int:
        self.log.append(f"open {path}")
        if path in self.card.open_errors:
            code = self.card.open_errors[path]
            raise OSError(code, os.strerror(code), path)
        if path == abi_path("vfio"):
            return self._new_fd("container")
        if path == abi_path(str(self.card.group)) and self.card.group is not None:
            return self._new_fd("group")
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)

    def close(self, fd: int) -> None:
        role = self.roles.pop(fd)  # KeyError: closing an fd twice or one never opened
        self.log.append(f"close {role}")
        if role == "group":
            self.attached = False
        if role == "eventfd":
            os.close(fd)

    def eventfd(self) -> int:
        self.log.append("eventfd")
        fd = super().eventfd()
        self.roles[fd] = "eventfd"
        return fd

    # -- sysfs --

    def exists(self, path: str) -> bool:
        return self.card.present and path == f"/sys/bus/pci/devices/{BDF}"

    def readlink(self, path: str) -> str:
        base = "/sys/bus/pci/devices/"
        if path == f"{base}{BDF}/iommu_group" and self.card.present and self.card.group is not None:
            return f"../../../kernel/iommu_groups/{self.card.group}"
        for bdf, driver in self.card.members.items():
            if path == f"{base}{bdf}/driver" and driver is not None:
                return f"../../../bus/pci/drivers/{driver}"
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)

    def listdir(self, path: str) -> list[str]:
        assert path == f"/sys/kernel/iommu_groups/{self.card.group}/devices"
        return sorted(self.card.members)

    # -- memory --

    def memlock_limit(self) -> int | None:
        return self.card.memlock

    def can_lock_unlimited(self) -> bool:
        return self.card.cap_ipc_lock

    def page_size(self) -> int:
        return 4096

    def mmap_device(self, fd: int, size: int, offset: int) -> mmap.mmap:
        assert self.roles[fd] == "device" and (size, offset) == (self.card.bar_size, self.card.bar_offset)
        self.log.append("mmap_device")
        self.bar = mmap.mmap(-1, size)
        return self.bar

    def mmap_anonymous(self, size: int) -> mmap.mmap:
        self.log.append("mmap_anonymous")
        mem = super().mmap_anonymous(size)
        self.anon[super().address_of(mem)] = size
        return mem

    def address_of(self, mem: mmap.mmap) -> int:
        return super().address_of(mem)

    def munmap(self, mem: mmap.mmap) -> None:
        self.log.append("munmap bar" if mem is self.bar else "munmap dma")
        if mem is not self.bar:
            del self.anon[super().address_of(mem)]
        super().munmap(mem)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        self.log.append(f"pread {size}@{offset:#x}")
        start = offset - self.card.bar_offset
        assert self.roles[fd] == "device" and 0 <= start <= len(self.bar_bytes) - size
        return bytes(self.bar_bytes[start : start + size])

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self.log.append(f"pwrite {len(data)}@{offset:#x}")
        start = offset - self.card.bar_offset
        assert self.roles[fd] == "device" and 0 <= start <= len(self.bar_bytes) - len(data)
        self.bar_bytes[start : start + len(data)] = data
        return len(data)

    # -- ioctls --

    def ioctl(self, fd: int, request: int, arg: IoctlArg = 0) -> int:
        name = abi.IOCTL_NAMES[request]
        self.log.append(f"ioctl {name}")
        if self.roles.get(fd) != ROLE_OF_IOCTL.get(name, "device"):
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        if name in self.card.ioctl_errors:
            code = self.card.ioctl_errors[name]
            raise OSError(code, os.strerror(code))
        if isinstance(arg, ctypes.Structure) and type(arg) in abi.STRUCTS:
            assert arg.argsz == ctypes.sizeof(arg), f"{name}: argsz {arg.argsz}"
        handler = getattr(self, "_" + name.removeprefix("VFIO_").lower())
        result: int = handler(arg)
        return result

    def _get_api_version(self, arg: IoctlArg) -> int:
        return self.card.api_version

    def _check_extension(self, arg: IoctlArg) -> int:
        return int(arg in self.card.extensions)

    def _group_get_status(self, arg: Any) -> int:
        arg.flags = (abi.VFIO_GROUP_FLAGS_VIABLE if self.card.viable else 0) | (
            abi.VFIO_GROUP_FLAGS_CONTAINER_SET if self.attached else 0
        )
        return 0

    def _group_set_container(self, arg: Any) -> int:
        assert self.roles[arg[0]] == "container" and self.card.viable
        self.attached = True
        return 0

    def _set_iommu(self, arg: IoctlArg) -> int:
        if not self.attached or arg not in self.card.extensions:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        assert isinstance(arg, int)
        self.iommu = arg
        return 0

    def _iommu_get_info(self, arg: Any) -> int:
        assert self.iommu is not None
        arg.flags, arg.iova_pgsizes = abi.VFIO_IOMMU_INFO_PGSIZES, self.card.iova_pgsizes
        return 0

    def _group_get_device_fd(self, arg: Any) -> int:
        assert self.iommu is not None and arg.value == BDF.encode()
        return self._new_fd("device")

    def _group_unset_container(self, arg: IoctlArg) -> int:
        if "device" in self.roles.values():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        self.attached, self.iommu = False, None
        return 0

    def _device_get_info(self, arg: Any) -> int:
        arg.flags, arg.num_regions, arg.num_irqs = self.card.device_flags, 9, 5
        return 0

    def _device_get_region_info(self, arg: Any) -> int:
        assert arg.index == abi.VFIO_PCI_BAR0_REGION_INDEX
        arg.flags, arg.size, arg.offset = self.card.bar_flags, self.card.bar_size, self.card.bar_offset
        return 0

    def _device_get_irq_info(self, arg: Any) -> int:
        counts = {abi.VFIO_PCI_MSI_IRQ_INDEX: self.card.msi, abi.VFIO_PCI_MSIX_IRQ_INDEX: self.card.msix}
        arg.flags, arg.count = abi.VFIO_IRQ_INFO_EVENTFD, counts[arg.index]
        return 0

    def _device_set_irqs(self, arg: Any) -> int:
        raw = bytes(arg)
        hdr = abi.vfio_irq_set.from_buffer_copy(raw)
        assert hdr.argsz == len(raw) == ctypes.sizeof(hdr) + 4 * hdr.count * bool(hdr.flags & 4)
        fds = tuple(np.frombuffer(raw[ctypes.sizeof(hdr) :], dtype="<i4").tolist())
        self.irq_sets.append(IrqSet(int(hdr.flags), int(hdr.index), int(hdr.start), int(hdr.count), fds))
        return 0

    def _device_reset(self, arg: IoctlArg) -> int:
        return 0

    def _iommu_map_dma(self, arg: Any) -> int:
        vaddr, iova, size, flags = int(arg.vaddr), int(arg.iova), int(arg.size), int(arg.flags)
        assert self.iommu is not None and self.anon.get(vaddr) == size
        if any(iova < i + s and i < iova + size for i, (_, s, _) in self.mappings.items()):
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        self.map_calls.append((vaddr, iova, size, flags))
        self.mappings[iova] = (vaddr, size, flags)
        return 0

    def _iommu_unmap_dma(self, arg: Any) -> int:
        self.unmap_calls.append((int(arg.iova), int(arg.size)))
        _, size, _ = self.mappings.pop(int(arg.iova))
        arg.size = size
        return 0


def abi_path(leaf: str) -> str:
    return f"/dev/vfio/{leaf}"


@pytest.fixture
def card() -> Card:
    return Card()


@pytest.fixture
def fake(card: Card) -> Iterator[FakeSyscalls]:
    sys = FakeSyscalls(card)
    yield sys
    for fd, role in list(sys.roles.items()):  # a failed test must not leak real eventfds
        if role == "eventfd":
            os.close(fd)


@pytest.fixture
def vfio(fake: FakeSyscalls) -> Iterator[VfioTransport]:
    transport = VfioTransport.open(BDF, sys=fake)
    yield transport
    transport.close()


SETUP = [
    "open /dev/vfio/vfio",
    "ioctl VFIO_GET_API_VERSION",
    "ioctl VFIO_CHECK_EXTENSION",
    f"open /dev/vfio/{GROUP}",
    "ioctl VFIO_GROUP_GET_STATUS",
    "ioctl VFIO_GROUP_SET_CONTAINER",
    "ioctl VFIO_SET_IOMMU",
    "ioctl VFIO_IOMMU_GET_INFO",
    "ioctl VFIO_GROUP_GET_DEVICE_FD",
    "ioctl VFIO_DEVICE_GET_INFO",
    "ioctl VFIO_DEVICE_GET_REGION_INFO",
    "mmap_device",
    "ioctl VFIO_DEVICE_GET_IRQ_INFO",
    "eventfd",
    "eventfd",
    "ioctl VFIO_DEVICE_SET_IRQS",
]


def test_setup_issues_the_kernel_sequence_in_order(vfio: VfioTransport, fake: FakeSyscalls) -> None:
    assert fake.log == SETUP
    assert fake.iommu == abi.VFIO_TYPE1v2_IOMMU and fake.attached
    assert vfio.name == "vfio"
    assert vfio.description == f"vfio-pci {BDF} (iommu group {GROUP})"
    assert sorted(fake.roles.values()) == ["container", "device", "eventfd", "eventfd", "group"]


def test_type1_is_the_fallback_when_type1v2_is_missing(card: Card, fake: FakeSyscalls) -> None:
    card.extensions = frozenset({abi.VFIO_TYPE1_IOMMU})
    VfioTransport.open(BDF, sys=fake).close()
    assert fake.log[1:4] == ["ioctl VFIO_GET_API_VERSION", "ioctl VFIO_CHECK_EXTENSION", "ioctl VFIO_CHECK_EXTENSION"]
    assert "ioctl VFIO_SET_IOMMU" in fake.log


def test_a_short_address_gets_domain_0000(fake: FakeSyscalls) -> None:
    transport = VfioTransport.open("01:00.0", sys=fake)
    assert transport.bdf == BDF and parse_bdf("0000:0A:1f.7") == "0000:0a:1f.7"
    transport.close()


def test_it_is_a_transport(vfio: VfioTransport) -> None:
    transport: Transport = vfio  # mypy checks the protocol here
    assert transport.name == "vfio" and issubclass(VfioError, TransportError)


def test_registers_round_trip_through_the_bar_mapping(vfio: VfioTransport, fake: FakeSyscalls) -> None:
    vfio.write32(0x10, 0xDEADBEEF)
    vfio.write32(0xFFFC, 0x0123_4567)
    assert fake.bar is not None
    assert fake.bar[0x10:0x14] == bytes.fromhex("efbeadde")  # little-endian, at the offset
    assert fake.bar[0xFFFC:0x10000] == (0x0123_4567).to_bytes(4, "little")
    fake.bar[0x20:0x24] = (0xCAFEF00D).to_bytes(4, "little")  # "the device" writes a register
    assert (vfio.read32(0x10), vfio.read32(0x20), vfio.read32(0x14)) == (0xDEADBEEF, 0xCAFEF00D, 0)


def test_registers_go_through_pread_pwrite_without_mmap(card: Card, fake: FakeSyscalls) -> None:
    card.bar_flags, card.bar_offset = RW, 0x40000
    transport = VfioTransport.open(BDF, sys=fake)
    transport.write32(0x10, 0xDEADBEEF)
    fake.bar_bytes[0x20:0x24] = (7).to_bytes(4, "little")
    assert transport.read32(0x20) == 7
    assert fake.bar_bytes[0x10:0x14] == bytes.fromhex("efbeadde")
    assert "mmap_device" not in fake.log
    assert [e for e in fake.log if e.startswith(("pread", "pwrite"))] == ["pwrite 4@0x40010", "pread 4@0x40020"]
    transport.close()


@pytest.mark.parametrize("offset", [2, 0x13, -4, 0x10000, 0xFFFE, 0x20000])
def test_a_misaligned_or_out_of_range_register_offset_is_refused(vfio: VfioTransport, offset: int) -> None:
    for access in (lambda: vfio.read32(offset), lambda: vfio.write32(offset, 1)):
        with pytest.raises(VfioError, match="not a 4-byte aligned offset inside BAR0") as info:
            access()
        assert BDF in str(info.value) and "0xfffc" in str(info.value)


def test_a_value_wider_than_32_bits_is_refused(vfio: VfioTransport) -> None:
    with pytest.raises(VfioError, match="not a 32-bit unsigned"):
        vfio.write32(0, 1 << 32)


def test_alloc_dma_pins_and_maps_page_rounded_zeroed_memory(vfio: VfioTransport, fake: FakeSyscalls) -> None:
    buf = vfio.alloc_dma(5000)
    assert isinstance(buf, DmaBuffer) and buf.size == 8192 and buf.iova == 0x1_0000_0000
    assert buf.data.dtype == np.uint8 and not buf.data.any()
    flags = abi.VFIO_DMA_MAP_FLAG_READ | abi.VFIO_DMA_MAP_FLAG_WRITE
    assert fake.map_calls == [(buf.data.ctypes.data, 0x1_0000_0000, 8192, flags)]
    buf.data[:4] = [1, 2, 3, 4]  # the host's view is the mapped memory itself
    assert ctypes.string_at(fake.map_calls[0][0], 4) == b"\x01\x02\x03\x04"
    second = vfio.alloc_dma(1)
    assert second.iova == 0x1_0000_2000 and second.size == 4096


def test_dma_is_aligned_to_the_smallest_iommu_page(card: Card, fake: FakeSyscalls) -> None:
    card.iova_pgsizes = 0x1_0000 | 0x20_0000  # 64 KiB IOMMU pages
    transport = VfioTransport.open(BDF, sys=fake, dma_iova_base=0x1000)
    first, second = transport.alloc_dma(100), transport.alloc_dma(100)
    assert (first.iova, first.size, second.iova) == (0x1_0000, 0x1_0000, 0x2_0000)
    transport.close()


def test_free_dma_unmaps_then_releases(vfio: VfioTransport, fake: FakeSyscalls) -> None:
    buf = vfio.alloc_dma(4096)
    fake.log.clear()
    vfio.free_dma(buf)
    assert fake.unmap_calls == [(0x1_0000_0000, 4096)] and not fake.mappings
    assert fake.log == ["ioctl VFIO_IOMMU_UNMAP_DMA", "munmap dma"]
    assert buf.size == 0 and buf.handle is None  # a use after free cannot reach the old pages
    with pytest.raises(VfioError, match="no live DMA buffer at iova 0x100000000"):
        vfio.free_dma(buf)


def test_freed_iova_ranges_are_reused(vfio: VfioTransport) -> None:
    a, b = vfio.alloc_dma(8192), vfio.alloc_dma(4096)
    vfio.free_dma(a)
    c = vfio.alloc_dma(4096)
    assert c.iova == 0x1_0000_0000  # first fit in the freed range
    d = vfio.alloc_dma(4096)
    assert d.iova == 0x1_0000_1000
    for buf in (b, c, d):
        vfio.free_dma(buf)
    assert vfio.alloc_dma(3 * 4096).iova == 0x1_0000_0000  # all coalesced back


def test_interrupts_are_wired_to_nonblocking_eventfds(vfio: VfioTransport, fake: FakeSyscalls) -> None:
    fds = vfio.irq_fds()
    assert len(fds) == 2 and all(fake.roles[fd] == "eventfd" for fd in fds)
    flags = abi.VFIO_IRQ_SET_DATA_EVENTFD | abi.VFIO_IRQ_SET_ACTION_TRIGGER
    assert fake.irq_sets == [IrqSet(flags, abi.VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, fds)]
    assert not any(os.get_blocking(fd) or os.get_inheritable(fd) for fd in fds)
    os.eventfd_write(fds[1], 1)  # the kernel signals vector 1 (error)
    assert wait_interrupt(fds, 1.0) == (1,)
    assert wait_interrupt(fds, 0.0) == ()


def test_msi_is_the_fallback_when_msix_has_too_few_vectors(card: Card, fake: FakeSyscalls) -> None:
    card.msix, card.msi = 0, 4
    transport = VfioTransport.open(BDF, sys=fake, irq_vectors=3)
    assert fake.log.count("ioctl VFIO_DEVICE_GET_IRQ_INFO") == 2
    assert fake.irq_sets[0].index == abi.VFIO_PCI_MSI_IRQ_INDEX and len(fake.irq_sets[0].fds) == 3
    transport.close()


def test_no_vectors_means_no_interrupt_setup(fake: FakeSyscalls) -> None:
    transport = VfioTransport.open(BDF, sys=fake, irq_vectors=0)
    assert transport.irq_fds() == () and fake.log == SETUP[:12]
    transport.close()
    assert "ioctl VFIO_DEVICE_SET_IRQS" not in fake.log


def test_function_reset_issues_device_reset(vfio: VfioTransport, fake: FakeSyscalls) -> None:
    vfio.function_reset()
    assert fake.log[-1] == "ioctl VFIO_DEVICE_RESET"


def test_function_reset_without_reset_support_is_refused(card: Card, fake: FakeSyscalls) -> None:
    card.device_flags = abi.VFIO_DEVICE_FLAGS_PCI
    transport = VfioTransport.open(BDF, sys=fake)
    with pytest.raises(VfioError, match="offers no reset"):
        transport.function_reset()
    assert "ioctl VFIO_DEVICE_RESET" not in fake.log
    transport.close()


TEARDOWN = [
    "ioctl VFIO_DEVICE_SET_IRQS",
    "ioctl VFIO_IOMMU_UNMAP_DMA",
    "munmap dma",
    "munmap bar",
    "close eventfd",
    "close eventfd",
    "close device",
    "ioctl VFIO_GROUP_UNSET_CONTAINER",
    "close group",
    "close container",
]


def test_close_undoes_everything_in_reverse_and_is_idempotent(vfio: VfioTransport, fake: FakeSyscalls) -> None:
    buf = vfio.alloc_dma(4096)
    fake.log.clear()
    vfio.close()
    assert fake.log == TEARDOWN
    disable = abi.VFIO_IRQ_SET_DATA_NONE | abi.VFIO_IRQ_SET_ACTION_TRIGGER
    assert fake.irq_sets[-1] == IrqSet(disable, abi.VFIO_PCI_MSIX_IRQ_INDEX, 0, 0, ())
    assert fake.unmap_calls == [(buf.iova, 4096)]
    assert not fake.roles and not fake.mappings and not fake.anon and not fake.attached
    vfio.close()
    assert fake.log == TEARDOWN
    assert vfio.irq_fds() == ()


@pytest.mark.parametrize(
    "use",
    [
        lambda t: t.read32(0),
        lambda t: t.write32(0, 0),
        lambda t: t.alloc_dma(4096),
        lambda t: t.function_reset(),
    ],
)
def test_a_closed_transport_refuses_work(vfio: VfioTransport, use: Any) -> None:
    vfio.close()
    with pytest.raises(VfioError, match=f"vfio {BDF}: .*the transport is closed"):
        use(vfio)


def test_a_failed_setup_releases_what_it_took(card: Card, fake: FakeSyscalls) -> None:
    card.ioctl_errors["VFIO_DEVICE_SET_IRQS"] = errno.EINVAL
    with pytest.raises(VfioError, match="VFIO_DEVICE_SET_IRQS: failed with EINVAL"):
        VfioTransport.open(BDF, sys=fake)
    assert not fake.roles and not fake.attached
    assert fake.log[-7:] == TEARDOWN[-7:]  # from the BAR on: no DMA was mapped, no interrupt enabled


def test_the_fake_overrides_every_system_call() -> None:
    public = {n for n in vars(Syscalls) if not n.startswith("_")}
    assert public and public <= set(vars(FakeSyscalls))


# ---------------------------------------------------------------------------------------------------
# (c) one clear error per misconfiguration
# ---------------------------------------------------------------------------------------------------


def open_fails(fake: FakeSyscalls, *fragments: str, bdf: str = BDF, **kwargs: Any) -> str:
    """Open must fail with a message naming the address and every fragment, leaving nothing open."""
    with pytest.raises(VfioError) as info:
        VfioTransport.open(bdf, sys=fake, **kwargs)
    message = str(info.value)
    for fragment in (f"vfio {parse_bdf(bdf)}: ", *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert not fake.roles, f"left open: {fake.roles}"
    return message


def test_missing_dev_vfio_says_vfio_is_not_available(card: Card, fake: FakeSyscalls) -> None:
    card.open_errors["/dev/vfio/vfio"] = errno.ENOENT
    open_fails(fake, "VFIO is not available", "modprobe vfio-pci", "intel_iommu=on", "amd_iommu=on")


def test_an_api_version_mismatch_is_refused(card: Card, fake: FakeSyscalls) -> None:
    card.api_version = 1
    open_fails(fake, "VFIO_GET_API_VERSION", "the kernel speaks VFIO API 1")


def test_no_type1_extension_says_no_iommu(card: Card, fake: FakeSyscalls) -> None:
    card.extensions = frozenset()
    open_fails(fake, "VFIO_CHECK_EXTENSION", "no IOMMU", "intel_iommu=on")


def test_a_missing_pci_device_is_named(card: Card, fake: FakeSyscalls) -> None:
    card.present = False
    open_fails(fake, f"no PCI device {BDF}", "lspci -D")


def test_no_iommu_group_link_says_the_iommu_is_off(card: Card, fake: FakeSyscalls) -> None:
    card.group = None
    open_fails(fake, "no IOMMU group: the IOMMU is off", "iommu_group is missing", "VT-d")


def test_a_device_bound_to_another_driver_is_named(card: Card, fake: FakeSyscalls) -> None:
    card.members[BDF] = "nvme"
    open_fails(fake, "bound to driver 'nvme', not vfio-pci", f"deploy/vfio/bind-vfio.sh {BDF}")


def test_a_device_bound_to_no_driver_is_named(card: Card, fake: FakeSyscalls) -> None:
    card.members[BDF] = None
    open_fails(fake, "bound to no driver, not vfio-pci", f"deploy/vfio/bind-vfio.sh {BDF}")


def test_a_group_that_is_not_viable_lists_its_members(card: Card, fake: FakeSyscalls) -> None:
    card.viable = False
    card.members["0000:01:00.1"] = "nvme"
    card.members["0000:01:00.2"] = None
    open_fails(
        fake,
        f"every device of iommu group {GROUP} must be bound to vfio-pci or unbound",
        f"/sys/kernel/iommu_groups/{GROUP}/devices",
        f"{BDF} (vfio-pci), 0000:01:00.1 (nvme), 0000:01:00.2 (no driver)",
    )


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
def test_no_permission_on_the_group_file_says_how_to_grant_it(card: Card, fake: FakeSyscalls, code: int) -> None:
    card.open_errors[f"/dev/vfio/{GROUP}"] = code
    open_fails(fake, f"open /dev/vfio/{GROUP}", f"Permission denied on /dev/vfio/{GROUP}", "root", "deploy/vfio/")


def test_a_group_open_elsewhere_is_named(card: Card, fake: FakeSyscalls) -> None:
    card.open_errors[f"/dev/vfio/{GROUP}"] = errno.EBUSY
    open_fails(fake, "EBUSY", f"Group {GROUP} is open in another process")


def test_a_device_in_use_is_named(card: Card, fake: FakeSyscalls) -> None:
    card.ioctl_errors["VFIO_GROUP_GET_DEVICE_FD"] = errno.EBUSY
    open_fails(fake, "VFIO_GROUP_GET_DEVICE_FD: failed with EBUSY", "Another process")


def test_a_non_pci_device_is_refused(card: Card, fake: FakeSyscalls) -> None:
    card.device_flags = 0
    open_fails(fake, "not a vfio-pci device")


def test_a_too_small_bar0_is_refused(card: Card, fake: FakeSyscalls) -> None:
    card.bar_size = 1024
    open_fails(fake, "BAR0 is 1024 bytes", "at least 4096 bytes")


def test_a_bar0_that_is_not_writable_is_refused(card: Card, fake: FakeSyscalls) -> None:
    card.bar_flags = abi.VFIO_REGION_INFO_FLAG_READ
    open_fails(fake, "readable and writable BAR0")


def test_too_few_interrupt_vectors_are_named(card: Card, fake: FakeSyscalls) -> None:
    card.msix, card.msi = 1, 1
    open_fails(fake, "too few interrupt vectors: the driver needs 2", "MSI-X 1, MSI 1", "MSI-X")


@pytest.mark.parametrize("bad", ["", "01:00", "0000:01:00", "0000:01:20.0", "0000:01:00.8", "zz:00.0", "1:00.0"])
def test_a_malformed_pci_address_is_refused(fake: FakeSyscalls, bad: str) -> None:
    with pytest.raises(VfioError, match=re.escape("not of the form domain:bus:device.function")) as info:
        VfioTransport.open(bad, sys=fake)
    assert repr(bad) in str(info.value) and not fake.log


def test_memlock_too_low_for_alloc_dma_says_how_to_raise_it(card: Card, fake: FakeSyscalls) -> None:
    card.memlock = 3 * 4096
    transport = VfioTransport.open(BDF, sys=fake)
    transport.alloc_dma(8192)
    fake.log.clear()
    with pytest.raises(VfioError) as info:
        transport.alloc_dma(8192)
    message = str(info.value)
    for fragment in (BDF, "RLIMIT_MEMLOCK is 12288 bytes", "need 16384 bytes", "LimitMEMLOCK=", "ulimit -l"):
        assert fragment in message
    assert fake.log == []  # refused before any memory was taken
    transport.close()


def test_cap_ipc_lock_lifts_the_memlock_check(card: Card, fake: FakeSyscalls) -> None:
    card.memlock, card.cap_ipc_lock = 4096, True
    transport = VfioTransport.open(BDF, sys=fake)
    assert transport.alloc_dma(1 << 20).size == 1 << 20
    transport.close()


def test_map_dma_enomem_is_translated(card: Card, fake: FakeSyscalls) -> None:
    card.ioctl_errors["VFIO_IOMMU_MAP_DMA"] = errno.ENOMEM
    transport = VfioTransport.open(BDF, sys=fake)
    with pytest.raises(VfioError, match=r"VFIO_IOMMU_MAP_DMA: failed with ENOMEM.*LimitMEMLOCK"):
        transport.alloc_dma(4096)
    assert not fake.anon  # the memory went back
    del card.ioctl_errors["VFIO_IOMMU_MAP_DMA"]
    assert transport.alloc_dma(4096).iova == 0x1_0000_0000  # and so did the iova
    transport.close()


# ---------------------------------------------------------------------------------------------------
# the real Syscalls, where this machine can run them
# ---------------------------------------------------------------------------------------------------


def test_real_ioctl_fills_a_buffer_and_passes_an_integer() -> None:
    sys = Syscalls()
    r, w = os.pipe()
    try:
        os.write(w, b"12345")
        count = (ctypes.c_int * 1)(-1)
        assert sys.ioctl(r, termios.FIONREAD, count) == 0 and count[0] == 5
        os.set_inheritable(r, True)
        sys.ioctl(r, termios.FIOCLEX)
        assert not os.get_inheritable(r)
        with pytest.raises(OSError) as info:
            sys.ioctl(r, abi.VFIO_GET_API_VERSION)
        assert info.value.errno == errno.ENOTTY
    finally:
        os.close(r)
        os.close(w)


def test_real_anonymous_memory_address_and_release() -> None:
    sys = Syscalls()
    mem = sys.mmap_anonymous(8192)
    view = np.frombuffer(mem, dtype=np.uint8)
    assert sys.address_of(mem) == view.ctypes.data and len(mem) == 8192 and not view.any()
    sys.munmap(mem)  # deferred: the view still exports the buffer
    assert not mem.closed
    del view
    sys.munmap(mem)
    assert mem.closed


def test_real_device_mapping_and_positional_io(tmp_path: Path) -> None:
    sys = Syscalls()
    path = tmp_path / "bar"
    path.write_bytes(bytes(8192))
    fd = sys.open(str(path))
    try:
        assert sys.pwrite(fd, b"\x01\x02\x03\x04", 4096) == 4
        bar = sys.mmap_device(fd, 4096, 4096)
        assert bar[:4] == b"\x01\x02\x03\x04"
        bar[4:8] = b"\xaa\xbb\xcc\xdd"
        assert sys.pread(fd, 4, 4100) == b"\xaa\xbb\xcc\xdd"
        sys.munmap(bar)
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        sys.close(fd)


def test_real_sysfs_and_limits(tmp_path: Path) -> None:
    sys = Syscalls()
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "b").touch()
    (tmp_path / "devices" / "a").touch()
    os.symlink("../../kernel/iommu_groups/7", tmp_path / "iommu_group")
    assert sys.exists(str(tmp_path / "devices")) and not sys.exists(str(tmp_path / "nope"))
    assert sys.listdir(str(tmp_path / "devices")) == ["a", "b"]
    assert os.path.basename(sys.readlink(str(tmp_path / "iommu_group"))) == "7"
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    assert sys.memlock_limit() == (None if soft == resource.RLIM_INFINITY else soft)
    assert sys.page_size() == mmap.PAGESIZE
    assert isinstance(sys.can_lock_unlimited(), bool)
    status = Path("/proc/self/status").read_text()
    cap_eff = re.search(r"CapEff:\s*([0-9a-f]+)", status)
    assert cap_eff is not None
    assert sys.can_lock_unlimited() == bool(int(cap_eff[1], 16) >> 14 & 1)
