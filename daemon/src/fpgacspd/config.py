"""One typed, frozen configuration object, from a TOML file, ``FPGACSPD_*`` environment variables and flags.

Precedence: flags > environment > file > defaults. Every setting has exactly one TOML key, one environment
variable and one flag, listed once in ``SETTINGS`` (docs/daemon.md is the same table). Nothing else in the
daemon reads the environment: the systemd protocol variables (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``,
``WATCHDOG_PID``) are captured here too, into :class:`SystemdConfig`.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# registry.max_vars / max_constraints may not exceed what the ISA lets a program hold at all
from fpgacsp_proto.isa import MAX_CONSTRAINTS, MAX_VARS
from fpgacsp_proto.limits import DEFAULT_NODE_LIMIT, MAX_LIMIT

from .device.sim.faults import FaultPlan
from .device.transport import TransportError
from .device.vfio import parse_bdf
from .metrics_http import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT_S, DEFAULT_WRITE_TIMEOUT_S

ENV_PREFIX = "FPGACSPD_"
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
BACKENDS = ("sim", "vfio", "rtl")


class ConfigError(ValueError):
    """A setting is malformed or out of range; the message names where it came from and the problem."""


@dataclass(frozen=True)
class ServerConfig:
    listen: tuple[str, ...] = ("127.0.0.1:50051",)
    metrics_listen: str = ""  # empty: no metrics endpoint
    metrics_max_connections: int = DEFAULT_MAX_CONNECTIONS  # one more replaces the longest-waiting head
    metrics_read_timeout_s: float = DEFAULT_READ_TIMEOUT_S  # for a whole request head (and a kept-alive idle wait)
    metrics_write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S  # for a whole response
    shutdown_grace_s: float = 30.0
    auth_tokens: str = ""  # a file of 'TOKEN ROLE' lines (re-read on SIGHUP); empty: no authentication
    unix_socket_mode: str = "0660"  # octal permissions of a unix: listener's socket file
    unix_socket_group: str = ""  # group of that file; empty: the daemon's own
    tls_cert: str = ""  # PEM certificate chain: TLS on every TCP listener (with tls_key)
    tls_key: str = ""  # PEM private key of tls_cert
    tls_client_ca: str = ""  # PEM CA: require client certificates signed by it (mTLS)


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = 1024  # instances per device batch (a larger single request still runs, alone)
    max_delay_us: int = 0  # longest the oldest queued request waits for companions (0: none, as Triton)
    max_queue: int = 4096  # requests waiting for the device; one more is RESOURCE_EXHAUSTED at once


@dataclass(frozen=True)
class RegistryConfig:
    max_programs: int = 256
    max_vars: int = 65_536
    max_constraints: int = 1_048_576
    max_program_bytes: int = 16 << 20
    max_total_bytes: int = 2 << 30  # estimated memory of every program held (LRU eviction of unpinned ones)


@dataclass(frozen=True)
class SolveConfig:
    default_node_limit: int = DEFAULT_NODE_LIMIT
    max_node_limit: int = 100_000_000  # the most search nodes one request may ask for, per instance
    max_request_instances: int = 65_536


@dataclass(frozen=True)
class DeviceConfig:
    backend: str = "sim"  # the register-level driver over the simulated card; "vfio": a real card; "rtl": its RTL
    address: str = ""  # vfio: the card's PCI address, e.g. 0000:01:00.0
    threads: int = 0  # sim: engine threads of the simulated card; 0: all cores
    job_timeout_ms: int = 10_000  # no completion and no instance finished for this long: the job hangs
    irq_poll_ms: int = 50  # no interrupt for this long: look at the completion ring anyway (lost interrupts)
    reset_timeout_ms: int = 1_000  # STATUS.READY must return this soon after a reset
    max_retries: int = 2  # resets and reruns of a faulted batch before it fails with INTERNAL
    recovery_backoff_ms: int = 1_000  # a FAILED device is reset and self-tested again after this long ...
    recovery_backoff_max_ms: int = 60_000  # ... doubling up to this
    sim_faults: str = ""  # sim: injected faults, e.g. "hang@5,corrupt/40" (docs/device.md)
    sim_slow_us: int = 200_000  # sim: the delay of a "slow" fault


@dataclass(frozen=True)
class LogConfig:
    format: str = "json"
    level: str = "info"


@dataclass(frozen=True)
class SystemdConfig:
    """What systemd passed us; not settable by file, env prefix or flag."""

    notify_socket: str = ""
    watchdog_usec: int = 0  # 0: no watchdog


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    solve: SolveConfig = field(default_factory=SolveConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    log: LogConfig = field(default_factory=LogConfig)
    systemd: SystemdConfig = field(default_factory=SystemdConfig)


_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "batching": BatchingConfig,
    "registry": RegistryConfig,
    "solve": SolveConfig,
    "device": DeviceConfig,
    "log": LogConfig,
}


@dataclass(frozen=True)
class Setting:
    """One setting: its TOML location, flag, environment variable, kind and bounds."""

    section: str
    key: str
    flag: str
    kind: str  # "int", "float", "str", "addresses"
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # more flags for the same setting (never more env variables or keys)
    check: Callable[[str, str], str] | None = None  # a non-empty string's check: (value, where) -> normalised value

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.removeprefix("--").replace("-", "_").upper()

    @property
    def toml(self) -> str:
        return f"[{self.section}] {self.key}"

    @property
    def dest(self) -> str:
        return f"{self.section}.{self.key}"

    def default(self) -> Any:
        return getattr(_SECTIONS[self.section](), self.key)


def _metrics_address(value: str, where: str) -> str:
    check_address(value, where, unix=False)
    return value


def _octal_mode(value: str, where: str) -> str:
    try:
        mode = int(value, 8)
    except ValueError:
        raise ConfigError(f"{where}: expected octal permissions such as 0660, got {value!r}") from None
    if not 0 <= mode <= 0o777 or mode & 0o007:
        raise ConfigError(f"{where}: {value} must be within 0777 and give others no access (the last digit 0)")
    return value


def _pci_address(value: str, where: str) -> str:
    try:
        return parse_bdf(value)
    except TransportError:
        raise ConfigError(f"{where}: expected a PCI address DDDD:BB:DD.F (e.g. 0000:01:00.0), got {value!r}") from None


def _fault_plan(value: str, where: str) -> str:
    try:
        FaultPlan.parse(value, where)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return value


_ADDR_HELP = "HOST:PORT or unix:PATH to serve on; repeatable (the env variable takes a comma-separated list)"
SETTINGS: tuple[Setting, ...] = (
    Setting("server", "listen", "--listen", "addresses", _ADDR_HELP),
    Setting("server", "metrics_listen", "--metrics-listen", "str", "HOST:PORT of the Prometheus endpoint; empty: none",
            check=_metrics_address),
    Setting("server", "metrics_max_connections", "--metrics-max-connections", "int", "metrics connections open at "
            "once; one more is closed at once", 1, 65_536),
    Setting("server", "metrics_read_timeout_s", "--metrics-read-timeout-s", "float", "seconds a metrics request head "
            "may take to arrive, in all", 0.001, 3600),
    Setting("server", "metrics_write_timeout_s", "--metrics-write-timeout-s", "float", "seconds a metrics response "
            "may take to send", 0.001, 3600),
    Setting("server", "shutdown_grace_s", "--shutdown-grace-s", "float", "seconds a SIGTERM drain may take", 0),
    Setting("server", "auth_tokens", "--auth-tokens", "str", "file of 'TOKEN ROLE' lines (roles solve, admin), re-read "
            "on SIGHUP; empty: no authentication"),
    Setting("server", "unix_socket_mode", "--unix-socket-mode", "str", "octal permissions of a unix: socket file",
            check=_octal_mode),
    Setting("server", "unix_socket_group", "--unix-socket-group", "str", "group of a unix: socket file; empty: the "
            "daemon's own"),
    Setting("server", "tls_cert", "--tls-cert", "str", "PEM certificate chain: TLS on every TCP listener; re-read on "
            "SIGHUP"),
    Setting("server", "tls_key", "--tls-key", "str", "PEM private key of --tls-cert"),
    Setting("server", "tls_client_ca", "--tls-client-ca", "str", "PEM CA that client certificates must be signed by "
            "(mutual TLS)"),
    Setting("batching", "max_batch", "--max-batch", "int", "instances per device batch", 1, MAX_LIMIT),
    Setting("batching", "max_delay_us", "--max-delay-us", "int", "microseconds a request waits for companions", 0,
            10_000_000),
    Setting("batching", "max_queue", "--max-queue", "int", "requests waiting before RESOURCE_EXHAUSTED", 1, MAX_LIMIT),
    Setting("registry", "max_programs", "--max-programs", "int", "programs held (LRU eviction of unpinned ones)", 1,
            MAX_LIMIT),
    Setting("registry", "max_vars", "--max-vars", "int", "variables per program", 1, MAX_VARS),
    Setting("registry", "max_constraints", "--max-constraints", "int", "constraints per program", 0, MAX_CONSTRAINTS),
    Setting("registry", "max_program_bytes", "--max-program-bytes", "int", "encoded bytes per program", 1, MAX_LIMIT),
    Setting("registry", "max_total_bytes", "--max-registry-bytes", "int", "estimated memory of all programs held "
            "(LRU eviction of unpinned ones)", 1, MAX_LIMIT),
    Setting("solve", "default_node_limit", "--default-node-limit", "int", "node limit when a request sends 0", 1,
            MAX_LIMIT),
    Setting("solve", "max_node_limit", "--max-node-limit", "int", "largest node_limit a request may ask for", 1,
            MAX_LIMIT),
    Setting("solve", "max_request_instances", "--max-request-instances", "int", "batch_size allowed in one Solve", 1,
            1 << 24),
    Setting("device", "backend", "--device-backend", "str",
            "transport under the driver: simulated card (sim), real card (vfio) or the card's RTL in Verilator (rtl)",
            choices=BACKENDS, aliases=("--backend",)),
    Setting("device", "address", "--device", "str", "vfio: PCI address of the card, e.g. 0000:01:00.0",
            check=_pci_address),
    Setting("device", "threads", "--device-threads", "int", "sim: engine threads of the simulated card; 0: all cores",
            0, 4096, aliases=("--threads",)),
    Setting("device", "job_timeout_ms", "--job-timeout-ms", "int", "a job with no progress for this long hangs", 1,
            3_600_000),
    Setting("device", "irq_poll_ms", "--irq-poll-ms", "int", "poll the completion ring after this long without an "
            "interrupt", 1, 60_000),
    Setting("device", "reset_timeout_ms", "--reset-timeout-ms", "int", "time a reset may take before the next kind",
            1, 600_000),
    Setting("device", "max_retries", "--device-max-retries", "int", "resets and reruns of a faulted batch", 0, 100),
    Setting("device", "recovery_backoff_ms", "--recovery-backoff-ms", "int", "first wait before a FAILED device is "
            "reset again (doubles per failed attempt)", 1, 3_600_000),
    Setting("device", "recovery_backoff_max_ms", "--recovery-backoff-max-ms", "int", "longest wait between recovery "
            "attempts of a FAILED device", 1, 86_400_000),
    Setting("device", "sim_faults", "--sim-faults", "str", "sim: faults to inject, KIND@N or KIND/N, comma-separated",
            check=_fault_plan),
    Setting("device", "sim_slow_us", "--sim-slow-us", "int", "sim: delay of a slow fault", 0, 600_000_000),
    Setting("log", "format", "--log-format", "str", "json lines or text, on stderr", choices=LOG_FORMATS),
    Setting("log", "level", "--log-level", "str", "lowest level logged", choices=LOG_LEVELS),
)  # fmt: skip

_BY_KEY = {(s.section, s.key): s for s in SETTINGS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fpgacspd",
        description="fpgacsp accelerator daemon: serves fpgacsp.v1 Solver and Admin over gRPC.",
        epilog="Every flag is also an environment variable FPGACSPD_<FLAG> and a TOML key; see docs/daemon.md.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (env: FPGACSPD_CONFIG)")
    for s in SETTINGS:
        metavar = {"int": "N", "float": "SECONDS", "addresses": "ADDR"}.get(s.kind, s.key.upper())
        if s.key == "metrics_listen":
            metavar = "HOST:PORT"
        extra: dict[str, Any] = {"action": "append"} if s.kind == "addresses" else {}
        if s.choices:
            extra.update(choices=list(s.choices), type=str.lower)
        parser.add_argument(s.flag, *s.aliases, dest=s.dest, metavar=metavar, help=f"{s.help} (env: {s.env})", **extra)
    return parser


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Parse flags (``argv`` without the program name), read the file they or the env name, merge, validate.

    Raises :class:`ConfigError`; argparse itself exits with status 2 on an unknown flag.
    """
    environ = os.environ if env is None else env
    args = vars(build_parser().parse_args(list(argv) if argv is not None else None))
    values: dict[tuple[str, str], Any] = {}
    path = args.pop("config", None) or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        values.update(_from_file(Path(path)))
    values.update(_from_env(environ))
    for s in SETTINGS:
        raw = args.get(s.dest)
        if raw is not None:
            values[(s.section, s.key)] = _coerce(s, raw, s.flag)
    return _build(values, environ)


