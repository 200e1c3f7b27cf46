"""The device layer: the Device interface, the register-level driver and its transports.

``make_device`` builds what ``[device]`` in the config asks for: the register-level driver over the
``sim`` transport (the simulated card, default), the ``vfio`` transport (a real card) or the ``rtl`` transport (the
card's RTL in Verilator).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Device, DeviceInfo, DeviceState
from .driver import DeviceDead, DeviceFault, DriverTimeouts
from .register_device import DeviceEvents, RegisterDevice
from .transport import Transport, TransportError
from .worker import DeviceWorker

if TYPE_CHECKING:
    from ..config import DeviceConfig

__all__ = [
    "Device",
    "DeviceDead",
    "DeviceEvents",
    "DeviceFault",
    "DeviceInfo",
    "DeviceState",
    "DeviceWorker",
    "DriverTimeouts",
    "RegisterDevice",
    "Transport",
    "TransportError",
    "make_device",
    "make_transport",
]


def make_transport(config: DeviceConfig) -> Transport:
    if config.backend == "sim":
        from .sim import FaultPlan, SimParams, SimTransport

        faults = FaultPlan.parse(config.sim_faults)
        return SimTransport(SimParams(threads=config.threads, slow_us=config.sim_slow_us), faults)
    if config.backend == "vfio":
        from .vfio import VfioTransport

        if not config.address:
            raise TransportError("device.address: the vfio backend needs a PCI address (--device 0000:01:00.0)")
        return VfioTransport.open(config.address)
    if config.backend == "rtl":
        from .rtl import RtlTransport

        if config.sim_faults:
            raise TransportError(
                "device.sim_faults: faults are injected into the simulated card only; the rtl backend takes them "
                "from tests (RtlTransport.arm)"
            )
        return RtlTransport()
    raise ValueError(f"device.backend: unknown backend {config.backend!r}")


def make_device(config: DeviceConfig, events: DeviceEvents | None = None) -> RegisterDevice:
    """Attach the driver to the configured transport (this resets the device)."""
    transport = make_transport(config)
    timeouts = DriverTimeouts(config.job_timeout_ms / 1000, config.irq_poll_ms / 1000, config.reset_timeout_ms / 1000)
    try:
        return RegisterDevice(transport, timeouts, config.max_retries, events)
    except BaseException:
        transport.close()
        raise
