"""The README's code blocks run as a new user would paste them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})


SCALE_OUT = README.parent / "docs" / "scale-out.md"
SCALE_BLOCKS = re.findall(r"```python\n(.*?)```", SCALE_OUT.read_text(), flags=re.S)
# what the scale-out fragments take as given: a model, its params, data, an optimizer
PRELUDE = """
import funcdl as fd
model = fd.layers.Sequential(fd.layers.Dense(8), fd.layers.ReLU(), fd.layers.Dense(1))
_, params = model.init(fd.random.key(0), (None, 2))
x, y = fd.data.disk(fd.random.key(1), 64)
loss, key, epochs = fd.losses.bce_with_logits, fd.random.key(2), 2
opt = fd.optim.sgd(0.1)
opt_state = opt.init(params)
"""


def test_scale_out_blocks_run_on_one_process(tmp_path, monkeypatch):
    """The data-parallel and sharded loops as one process runs them (no MPI asked: no
    launcher variable); the sweep and Dask blocks are only compiled (a pool, a cluster)."""
    assert len(SCALE_BLOCKS) == 4
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "docs"}
    exec(compile(PRELUDE, "prelude", "exec"), scope)
    for code in SCALE_BLOCKS[:2]:  # in one scope, as a reader goes on from the first
        before, scope["value"] = scope["params"], None
        exec(compile(code, str(SCALE_OUT), "exec"), scope)
        assert np.isfinite(scope["value"])  # the loop ran, and trained
        assert not np.array_equal(scope["params"][0]["w"], before[0]["w"])
    for code in SCALE_BLOCKS[2:]:
        compile(code, str(SCALE_OUT), "exec")
