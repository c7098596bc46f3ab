"""Importing the library leaves a user's matplotlib backend alone (a Jupyter user keeps inline figures)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import transfer_neurons

IMPORT_ALL = """
import importlib, pkgutil, sys
import matplotlib
matplotlib.use("svg")  # a backend the library would never pick itself
import transfer_neurons
names = [m.name for m in pkgutil.walk_packages(transfer_neurons.__path__, "transfer_neurons.")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names), matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_importing_every_module_keeps_the_backend_and_leaves_pyplot_unloaded():
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    count, backend, pyplot = done.stdout.split()
    assert int(count) > 40  # every module was imported, not just the package
    assert backend == "svg"
    assert pyplot == "False"


def test_no_module_sets_a_backend_or_uses_pyplot():
    """Figures are matplotlib.figure.Figure objects: no backend switch, no pyplot state, also inside functions."""
    src = Path(transfer_neurons.__file__).parent
    pattern = re.compile(r"matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot")
    offenders = [f"{path.relative_to(src)}:{number}" for path in sorted(src.rglob("*.py"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []
