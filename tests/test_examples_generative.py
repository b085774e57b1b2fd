"""examples/vae.py and examples/gan.py: each reaches its target with its default settings,
keeps float32 and refuses bad flags; the VAE's custom layer and loss have float64
finite-difference checks and a test that catches a wrong sign or factor in the KL's
gradient; the GAN's chained generator gradient equals the composed model's."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_example, refused

import funcdl as fd
from funcdl.testing import check_loss, check_vjp


@pytest.fixture(scope="module")
def vae():
    return load_example("vae")


@pytest.fixture(scope="module")
def gan():
    return load_example("gan")


def float32_leaves(params) -> bool:
    leaves = fd.tree.leaves(params)
    return bool(leaves) and all(p.dtype == np.float32 for p in leaves)


def normal64(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return fd.random.normal(fd.random.key(seed), shape, np.float64)


# ------------------------------------------------------------------------------- vae

def test_vae_beats_the_mean_baseline(vae, capsys):
    result = vae.main([])
    out = capsys.readouterr().out
    assert "train ELBO" in out and "baseline (mean decoder)" in out
    assert result["elbo"] >= 4.0  # seeds 0-4: 5.80-7.39 nats
    assert result["elbo"] - result["baseline"] >= 200  # baseline: -284 to -375
    assert 3.0 <= result["kl"] <= 10.0  # q(z | x) moved off the prior, and not far
    assert result["elbo"] + result["kl"] < vae.NOISE_FLOOR  # the noise cannot be decoded
    assert result["curve"][-1] > result["curve"][0] + 100
    assert float32_leaves(result["params"])


def test_vae_same_seed_gives_the_same_run(vae):
    a, b = (vae.train(epochs=2, verbose=False) for _ in range(2))
    for pa, pb in zip(fd.tree.leaves(a["params"]), fd.tree.leaves(b["params"]), strict=True):
        assert np.array_equal(pa, pb)
    assert a["curve"] == b["curve"] and a["elbo"] == b["elbo"]
    assert vae.train(epochs=2, seed=1, verbose=False)["curve"] != a["curve"]


def test_reparameterize_vjp_in_float64(vae):
    layer = vae.Reparameterize()
    mu, logvar = normal64(1, (5, 2)), 0.5 * normal64(2, (5, 2))
    check_vjp(layer, (), (mu, logvar), key=fd.random.key(3))
    # the pullback by hand: dmu = dz, dlogvar = dz eps exp(logvar / 2) / 2
    z, pullback = layer.vjp((), (mu, logvar), key=fd.random.key(3))
    eps = (z - mu) / np.exp(logvar / 2)
    dz = normal64(4, (5, 2))
    dparams, (dmu, dlogvar) = pullback(dz)
    assert dparams == ()
    np.testing.assert_allclose(dmu, dz, rtol=0, atol=0)
    np.testing.assert_allclose(dlogvar, dz * eps * np.exp(logvar / 2) / 2, rtol=1e-12)


def test_reparameterize_draws_from_its_key(vae):
    layer = vae.Reparameterize()
    mu = np.full((20000, 2), 3.0, np.float32)
    logvar = np.full((20000, 2), np.log(0.25), np.float32)  # std 0.5
    z = layer.apply((), (mu, logvar), key=fd.random.key(0))
    assert z.dtype == np.float32 and z.shape == (20000, 2)
    assert abs(z.mean() - 3.0) < 0.01 and abs(z.std() - 0.5) < 0.01
    assert np.array_equal(z, layer.apply((), (mu, logvar), key=fd.random.key(0)))
    assert not np.array_equal(z, layer.apply((), (mu, logvar), key=fd.random.key(1)))
    with pytest.raises(ValueError, match=r"Reparameterize\(\): needs a key"):
        layer.apply((), (mu, logvar))
    with pytest.raises(ValueError, match="one shape"):
        layer.apply((), (mu, logvar[:, :1]), key=fd.random.key(0))
    assert layer.init(None, ((None, 2), (None, 2))) == ((None, 2), ())


def test_whole_vae_vjp_in_float64(vae):
    _, _, model = vae.make_model(hidden=6)
    _, params = model.init(fd.random.key(0), (None, vae.DIM))
    x = normal64(1, (4, vae.DIM))
    check_vjp(model, fd.tree.astype(params, np.float64), x, key=fd.random.key(2))


def test_elbo_loss_vjp_in_float64(vae):
    pred = (normal64(1, (6, vae.DIM)), normal64(2, (6, 2)), 0.5 * normal64(3, (6, 2)))
    check_loss(vae.elbo, pred, (normal64(4, (6, vae.DIM)), None))
    pred32 = tuple(p.astype(np.float32) for p in pred)
    check_loss(vae.elbo, pred32, (normal64(4, (6, vae.DIM)).astype(np.float32), None),
               rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match=r"gaussian_nll: pred has shape \(6, 3\) but target"):
        vae.elbo((pred[0][:, :3], pred[1], pred[2]), (normal64(4, (6, vae.DIM)), None))


def test_elbo_kl_gradient_has_the_right_sign_and_factor(vae):
    # with a perfect reconstruction only the KL is left: ½ mean_n Σ (e^lv + mu² - 1 - lv);
    # its gradient pulls mu towards 0 and logvar towards 0 (the prior N(0, I))
    n = 4
    x = normal64(0, (n, vae.DIM))
    mu = np.array([[1.5, -2.0]] * n)
    logvar = np.array([[1.0, -1.0]] * n)
    value, pullback = vae.elbo.vjp((x, mu, logvar), (x, None))
    drecon, dmu, dlogvar = pullback(2.0)
    kl = 0.5 * (np.exp(1.0) + 2.25 - 2.0 + np.exp(-1.0) + 4.0)  # per example
    assert value == pytest.approx(kl + vae.DIM / 2 * np.log(2 * np.pi * vae.NOISE ** 2))
    assert value - vae.kl_term(mu, logvar) == pytest.approx(-vae.NOISE_FLOOR - vae.DIM / 2)
    np.testing.assert_array_equal(drecon, 0)
    np.testing.assert_allclose(dmu, 2.0 * mu / n, rtol=1e-12)  # + mu: a step moves it to 0
    np.testing.assert_allclose(dlogvar, 2.0 * (np.exp(logvar) - 1) / (2 * n), rtol=1e-12)
    assert dlogvar[0, 0] > 0 > dlogvar[0, 1]
    # the prior itself is the KL's minimum: zero gradient there
    _, pullback = vae.elbo.vjp((x, np.zeros((n, 2)), np.zeros((n, 2))), (x, None))
    assert not any(d.any() for d in pullback(1.0))


def test_vae_cli_refuses_bad_values(vae, capsys):
    assert "--epochs" in refused(vae.main, ["--epochs", "0"], capsys)
    assert "--seed" in refused(vae.main, ["--seed", "-1"], capsys)
    assert "--epochs" in refused(vae.main, ["--epochs", "two"], capsys)


# ------------------------------------------------------------------------------- gan

def test_gan_covers_the_modes(gan, capsys):
    result = gan.main([])
    out = capsys.readouterr().out
    assert "within 3 std of a mode" in out and "modes covered" in out
    assert result["start"][0] <= 0.05 and result["start"][1] <= 2  # seeds 0-4: 0%, 0
    near, modes = result["end"]
    assert near >= 0.65 and modes >= 7  # seeds 0-4: 69.5-82.2%, 8 of 8
    assert len(result["d_curve"]) == len(result["g_curve"]) == 1500
    assert float32_leaves(result["g_params"]) and float32_leaves(result["d_params"])
    assert result["samples"].dtype == np.float32


def test_gan_generator_gradient_is_the_composed_models(gan):
    generator, discriminator = gan.make_models(hidden=8)
    _, g_params = generator.init(fd.random.key(0), (None, gan.LATENT))
    _, d_params = discriminator.init(fd.random.key(1), (None, 2))
    g64, d64 = fd.tree.astype(g_params, np.float64), fd.tree.astype(d_params, np.float64)
    z = normal64(2, (16, gan.LATENT))
    d_grad_x = fd.value_and_grad(discriminator, fd.losses.bce_with_logits, wrt_input=True)
    loss, grads = gan.generator_grads(generator, d_grad_x, g64, d64, z)
    # D(G(z)) as one Sequential: its gradient in G's part is the chain's
    both = fd.layers.Sequential(generator, discriminator)
    loss2, grads2 = fd.value_and_grad(both, fd.losses.bce_with_logits)(
        (g64, d64), z, np.ones((16, 1)))
    assert loss == pytest.approx(loss2, rel=1e-12)
    for a, b in zip(fd.tree.leaves(grads), fd.tree.leaves(grads2[0]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    # the non-saturating loss is -log D(G(z)): a step against its gradient raises D(G(z))
    step = fd.tree.map(lambda p, g: p - 1e-2 * g, g64, grads)
    before = discriminator.apply(d64, generator.apply(g64, z)).mean()
    assert discriminator.apply(d64, generator.apply(step, z)).mean() > before


def test_gan_quality_measure(gan):
    data = gan.sample_data(fd.random.key(0), 4000)
    assert data.dtype == np.float32 and data.shape == (4000, 2)
    near, modes = gan.quality(data)
    assert abs(near - (1 - np.exp(-4.5))) < 0.01 and modes == gan.MODES  # 2-D: 98.9%
    assert gan.quality(np.zeros((100, 2), np.float32)) == (0.0, 0)
    one = np.repeat(gan.centres()[3:4], 100, axis=0)
    assert gan.quality(one) == (1.0, 1)
    # 0.5% at a second mode is below COVERED (1%): still one mode
    mixed = np.concatenate([np.repeat(gan.centres()[:1], 199, axis=0), gan.centres()[1:2]])
    assert gan.quality(mixed) == (1.0, 1)


def test_gan_cli_refuses_bad_values(gan, capsys):
    assert "--iterations" in refused(gan.main, ["--iterations", "0"], capsys)
    assert "--seed" in refused(gan.main, ["--seed", "-1"], capsys)
    assert "--iterations" in refused(gan.main, ["--iterations", "many"], capsys)