def _from_file(path: Path) -> dict[tuple[str, str], Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read ({e.strerror or e})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {path}: not valid TOML ({e})") from e
    out: dict[tuple[str, str], Any] = {}
    for section, table in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table, got {type(table).__name__}")
        for key, raw in table.items():
            s = _BY_KEY.get((section, key))
            if s is None:
                known = ", ".join(k for sec, k in _BY_KEY if sec == section)
                raise ConfigError(f"{path}: unknown key [{section}] {key} (known: {known})")
            out[(section, key)] = _coerce(s, raw, f"{path}: [{section}] {key}")
    return out


def _from_env(environ: Mapping[str, str]) -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for s in SETTINGS:
        raw = environ.get(s.env)
        if raw is not None:
            out[(s.section, s.key)] = _coerce(s, raw, s.env)
    return out


def _coerce(s: Setting, raw: Any, where: str) -> Any:
    """Convert a file, env or flag value to the setting's type and check its range; errors name ``where``."""
    if s.kind == "addresses":
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(a, str) for a in items):
            raise ConfigError(f"{where}: expected a list of addresses, got {raw!r}")
        addrs = tuple(a.strip() for item in items for a in item.split(",") if a.strip())
        if not addrs:
            raise ConfigError(f"{where}: expected at least one address")
        for a in addrs:
            check_address(a, where)
        return addrs
    if s.kind == "str":
        if not isinstance(raw, str):
            raise ConfigError(f"{where}: expected a string, got {raw!r}")
        value: Any = raw.strip().lower() if s.choices else raw.strip()
        if s.choices and value not in s.choices:
            raise ConfigError(f"{where}: expected one of {', '.join(s.choices)}, got {raw!r}")
        return s.check(value, where) if s.check and value else value
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = (raw if isinstance(raw, int) else int(str(raw).replace("_", ""), 10)) if s.kind == "int" else float(raw)
    except ValueError:
        noun = "an integer" if s.kind == "int" else "a number"
        raise ConfigError(f"{where}: expected {noun}, got {raw!r}") from None
    if (s.minimum is not None and value < s.minimum) or (s.maximum is not None and value > s.maximum):
        hi = "" if s.maximum is None else f", at most {s.maximum:g}" if s.kind == "float" else f", at most {s.maximum}"
        raise ConfigError(f"{where}: must be at least {s.minimum:g}{hi}, got {raw!r}")
    return value


