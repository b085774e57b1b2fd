"""losses.ctc, connectionist temporal classification: against a brute force over every
alignment, by finite differences, its impossible cases and reductions, training a small
model end to end, and its bad inputs. torch's ctc_loss: test_ctc_torch.py."""

from __future__ import annotations

import functools
import itertools
import warnings

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, testing

CTC = losses.ctc
RNG = np.random.default_rng(3)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def brute(lp: np.ndarray, labels: list[int], blank: int = 0) -> tuple[float, np.ndarray]:
    """-log p(l | x) and its derivative in lp, one example (T, C), by enumerating all C^T
    paths: p = Σ_{π collapsing to l} Π_t e^{lp[t, π_t]}; d(-log p)/dlp[t, c] =
    -Σ_{π: π_t = c} p(π) / p."""
    t_max, n_cls = lp.shape
    p = 0.0
    grad = np.zeros_like(lp)
    for path in itertools.product(range(n_cls), repeat=t_max):
        merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
        if [c for c in merged if c != blank] != labels:
            continue
        pp = float(np.exp(sum(lp[t, c] for t, c in enumerate(path))))
        p += pp
        for t, c in enumerate(path):
            grad[t, c] -= pp
    return (-np.log(p) if p > 0 else np.inf), (grad / p if p > 0 else grad)


# labels with repeats (1, 1 needs a blank between), a length-0 target, varied input lengths
BRUTE_CASES = [  # (T, C, blank, labels per example, input lengths)
    (4, 3, 0, [[1, 1], [2], [], [1, 2]], [4, 3, 4, 2]),
    (5, 3, 2, [[0, 1, 0], [1, 1], [0], []], [5, 4, 5, 1]),
    (3, 2, 1, [[0], [0, 0], []], [3, 3, 2]),
]


def _batch(t_max, n_cls, label_lists, seed=0, pad=7):
    s_max = max(1, max(len(x) for x in label_lists))
    tg = np.full((len(label_lists), s_max), pad)  # padding: any value, ignored
    for i, x in enumerate(label_lists):
        tg[i, :len(x)] = x
    tl = np.array([len(x) for x in label_lists])
    lp = log_softmax(np.random.default_rng(seed).normal(size=(len(label_lists), t_max,
                                                              n_cls)) * 1.5)
    return lp, tg, tl


