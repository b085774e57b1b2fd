"""funcdl.perf: the opt-in allocator setting changes nothing numerically and is not applied
by importing funcdl."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import funcdl as fd
from funcdl import perf


def test_retain_freed_memory_is_opt_in_and_harmless():
    code = ("import funcdl, sys; print('funcdl.perf' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"  # importing funcdl does not touch the allocator
    k = fd.random.key(0)
    before = fd.random.normal(k, (300, 300)) @ fd.random.normal(k, (300, 300))
    assert perf.retain_freed_memory() in (True, False)
    after = fd.random.normal(k, (300, 300)) @ fd.random.normal(k, (300, 300))
    np.testing.assert_array_equal(before, after)
