"""examples/weight_sharing.py: the shared model has one encoder's parameters, trains, and
the script reports both models."""

from __future__ import annotations

import pytest
from conftest import load_example

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
