"""examples/digits_cnn.py: the CNN with BatchNorm state reaches 97% test accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_example, refused

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


@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "0"], "argument --epochs: expected a positive integer (1 or more), got 0"),
    (["--seed", "-1"], "argument --seed: expected a seed: an integer in [0, 2**128), got -1"),
])
def test_bad_arguments_are_refused_while_parsing(digits, capsys, argv, message):
    err = refused(digits.main, argv, capsys)
    assert err.startswith("usage: ") and f"error: {message}" in err


def test_an_out_that_is_a_file_is_refused_before_training(digits, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    err = refused(digits.main, ["--epochs", "1", "--out", str(tmp_path / "afile")], capsys)
    assert "error: argument --out: expected a folder for the outputs" in err


def test_help_shows_the_defaults(digits, capsys):
    with pytest.raises(SystemExit):
        digits.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 30)" in text and "(default: 0)" in text and "--out DIR" in text