def check_address(addr: str, where: str, unix: bool = True) -> None:
    """``HOST:PORT`` (IPv6 hosts in brackets) or, where allowed, ``unix:PATH``."""
    if unix and addr.startswith("unix:"):
        if not addr.removeprefix("unix:").lstrip("/"):
            raise ConfigError(f"{where}: {addr!r} names no socket path")
        return
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        form = "HOST:PORT or unix:PATH" if unix else "HOST:PORT"
        raise ConfigError(f"{where}: expected {form} with a port in [0, 65535], got {addr!r}")


def _build(values: Mapping[tuple[str, str], Any], environ: Mapping[str, str]) -> Config:
    sections = {
        name: cls(**{key: v for (sec, key), v in values.items() if sec == name}) for name, cls in _SECTIONS.items()
    }
    config = Config(**sections, systemd=_systemd(environ))
    server = config.server
    if bool(server.tls_cert) != bool(server.tls_key):
        raise ConfigError("server.tls_cert and server.tls_key: give both (the certificate and its key) or neither")
    if server.tls_client_ca and not server.tls_cert:
        raise ConfigError("server.tls_client_ca: client certificates need TLS; give server.tls_cert and tls_key too")
    if config.solve.default_node_limit > config.solve.max_node_limit:
        raise ConfigError(
            f"solve.default_node_limit: {config.solve.default_node_limit} exceeds solve.max_node_limit = "
            f"{config.solve.max_node_limit}"
        )
    return config


def _systemd(environ: Mapping[str, str]) -> SystemdConfig:
    """The sd_notify protocol's variables; a watchdog meant for another pid (``WATCHDOG_PID``) is ignored."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    watchdog = int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0
    return SystemdConfig(notify_socket=environ.get("NOTIFY_SOCKET", ""), watchdog_usec=watchdog)
