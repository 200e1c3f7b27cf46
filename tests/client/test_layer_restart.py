"""A training loop through ``ConstraintLayer`` rides through a daemon restart (real ``fpgacspd`` processes).

Forward + backward + optimizer step in a loop while another thread stops the daemon, leaves its socket dead for
``OUTAGE_S`` and starts a new one on the same Unix socket path: with the layer's default ``wait_for_daemon_s``
(30 s) every step succeeds; the steps during the outage just take longer.
"""

from __future__ import annotations

import pickle
import threading
import time

import pytest
import torch
from daemon_process import DaemonProcess
from fpgacsp import LocalSolver, sudoku_program
from fpgacsp.torch_layer import ConstraintLayer
from fpgacsp.torch_layer._layer import DEFAULT_WAIT_FOR_DAEMON_S
from restart_helpers import OUTAGE_S, daemon_on, unix_socket_path

PROGRAM = sudoku_program(2)
STEPS_AFTER = 5  # steps on the new daemon before the loop stops


def test_training_steps_ride_through_a_restart() -> None:
    with unix_socket_path() as path:
        daemons: list[DaemonProcess] = [daemon_on(f"unix:{path}")]
        restarted = threading.Event()
        failed: list[BaseException] = []

        def restart() -> None:
            try:
                time.sleep(0.5)
                daemons[0].terminate()
                time.sleep(OUTAGE_S)
                daemons.append(daemon_on(f"unix:{path}"))
            except BaseException as e:  # surfaced below: a daemon that failed to restart is not the layer's fault
                failed.append(e)
            finally:
                restarted.set()

        torch.manual_seed(0)
        model = torch.nn.Linear(4, 4)
        layer = ConstraintLayer(PROGRAM, target=f"unix://{path}", ste="identity")  # the default wait: 30 s
        assert layer.wait_for_daemon_s == DEFAULT_WAIT_FOR_DAEMON_S == 30.0
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(8, 16, 4)
        wanted = torch.nn.functional.one_hot(torch.randint(0, 4, (8, 16)), 4).float()
        restarter = threading.Thread(target=restart, name="restart")
        steps, after, longest = 0, 0, 0.0
        try:
            restarter.start()
            give_up = time.monotonic() + 60
            while after < STEPS_AFTER and time.monotonic() < give_up:
                start = time.monotonic()
                out = layer(model(x))  # raises if any step fails: the test's point
                loss = torch.nn.functional.mse_loss(out.values, wanted)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                longest = max(longest, time.monotonic() - start)
                steps += 1
                after += restarted.is_set()
            restarter.join(60)
        finally:
            layer.close()
            for daemon in daemons:
                daemon.kill()
        assert not failed, failed
        assert len(daemons) == 2 and after == STEPS_AFTER, (len(daemons), after)
        print(f"{steps} steps, all succeeded; the longest took {longest:.2f} s")
        assert longest > OUTAGE_S  # one step did wait out the outage
        assert model.weight.grad is not None


def test_wait_for_daemon_s_option() -> None:
    layer = ConstraintLayer(PROGRAM, target="unix:///run/fpgacsp.sock", wait_for_daemon_s=5)
    assert layer.wait_for_daemon_s == 5.0 and "wait_for_daemon_s=5.0" in repr(layer)
    assert pickle.loads(pickle.dumps(layer)).wait_for_daemon_s == 5.0
    assert "wait_for_daemon_s" not in repr(ConstraintLayer(PROGRAM, target="unix:///run/fpgacsp.sock"))
    assert ConstraintLayer(PROGRAM, wait_for_daemon_s=0).wait_for_daemon_s == 0.0
    for bad in (-1, float("inf"), "30", True):
        with pytest.raises(ValueError) as info:
            ConstraintLayer(PROGRAM, wait_for_daemon_s=bad)  # type: ignore[arg-type]
        assert str(info.value) == f"wait_for_daemon_s: expected a number of seconds >= 0 (0: do not wait), got {bad!r}"
    with LocalSolver(threads=1) as solver:
        assert ConstraintLayer(PROGRAM, client=solver).wait_for_daemon_s is None  # the client's own setting
        with pytest.raises(ValueError) as info:
            ConstraintLayer(PROGRAM, client=solver, wait_for_daemon_s=5)
        assert str(info.value) == (
            "wait_for_daemon_s: configures the layer's own connection (target=...); for a client you pass, set it on "
            "the client: fpgacsp.connect(address, wait_for_daemon_s=...)"
        )
