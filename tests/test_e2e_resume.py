"""Checkpoint and resume: train 10 steps, ``io.save`` params, BatchNorm state and optimizer
state (mid-accumulation of ``multi_steps``), load them in a fresh process and train 10 more:
bit for bit the 20 uninterrupted steps, in float64 and float32, dtypes kept."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from _e2e_util import resume_run

from funcdl import io, tree


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_resume_in_a_fresh_process_is_bit_for_bit(dtype: str, tmp_path: Any) -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    half, resumed, whole = (str(tmp_path / f) for f in ("half.npz", "resumed.npz", "whole.npz"))
    resume_run(dtype, 0, 10, None, half)  # 10 % 3: saved mid-accumulation
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, os.path.join(root, "tests"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", "import sys; from _e2e_util import resume_run; "
                    "resume_run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])",
                    dtype, "10", "20", half, resumed], check=True, cwd=root, env=env)
    resume_run(dtype, 0, 20, None, whole)
    a, b = io.load(resumed), io.load(whole)
    assert tree.structure(a) == tree.structure(b)
    for u, v in zip(tree.leaves(a), tree.leaves(b)):
        assert np.asarray(u).dtype == np.asarray(v).dtype
        assert np.array_equal(u, v)
    assert np.asarray(tree.leaves(a["params"])[0]).dtype == np.dtype(dtype)