@pytest.mark.parametrize("case", range(len(BRUTE_CASES)))
def test_value_and_gradient_equal_the_brute_force_over_all_alignments(case):
    t_max, n_cls, blank, label_lists, il = BRUTE_CASES[case]
    lp, tg, tl = _batch(t_max, n_cls, label_lists, seed=case)
    il = np.array(il)
    per, pb = CTC.vjp(lp, tg, "none", input_lengths=il, target_lengths=tl, blank=blank)
    got = pb(np.ones(len(tl)))
    for i, labels in enumerate(label_lists):
        want, g = brute(lp[i, :il[i]], labels, blank)
        assert per[i] == pytest.approx(want, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(got[i, :il[i]], g, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(got[i, il[i]:], 0)  # steps past T_n: no gradient
    # the gradient is the derivative of the value, not torch's exp(lp) - posterior: each
    # step's row sums to -1 over the classes (a posterior negated), where t < T_n
    sums = got.sum(-1)
    np.testing.assert_allclose(sums, -(np.arange(t_max) < il[:, None]).astype(float), atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_finite_differences_with_repeats_blanks_and_variable_lengths(reduction, seed):
    rng = np.random.default_rng(seed)
    n, t_max, n_cls, s_max = 4, 8, 4, 3
    lp = log_softmax(rng.normal(size=(n, t_max, n_cls)))
    tg = np.array([[1, 1, 2], [3, 2, 0], [2, 2, 2], [1, 3, 1]])  # 0 past a length: padding
    tl = np.array([3, 2, 3, 0])
    il = np.array([8, 6, 5, 3])
    testing.check_loss(CTC, lp, tg, reduction=reduction, input_lengths=il, target_lengths=tl)
    # unnormalised log-probabilities, another blank: the value's own derivative still
    testing.check_loss(CTC, lp * 0.7 + 0.1, np.where(tg == 0, 3, tg) - 1, reduction=reduction,
                       input_lengths=il, target_lengths=tl, blank=3)
    del s_max
    # bound with functools.partial, as value_and_grad takes it; and the tuple target
    testing.check_loss(functools.partial(CTC, input_lengths=il, target_lengths=tl,
                                         reduction=reduction), lp, tg)
    testing.check_loss(CTC, lp, (tg, il, tl), reduction=reduction)


def test_reductions_as_torch_defines_them():
    lp, tg, tl = _batch(6, 4, [[1, 2, 3], [2], [], [3, 3]], seed=5)
    per = CTC(lp, tg, reduction="none", target_lengths=tl)
    assert per.shape == (4,) and (per > 0).all()
    assert CTC(lp, tg, reduction="sum", target_lengths=tl) == pytest.approx(per.sum(), rel=1e-14)
    # mean: each loss over its target length, at least 1, then over the batch
    want = (per / np.array([3, 1, 1, 2])).mean()
    assert CTC(lp, tg, target_lengths=tl) == pytest.approx(want, rel=1e-14)
    g_sum = CTC.vjp(lp, tg, "sum", target_lengths=tl)[1](1.0)
    g_mean = CTC.vjp(lp, tg, target_lengths=tl)[1](1.0)
    np.testing.assert_allclose(g_mean, g_sum / np.array([3, 1, 1, 2])[:, None, None] / 4,
                               rtol=1e-14)
    c = np.array([0.5, -1.0, 2.0, 3.0])
    g_none = CTC.vjp(lp, tg, "none", target_lengths=tl)[1](c)
    for i in range(4):
        gi = CTC.vjp(lp[i:i + 1], tg[i:i + 1], "sum", target_lengths=tl[i:i + 1])[1](c[i])
        np.testing.assert_allclose(g_none[i], gi[0], rtol=1e-13, atol=1e-15)
    # None lengths: every example at full T and S
    assert CTC(lp[:1], tg[:1]) == pytest.approx(per[0] / 3, rel=1e-14)


def test_impossible_alignments_give_inf_or_zero_with_zero_infinity():
    lp, tg, tl = _batch(3, 3, [[1, 1], [1, 2, 1], [2]], seed=2)
    il = np.array([2, 3, 0])  # 1, 1 needs 3 steps; 3 labels fit 3 steps; nothing fits 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per, pb = CTC.vjp(lp, tg, "none", input_lengths=il, target_lengths=tl)
        g = pb()
        assert per[0] == np.inf and per[2] == np.inf and np.isfinite(per[1])
        assert CTC(lp, tg, input_lengths=il, target_lengths=tl) == np.inf
        assert np.isnan(g[0, :2]).all() and (g[0, 2:] == 0).all()  # NaN for t < T_n, torch's
        assert np.isfinite(g[1]).all()
        per0, pb0 = CTC.vjp(lp, tg, "none", input_lengths=il, target_lengths=tl,
                            zero_infinity=True)
        g0 = pb0()
    np.testing.assert_array_equal(per0, [0, per[1], 0])
    np.testing.assert_array_equal(g0[[0, 2]], 0)
    np.testing.assert_array_equal(g0[1], g[1])
    # the forced alignment 1, 2, 1 in three steps: -Σ_t lp[t, l_t], the gradient -e_{l_t}
    assert per[1] == pytest.approx(-(lp[1, 0, 1] + lp[1, 1, 2] + lp[1, 2, 1]), rel=1e-13)
    np.testing.assert_allclose(g[1], -np.eye(3)[[1, 2, 1]], atol=1e-13)
    # an empty target in 0 steps is certain: loss 0; also with no time axis at all
    assert CTC(lp[:1], tg[:1, :0], reduction="sum", input_lengths=[0]) == 0
    np.testing.assert_array_equal(CTC(lp[:, :0], tg[:, :0], "none"), 0)
    np.testing.assert_array_equal(CTC(lp[:, :0], tg, "none", target_lengths=tl), np.inf)


def test_float32_in_float32_out_and_close_to_float64():
    lp, tg, tl = _batch(30, 6, [[1, 2, 2, 3, 5], [4], [5, 5, 1]], seed=4)
    lp = lp * 4  # a long, confident sequence: large alpha and beta to cancel in the gradient
    for reduction in ("mean", "none"):
        v64, pb64 = CTC.vjp(lp, tg, reduction, target_lengths=tl)
        v32, pb32 = CTC.vjp(lp.astype(np.float32), tg, reduction, target_lengths=tl)
        g32 = pb32()
        assert g32.dtype == np.float32 and np.asarray(v32).dtype.kind == "f"
        if reduction == "none":
            assert v32.dtype == np.float32
        np.testing.assert_allclose(v32, v64, rtol=1e-6)
        np.testing.assert_allclose(g32, pb64(), rtol=1e-5, atol=1e-6)
    testing.check_loss(CTC, lp.astype(np.float32), tg, target_lengths=tl)


def test_a_small_model_trains_under_sgd_with_lengths_bound_or_in_the_target():
    # Dense over the time steps then LogSoftmax: (N, T, F) -> (N, T, C) log-probabilities
    key = random.key(0)
    n, t_max, feats, n_cls = 8, 12, 5, 4
    x = random.normal(random.split(key)[0], (n, t_max, feats), np.float32)
    tg = np.array([[1, 2, 3], [2, 2, 0], [3, 1, 0], [1, 1, 1], [2, 3, 1], [3, 0, 0],
                   [1, 0, 0], [2, 1, 3]])
    tl = np.array([3, 2, 2, 3, 3, 1, 1, 3])
    il = np.array([12, 10, 12, 9, 12, 6, 12, 11])
    model = L.Sequential(L.Dense(16), L.Tanh(), L.Dense(n_cls), L.LogSoftmax())
    _, params0 = model.init(key, (None, t_max, feats))
    opt = fd.optim.sgd(0.5)
    for f, target in [
            (fd.value_and_grad(model, functools.partial(CTC, input_lengths=il,
                                                        target_lengths=tl)), tg),
            (fd.value_and_grad(model, CTC), (tg, il, tl))]:  # lengths travel with the data
        params, state, values = params0, opt.init(params0), []
        for _ in range(40):
            value, grads = f(params, x, target)
            values.append(value)
            updates, state = opt.update(state, grads, params)
            params = fd.optim.apply_updates(params, updates)
        assert isinstance(values[0], float) and np.isfinite(values).all()
        assert values[-1] < 0.5 * values[0], values[::10]
        assert all(g.dtype == np.float32 for g in fd.tree.leaves(grads))
    assert values[0] == pytest.approx(
        CTC(model.apply(params0, x), tg, input_lengths=il, target_lengths=tl), rel=1e-6)


LP = log_softmax(RNG.normal(size=(2, 5, 4)))
TG = np.array([[1, 2], [3, 3]])


@pytest.mark.parametrize(("kw", "err", "words"), [
    ({"pred": LP[0]}, ValueError, ["(N, T, C)", "(5, 4)"]),
    ({"pred": LP[..., None]}, ValueError, ["(N, T, C)", "(2, 5, 4, 1)"]),
    ({"pred": LP[..., :0]}, ValueError, ["at least one class", "(2, 5, 0)"]),
    ({"pred": LP.astype(np.float16)}, TypeError, ["float16"]),
    ({"pred": LP.astype(int)}, TypeError, ["float", "int64"]),
    ({"target": TG[0]}, ValueError, ["(N, S)", "(2,)"]),
    ({"target": TG[:1]}, ValueError, ["(2, S)", "(1, 2)"]),
    ({"target": TG[..., None]}, ValueError, ["(N, S)", "(2, 2, 1)"]),
    ({"target": TG.astype(float)}, TypeError, ["integer labels", "float64"]),
    ({"target": TG > 1}, TypeError, ["integer labels", "bool"]),
    ({"target": np.array([[1, 0], [3, 3]])}, ValueError, ["other than the blank", "[0, 1]"]),
    ({"target": np.array([[1, 4], [3, 3]])}, ValueError, ["[0, 4)", "got 4"]),
    ({"target": np.array([[1, 2], [-1, 3]])}, ValueError, ["[0, 4)", "got -1"]),
    ({"blank": 4}, ValueError, ["blank", "[0, 4)", "got 4"]),
    ({"blank": -1}, ValueError, ["blank", ">= 0", "-1"]),
    ({"blank": 1.0}, TypeError, ["blank", "int", "1.0"]),
    ({"input_lengths": [5, 6]}, ValueError, ["input_lengths", "[0, 5]", "[5, 6]"]),
    ({"input_lengths": [5, -1]}, ValueError, ["input_lengths", "[0, 5]", "[-1, 5]"]),
    ({"input_lengths": [5]}, ValueError, ["input_lengths", "(2,)", "(1,)"]),
    ({"input_lengths": 5}, ValueError, ["input_lengths", "(2,)", "()"]),
    ({"input_lengths": [5.0, 5.0]}, TypeError, ["input_lengths", "integers", "float64"]),
    ({"target_lengths": [3, 1]}, ValueError, ["target_lengths", "[0, 2]", "[1, 3]"]),
    ({"target_lengths": [-1, 1]}, ValueError, ["target_lengths", "[0, 2]", "[-1, 1]"]),
    ({"target_lengths": [[2, 2]]}, ValueError, ["target_lengths", "(2,)", "(1, 2)"]),
    ({"target": (TG, None)}, TypeError, ["(labels, input_lengths, target_lengths)", "2"]),
    ({"target": (TG, None, [2, 2]), "target_lengths": [2, 2]}, TypeError, ["twice"]),
    ({"zero_infinity": "yes"}, TypeError, ["zero_infinity"]),
    ({"reduction": "avg"}, ValueError, ["'mean', 'sum' or 'none'", "'avg'"]),
])
def test_bad_inputs_name_ctc_what_was_expected_and_what_came(kw, err, words):
    kw = {"pred": LP, "target": TG, **kw}
    with pytest.raises(err) as e:
        CTC(kw.pop("pred"), kw.pop("target"), **kw)
    msg = str(e.value)
    assert "ctc" in msg
    for w in words:
        assert w in msg, (w, msg)


def test_labels_past_the_target_lengths_are_ignored_whatever_they_hold():
    tl = np.array([1, 2])
    a = CTC(LP, np.array([[1, 99], [3, 3]]), reduction="none", target_lengths=tl)
    b = CTC(LP, np.array([[1, -5], [3, 3]]), reduction="none", target_lengths=tl)
    c = CTC(LP, np.array([[1], [3]]), reduction="none", target_lengths=[1, 1])
    np.testing.assert_array_equal(a, b)
    assert a[0] == c[0] and a[1] != c[1]
