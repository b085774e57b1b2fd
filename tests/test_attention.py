"""MultiHeadAttention (funcdl.layers.attention): vjps against finite differences for the
three input forms (x, (q, kv), (q, k, v)), one and several heads, causal, dropout; the
forward against a naive loop-per-example, loop-per-head NumPy reference (scale, mask, head
split, dropout's scaling); the forms against each other; causality of outputs and of
gradients; dropout's key and mode; float32 kept; default init; bad inputs; and a small
Residual + LayerNorm + Dense model trained by adam. PyTorch cross-checks are in
test_attention_torch.py."""

from __future__ import annotations

import numpy as np
import pytest
from _catalogue import has

import funcdl as fd
from funcdl import random, tree
from funcdl.layers import Dense, LayerNorm, Residual, Sequential
from funcdl.layers.attention import MultiHeadAttention
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
F32 = np.float32

# ---------------------------------------------------------------------------- reference


def naive(p, q, k, v, heads, causal=False, keep=None):
    """The layer's output by loops over examples, heads, queries and keys: each head's
    columns h·D:(h+1)·D of the projections, scores / sqrt(D), keys j > i at -inf when
    causal, a softmax per query, ``keep`` (N, H, Tq, Tk) times the weights if given."""
    b = {name: p.get(name, 0.0) for name in ("b_q", "b_k", "b_v", "b_o")}
    n, tq, e = q.shape
    d = e // heads
    out = np.zeros((n, tq, e))
    for i in range(n):
        qp, kp, vp = (q[i] @ p["w_q"] + b["b_q"], k[i] @ p["w_k"] + b["b_k"],
                      v[i] @ p["w_v"] + b["b_v"])
        ctx = np.zeros((tq, e))
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            for a in range(tq):
                seen = [j for j in range(k.shape[1]) if not (causal and j > a)]
                s = np.array([qp[a, cols] @ kp[j, cols] for j in seen]) / np.sqrt(d)
                w = np.exp(s - s.max())
                w /= w.sum()
                if keep is not None:
                    w = w * keep[i, h, a, seen]
                ctx[a, cols] = sum(wj * vp[j, cols] for wj, j in zip(w, seen))
        out[i] = ctx @ p["w_o"] + b["b_o"]
    return out


def setup(heads=2, e=8, tq=4, tk=5, form=1, causal=False, dropout=0.0, use_bias=True,
          n=3, seed=0, kdim=None, vdim=None):
    """A layer, float64 params with every bias nonzero, and an input of the ``form`` (1: x,
    2: (q, kv), 3: (q, k, v)) with the (q, k, v) it stands for; k and v of kdim and vdim
    features when given."""
    layer = MultiHeadAttention(heads, causal=causal, dropout=dropout, use_bias=use_bias,
                               kdim=kdim, vdim=vdim)
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(n, t, c))
               for t, c in ((tq, e), (tk, kdim or e), (tk, vdim or e)))
    if form == 1:
        k = v = q
    elif form == 2:
        v = k
    xs = {1: q, 2: (q, k), 3: (q, k, v)}[form]
    _, params = layer.init(random.key(seed), tree.map(np.shape, xs))
    params = {name: a.astype(np.float64) + rng.normal(scale=0.3, size=a.shape)
              for name, a in params.items()}
    return layer, params, xs, (q, k, v)


FORMS = [  # (heads, form, causal, tq, tk)
    (1, 1, False, 4, 4), (2, 1, False, 4, 4), (4, 1, True, 5, 5), (2, 2, False, 3, 6),
    (2, 2, True, 4, 4), (1, 3, False, 2, 5), (4, 3, True, 4, 4)]


@pytest.mark.parametrize(("heads", "form", "causal", "tq", "tk"), FORMS)
def test_forward_matches_the_naive_reference(heads, form, causal, tq, tk):
    layer, p, xs, (q, k, v) = setup(heads, 8, tq, tk, form, causal)
    np.testing.assert_allclose(layer.apply(p, xs), naive(p, q, k, v, heads, causal),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("heads", "form", "causal", "tq", "tk"), FORMS)
def test_vjp_against_finite_differences(heads, form, causal, tq, tk):
    layer, p, xs, _ = setup(heads, 8, tq, tk, form, causal)
    check_vjp(layer, p, xs)
    shapes = tree.map(lambda a: (None, *np.shape(a)[1:]), xs)
    check_layer(layer, shapes)  # float32: shapes, dtypes, rows independent, vjp again


