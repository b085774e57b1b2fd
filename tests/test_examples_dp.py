"""examples/dp_disk.py: DP-SGD reaches the non-private error on the disk, and its privacy
accounting agrees with the published figures and with the Gaussian mechanism's closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import load_example, refused


@pytest.fixture(scope="module")
def dp():
    return load_example("dp_disk")


def test_dp_sgd_trains_the_disk_and_reports_its_epsilon(dp, capsys):
    result = dp.main([])
    out = capsys.readouterr().out
    private, plain = result["dp"], result["plain"]
    assert private["test_error"] < 0.06 and plain["test_error"] < 0.06
    assert private["steps"] == 60 * 20
    assert private["epsilon"] == dp.rdp_epsilon(0.05, 1.0, 1200, 1e-5)[0]
    assert f"(ε, δ) = ({private['epsilon']:.2f}, 1e-5)" in out and "DP-SGD epoch" in out


def test_less_noise_trains_better_and_spends_more(dp):
    noisy = dp.train(epochs=10, noise=4.0, verbose=False)
    quiet = dp.train(epochs=10, noise=0.5, verbose=False)
    assert quiet["epsilon"] > 4 * noisy["epsilon"]
    assert quiet["test_error"] < noisy["test_error"]


def test_same_seed_gives_the_same_run(dp):
    a, b = (dp.train(epochs=2, verbose=False) for _ in range(2))
    for pa, pb in zip(*(dp.fd.tree.leaves(r["params"]) for r in (a, b))):
        assert np.array_equal(pa, pb)


@pytest.mark.parametrize("sigma, epochs, published", [(1.3, 20, 1.34), (0.7, 70, 8.68)])
def test_epsilon_matches_the_moments_accountant(dp, sigma, epochs, published):
    # Bu, Dong, Long and Su (Harvard Data Science Review, 2020), Figure 4: DP-SGD on MNIST
    # at q = 256/60000, delta = 1e-5, by the moments accountant. Integer orders alone give
    # an upper bound, within a few percent of it.
    eps, _ = dp.rdp_epsilon(256 / 60000, sigma, round(epochs * 60000 / 256), 1e-5)
    assert published <= eps <= 1.035 * published + 0.01


@pytest.mark.parametrize("sigma, steps", [(1.0, 1), (2.0, 50), (5.0, 1000)])
def test_without_sampling_it_is_the_gaussian_mechanism(dp, sigma, steps):
    # q = 1: every step sees every example, RDP alpha/(2 sigma^2) per step (Mironov 2017)
    want = min((steps * a / (2 * sigma**2) + math.log(1e5) / (a - 1), a) for a in range(2, 257))
    got = dp.rdp_epsilon(1.0 - 1e-12, sigma, steps, 1e-5)
    assert got[1] == want[1] and got[0] == pytest.approx(want[0], rel=1e-9)


@pytest.mark.parametrize("argv, message", [(["--noise", "0"], "--noise"),
                                           (["--clip", "-1"], "--clip")])
def test_bad_arguments_are_refused_while_parsing(argv, message, capsys):
    assert message in refused(load_example("dp_disk").main, argv, capsys)
