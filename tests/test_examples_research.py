"""examples/contrastive_blobs.py and examples/lbfgs_disk.py: each reaches its target with its
default (small) settings, bit-identically per seed, keeps float32, and refuses bad flags."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_example, refused

import funcdl as fd


@pytest.fixture(scope="module")
def simclr():
    return load_example("contrastive_blobs")


@pytest.fixture(scope="module")
def lbfgs():
    return load_example("lbfgs_disk")


def float32_leaves(params) -> bool:
    leaves = fd.tree.leaves(params)
    return bool(leaves) and all(p.dtype == np.float32 for p in leaves)


# ------------------------------------------------------------------ contrastive_blobs

def test_contrastive_probe_beats_the_random_encoder(simclr, capsys):
    result = simclr.main([])
    out = capsys.readouterr().out
    assert "linear probe test accuracy" in out and "random encoder" in out
    acc = result["accuracy"]
    assert acc["contrastive"] >= 0.88  # seeds 0-4: 91-97%
    assert acc["contrastive"] - acc["random"] >= 0.08  # random: 75-82%
    assert acc["raw"] <= 0.65  # two rings: no linear map of the raw readings separates them
    assert result["curve"][-1] < result["curve"][0] - 1.0  # ntxent fell: log(255) = 5.5 at start
    assert float32_leaves(result["params"]) and float32_leaves(result["train_params"])


def test_contrastive_same_seed_gives_the_same_run(simclr):
    a, b = (simclr.train(epochs=2, verbose=False) for _ in range(2))
    for pa, pb in zip(fd.tree.leaves(a["params"]), fd.tree.leaves(b["params"]), strict=True):
        assert np.array_equal(pa, pb)
    assert a["curve"] == b["curve"] and a["accuracy"] == b["accuracy"]
    # the probed encoder is schedule-free's average x, not the training iterate y
    x = fd.optim.schedule_free_eval_params(a["opt_state"], a["train_params"])[0]
    for px, pa, py in zip(fd.tree.leaves(x), fd.tree.leaves(a["params"]),
                          fd.tree.leaves(a["train_params"][0]), strict=True):
        assert np.array_equal(px, pa) and not np.array_equal(pa, py)
    c = simclr.train(epochs=2, seed=1, verbose=False)
    assert c["curve"] != a["curve"]


def test_contrastive_data_and_views(simclr):
    x_train, x_test, y_train, y_test = simclr.make_data(fd.random.key(0), 400)
    assert x_train.shape == (300, simclr.DIM) and x_test.shape == (100, simclr.DIM)
    assert x_train.dtype == x_test.dtype == np.float32 and y_train.dtype == np.int64
    assert set(np.unique(y_test)) == {0, 1}
    np.testing.assert_allclose(x_train.mean(axis=0), 0, atol=1e-5)  # standardised
    np.testing.assert_allclose(x_train.std(axis=0), 1, rtol=1e-4)
    v1, v1_again, v2 = (simclr.augment(fd.random.key(k), x_train) for k in (1, 1, 2))
    assert v1.dtype == np.float32 and v1.shape == x_train.shape
    assert np.array_equal(v1, v1_again) and not np.array_equal(v1, v2)


def test_contrastive_views_mask_and_jitter_at_their_rates(simclr, monkeypatch):
    x = fd.random.normal(fd.random.key(0), (4000, simclr.DIM)) + np.float32(3)  # never 0
    monkeypatch.setattr(simclr, "JITTER", 0.0)
    masked = simclr.augment(fd.random.key(1), x) == 0
    assert abs(masked.mean() - simclr.MASK) < 0.005  # 64000 channels: sd 0.0012
    monkeypatch.setattr(simclr, "JITTER", 0.3)
    monkeypatch.setattr(simclr, "MASK", 0.0)
    noise = simclr.augment(fd.random.key(1), x) - x
    assert abs(noise.std() - 0.3) < 0.005 and abs(noise.mean()) < 0.005


def test_contrastive_cli_refuses_bad_values(simclr, capsys):
    assert "--epochs" in refused(simclr.main, ["--epochs", "0"], capsys)
    assert "--seed" in refused(simclr.main, ["--seed", "-1"], capsys)
    assert "--epochs" in refused(simclr.main, ["--epochs", "two"], capsys)


# ------------------------------------------------------------------------- lbfgs_disk

def test_lbfgs_reaches_the_target_loss_adam_does_not(lbfgs, capsys):
    result = lbfgs.main([])
    out = capsys.readouterr().out
    assert "evals to loss < 0.01" in out and "prodigy" in out
    n = result["evaluations"]
    assert all(len(result[k]["curve"]) == n for k in ("lbfgs", "adam", "prodigy"))
    # reached within the evaluations, where Adam does not; how many it takes follows the
    # BLAS's rounding through the line search (138 of 198 on one host, 149 of 192 on another)
    assert result["lbfgs"]["reached"] is not None and result["lbfgs"]["reached"] <= n
    assert result["adam"]["reached"] is None  # not in as many evaluations
    assert result["lbfgs"]["loss"] < result["adam"]["loss"] / 2
    assert result["lbfgs"]["train_error"] <= 0.005
    assert max(result[k]["test_error"] for k in ("lbfgs", "adam")) < 0.03
    assert all(float32_leaves(result[k]["params"]) for k in ("lbfgs", "adam", "prodigy"))


def test_lbfgs_with_gelu_wins_where_relu_does_not(lbfgs):
    # seed 1: with ReLU, L-BFGS ends above Adam; the smooth network reverses it
    relu = lbfgs.train(seed=1, prodigy=False, verbose=False)
    gelu = lbfgs.train(seed=1, prodigy=False, activation="gelu", verbose=False)
    assert relu["lbfgs"]["loss"] > relu["adam"]["loss"]
    assert gelu["lbfgs"]["loss"] < gelu["adam"]["loss"] / 10
    assert gelu["lbfgs"]["reached"] is not None and gelu["adam"]["reached"] is None


def test_lbfgs_counts_every_evaluation(lbfgs):
    result = lbfgs.train(iterations=5, prodigy=False, verbose=False)
    # one evaluation at the start, then exactly those the line searches say they made: the
    # reused state.states['linesearch'].value/grad cost nothing
    assert result["evaluations"] == 1 + result["linesearch_evaluations"] > 5
    assert len(result["adam"]["curve"]) == result["evaluations"]


def test_lbfgs_same_seed_gives_the_same_run(lbfgs):
    a, b = (lbfgs.train(iterations=5, verbose=False) for _ in range(2))
    for name in ("lbfgs", "adam", "prodigy"):
        assert a[name]["curve"] == b[name]["curve"]
        for pa, pb in zip(fd.tree.leaves(a[name]["params"]), fd.tree.leaves(b[name]["params"]),
                          strict=True):
            assert np.array_equal(pa, pb)
    c = lbfgs.train(iterations=5, seed=1, verbose=False)
    assert c["lbfgs"]["curve"] != a["lbfgs"]["curve"]


def test_first_below(lbfgs):
    assert lbfgs.first_below([0.7, 0.3, 0.05, 0.2, 0.01], 0.1) == 3
    assert lbfgs.first_below([0.7, 0.3], 0.1) is None
    assert lbfgs.first_below([0.05], 0.1) == 1


def test_lbfgs_cli_refuses_bad_values(lbfgs, capsys):
    for bad in ("0", "-0.1", "nan", "inf", "low"):
        assert "--target" in refused(lbfgs.main, ["--target", bad], capsys)
    assert "--iterations" in refused(lbfgs.main, ["--iterations", "0"], capsys)
    assert "--activation" in refused(lbfgs.main, ["--activation", "tanh"], capsys)
    assert "--seed" in refused(lbfgs.main, ["--seed", "1.5"], capsys)
