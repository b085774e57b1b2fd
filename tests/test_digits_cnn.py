"""examples/digits_cnn.py: the CNN with BatchNorm state reaches 97% test accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_example

import funcdl as fd

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    return load_example("digits_cnn")


def test_cnn_reaches_97_percent(digits):
    result = digits.train(epochs=12, verbose=False)
    assert result["test_accuracy"] >= 0.97
    # BatchNorm's running statistics moved away from their initial values
    means = [s["mean"] for s in result["state"] if s != ()]
    assert len(means) == 2 and all(np.abs(m).max() > 0 for m in means)
    assert all(p.dtype == np.float32 for p in fd.tree.leaves(result["params"]))


def test_split_is_fixed_by_key(digits):
    a = digits.load(fd.random.key(0))
    b = digits.load(fd.random.key(0))
    c = digits.load(fd.random.key(1))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    assert len(a[0]) + len(a[2]) == 1797 and a[0].shape[1:] == (8, 8, 1)


def test_main_writes_confusion_matrix(digits, tmp_path, capsys):
    digits.main(["--epochs", "1", "--out", str(tmp_path)])
    assert "final: test accuracy" in capsys.readouterr().out
    pytest.importorskip("matplotlib")
    assert (tmp_path / "digits_confusion.png").stat().st_size > 5_000
