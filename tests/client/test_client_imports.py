"""Every client module (and the daemon modules the ``local`` target and the self-test stand on) imports on its own
in a fresh interpreter.

Two ways per module. Plainly (``python -c "import fpgacsp._local_client"``), as a user's first import would: the
package's ``__init__`` runs first, and neither the daemon nor torch may come with it. And first of its package:
the parent packages are empty placeholders, so the module under test is the first of them to execute and pulls
in its own dependencies in its own order. An import cycle (``_client`` -> ``_local_client`` -> ``_client``, or
``fpgacspd.selftest`` <-> ``fpgacspd.device``) that ``__init__``'s import order happens to hide fails there with
"partially initialized module" instead of in some user's process that imports the modules the other way round.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import fpgacsp
import pytest

PACKAGE = Path(fpgacsp.__file__).parent
CLIENT = sorted(
    ".".join(("fpgacsp", *p.relative_to(PACKAGE).with_suffix("").parts[:-1], p.stem)) if p.stem != "__init__"
    else ".".join(("fpgacsp", *p.relative_to(PACKAGE).parts[:-1]))
    for p in PACKAGE.rglob("*.py")
)  # fmt: skip
# the modules that stand on torch: the layer, and the JAX and TensorFlow layers, whose core is the PyTorch layer's
TORCH = [m for m in CLIENT if m.startswith("fpgacsp.torch_layer") or m in ("fpgacsp.jax", "fpgacsp.tensorflow")]
PLAIN = [m for m in CLIENT if m not in TORCH]
# The daemon modules the client's local target and the self-test reach; selftest and device once risked a cycle
# (the device runs the self-test, the self-test runs on a device), which is kept to a TYPE_CHECKING import.
DAEMON = [
    "fpgacspd.selftest",
    "fpgacspd.device",
    "fpgacspd.device.base",
    "fpgacspd.device.register_device",
    "fpgacspd.device.worker",
    "fpgacspd.engine",
    "fpgacspd.registry",
]

# Installs placeholders for the parent packages of sys.argv[1] (their __init__ does not run), imports the module,
# and prints which of its package's modules were loaded before it finished: evidence that it ran first.
FIRST = """
import importlib, importlib.util, sys, types
name = sys.argv[1]
parts = name.split(".")
for i in range(1, len(parts)):
    parent = ".".join(parts[:i])
    spec = importlib.util.find_spec(parent)
    pkg = types.ModuleType(parent)
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    sys.modules[parent] = pkg
    if i > 1:
        setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], pkg)
importlib.import_module(name)
print(type(sys.modules[parts[0]].__dict__.get("__file__")).__name__)
"""

# A plain import; prints the top-level packages it must not have loaded.
PLAIN_IMPORT = """
import sys, importlib
importlib.import_module(sys.argv[1])
print(sorted({k.split(".")[0] for k in sys.modules} & {"fpgacspd", "torch"}))
"""


def _run(code: str, module: str) -> str:
    out = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, f"importing {module} alone failed:\n{out.stderr[-3000:]}"
    return out.stdout.strip()


def test_the_module_lists_are_complete() -> None:
    # the glob found the package: a wrong root would make every parametrized test below vacuous
    assert {"fpgacsp", "fpgacsp._client", "fpgacsp._local_client", "fpgacsp._async_client", "fpgacsp.cli"} <= set(PLAIN)
    assert "fpgacsp.problems.sudoku" in PLAIN
    assert {"fpgacsp.torch_layer._layer", "fpgacsp.jax", "fpgacsp.tensorflow"} <= set(TORCH)


@pytest.mark.parametrize("module", PLAIN)
def test_a_client_module_imports_alone_without_daemon_or_torch(module: str) -> None:
    # ``import fpgacsp`` (and any of its modules) on a host without the daemon extra or torch must work
    assert _run(PLAIN_IMPORT, module) == "[]"


@pytest.mark.parametrize("module", PLAIN + DAEMON)
def test_a_module_imports_first_of_its_package(module: str) -> None:
    # "NoneType": the top package is still the placeholder (no __file__), so its __init__ never ran and the
    # module under test was the first of the package to execute
    expected = "str" if module in ("fpgacsp", "fpgacspd") else "NoneType"
    assert _run(FIRST, module) == expected


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the torch extra is not installed")
@pytest.mark.parametrize("module", TORCH)
def test_a_torch_layer_module_imports_first_of_its_package(module: str) -> None:
    assert _run(FIRST, module) == "NoneType"
