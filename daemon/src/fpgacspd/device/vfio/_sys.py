"""Every system call the VFIO transport makes, behind one object.

The transport never touches ``os``, ``fcntl`` or ``mmap`` itself: it asks a :class:`Syscalls`. Without a
card and an IOMMU nothing here can run for real, so the tests hand the transport a fake that answers
like a vfio-pci device and records what was asked of it; the sequence is then checked without hardware.
Keep the methods thin: anything clever belongs in the transport, where the fake exercises it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import mmap
import os
import resource
from typing import Any

IoctlArg = int | ctypes.Structure | ctypes.Array[Any]
"""An integer passed by value, or a struct/array the kernel reads and fills in place."""

_CAP_IPC_LOCK = 14  # include/uapi/linux/capability.h


class Syscalls:
    """The real operating system."""

    def open(self, path: str) -> int:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        os.close(fd)

    def ioctl(self, fd: int, request: int, arg: IoctlArg = 0) -> int:
        """The ioctl's return value (a new fd for GET_DEVICE_FD); a struct ``arg`` is updated in place."""
        if isinstance(arg, int):
            return fcntl.ioctl(fd, request, arg)
        return fcntl.ioctl(fd, request, arg, True)

    def mmap_device(self, fd: int, size: int, offset: int) -> mmap.mmap:
        """A shared mapping of a device region (BAR0): loads and stores reach the card."""
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)

    def mmap_anonymous(self, size: int) -> mmap.mmap:
        """Fresh zeroed pages for DMA. MADV_DONTFORK keeps a forked child from sharing (and copy-on-write
        splitting) pages the IOMMU has pinned for this process."""
        mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        mem.madvise(mmap.MADV_DONTFORK)
        return mem

    def munmap(self, mem: mmap.mmap) -> None:
        """Unmap now, or, while a numpy view still exports the buffer, when the last view is dropped."""
        with contextlib.suppress(BufferError):
            mem.close()

    def address_of(self, mem: mmap.mmap) -> int:
        """The virtual address of ``mem``'s first byte: MAP_DMA needs it as ``vaddr``."""
        first = ctypes.c_char.from_buffer(mem)
        try:
            return ctypes.addressof(first)
        finally:
            del first  # release the buffer export, or the mmap could never be closed

    def eventfd(self) -> int:
        return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def memlock_limit(self) -> int | None:
        """RLIMIT_MEMLOCK's soft limit in bytes, None when unlimited: VFIO type1 charges pinned DMA pages
        to it, unless the process holds CAP_IPC_LOCK (see :meth:`can_lock_unlimited`)."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        return None if soft == resource.RLIM_INFINITY else soft

    def can_lock_unlimited(self) -> bool:
        """Whether CAP_IPC_LOCK is effective, in which case the kernel does not enforce RLIMIT_MEMLOCK."""
        try:
            with open("/proc/self/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("CapEff:"):
                        return bool(int(line.split()[1], 16) >> _CAP_IPC_LOCK & 1)
        except OSError:
            pass
        return False

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def page_size(self) -> int:
        return mmap.PAGESIZE
