"""examples/weight_sharing.py: the shared model has one encoder's parameters, trains, and
the script reports both models."""

from __future__ import annotations

import pytest
from conftest import load_example, refused

import funcdl as fd


def test_shared_model_has_one_encoder(key):
    ws = load_example("weight_sharing")
    shared, unshared = ws.make_model(True), ws.make_model(False)
    n = {s: sum(p.size for p in fd.tree.leaves(m.init(key, (None, 4))[1]))
         for s, m in ((True, shared), (False, unshared))}
    encoder = sum(p.size for p in fd.tree.leaves(ws.encoder().init(key, (None, 2))[1]))
    assert n[False] - n[True] == encoder


def test_main_runs_and_reports(tmp_path, capsys):
    ws = load_example("weight_sharing")
    results = ws.main(["--epochs", "3", "--runs", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "shared" in out and "unshared" in out and "test error" in out
    assert [runs[0]["shared"] for runs in results] == [True, False]
    assert all(0.0 <= runs[0]["test_error"] <= 1.0 for runs in results)
    pytest.importorskip("matplotlib")
    assert (tmp_path / "weight_sharing.png").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--runs", "0"], "argument --runs: expected a positive integer (1 or more), got 0"),
    (["--runs", "-2"], "argument --runs: expected a positive integer (1 or more), got -2"),
    (["--epochs", "0"], "argument --epochs: expected a positive integer (1 or more), got 0"),
    (["--epochs", "three"],
     "argument --epochs: expected a positive integer (1 or more), got 'three'"),
])
def test_bad_arguments_are_refused_while_parsing(capsys, argv, message):
    ws = load_example("weight_sharing")
    # not even the table's header
    err = refused(ws.main, [*argv, "--epochs", "1"] if "--runs" in argv else argv, capsys)
    assert err.startswith("usage: ") and f"error: {message}" in err


def test_an_out_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    ws = load_example("weight_sharing")
    (tmp_path / "afile").write_text("")
    err = refused(ws.main, ["--epochs", "1", "--runs", "1", "--out", str(tmp_path / "afile")],
                  capsys)
    assert "error: argument --out: expected a folder for the outputs" in err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        load_example("weight_sharing").main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 150)" in text and "(default: 3)" in text and "--out DIR" in text
