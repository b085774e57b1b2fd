"""The main job: examples/disk.py reaches its error target, bit-identically per key."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_example, refused

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


@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "0"], "argument --epochs: expected a positive integer (1 or more), got 0"),
    (["--epochs", "-1"], "argument --epochs: expected a positive integer (1 or more), got -1"),
    (["--epochs", "2.5"], "argument --epochs: expected a positive integer (1 or more), got '2.5'"),
    (["--seed", "-5"], "argument --seed: expected a seed: an integer in [0, 2**128), got -5"),
    (["--seed", str(2**128)], "argument --seed: expected a seed: an integer in [0, 2**128)"),
])
def test_bad_arguments_are_refused_while_parsing(disk, capsys, argv, message):
    err = refused(disk.main, argv, capsys)  # nothing trained
    assert err.startswith("usage: disk.py ") and f"error: {message}" in err


def test_an_out_that_is_a_file_is_refused_before_training(disk, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for out, message in [(afile, "expected a folder for the outputs, got"),
                         (afile / "sub", "cannot create the folder")]:
        # refused before training
        err = refused(disk.main, ["--epochs", "1", "--out", str(out)], capsys)
        assert f"error: argument --out: {message}" in err
        assert len(err.strip().splitlines()) == 2  # the usage line and one message
    assert afile.read_text() == "not a folder"


def test_help_describes_every_option_with_its_default(disk, capsys):
    with pytest.raises(SystemExit) as exit_info:
        disk.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    assert "Train the disk classifier, the task of the five reference reports" in text
    assert "(default: 200)" in text and "(default: 0)" in text
    assert "created when missing (default: " in text
