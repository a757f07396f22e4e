"""``import graphcomp`` imports what building and running a graph needs, and no more.

The inspection tools, ``gc.nn``, ``gc.random``, the training tools and the testing helpers are
imported at their first use (``graphcomp.__getattr__``), and numba only when a numba function
is compiled (tests/backends/test_background_compile.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import graphcomp as gc

LAZY_MODULES = ["graphcomp.nn", "graphcomp.random", "graphcomp.inspect", "graphcomp.testing",
                "graphcomp.train", "graphcomp.cli", "numba", "llvmlite"]

PROBE = """
import json, sys
import graphcomp as gc
before = sorted(m for m in {modules} if m in sys.modules)
names = sorted(set(gc.__all__) - set(vars(gc)))
kinds = {{name: type(getattr(gc, name)).__name__ for name in names}}
missing = sorted(set(gc.__all__) - set(dir(gc)))
print(json.dumps({{"before": before, "kinds": kinds, "dir": missing}}))
"""


def test_importing_graphcomp_leaves_the_optional_parts_unimported():
    done = subprocess.run([sys.executable, "-c", PROBE.format(modules=LAZY_MODULES)],
                          capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["before"] == []
    # every name of __all__ not imported with the package is a lazy one, and it resolves
    assert report["kinds"] == {name: ("module" if name in ("nn", "random", "data", "init",
                                                            "optim") else
                                      "type" if name == "History" else "function")
                               for name in report["kinds"]}
    assert {"nn", "random", "fit", "to_dot", "check_grads", "seed"} <= set(report["kinds"])
    assert report["dir"] == []


def test_lazy_names_are_the_modules_own_objects():
    from graphcomp.inspect.dot import to_dot
    from graphcomp.nn import dense
    from graphcomp.train import optim

    assert gc.to_dot is to_dot and gc.nn.dense is dense and gc.optim is optim
    from graphcomp import fit, nn

    assert nn is gc.nn and fit is gc.fit


def test_an_unknown_name_raises_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        gc.not_a_name
