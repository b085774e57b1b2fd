"""``SinusoidalTimeEmbedding``: a diffusion model's timesteps (N,) to sinusoids (N, dim),
diffusers' ``get_timestep_embedding``. The closed form by hand, dt by finite differences in
float64 and by torch's autograd, dtypes, a DDPM noise predictor on ``(x_t, t)`` trained
through ``Parallel``, and bad inputs named."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import random
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)


def by_hand(t: Any, dim: int, flip: bool = False, shift: float = 1.0, scale: float = 1.0,
            max_period: float = 10000.0) -> np.ndarray:
    """get_timestep_embedding's steps, one loop over the frequencies, in float64."""
    half = dim // 2
    out = np.zeros((len(t), dim))
    for k in range(half):
        a = scale * np.asarray(t, np.float64) * math.exp(-math.log(max_period) * k / (half - shift))
        out[:, k], out[:, half + k] = (np.cos(a), np.sin(a)) if flip else (np.sin(a), np.cos(a))
    return out


OPTIONS = [dict(), dict(flip=True, shift=0.0), dict(scale=1000.0, max_period=50.0),
           dict(flip=True, shift=0.5, scale=0.1)]


def layer_of(dim: int, flip: bool = False, shift: float = 1.0, scale: float = 1.0,
             max_period: float = 10000.0) -> Any:
    return L.SinusoidalTimeEmbedding(dim, flip_sin_to_cos=flip, downscale_freq_shift=shift,
                                     scale=scale, max_period=max_period)


# dim 2 with shift 1 divides by zero, refused (test_bad_arguments)
@pytest.mark.parametrize(("dim", "opts"), [(d, o) for d in (2, 7, 16) for o in OPTIONS
                                           if d > 2 or o.get("shift", 1.0) != 1.0], ids=str)
def test_closed_form(dim: int, opts: dict[str, Any]) -> None:
    t = np.array([0, 1, 17, 999])
    y = layer_of(dim, **opts).apply((), t)
    assert y.shape == (4, dim) and y.dtype == np.float32
    np.testing.assert_allclose(y, by_hand(t, dim, **opts), rtol=0, atol=1e-7)
    if dim % 2:
        assert not y[:, -1].any()  # the padding column of an odd dim


def test_ddpm_defaults_are_ho_et_al() -> None:
    # DDPM's TF code: freqs exp(-log(10000)·k/(H - 1)), [sin | cos]: the last rate is 1e-4
    y = L.SinusoidalTimeEmbedding(8).apply((), np.array([0.0, 1.0]))
    np.testing.assert_allclose(y[0], [0, 0, 0, 0, 1, 1, 1, 1], atol=0)
    np.testing.assert_allclose(y[1, :4], np.sin([1.0, 10 ** (-4 / 3), 10 ** (-8 / 3), 1e-4]),
                               rtol=1e-6)


@pytest.mark.parametrize("opts", OPTIONS, ids=str)
def test_vjp_by_finite_differences(opts: dict[str, Any]) -> None:
    layer = layer_of(9, **opts)
    t = np.array([0.3, 2.0, 11.5, 140.25]) * (0.01 if opts.get("scale") == 1000.0 else 1)
    check_vjp(layer, (), t)
    check_layer(layer, (None,))


def test_vjp_closed_form_and_sign() -> None:
    # y = [sin(t f) | cos(t f)], H = 1 (shift 0, f = 1): dt = cos t·dy0 - sin t·dy1
    layer = L.SinusoidalTimeEmbedding(2, downscale_freq_shift=0.0)
    t = np.array([0.5, -1.25])
    _, pullback = layer.vjp((), t)
    dy = np.array([[1.0, 0.0], [0.0, 2.0]])
    _, dt = pullback(dy)
    np.testing.assert_allclose(dt, [math.cos(0.5), -2 * math.sin(-1.25)], rtol=1e-15)


def test_dtypes() -> None:
    layer = L.SinusoidalTimeEmbedding(6)
    for t, want in [(np.arange(3), np.float32), (np.arange(3, dtype=np.uint8), np.float32),
                    (np.arange(3, dtype=np.float32), np.float32),
                    (np.arange(3, dtype=np.float64), np.float64), ([0.5, 1.5], np.float32)]:
        y, pullback = layer.vjp((), t)
        _, dt = pullback(np.ones_like(y))
        assert y.dtype == want and dt.dtype == want, (t, y.dtype, dt.dtype)
    # integers give the float32 of the same numbers, computed from the exact integers
    np.testing.assert_array_equal(layer.apply((), np.array([999])),
                                  layer.apply((), np.array([999.0])).astype(np.float32))


def _ddpm_model() -> Any:
    return L.Sequential(
        L.Parallel(L.Dense(16),
                   L.Sequential(L.SinusoidalTimeEmbedding(8), L.Dense(16), L.SiLU())),
        L.FanInSum(), L.SiLU(), L.Dense(2))


