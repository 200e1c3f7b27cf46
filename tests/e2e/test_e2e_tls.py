"""TLS and mutual TLS on a real fpgacspd, with throwaway certificates made here (trustme): never committed.

The daemon's TCP listener speaks TLS with ``--tls-cert/--tls-key`` (and wants client certificates with
``--tls-client-ca``); a plaintext client, a client that trusts another CA, an expired server certificate and, under
mTLS, a client without a certificate are all refused, each with a message that says what is wrong; and SIGHUP
rotates the server certificate while a client keeps solving on its open connection.
"""

from __future__ import annotations

import datetime
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trustme
from daemon_process import DaemonProcess
from fpgacsp import TLS, UnavailableError, connect
from fpgacsp.problems import sudoku_program

PROGRAM = sudoku_program(2)
FULL = np.full((2, 16), 15, dtype=np.uint64)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a stranger CA."""
    root = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("trainer@example")
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue_cert("127.0.0.1", not_before=now - datetime.timedelta(days=3),
                            not_after=now - datetime.timedelta(days=1))  # fmt: skip
    files = {
        "ca": ca.cert_pem, "other_ca": other.cert_pem,
        "server_cert": server.cert_chain_pems[0], "server_key": server.private_key_pem,
        "client_cert": client.cert_chain_pems[0], "client_key": client.private_key_pem,
        "expired_cert": expired.cert_chain_pems[0], "expired_key": expired.private_key_pem,
    }  # fmt: skip
    paths = {}
    for name, blob in files.items():
        paths[name] = root / f"{name}.pem"
        blob.write_to_path(str(paths[name]))
    return paths


def tls_daemon(pki: dict[str, Path], *extra: str, cert: str = "server_cert", key: str = "server_key") -> DaemonProcess:
    return DaemonProcess(["--tls-cert", str(pki[cert]), "--tls-key", str(pki[key]), *extra])


@pytest.fixture(scope="module")
def daemon(pki: dict[str, Path]) -> Iterator[DaemonProcess]:
    with tls_daemon(pki) as d:
        yield d


def test_a_client_that_trusts_the_ca_solves_over_tls(daemon: DaemonProcess, pki: dict[str, Path]) -> None:
    with connect(daemon.address, tls=TLS(ca=str(pki["ca"]))) as client:
        assert client.solve(PROGRAM, FULL).status.tolist() == [1, 1]


def test_a_plaintext_client_is_refused(daemon: DaemonProcess) -> None:
    with connect(daemon.address, timeout=3) as client, pytest.raises(UnavailableError, match="may require TLS"):
        client.device_status()


def test_a_client_that_trusts_another_ca_is_refused_saying_so(daemon: DaemonProcess, pki: dict[str, Path]) -> None:
    client = connect(daemon.address, timeout=3, tls=TLS(ca=str(pki["other_ca"])))
    with client, pytest.raises(UnavailableError, match="TLS: the daemon's certificate not trusted"):
        client.device_status()


def test_an_expired_server_certificate_is_refused(pki: dict[str, Path]) -> None:
    with tls_daemon(pki, cert="expired_cert", key="expired_key") as daemon:
        client = connect(daemon.address, timeout=3, tls=TLS(ca=str(pki["ca"])))
        with client, pytest.raises(UnavailableError, match=r"certificate not trusted.*expired"):
            client.device_status()


def test_mutual_tls_wants_a_client_certificate_signed_by_its_ca(pki: dict[str, Path]) -> None:
    with tls_daemon(pki, "--tls-client-ca", str(pki["ca"])) as daemon:
        anonymous = connect(daemon.address, timeout=3, tls=TLS(ca=str(pki["ca"])))
        with anonymous, pytest.raises(UnavailableError) as err:
            anonymous.device_status()
        print(err.value)
        mine = TLS(ca=str(pki["ca"]), cert=str(pki["client_cert"]), key=str(pki["client_key"]))
        with connect(daemon.address, tls=mine) as client:
            assert client.solve(PROGRAM, FULL).status.tolist() == [1, 1]


def test_sighup_rotates_the_certificate_while_a_client_keeps_solving(pki: dict[str, Path], tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(pki["server_cert"].read_bytes())
    key.write_bytes(pki["server_key"].read_bytes())
    fresh = trustme.CA()  # the rotated certificate comes from a new CA: only new connections can tell
    issued = fresh.issue_cert("127.0.0.1")
    with DaemonProcess(["--tls-cert", str(cert), "--tls-key", str(key)]) as daemon:
        old = connect(daemon.address, tls=TLS(ca=str(pki["ca"])))
        errors: list[BaseException] = []
        solved = [0]
        stop = threading.Event()

        def keep_solving() -> None:
            while not stop.is_set():
                try:
                    old.solve(PROGRAM, FULL)
                    solved[0] += 1
                except BaseException as e:  # any failure fails the test
                    errors.append(e)
                    return

        worker = threading.Thread(target=keep_solving)
        worker.start()
        while solved[0] < 5:
            pass
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        daemon.send_signal(signal.SIGHUP)
        reload = daemon.wait_for_event("signal")
        assert "tls" in reload["reloaded"]
        before = solved[0]
        while solved[0] < before + 20 and not errors:
            pass
        stop.set()
        worker.join()
        assert not errors, errors
        ca_file = tmp_path / "fresh_ca.pem"
        fresh.cert_pem.write_to_path(str(ca_file))
        with connect(daemon.address, tls=TLS(ca=str(ca_file))) as client:  # a new connection: the new certificate
            assert client.solve(PROGRAM, FULL).status.tolist() == [1, 1]
        old.close()
        assert daemon.terminate() == 0


def test_the_cli_speaks_tls_and_sends_a_token(pki: dict[str, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    tokens = tmp_path / "tokens"
    tokens.write_text("cli-token-0123456789abcdef solve\n")
    with tls_daemon(pki, "--auth-tokens", str(tokens)) as daemon:
        base = [str(Path(sys.executable).parent / "fpgacsp"), "status", "--target", daemon.address, "--json"]
        ok = subprocess.run([*base, "--tls-ca", str(pki["ca"]), "--token", "cli-token-0123456789abcdef"],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        refused = subprocess.run([*base, "--tls-ca", str(pki["ca"])], capture_output=True, text=True, timeout=60,
                                 check=False)  # fmt: skip
        assert refused.returncode == 3 and "auth: no token" in refused.stderr, refused.stderr
