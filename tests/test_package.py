"""The package surface: every public name resolves, submodules load on first use."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pytest

import funcdl as fd


@pytest.mark.parametrize("name", fd.__all__)
def test_every_public_name_resolves(name):
    value = getattr(fd, name)
    assert value is not None
    if isinstance(value, types.ModuleType):
        assert value.__name__ == f"funcdl.{name}"
        assert sys.modules[f"funcdl.{name}"] is value


def test_scale_out_modules_and_dir():
    for name in ("parallel", "sweep", "perf"):
        assert getattr(fd, name).__name__ == f"funcdl.{name}"
    assert {"layers", "optim", "parallel", "value_and_grad"} <= set(dir(fd))
    # the public names only, not the module's own imports and helpers
    assert not {"Any", "TYPE_CHECKING", "importlib", "annotations", "_SUBMODULES"} & set(dir(fd))
    with pytest.raises(AttributeError, match="no attribute 'Dense'"):
        fd.Dense  # noqa: B018  (layers live in fd.layers)


def test_import_is_lazy_and_star_import_loads_what_it_names():
    code = """
        import sys
        import funcdl as fd
        loaded = {m for m in sys.modules if m.startswith("funcdl.")}
        assert "funcdl.layers" not in loaded and "funcdl.optim" not in loaded, loaded
        assert "funcdl.metrics" not in loaded, loaded
        assert fd.layers.Dense(3).name == "Dense(3)"
        from funcdl import *
        assert optim.sgd and losses.mse and io.save and tree.map and random.key
        assert metrics.accuracy
        print("ok")
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
