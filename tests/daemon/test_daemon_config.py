"""Config: defaults, TOML, FPGACSPD_* environment, flags, their precedence, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpgacspd.config import SETTINGS, Config, ConfigError, build_parser, load_config


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fpgacspd.toml"
    path.write_text(text)
    return str(path)


def test_defaults_match_the_contract() -> None:
    cfg = load_config([], env={})
    assert cfg == Config()
    assert cfg.server.listen == ("127.0.0.1:50051",)
    assert (cfg.batching.max_batch, cfg.batching.max_delay_us, cfg.batching.max_queue) == (1024, 0, 4096)
    assert cfg.registry.max_programs == 256
    assert (cfg.solve.default_node_limit, cfg.solve.max_request_instances) == (1_000_000, 65536)
    assert (cfg.device.backend, cfg.device.threads) == ("sim", 0)
    assert cfg.systemd.notify_socket == "" and cfg.systemd.watchdog_usec == 0


def test_every_setting_has_flag_env_and_toml_key() -> None:
    flags = {a for action in build_parser()._actions for a in action.option_strings}
    for s in SETTINGS:
        assert s.flag in flags
        assert s.env == "FPGACSPD_" + s.flag[2:].replace("-", "_").upper()
        assert hasattr(getattr(Config(), s.section), s.key)
    assert {s.env for s in SETTINGS} >= {
        "FPGACSPD_LISTEN", "FPGACSPD_METRICS_LISTEN", "FPGACSPD_MAX_BATCH", "FPGACSPD_MAX_DELAY_US",
        "FPGACSPD_MAX_QUEUE", "FPGACSPD_LOG_FORMAT", "FPGACSPD_LOG_LEVEL", "FPGACSPD_DEVICE_THREADS",
    }  # fmt: skip


def test_toml_file_sets_every_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
listen = ["127.0.0.1:7000", "unix:/run/fpgacsp.sock"]
metrics_listen = "0.0.0.0:9464"
shutdown_grace_s = 5
[batching]
max_batch = 64
max_delay_us = 0
max_queue = 10
[registry]
max_programs = 3
max_vars = 100
max_constraints = 50
max_program_bytes = 4096
[solve]
default_node_limit = 1_000
max_request_instances = 128
[device]
backend = "sim"
threads = 1
[log]
format = "text"
level = "DEBUG"
""",
    )
    cfg = load_config(["--config", path], env={})
    assert cfg.server.listen == ("127.0.0.1:7000", "unix:/run/fpgacsp.sock")
    assert cfg.server.metrics_listen == "0.0.0.0:9464" and cfg.server.shutdown_grace_s == 5.0
    assert (cfg.batching.max_batch, cfg.batching.max_delay_us, cfg.batching.max_queue) == (64, 0, 10)
    assert cfg.registry.max_programs == 3 and cfg.registry.max_program_bytes == 4096
    assert cfg.solve.default_node_limit == 1000 and cfg.solve.max_request_instances == 128
    assert cfg.device.threads == 1
    assert cfg.log.format == "text" and cfg.log.level == "debug"


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "[batching]\nmax_batch = 10\nmax_delay_us = 20\nmax_queue = 30\n")
    env = {"FPGACSPD_CONFIG": path, "FPGACSPD_MAX_DELAY_US": "21", "FPGACSPD_MAX_QUEUE": "31"}
    cfg = load_config(["--max-queue", "32"], env=env)
    assert cfg.batching.max_batch == 10  # file
    assert cfg.batching.max_delay_us == 21  # env over file
    assert cfg.batching.max_queue == 32  # flag over env
    assert cfg.registry.max_programs == 256  # default


def test_config_flag_wins_over_config_env(tmp_path: Path) -> None:
    a = write(tmp_path, "[batching]\nmax_batch = 1\n")
    b = tmp_path / "b.toml"
    b.write_text("[batching]\nmax_batch = 2\n")
    assert load_config(["--config", str(b)], env={"FPGACSPD_CONFIG": a}).batching.max_batch == 2


def test_choices_are_case_insensitive_everywhere() -> None:
    assert load_config(["--log-level", "DEBUG"], env={}).log.level == "debug"
    assert load_config([], env={"FPGACSPD_LOG_FORMAT": "Text"}).log.format == "text"


