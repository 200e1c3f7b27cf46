"""A fleet of three real fpgacspd processes behind one target, with gRPC's own round robin and health checking.

``ConstraintLayer(target="ipv4:127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3")`` trains for many steps while one daemon is
SIGTERMed (it drains: health NOT_SERVING, so it is skipped) and another SIGKILLed (its connection drops): every step
completes, every result equals the local engine's, and the daemons' own counters show the requests were spread.
"""

from __future__ import annotations

import threading

import torch
from daemon_process import DaemonProcess, free_port
from fpgacsp import connect, sudoku_program
from fpgacsp._channel import fleet_size, is_fleet
from fpgacsp._retry import registrations
from fpgacsp.torch_layer import ConstraintLayer

PROGRAM = sudoku_program(2)
STEPS = 60


def solves_answered(daemon: DaemonProcess) -> int:
    return sum(int(e.get("answered", 0)) for e in daemon.events_named("stopped"))


def test_a_fleet_is_counted_by_its_addresses_or_its_dns_records() -> None:
    assert fleet_size("ipv4:127.0.0.1:1,127.0.0.1:2,127.0.0.1:3") == 3
    assert fleet_size("ipv6:[::1]:1,[::1]:2") == 2
    assert fleet_size("dns:///127.0.0.1:50051") == 1  # a literal address resolves to itself
    assert fleet_size("dns:///no-such-host.invalid:50051") == 1  # not resolvable (yet): at least the one
    assert fleet_size("localhost:50051") == fleet_size("unix:///tmp/d.sock") == 1


def test_a_registration_goes_to_every_daemon_once_per_round() -> None:
    assert [registrations(3, r) for r in (1, 2, 3)] == [3, 6, 9]
    assert registrations(1) == 1 and registrations(0) == 1


def test_a_training_loop_over_three_daemons_survives_a_drain_and_a_kill() -> None:
    ports = [free_port() for _ in range(3)]
    daemons = [DaemonProcess(["--listen", f"127.0.0.1:{p}", "--device-threads", "1"]).start() for p in ports]
    target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)
    assert is_fleet(target)
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 4)
        layer = ConstraintLayer(PROGRAM, target=target, ste="identity")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(8, 16, 4)
        wanted = torch.nn.functional.one_hot(torch.randint(0, 4, (8, 16)), 4).float()
        spread: dict[str, int] = {}

        def kill_the_second() -> None:
            with connect(f"127.0.0.1:{ports[1]}") as client:  # what it served before it dies
                spread["killed"] = {(m.method, m.code): m.count for m in client.stats().requests}.get(
                    ("Solve", "OK"), 0
                )
            daemons[1].kill()

        def solves_served(port: int) -> int:
            with connect(f"127.0.0.1:{port}") as client:
                return {(m.method, m.code): m.count for m in client.stats().requests}.get(("Solve", "OK"), 0)

        def drain_the_first() -> None:
            # round robin spread the first ten steps over all three: a program registered once per Solve that missed
            # used to phase-lock, every Solve missing on one daemon and succeeding on the next, so one never served
            before = [solves_served(p) for p in ports]
            assert min(before) >= 2, f"Solves answered by each daemon in the first 10 steps: {before}"
            spread["drained"] = before[0]
            threading.Thread(target=daemons[0].terminate).start()

        events = {10: drain_the_first, 25: kill_the_second}
        local = ConstraintLayer(PROGRAM, target="local", ste="identity")
        for step in range(STEPS):
            if step in events:
                events[step]()
            logits = model(x)
            out = layer(logits)  # raises if a step fails: the test's point
            loss = torch.nn.functional.mse_loss(out.values, wanted)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # the same logits through the local engine: the same values, bit for bit
                again = local(logits.detach())
            assert torch.equal(out.values, again.values), f"step {step}: the fleet's answer differs from the engine"
        survivor = daemons[2]
        with connect(f"127.0.0.1:{ports[2]}") as client:
            served = {(m.method, m.code): m.count for m in client.stats().requests}
        assert served.get(("Solve", "OK"), 0) >= STEPS // 3, served  # after the others left, it took them all
        assert daemons[0].wait(30) == 0
        first = solves_answered(daemons[0])
        assert first >= 1, f"the drained daemon answered {first} requests before it left: nothing was spread"
        assert spread["killed"] >= 3, f"the killed daemon had answered {spread['killed']} Solves"
        assert survivor.alive()
        print(
            f"fleet: {STEPS} steps, 0 failed; Solves answered: drained {first}, killed {spread['killed']} (before "
            f"the kill), survivor {served.get(('Solve', 'OK'), 0)}"
        )
    finally:
        for d in daemons:
            d.kill()
