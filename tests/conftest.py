"""Shared fixtures. Warnings are errors (pyproject.toml), so a NumPy overflow or invalid
value anywhere fails the test that caused it."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from funcdl import random

# Every property test draws the same examples on every run (hypothesis is pinned), so CI is
# red only for a reason that reproduces: drawn afresh, the conv-stack test once met a
# MaxPool window whose top two values were 3.7e-6 apart, where finite differences cross the
# max's switch point. No example database either: a failure kept in .hypothesis/ must not
# change what the next run checks.
settings.register_profile("funcdl", derandomize=True, database=None)
settings.load_profile("funcdl")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def key() -> np.ndarray:
    return random.key(0)


def refused(main: Callable[[list[str]], Any], argv: list[str], capsys: Any) -> str:
    """An example's ``main(argv)`` refused while parsing: exit status 2, nothing on stdout
    (nothing ran); returns what argparse wrote on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.out == ""
    return str(captured.err)


@pytest.fixture(params=["im2col", "offsets"])
def conv_path(request: Any, monkeypatch: Any) -> str:
    """Both ways a convolution runs: one product of the im2col buffer (small buffers; with
    few channels, the channel-major fold), and one kernel offset at a time (large ones),
    forced here on every size."""
    if request.param == "offsets":
        from funcdl.layers import conv
        monkeypatch.setattr(conv, "_COLS_BYTES", 0)
        monkeypatch.setattr(conv, "_FEW_CHANNELS", 0)
    return str(request.param)