def test_noise_predictor_on_x_and_t_against_per_row_calls() -> None:
    model = _ddpm_model()
    _, params = model.init(KEY, ((None, 2), (None,)))
    params = fd.tree.astype(params, np.float64)
    x = random.normal(random.key(1), (5, 2), np.float64)
    t = np.array([0, 3, 50, 99, 7], np.float64)
    eps = random.normal(random.key(2), (5, 2), np.float64)
    _, (_, (_, dt)) = fd.value_and_grad(model, fd.losses.mse, wrt_input=True)(
        params, (x, t), eps)
    # the same gradient from finite differences in x and t, and dt's sign
    h = 1e-6
    for i in range(5):
        tp, tm = t.copy(), t.copy()
        tp[i] += h
        tm[i] -= h
        fdiff = (fd.losses.mse(model.apply(params, (x, tp)), eps)
                 - fd.losses.mse(model.apply(params, (x, tm)), eps)) / (2 * h)
        np.testing.assert_allclose(dt[i], fdiff, rtol=1e-6, atol=1e-10)
    check_vjp(model, params, (x, t))


def test_integer_timesteps_train_in_float32() -> None:
    model = _ddpm_model()
    _, params = model.init(KEY, ((None, 2), (None,)))
    x = random.normal(random.key(1), (6, 2))
    t = random.randint(random.key(3), (6,), 0, 1000)
    loss, grads = fd.value_and_grad(model, fd.losses.mse)(params, (x, t), x)
    assert all(g.dtype == np.float32 for g in fd.tree.leaves(grads))
    assert np.isfinite(loss)


def test_against_torch() -> None:
    torch = pytest.importorskip("torch")
    for opts in OPTIONS:
        dim = 10
        t = np.array([0.0, 3.5, 42.0, 777.0]) / (1000 if opts.get("scale") == 1000.0 else 1)
        tt = torch.tensor(t, requires_grad=True)
        half = dim // 2
        exponent = -math.log(opts.get("max_period", 10000.0)) * torch.arange(
            half, dtype=torch.float64) / (half - opts.get("shift", 1.0))
        emb = opts.get("scale", 1.0) * tt[:, None] * torch.exp(exponent)[None]
        emb = torch.cat([torch.sin(emb), torch.cos(emb)], -1)  # diffusers' steps
        if opts.get("flip"):
            emb = torch.cat([emb[:, half:], emb[:, :half]], -1)
        dy = random.normal(random.key(4), (4, dim), np.float64)
        emb.backward(torch.tensor(dy))
        y, pullback = layer_of(dim, **opts).vjp((), t)
        np.testing.assert_allclose(y[:, :2 * half], emb.detach().numpy(), rtol=0, atol=1e-12)
        _, dt = pullback(dy)
        np.testing.assert_allclose(dt, tt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"SinusoidalTimeEmbedding: dim=2 .*shift"):
        L.SinusoidalTimeEmbedding(2)
    with pytest.raises(ValueError, match="SinusoidalTimeEmbedding: dim must be >= 2"):
        L.SinusoidalTimeEmbedding(1)
    with pytest.raises(ValueError, match="max_period must be a finite number > 0"):
        L.SinusoidalTimeEmbedding(8, max_period=0.0)
    with pytest.raises(TypeError, match="flip_sin_to_cos must be True or False"):
        L.SinusoidalTimeEmbedding(8, flip_sin_to_cos=1)


def test_bad_inputs_named() -> None:
    layer = L.SinusoidalTimeEmbedding(8)
    with pytest.raises(ValueError, match=r"SinusoidalTimeEmbedding\(8\): expected an in_shape "
                                         r"\(N,\).*got \(None, 1\); pass t\[:, 0\]"):
        layer.init(KEY, (None, 1))
    with pytest.raises(ValueError, match=r"expected t of shape \(N,\).*got shape \(4, 1\); "
                                         r"pass t\[:, 0\]"):
        layer.apply((), np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"got shape \(\); a single t for the whole batch"):
        layer.apply((), np.float32(3.0))
    with pytest.raises(ValueError, match="no parameters"):
        layer.apply({"w": np.ones(3)}, np.zeros(4))
    _, pullback = layer.vjp((), np.zeros(4))
    with pytest.raises(ValueError, match=r"SinusoidalTimeEmbedding\(8\): pullback expected dy "
                                         r"of shape \(4, 8\)"):
        pullback(np.zeros((4, 7)))


def test_sequence_encoding_points_to_it() -> None:
    with pytest.raises(ValueError, match=r"SinusoidalTimeEmbedding\(dim\)"):
        L.SinusoidalPositionalEncoding().init(KEY, (None,))
    with pytest.raises(ValueError, match=r"SinusoidalTimeEmbedding\(dim\)"):
        L.SinusoidalPositionalEncoding().init(KEY, (None, 1))
