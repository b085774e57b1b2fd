"""The main job: examples/disk.py reaches its error target, bit-identically per key."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_example

import funcdl as fd


@pytest.fixture(scope="module")
def disk():
    return load_example("disk")


@pytest.fixture(scope="module")
def trained(disk):
    return disk.train(verbose=False)


def test_disk_reaches_two_percent_test_error_with_adam(trained):
    assert trained["test_error"] <= 0.02
    assert trained["train_error"] <= 0.02
    assert trained["curve"][-1] < trained["curve"][0] / 5


def test_same_key_gives_bit_identical_run(disk, trained):
    again = disk.train(verbose=False)
    for a, b in zip(fd.tree.leaves(trained["params"]), fd.tree.leaves(again["params"])):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    assert trained["curve"] == again["curve"]
    other = disk.train(epochs=2, seed=1, verbose=False)
    assert other["curve"][0] != trained["curve"][0]


def test_main_prints_saves_and_plots(disk, tmp_path, capsys):
    result = disk.main(["--epochs", "3", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "final: train error" in out and "test error" in out
    loaded = fd.io.load(tmp_path / "disk_params.npz", like=result["params"])
    for a, b in zip(fd.tree.leaves(loaded), fd.tree.leaves(result["params"])):
        np.testing.assert_array_equal(a, b)
    pytest.importorskip("matplotlib")
    assert (tmp_path / "disk.png").stat().st_size > 10_000