def test_listen_repeatable_flag_and_comma_separated_env() -> None:
    cfg = load_config(["--listen", "127.0.0.1:0", "--listen", "unix:/tmp/x.sock"], env={})
    assert cfg.server.listen == ("127.0.0.1:0", "unix:/tmp/x.sock")
    cfg = load_config([], env={"FPGACSPD_LISTEN": "[::1]:5000, unix:///tmp/y.sock"})
    assert cfg.server.listen == ("[::1]:5000", "unix:///tmp/y.sock")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {"FPGACSPD_MAX_BATCH": "lots"}, "FPGACSPD_MAX_BATCH: expected an integer, got 'lots'"),
        ([], {"FPGACSPD_MAX_BATCH": "0"}, "FPGACSPD_MAX_BATCH: must be at least 1"),
        (["--max-delay-us", "-1"], {}, "--max-delay-us: must be at least 0"),
        (["--listen", "localhost"], {}, "--listen: expected HOST:PORT or unix:PATH"),
        (["--listen", "localhost:99999"], {}, "--listen: expected HOST:PORT or unix:PATH"),
        (["--listen", "unix:"], {}, "--listen: 'unix:' names no socket path"),
        (["--metrics-listen", "unix:/x"], {}, "--metrics-listen: expected HOST:PORT"),
        ([], {"FPGACSPD_LOG_FORMAT": "xml"}, "FPGACSPD_LOG_FORMAT: expected one of json, text, got 'xml'"),
        ([], {"FPGACSPD_SHUTDOWN_GRACE_S": "soon"}, "FPGACSPD_SHUTDOWN_GRACE_S: expected a number"),
    ],
)
def test_errors_name_the_source_and_problem(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(argv, env=env)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[batching]\nmax_batchh = 3\n", "unknown key [batching] max_batchh (known: max_batch, max_delay_us"),
        ("[nope]\nx = 1\n", "unknown section [nope]"),
        ("[batching]\nmax_batch = true\n", "[batching] max_batch: expected an integer, got True"),
        ("[server]\nlisten = 5\n", "[server] listen: expected a list of addresses"),
        ("[batching\n", "not valid TOML"),
    ],
)
def test_file_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(["--config", path], env={})
    assert message in str(info.value)
    assert path in str(info.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(["--config", str(tmp_path / "absent.toml")], env={})


def test_unknown_flag_exits_with_status_2() -> None:
    with pytest.raises(SystemExit) as info:
        load_config(["--max-batchh", "3"], env={})
    assert info.value.code == 2


def test_systemd_variables_are_captured_and_foreign_watchdog_ignored() -> None:
    cfg = load_config([], env={"NOTIFY_SOCKET": "@sd", "WATCHDOG_USEC": "2000000"})
    assert cfg.systemd.notify_socket == "@sd" and cfg.systemd.watchdog_usec == 2_000_000
    cfg = load_config([], env={"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert cfg.systemd.watchdog_usec == 0


def test_config_is_frozen() -> None:
    cfg = load_config([], env={})
    with pytest.raises(AttributeError):
        cfg.batching.max_batch = 3  # type: ignore[misc]


def test_docs_list_every_setting_with_its_default() -> None:
    """docs/daemon.md's configuration table is the operator's reference: it must not go stale."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "daemon.md").read_text()
    for s in SETTINGS:
        rows = [line for line in docs.splitlines() if line.startswith(f"| `[{s.section}] {s.key}` |")]
        assert len(rows) == 1, f"docs/daemon.md: no row for [{s.section}] {s.key}"
        assert f"`{s.env}`" in rows[0] and f"`{s.flag}`" in rows[0], rows[0]
        default = s.default()
        shown = rows[0].split("|")[4].strip().strip("`").replace("_", "")
        if isinstance(default, tuple):
            assert shown == "[" + ", ".join(f'"{a}"' for a in default) + "]", rows[0]
        elif isinstance(default, str):
            assert shown == f'"{default}"', rows[0]
        else:
            assert float(shown) == default, rows[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "01:00"], "--device: expected a PCI address DDDD:BB:DD.F (e.g. 0000:01:00.0), got '01:00'"),
        (["--sim-faults", "hang"], "--sim-faults: expected KIND@N (once) or KIND/N (every N-th RUN job)"),
        (["--sim-faults", "melt@1"], "--sim-faults: unknown fault 'melt' in 'melt@1'"),
        (["--job-timeout-ms", "0"], "--job-timeout-ms: must be at least 1"),
    ],
)
def test_device_settings_are_checked(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(argv, env={})
    assert message in str(info.value)


def test_a_short_pci_address_gets_domain_0000_and_backend_has_a_short_flag() -> None:
    cfg = load_config(["--backend", "vfio", "--device", "01:00.0"], env={})
    assert (cfg.device.backend, cfg.device.address) == ("vfio", "0000:01:00.0")


def test_threads_is_the_short_flag_of_the_engine_threads() -> None:
    assert load_config(["--threads", "3"], env={}).device.threads == 3
    assert load_config([], env={"FPGACSPD_DEVICE_THREADS": "2"}).device.threads == 2
