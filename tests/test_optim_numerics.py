"""funcdl.optim: float64 cross-checks against torch.optim (where torch is installed), and
the numerical edge cases: bitwise SGD steps, the fused Adam path, overflow in norms and
second moments, 0-d params, clamps. Hand-computed steps: test_optim.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from _optim_util import close, run, scalar_run

from funcdl import optim, tree

# ---------------------------------------------------------------------------- torch

TORCH_CASES: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("sgd", {"lr": 0.1}, "SGD", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}, "SGD", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}, "SGD",
     {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("adam", {"lr": 0.05}, "Adam", {"lr": 0.05}),
    ("adam", {"lr": 0.05, "b1": 0.8, "b2": 0.99, "eps": 1e-3, "weight_decay": 0.1}, "Adam",
     {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.1}),
    ("adamw", {"lr": 0.05, "weight_decay": 0.1}, "AdamW", {"lr": 0.05, "weight_decay": 0.1}),
    ("rmsprop", {"lr": 0.01}, "RMSprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "centered": True, "momentum": 0.5,
                 "weight_decay": 0.1}, "RMSprop",
     {"lr": 0.01, "alpha": 0.9, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("adagrad", {"lr": 0.1}, "Adagrad", {"lr": 0.1}),
    ("adagrad", {"lr": 0.1, "lr_decay": 0.3, "weight_decay": 0.1,
                 "initial_accumulator_value": 0.2}, "Adagrad",
     {"lr": 0.1, "lr_decay": 0.3, "weight_decay": 0.1, "initial_accumulator_value": 0.2}),
]


@pytest.mark.parametrize(("alias", "kwargs", "torch_name", "torch_kwargs"), TORCH_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_CASES)])
def test_matches_torch_optim(alias: str, kwargs: dict[str, Any], torch_name: str,
                             torch_kwargs: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    grads_seq = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(5)]

    tparams = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
               for k, v in params.items()}
    topt = getattr(torch.optim, torch_name)(list(tparams.values()), **torch_kwargs)
    opt = getattr(optim, alias)(**kwargs)
    state = opt.init(params)
    for grads in grads_seq:
        updates, state = opt.update(state, grads, params)
        params = optim.apply_updates(params, updates)
        for k, tp in tparams.items():
            tp.grad = torch.tensor(grads[k], dtype=torch.float64)
        topt.step()
        for k, tp in tparams.items():
            np.testing.assert_allclose(params[k], tp.detach().numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 100.0])
def test_clip_with_eps_1e_6_matches_torch_clip_grad_norm(max_norm: float) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    grads = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    norm = float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))  # 3.75: 3.0 clips
    tgrads = {k: torch.tensor(v, dtype=torch.float64) for k, v in grads.items()}
    tparams = [torch.zeros(v.shape, dtype=torch.float64) for v in tgrads.values()]
    for p, g in zip(tparams, tgrads.values(), strict=True):
        p.grad = g
    torch.nn.utils.clip_grad_norm_(tparams, max_norm)
    for pad, rtol in ((1e-6, 1e-15), (0.0, None)):
        clip = optim.clip_by_global_norm(max_norm, eps=pad)
        out, _ = clip.update(clip.init(grads), grads)
        for (k, _), p in zip(grads.items(), tparams, strict=True):
            if rtol is not None:
                np.testing.assert_allclose(out[k], p.grad.numpy(), rtol=rtol, atol=0.0)
            elif max_norm < norm:  # optax's factor: off torch's by ~1e-6 / norm, not more
                diff = np.max(np.abs(out[k] / p.grad.numpy() - 1.0))
                assert 1e-8 < diff < 1e-6
            else:  # unclipped: the grads themselves
                np.testing.assert_array_equal(out[k], grads[k])


def test_clip_eps_pads_the_norm() -> None:
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}  # global norm 5
    clip = optim.clip_by_global_norm(1.0, eps=5.0)  # factor 1 / (5 + 5)
    out, _ = clip.update(clip.init(grads), grads)
    np.testing.assert_allclose(out["a"], [0.3], rtol=1e-15)
    edge = optim.clip_by_global_norm(5.5, eps=1.0)  # norm + eps above max_norm: clipped
    out, _ = edge.update(edge.init(grads), grads)
    np.testing.assert_allclose(out["b"], [[4.0 * 5.5 / 6.0]], rtol=1e-15)
    with pytest.raises(ValueError, match="eps"):
        optim.clip_by_global_norm(1.0, eps=-1e-6)


def test_negative_values_are_refused_from_lr_schedules_only() -> None:
    grads = {"g": np.array([1.0, -2.0])}
    flip = optim.scale_by_schedule(lambda c: -2.0)  # a scale may be negative
    np.testing.assert_array_equal(flip.update(flip.init(grads), grads)[0]["g"], [-2.0, 4.0])
    ascent = optim.sgd(lambda c: -0.1)  # a learning rate may not (as a float lr may not)
    with pytest.raises(ValueError, match=r"learning_rate.*returned -0\.1 at count 0"):
        ascent.update(ascent.init(grads), grads, grads)


@pytest.mark.parametrize("lr", [0.01, 1 / 3, optim.cosine_decay_schedule(0.3, 10)])
def test_sgd_update_is_bitwise_minus_lr_times_g_in_each_leaf_dtype(lr):
    # The step is applied as a 0-d array of each leaf's dtype: it must give exactly what
    # NumPy gives for a Python float (the float cast to the leaf's dtype), dtype kept.
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((3, 4)).astype(np.float32),
             "b": rng.standard_normal(5), "c": np.float32(0.7), "d": 0.25,
             "e": rng.standard_normal(2).astype(np.float32).reshape(2, 1).T}
    opt = optim.sgd(lr)
    state = opt.init(grads)
    for count in range(3):
        updates, state = opt.update(state, grads, grads)
        step = -(lr(count) if callable(lr) else lr)
        for k, g in grads.items():
            want = g * step
            assert np.asarray(updates[k]).dtype == np.asarray(want).dtype, k
            np.testing.assert_array_equal(updates[k], want)
        assert updates["a"].dtype == np.float32 and updates["b"].dtype == np.float64


def _adam_run(params, grads_seq, monkeypatch, fuse_below):
    from funcdl.optim import _base

    monkeypatch.setattr(_base, "_FUSE_BELOW", fuse_below)
    opt = optim.adam(1e-2, weight_decay=1e-3)
    state = opt.init(params)
    out = []
    for g in grads_seq:
        updates, state = opt.update(state, g, params)
        params = optim.apply_updates(params, updates)
        out.append((updates, state, params))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_on_leaves_end_to_end_equals_leaf_by_leaf_bitwise(dtype, monkeypatch):
    # Small trees go through Adam's math once, on their leaves laid end to end (_fused);
    # it must give exactly the leaf-by-leaf numbers, structures, dtypes and shapes.
    rng = np.random.default_rng(1)
    params = ({"w": rng.standard_normal((3, 4)).astype(dtype), "b": np.zeros(4, dtype)}, (),
              {"w": rng.standard_normal((4, 1)).astype(dtype), "b": np.zeros(1, dtype)},
              [rng.standard_normal(()).astype(dtype)])
    grads_seq = [tree.map(lambda p: rng.standard_normal(p.shape).astype(dtype), params)
                 for _ in range(4)]
    fused = _adam_run(params, grads_seq, monkeypatch, 1 << 15)
    plain = _adam_run(params, grads_seq, monkeypatch, 0)
    for a, b in zip(fused, plain, strict=True):
        assert tree.structure(a) == tree.structure(b)
        for x, y in zip(tree.leaves(a), tree.leaves(b), strict=True):
            assert np.asarray(x).dtype == np.asarray(y).dtype
            assert np.shape(x) == np.shape(y)
            np.testing.assert_array_equal(x, y)
    mu = fused[-1][1].states["adam"].mu
    assert mu[0]["w"].shape == (3, 4) and mu[1] == () and mu[3][0].shape == ()


def test_fused_falls_back_leaf_by_leaf_for_mixed_dtypes_and_large_trees(monkeypatch):
    from funcdl.optim import _base

    calls = []
    fn = lambda g, m: (calls.append(g.shape) or g * 2, m + 1)  # noqa: E731
    mixed = {"a": np.ones(3, np.float32), "b": np.ones(2, np.float64)}
    out = _base.leafwise("t", fn, (mixed, mixed), ("g", "m"), n_out=2, elementwise=True)
    assert sorted(calls) == [(2,), (3,)]  # once per leaf
    assert out[0]["a"].dtype == np.float32 and out[0]["b"].dtype == np.float64
    calls.clear()
    same = {"a": np.ones(3, np.float32), "b": np.ones((2, 2), np.float32)}
    _base.leafwise("t", fn, (same, same), ("g", "m"), n_out=2, elementwise=True)
    assert calls == [(7,)]  # once, end to end
    calls.clear()
    monkeypatch.setattr(_base, "_FUSE_BELOW", 7)  # 7 entries: no longer below the limit
    _base.leafwise("t", fn, (same, same), ("g", "m"), n_out=2, elementwise=True)
    assert sorted(calls) == [(2, 2), (3,)]
    with pytest.raises(ValueError, match=r"t: .*\['b'\].*\(2, 2\).*\(2,\)"):
        _base.leafwise("t", fn, (same, {"a": same["a"], "b": np.ones(2, np.float32)}),
                       ("g", "m"), n_out=2, elementwise=True)


def test_clip_by_global_norm_of_inf_grads_gives_nan_and_zeros_without_warnings() -> None:
    # As optax and torch.nn.utils.clip_grad_norm_: the factor is max_norm / inf = 0, so the
    # inf entry becomes inf·0 = NaN and the rest 0. It warned (an error under pytest).
    clip = optim.clip_by_global_norm(1.0)
    out, _ = clip.update(clip.init(None), {"w": np.array([np.inf, 1.0], np.float32),
                                           "b": np.array([2.0], np.float32)})
    np.testing.assert_array_equal(out["w"], [np.nan, 0.0])
    np.testing.assert_array_equal(out["b"], [0.0])
    assert out["w"].dtype == np.float32


@pytest.mark.parametrize("max_norm", [1.0, np.inf])
def test_clip_by_global_norm_of_nan_grads_makes_every_entry_nan(max_norm: float) -> None:
    # As optax (its factor max_norm / NaN) and torch's clip_grad_norm_ (clamp(NaN) is NaN):
    # a NaN anywhere reaches every entry, so no step mixes clipped and unclipped leaves.
    clip = optim.clip_by_global_norm(max_norm)
    out, _ = clip.update(clip.init(None), {"w": np.array([np.nan, 1.0], np.float32),
                                           "b": np.array([2.0], np.float32)})
    assert np.isnan(out["w"]).all() and np.isnan(out["b"]).all()
    assert out["w"].dtype == out["b"].dtype == np.float32


@pytest.mark.parametrize(("opt", "expected"), [
    (optim.adam(0.1), -0.1),                    # first step: -lr·g/|g|
    (optim.rmsprop(0.1, alpha=0.99), -1.0),     # -lr·g/sqrt(0.01·g²)
    (optim.rmsprop(0.1, alpha=0.99, centered=True), -0.1 / math.sqrt(0.0099)),  # 0.01 - 0.01²
])
def test_second_moments_of_huge_float32_gradients_stay_finite_as_torchs(opt, expected) -> None:
    # torch's addcmul forms (1 - b2)·g, then ·g: finite up to ~6e20 in float32 where g²
    # overflowed first, saturated the second moment at inf and gave a step of 0
    p = {"w": np.zeros(2, np.float32)}
    g = {"w": np.array([1e20, -1.5e20], np.float32)}
    updates, state = opt.update(opt.init(p), g, p)
    assert updates["w"].dtype == np.float32
    assert all(np.isfinite(leaf).all() for leaf in tree.leaves(state))
    np.testing.assert_allclose(updates["w"], [expected, -expected], rtol=1e-5)


@pytest.mark.parametrize("opt", [optim.radam(0.1), optim.nadam(0.1)], ids=["radam", "nadam"])
def test_radam_and_nadam_second_moments_of_huge_float32_gradients_stay_finite(opt) -> None:
    # their v takes ((1-b2)·g)·g as torch's addcmul does (adam_moments): (1-b2)·(g·g)
    # overflowed at |g| = 1e20 and left v at inf
    p = {"w": np.zeros(2, np.float32)}
    updates, state = opt.update(opt.init(p), {"w": np.array([1e20, -1.5e20], np.float32)}, p)
    assert updates["w"].dtype == np.float32 and np.isfinite(updates["w"]).all()
    assert all(np.isfinite(leaf).all() for leaf in tree.leaves(state))


def test_radam_rectified_step_of_huge_float32_gradients_is_the_small_ones_as_torchs() -> None:
    # torch's sqrt(v)·sqrt(1/bc2): v/bc2 (3.2e36 · 125 at step 8) passed float32's range
    # and stopped the huge entry's step where the small one's, the same direction, goes on
    opt = optim.scale_by_radam(threshold=4.0)
    p = {"w": np.zeros(2, np.float32)}
    state = opt.init(p)
    for _ in range(8):
        updates, state = opt.update(state, {"w": np.array([2e19, 1.0], np.float32)}, p)
    assert updates["w"][1] > 0
    np.testing.assert_allclose(updates["w"][0], updates["w"][1], rtol=1e-5)


def test_centered_rmsprop_past_float32s_range_steps_0_as_torchs_not_nan() -> None:
    # |g| = 2e21: v = inf and m·m = inf; torch's fused v - m·m is inf, a step of 0, where
    # inf - inf would be NaN
    opt = optim.rmsprop(0.1, alpha=0.99, centered=True)
    p = {"w": np.zeros(2, np.float32)}
    updates, _ = opt.update(opt.init(p), {"w": np.array([2e21, -1e30], np.float32)}, p)
    np.testing.assert_array_equal(updates["w"], [0.0, 0.0])
    nan, _ = opt.update(opt.init(p), {"w": np.array([np.nan, np.inf], np.float32)}, p)
    assert np.isnan(nan["w"]).all()  # NaN and inf gradients still give NaN, as torch's


def test_global_norm_does_not_overflow_in_float32_or_wrap_in_integers() -> None:
    # [3e19, 4e19] has norm 5e19, but its float32 sum of squares overflows: clipping gave
    # [0, 0] instead of [0.6, 0.8].
    big = {"w": np.array([3e19, 4e19], np.float32)}
    assert optim.global_norm(big) == pytest.approx(5e19, rel=1e-6)
    clip = optim.clip_by_global_norm(1.0)
    out, _ = clip.update(clip.init(big), big)
    np.testing.assert_allclose(out["w"], [0.6, 0.8], rtol=1e-6)
    assert out["w"].dtype == np.float32
    assert optim.global_norm({"w": np.array([2**32, 0])}) == 2.0**32  # int64 vdot wrapped to 0
    assert optim.global_norm({"h": np.array([300.0], np.float16)}) == 300.0  # not inf
    assert optim.global_norm({"c": np.array([3j, 4.0])}) == 5.0
    assert optim.global_norm([np.float32(3.0), 4.0]) == 5.0


@pytest.mark.parametrize("leaf", [np.array(["a"]), np.array([True, True]),
                                  np.array([1.0], dtype=object), "abc"])
def test_global_norm_refuses_non_numeric_leaves_naming_them(leaf: Any) -> None:
    # np.array(['a']) gave "data type must provide an itemsize"; bool arrays a wrong norm.
    kind = np.asarray(leaf).dtype
    with pytest.raises(TypeError, match=rf"^global_norm: updates\['w'\] has dtype {kind}; "):
        optim.global_norm({"b": np.ones(2), "w": leaf})
    clip = optim.clip_by_global_norm(1.0)
    with pytest.raises(TypeError, match=r"^clip_by_global_norm\.update: grads\['w'\] has"):
        clip.update(clip.init(None), {"w": leaf})


def test_scale_by_learning_rate_of_a_schedule_keeps_the_sign_asked_for() -> None:
    grads = {"w": np.array([1.0, -2.0])}
    for flip, sign in ((True, -1.0), (False, 1.0)):
        opt = optim.scale_by_learning_rate(lambda c: 0.5 * (c + 1), flip_sign=flip)
        state = opt.init(grads)
        for count in range(3):  # read at counts 0, 1, 2
            out, state = opt.update(state, grads)
            np.testing.assert_array_equal(out["w"], sign * 0.5 * (count + 1) * grads["w"])


def test_clip_by_global_norm_to_zero() -> None:
    # max_norm=0 zeroes every gradient; a zero gradient (norm 0, not above 0) is returned
    # as it is, with no 0/0
    clip = optim.clip_by_global_norm(0.0)
    for g in (np.array([3.0, -4.0]), np.zeros(2)):
        out, _ = clip.update(clip.init({"g": g}), {"g": g})
        np.testing.assert_array_equal(out["g"], [0.0, 0.0])


@pytest.mark.parametrize("make", [
    lambda: optim.sgd(0.1, momentum=0.9, nesterov=True), lambda: optim.rmsprop(0.01),
    lambda: optim.rmsprop(0.01, centered=True, momentum=0.5), lambda: optim.adagrad(0.1),
    lambda: optim.adam(0.1)], ids=["nesterov", "rmsprop", "rmsprop-centered", "adagrad", "adam"])
def test_a_0d_param_steps_as_a_one_entry_array(make: Any) -> None:
    # 0-d leaves make NumPy scalars inside a step, which cannot be written in place: they
    # take their own code path, which must give the hand-checked one-entry steps above.
    gs = [0.5, -1.0, 2.0]
    want = scalar_run(make(), 1.0, gs)
    hist, _ = run(make(), {"p": np.array(1.0)}, [{"p": np.array(g)} for g in gs])
    assert all(np.shape(h["p"]) == () for h in hist)
    close([float(h["p"]) for h in hist], want, rtol=1e-15)


def test_centered_rmsprop_clamps_a_variance_that_rounds_below_zero() -> None:
    # A constant gradient gives v - m² = α^t (1 - α^t) g² exactly, which rounds below 0
    # after ~50 steps at α = 0.5 and g = 1e-3: its sqrt would be NaN; clamped at 0 the step
    # is the finite g / eps.
    opt = optim.rmsprop(1e-9, alpha=0.5, centered=True)
    params = {"w": np.zeros(1)}
    state = opt.init(params)
    for _ in range(60):
        updates, state = opt.update(state, {"w": np.array([1e-3])}, params)
        assert np.isfinite(updates["w"]).all()


def test_adagrad_lr_decay_divides_a_schedule_read_at_the_same_count() -> None:
    # torch: clr = lr / (1 + t·lr_decay), t the updates applied; lr may be a schedule, read
    # at that t too: 0.1, 0.2, 0.3 divided by 1, 1.5, 2. s = 1, 2, 3 (g = 1).
    got = scalar_run(optim.adagrad(lambda c: 0.1 * (c + 1), lr_decay=0.5), 1.0, [1.0] * 3)
    p1 = 1.0 - 0.1 / (1.0 + 1e-10)
    p2 = p1 - (0.2 / 1.5) / (math.sqrt(2.0) + 1e-10)
    p3 = p2 - (0.3 / 2.0) / (math.sqrt(3.0) + 1e-10)
    close(got, [p1, p2, p3])


def test_adagrad_starts_its_sum_at_the_initial_accumulator_value() -> None:
    # s = 0.75 + 0.25 = 1 -> p = 1 - 0.1·0.5/1; s = 1 + 1 = 2 -> p += 0.1·1/sqrt(2)
    p1 = 1.0 - 0.1 * 0.5 / (1.0 + 1e-10)
    close(scalar_run(optim.adagrad(0.1, initial_accumulator_value=0.75), 1.0, [0.5, -1.0]),
          [p1, p1 + 0.1 / (math.sqrt(2.0) + 1e-10)])
    state = optim.scale_by_adagrad(0.75).init({"w": np.zeros((2, 1), np.float32)})
    assert state.sum_of_squares["w"].dtype == np.float32
    np.testing.assert_array_equal(state.sum_of_squares["w"], [[0.75], [0.75]])


def test_bias_corrected_rms_without_eps_in_sqrt_stays_finite_past_float32s_square() -> None:
    """scale_by_rms(bias_correction=True, eps_in_sqrt=False) is Adam's denominator with b1 = 0:
    at |g| = 2e19 its v (4e37 after one step) is finite in float32 but v / (1 - 0.9) is not;
    sqrt(v)·sqrt(1/bc), as scale_by_adam, gives the step g / |g| = 1 where v/bc gave 0."""
    opt = optim.scale_by_rms(0.9, 1e-8, eps_in_sqrt=False, bias_correction=True)
    p = {"w": np.zeros(3, np.float32)}
    state = opt.init(p)
    for _ in range(3):
        u, state = opt.update(state, {"w": np.full(3, 2e19, np.float32)}, p)
        assert u["w"].dtype == np.float32
        np.testing.assert_allclose(u["w"], 1.0, rtol=1e-6)
    small = opt.update(opt.init(p), {"w": np.full(3, 3.0, np.float32)}, p)[0]["w"]
    np.testing.assert_allclose(small, 1.0, rtol=1e-6)  # the same form at ordinary sizes