def test_without_bias():
    layer, p, xs, (q, k, v) = setup(2, 8, 3, 5, 3, use_bias=False)
    assert sorted(p) == ["w_k", "w_o", "w_q", "w_v"]
    np.testing.assert_allclose(layer.apply(p, xs), naive(p, q, k, v, 2), rtol=1e-12)
    check_vjp(layer, p, xs)


def test_the_forms_agree_and_dx_comes_back_in_the_inputs_form():
    """x is (x, x) and (x, x, x): one output, the same dparams, and x's dx the sum of the
    entries' (the fused projection against the separate ones)."""
    layer, p, x, _ = setup(2, 8, 4, 4, 1)
    dy = np.random.default_rng(5).normal(size=x.shape)
    y, pullback = layer.vjp(p, x)
    dp, dx = pullback(dy)
    for xs in ((x, x), (x, x, x), [x, x]):
        y2, pb2 = layer.vjp(p, xs)
        dp2, dx2 = pb2(dy)
        assert type(dx2) is type(xs) and len(dx2) == len(xs)
        np.testing.assert_allclose(y2, y, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(sum(dx2), dx, rtol=1e-12, atol=1e-12)
        for name in p:
            np.testing.assert_allclose(dp2[name], dp[name], rtol=1e-12, atol=1e-12)
    assert pullback(dy, need_dx=False)[1] is None


# ---------------------------------------------------------------------------- causal


@pytest.mark.parametrize("form", [1, 3])
def test_causal_outputs_and_gradients_do_not_look_ahead(form):
    layer, p, xs, _ = setup(2, 8, 6, 6, form, causal=True)
    entries = list(xs) if form == 3 else [xs]
    later = [a.copy() for a in entries]
    for a in later:
        a[:, 4:] += 1.0                              # positions 4 and 5 changed
    y = layer.apply(p, xs)
    y2 = layer.apply(p, tuple(later) if form == 3 else later[0])
    np.testing.assert_array_equal(y2[:, :4], y[:, :4])
    assert np.abs(y2[:, 4:] - y[:, 4:]).min() > 1e-6  # ... and they do see their own
    dy = np.zeros_like(y)
    dy[:, 2] = 1.0                                   # the loss reads query 2 alone
    dx = layer.vjp(p, xs)[1](dy)[1]
    for g in (dx if form == 3 else [dx]):
        assert not g[:, 3:].any() and g[:, :3].any()
    full = MultiHeadAttention(2).apply(p, xs)        # the mask is what hides them
    assert not np.allclose(full[:, :4], y[:, :4])


# ---------------------------------------------------------------------------- dropout


def test_dropout_draws_its_mask_from_the_key_and_only_in_training():
    layer, p, xs, (q, k, v) = setup(2, 8, 4, 6, 2, dropout=0.3)
    k1, k2 = random.split(KEY)
    dropped = layer.apply(p, xs, key=k1, train=True)
    np.testing.assert_array_equal(layer.apply(p, xs, key=k1, train=True), dropped)
    assert not np.allclose(layer.apply(p, xs, key=k2, train=True), dropped)
    plain = layer.apply(p, xs)
    np.testing.assert_array_equal(layer.apply(p, xs, key=k1), plain)  # inference: no drop
    assert not np.allclose(dropped, plain)
    np.testing.assert_allclose(plain, naive(p, q, k, v, 2), rtol=1e-12)
    # the weights dropped at rate 0.3 and the rest scaled by 1/0.7, as torch's
    keep = (random.uniform(k1, (3, 2, 4, 6), dtype=F32) >= F32(0.3)) / 0.7
    np.testing.assert_allclose(dropped, naive(p, q, k, v, 2, keep=keep), rtol=1e-12)
    check_vjp(layer, p, xs, key=k1, train=True)
    check_layer(layer, ((None, 4, 8), (None, 6, 8)), key=k1, train=True)


def test_dropout_needs_a_key_in_training_and_not_at_rate_zero():
    layer, p, x, _ = setup(2, 8, 4, 4, 1, dropout=0.1)
    with pytest.raises(ValueError, match=has("MultiHeadAttention(2, dropout=0.1)",
                                             "needs a random key", "key=")):
        layer.apply(p, x, train=True)
    with pytest.raises(TypeError, match=has("MultiHeadAttention(2, dropout=0.1)", "train")):
        layer.apply(p, x, key=KEY, train="yes")
    none = MultiHeadAttention(2)                     # nothing dropped: train changes nothing
    np.testing.assert_array_equal(none.apply(p, x, train=True), none.apply(p, x))
    everything = MultiHeadAttention(2, dropout=1.0)  # every weight dropped: the bias alone
    np.testing.assert_allclose(everything.apply(p, x, key=KEY, train=True),
                               np.broadcast_to(p["b_o"], x.shape), rtol=1e-15)


# ---------------------------------------------------------------------------- dtypes, init


@pytest.mark.parametrize("form", [1, 2, 3])
def test_float32_kept(form):
    layer = MultiHeadAttention(2, dropout=0.2)
    shapes = [(3, 4, 8), (3, 5, 8), (3, 5, 8)][:form]
    _, p = layer.init(KEY, shapes[0] if form == 1 else tuple(shapes))
    xs = [random.normal(random.key(i), s) for i, s in enumerate(shapes)]
    xs = xs[0] if form == 1 else tuple(xs)
    for train in (False, True):
        y, pullback = layer.vjp(p, xs, key=KEY, train=train)
        dp, dx = pullback(np.ones(y.shape))          # a float64 dy: taken as float32
        assert y.dtype == F32 and {a.dtype for a in tree.leaves((p, dp, dx))} == {np.dtype(F32)}
    x64 = tree.map(lambda a: a.astype(np.float64), xs)  # float64 in: float64 out, dx
    y, pullback = layer.vjp(p, x64)
    dp, dx = pullback(np.ones(y.shape))
    assert y.dtype == np.float64 and {a.dtype for a in tree.leaves(dx)} == {np.dtype(np.float64)}
    assert {a.dtype for a in tree.leaves(dp)} == {np.dtype(F32)}


def test_default_init_is_torchs_and_the_initializers_replace_it():
    layer = MultiHeadAttention(4)
    e = 64
    out, p = layer.init(KEY, ((None, 7, e), (5, 9, e)))
    assert out == (5, 7, e)
    bound = np.sqrt(6 / (e + 3 * e))                 # xavier_uniform over the stacked (3E, E)
    for name in ("w_q", "w_k", "w_v"):
        assert p[name].shape == (e, e) and 0.97 * bound < np.abs(p[name]).max() <= bound
    assert 0.97 / np.sqrt(e) < np.abs(p["w_o"]).max() <= 1 / np.sqrt(e)
    assert not np.array_equal(p["w_q"], p["w_k"])
    assert all(not p[b].any() and p[b].shape == (e,) for b in ("b_q", "b_k", "b_v", "b_o"))
    own = MultiHeadAttention(4, w_init=fd.initializers.ones(),
                             b_init=fd.initializers.uniform(1.0, low=0.5))
    _, p = own.init(KEY, (None, 3, 8))
    assert all((p[w] == 1).all() for w in ("w_q", "w_k", "w_v", "w_o"))
    assert all(((p[b] >= 0.5) & (p[b] < 1)).all() for b in ("b_q", "b_k", "b_v", "b_o"))
    assert MultiHeadAttention(2, causal=True, dropout=0.1).name == \
        "MultiHeadAttention(2, causal=True, dropout=0.1)"


# ---------------------------------------------------------------------------- bad inputs

NAME = "MultiHeadAttention(4)"


def _bad_inputs():
    x, y = np.zeros((2, 3, 8), F32), np.zeros((2, 5, 8), F32)
    yield "E not divisible", np.zeros((2, 3, 6), F32), (NAME, "E = 6", "num_heads = 4",
                                                        "num_heads=3 or 6")  # init only
    yield "E differs", (x, np.zeros((2, 5, 4), F32)), (NAME, "q (2, 3, 8)", "kv (2, 5, 4)",
                                                       "embedding size")
    yield "E differs from params", np.zeros((2, 3, 12), F32), (NAME, "(N, T, 8)",
                                                               "x (2, 3, 12)")
    yield "batch differs", (x, np.zeros((3, 5, 8), F32)), (NAME, "batch size",
                                                           "q (2, 3, 8)", "kv (3, 5, 8)")
    yield "rank 2", np.zeros((3, 8), F32), (NAME, "x of rank 3", "(3, 8)")
    yield "rank 4", (x, y[None]), (NAME, "kv of rank 3", "(1, 2, 5, 8)")
    yield "k, v lengths", (x, y, np.zeros((2, 4, 8), F32)), (NAME, "one length",
                                                             "k (2, 5, 8)", "v (2, 4, 8)")
    yield "four entries", (x, y, y, y), (NAME, "(q, kv)", "(q, k, v)", "4 entries")


@pytest.mark.parametrize(("what", "xs", "parts"), list(_bad_inputs()),
                         ids=[c[0] for c in _bad_inputs()])
def test_bad_inputs_are_named(what, xs, parts):
    layer = MultiHeadAttention(4)
    _, p = layer.init(KEY, (None, 3, 8))
    for call in (layer.apply, layer.vjp) if what != "E not divisible" else ():
        with pytest.raises(ValueError, match=has(*parts)):
            call(p, xs)
    if what != "E differs from params":  # the same shapes at init
        with pytest.raises(ValueError, match=has(*parts)):
            layer.init(KEY, tree.map(np.shape, xs))


def test_causal_refuses_other_lengths_and_bad_params_are_named():
    layer = MultiHeadAttention(2, causal=True)
    with pytest.raises(ValueError, match=has("MultiHeadAttention(2, causal=True)",
                                             "Tq = 3 and Tk = 5", "q (None, 3, 8)")):
        layer.init(KEY, ((None, 3, 8), (None, 5, 8)))
    _, p = layer.init(KEY, (None, 3, 8))
    with pytest.raises(ValueError, match=has("Tq = 3 and Tk = 5", "kv (2, 5, 8)")):
        layer.apply(p, (np.zeros((2, 3, 8)), np.zeros((2, 5, 8))))
    bad = {**p, "w_k": np.zeros((8, 6), F32)}
    with pytest.raises(ValueError, match=has("MultiHeadAttention(2, causal=True)",
                                             "w_k (8, 6)", "(E, E)")):
        layer.apply(bad, np.zeros((2, 3, 8)))
    with pytest.raises(ValueError, match=has("MultiHeadAttention(2, causal=True)", "lack",
                                             "b_o")):
        layer.apply({k: a for k, a in p.items() if k != "b_o"}, np.zeros((2, 3, 8)))
    with pytest.raises(ValueError, match=has("num_heads = 3", "E = 8")):
        MultiHeadAttention(3).apply(p, np.zeros((2, 3, 8)))
    _, pullback = layer.vjp(p, np.zeros((2, 3, 8), F32))
    with pytest.raises(ValueError, match=has("pullback expected dy of shape (2, 3, 8)")):
        pullback(np.zeros((2, 3, 4)))
    for arg, value in (("num_heads", 0), ("dropout", 1.5), ("causal", "yes")):
        with pytest.raises((TypeError, ValueError), match=has("MultiHeadAttention", arg)):
            MultiHeadAttention(**{"num_heads": 2, arg: value})


# ---------------------------------------------------------------------------- training


def test_a_small_transformer_block_learns_a_sequence_mean():
    """Each position's target is its sequence's mean of feature 0, which only attention
    sees: 30 adam steps on Residual(attention) + LayerNorm + Dense halve the loss."""
    model = Sequential(Residual(MultiHeadAttention(2)), LayerNorm(), Dense(1))
    x = random.normal(random.key(1), (64, 6, 8))
    target = np.broadcast_to(x[:, :, :1].mean(axis=1, keepdims=True), (64, 6, 1)).astype(F32)
    _, params = model.init(random.key(2), (None, 6, 8))
    f = fd.value_and_grad(model, fd.losses.mse)
    opt = fd.optim.adam(lr=1e-2)
    state = opt.init(params)
    losses = []
    for _ in range(30):
        loss, grads = f(params, x, target)
        updates, state = opt.update(state, grads, params)
        params = fd.optim.apply_updates(params, updates)
        losses.append(float(loss))
    # below 5/36, the least error of any map of a position alone (x_i0 / 6 predicts the
    # mean but for the other five positions' share): the positions are read together
    assert losses[-1] < 0.5 * losses[0] and losses[-1] < 5 / 36, losses
    assert {a.dtype for a in tree.leaves(params)} == {np.dtype(F32)}


def test_a_masked_attention_given_two_masks_is_not_told_to_set_masked():
    # (q, mask, mask), kv forgotten: the hint said masked=True was needed, which it was set
    mha = MultiHeadAttention(2, masked=True)
    with pytest.raises(ValueError) as e:
        mha.init(random.key(0), ((None, 4, 8), (None, 4), (None, 4)))
    assert "needs MultiHeadAttention(..., masked=True)" not in str(e.value)
    assert "with masked=True the mask comes last: (x, mask), (q, kv, mask)" in str(e.value)
