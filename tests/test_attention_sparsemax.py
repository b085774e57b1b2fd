"""MultiHeadAttention(normalizer='sparsemax'): sparse attention weights (each row of scores
projected onto the simplex). The forward and every gradient against a naive NumPy
reference looping over examples, heads, queries and keys (sparsemax by its sort-based
definition, the vjp dS = m ⊙ (dP - Σ m dP / Σ m) written per row), with causal, masks and
dropout; finite differences (check_vjp, check_layer); the weights themselves (rows sum to
1, exact zeros, hidden keys 0, a row of hidden keys NaN as softmax's); float32 kept; the
softmax path unchanged; bad normalizer values. JAX/torch twins are in
test_attention_sparsemax_peers.py."""

from __future__ import annotations

import numpy as np
import pytest
from _catalogue import has
from test_attention import naive as naive_softmax

from funcdl import layers as L
from funcdl import random, tree
from funcdl.layers.attention import MultiHeadAttention
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
F32 = np.float32
TOL = {"rtol": 1e-11, "atol": 1e-12}

# ---------------------------------------------------------------------------- reference


def sparsemax_row(s):
    """The projection of one row onto the simplex by its definition: the scores sorted
    down, the support the largest k with 1 + k z_(k) > Σ_{i<=k} z_(i), τ = (Σ_{i<=k} z_(i)
    - 1) / k, p = max(s - τ, 0)."""
    z = np.sort(s)[::-1]
    k = max(j for j in range(1, len(z) + 1) if 1 + j * z[j - 1] > z[:j].sum())
    return np.maximum(s - (z[:k].sum() - 1) / k, 0.0)


def naive(p, q, k, v, heads, causal=False, hidden=None, keep=None, dy=None):
    """``y`` by loops over examples, heads, queries and keys, and with ``dy`` also
    ``(y, dparams, (dq, dk, dv))`` by the same loops run backwards. ``hidden`` (N, Tq, Tk)
    True where a query may not see a key; ``keep`` (N, H, Tq, Tk) the dropout factors."""
    b = {name: p.get(name, np.zeros(q.shape[2])) for name in ("b_q", "b_k", "b_v", "b_o")}
    n, tq, e = q.shape
    tk, d = k.shape[1], e // heads
    y = np.zeros((n, tq, e))
    g = {name: np.zeros_like(b[name] if name[0] == "b" else p["w_q"])
         for name in ("w_q", "w_k", "w_v", "w_o", "b_q", "b_k", "b_v", "b_o")}
    dxs = [np.zeros_like(a) for a in (q, k, v)]
    for i in range(n):
        qp, kp, vp = (q[i] @ p["w_q"] + b["b_q"], k[i] @ p["w_k"] + b["b_k"],
                      v[i] @ p["w_v"] + b["b_v"])
        ctx = np.zeros((tq, e))
        dctx = np.zeros((tq, e)) if dy is None else dy[i] @ p["w_o"].T
        dqp, dkp, dvp = np.zeros_like(qp), np.zeros_like(kp), np.zeros_like(vp)
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            for a in range(tq):
                seen = [j for j in range(tk) if not (causal and j > a)
                        and not (hidden is not None and hidden[i, a, j])]
                s = np.array([qp[a, cols] @ kp[j, cols] for j in seen]) / np.sqrt(d)
                w = sparsemax_row(s)
                f = np.ones(len(seen)) if keep is None else keep[i, h, a, seen]
                ctx[a, cols] = sum(wj * fj * vp[j, cols] for wj, fj, j in zip(w, f, seen))
                dw = np.array([f[c] * (dctx[a, cols] @ vp[j, cols])
                               for c, j in enumerate(seen)])
                m = w > 0
                ds = np.where(m, dw - dw[m].sum() / m.sum(), 0.0)
                for c, j in enumerate(seen):
                    dvp[j, cols] += w[c] * f[c] * dctx[a, cols]
                    dqp[a, cols] += ds[c] * kp[j, cols] / np.sqrt(d)
                    dkp[j, cols] += ds[c] * qp[a, cols] / np.sqrt(d)
        y[i] = ctx @ p["w_o"] + b["b_o"]
        if dy is not None:
            g["w_o"] += ctx.T @ dy[i]
            g["b_o"] += dy[i].sum(0)
            for r, x, dh, dx in zip("qkv", (q, k, v), (dqp, dkp, dvp), dxs):
                g[f"w_{r}"] += x[i].T @ dh
                g[f"b_{r}"] += dh.sum(0)
                dx[i] = dh @ p[f"w_{r}"].T
    return y if dy is None else (y, {name: g[name] for name in p}, dxs)


def setup(heads=2, e=8, tq=4, tk=5, form=3, causal=False, dropout=0.0, masked=False,
          use_bias=True, n=3, seed=0, spread=2.0):
    """A sparsemax layer, float64 params with nonzero biases, w_q times ``spread`` (scores
    wide enough that some weights are 0), and the input of the ``form`` (1: x, 3: (q, k,
    v)) with the (q, k, v) it stands for."""
    layer = MultiHeadAttention(heads, causal=causal, dropout=dropout, masked=masked,
                               use_bias=use_bias, normalizer="sparsemax")
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(n, t, e)) for t in (tq, tk, tk))
    if form == 1:
        k = v = q
    xs = q if form == 1 else (q, k, v)
    plain = MultiHeadAttention(heads, use_bias=use_bias)
    _, params = plain.init(random.key(seed), tree.map(np.shape, xs))
    params = {name: a.astype(np.float64) + rng.normal(scale=0.3, size=a.shape)
              for name, a in params.items()}
    params["w_q"] *= spread
    return layer, params, xs, (q, k, v)


def padding(lens, t):
    """key_padding_mask (N, t): True after each sequence's length."""
    return np.arange(t)[None, :] >= np.asarray(lens)[:, None]


def grads_match(layer, p, xs, want, dy, call=None, form=3):
    y, pullback = layer.vjp(p, xs, **(call or {}))
    dp, dx = pullback(dy)
    y_want, dp_want, dx_want = want
    np.testing.assert_allclose(y, y_want, **TOL)
    assert sorted(dp) == sorted(dp_want)
    for name in dp_want:
        np.testing.assert_allclose(dp[name], dp_want[name], **TOL, err_msg=name)
    got = [dx] if form == 1 else list(dx)[:3]
    expected = [sum(dx_want)] if form == 1 else dx_want
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, **TOL)


# ---------------------------------------------------------------------------- against it


@pytest.mark.parametrize(("heads", "form", "causal", "tq", "tk"),
                         [(1, 3, False, 4, 6), (2, 3, False, 3, 5), (2, 1, True, 5, 5),
                          (4, 1, False, 4, 4), (2, 3, True, 4, 4)])
def test_forward_and_gradients_match_the_naive_reference(heads, form, causal, tq, tk):
    layer, p, xs, (q, k, v) = setup(heads, 8, tq, tk, form, causal)
    dy = np.random.default_rng(7).normal(size=(3, tq, 8))
    grads_match(layer, p, xs, naive(p, q, k, v, heads, causal, dy=dy), dy, form=form)
    check_vjp(layer, p, xs)


def test_masks_match_the_naive_reference():
    layer, p, xs, (q, k, v) = setup(2, 8, 4, 5, masked=True, causal=False)
    dy = np.random.default_rng(8).normal(size=(3, 4, 8))
    pad = padding((5, 2, 3), 5)
    hidden = np.broadcast_to(pad[:, None, :], (3, 4, 5))
    grads_match(layer, p, (*xs, pad), naive(p, q, k, v, 2, hidden=hidden, dy=dy), dy)
    check_vjp(layer, p, (*xs, pad))
    attn = np.random.default_rng(9).random((3, 4, 5)) < 0.4
    attn[..., 0] = False
    grads_match(layer, p, (*xs, attn), naive(p, q, k, v, 2, hidden=attn, dy=dy), dy)
    check_vjp(layer, p, (*xs, attn))


def test_dropout_in_training_matches_the_naive_reference():
    layer, p, xs, (q, k, v) = setup(2, 8, 4, 6, dropout=0.3)
    k1, k2 = random.split(KEY)
    keep = (random.uniform(k1, (3, 2, 4, 6), dtype=F32) >= F32(0.3)) / 0.7
    dy = np.random.default_rng(10).normal(size=(3, 4, 8))
    grads_match(layer, p, xs, naive(p, q, k, v, 2, keep=keep, dy=dy), dy,
                call={"key": k1, "train": True})
    assert not np.allclose(layer.apply(p, xs, key=k2, train=True),
                           layer.apply(p, xs, key=k1, train=True))
    np.testing.assert_allclose(layer.apply(p, xs, key=k1), naive(p, q, k, v, 2), **TOL)
    check_vjp(layer, p, xs, key=k1, train=True)


# ---------------------------------------------------------------------------- check_layer


@pytest.mark.parametrize("causal", [False, True])
def test_check_layer(causal):
    layer = MultiHeadAttention(2, causal=causal, normalizer="sparsemax")
    check_layer(layer, (None, 5, 8))
    check_layer(layer, ((None, 5, 8), (None, 5, 8), (None, 5, 8)))


def test_check_layer_masked_and_dropout():
    masked = MultiHeadAttention(2, masked=True, normalizer="sparsemax")
    x = np.random.default_rng(1).normal(size=(3, 4, 8)).astype(F32)
    check_layer(masked, ((None, 4, 8), (None, 4)), x=(x, padding((4, 2, 3), 4)))
    dropping = MultiHeadAttention(2, dropout=0.25, normalizer="sparsemax")
    check_layer(dropping, ((None, 4, 8), (None, 6, 8)), key=KEY, train=True)


# ---------------------------------------------------------------------------- the weights


def weights_of(normalizer, q, k, mask=None, spread=3.0):
    """The attention weights P (N, Tq, Tk) themselves, read through one head whose value
    and output projections are the identity and whose values are one-hot rows: y[.., :Tk]
    is P exactly (each entry a sum of one weight and zeros)."""
    n, tk, e = k.shape
    layer = MultiHeadAttention(1, normalizer=normalizer, masked=mask is not None)
    rng = np.random.default_rng(3)
    p = {"w_q": spread * rng.normal(size=(e, e)), "w_k": rng.normal(size=(e, e)),
         "w_v": np.eye(e), "w_o": np.eye(e), **{f"b_{r}": np.zeros(e) for r in "qkvo"}}
    v = np.broadcast_to(np.eye(tk, e), (n, tk, e))
    xs = (q, k, v) if mask is None else (q, k, v, mask)
    return layer.apply(p, xs)[..., :tk]


def test_weights_sum_to_one_with_exact_zeros_and_softmax_has_none():
    rng = np.random.default_rng(4)
    q, k = rng.normal(size=(4, 6, 8)), rng.normal(size=(4, 7, 8))
    w = weights_of("sparsemax", q, k)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-13)
    assert (w >= 0).all() and 0.2 < (w == 0).mean() < 0.95
    assert ((w > 0).sum(-1) >= 1).all()
    want = np.array([[sparsemax_row(row) for row in a] for a in
                     (w_scores(q, k, i) for i in range(4))])
    np.testing.assert_allclose(w, want, **TOL)
    soft = weights_of("softmax", q, k)
    np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-13)
    assert (soft > 0).all()


def w_scores(q, k, i, spread=3.0):
    """The scores of example i for weights_of's params (the same draws)."""
    e = q.shape[2]
    rng = np.random.default_rng(3)
    w_q, w_k = spread * rng.normal(size=(e, e)), rng.normal(size=(e, e))
    return (q[i] @ w_q) @ (k[i] @ w_k).T / np.sqrt(e)


def test_hidden_keys_get_zero_and_a_row_of_hidden_keys_is_nan_as_softmaxs():
    rng = np.random.default_rng(5)
    q, k = rng.normal(size=(2, 3, 8)), rng.normal(size=(2, 4, 8))
    mask = np.zeros((2, 3, 4), bool)
    mask[0, 0, 1:] = True      # one key seen: weight 1
    mask[1, 2, :] = True       # no key seen: NaN
    mask[1, 0, ::2] = True
    w = weights_of("sparsemax", q, k, mask)
    np.testing.assert_array_equal(w[0, 0], [1.0, 0.0, 0.0, 0.0])
    assert (w[mask & ~np.isnan(w)] == 0).all() and (w[1, 0, ::2] == 0).all()
    assert np.isnan(w[1, 2]).all() and not np.isnan(w[[0, 0, 0, 1, 1], [0, 1, 2, 0, 1]]).any()
    assert np.isnan(weights_of("softmax", q, k, mask)[1, 2]).all()
    # the gradients that row reaches are NaN for both normalisers, the same entries
    nan = []
    for normalizer in ("softmax", "sparsemax"):
        layer = MultiHeadAttention(2, masked=True, normalizer=normalizer)
        _, p = layer.init(KEY, ((2, 3, 8), (2, 4, 8), (2, 3, 4)))
        y, pullback = layer.vjp(p, (q, k, mask))
        dy = np.zeros_like(y)
        dy[1, 2] = 1.0
        dp, (dq, dk, _) = pullback(dy)
        nan.append((np.isnan(dq), np.isnan(dk), np.isnan(dp["w_q"])))
        assert np.isnan(dq[1, 2]).all() and not np.isnan(dq[0]).any()
    for a, b in zip(*nan):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- dtypes, softmax


def test_float32_kept():
    layer = MultiHeadAttention(2, dropout=0.2, normalizer="sparsemax")
    _, p = layer.init(KEY, ((3, 4, 8), (3, 5, 8)))
    xs = (random.normal(random.key(1), (3, 4, 8)), random.normal(random.key(2), (3, 5, 8)))
    for train in (False, True):
        y, pullback = layer.vjp(p, xs, key=KEY, train=train)
        dp, dx = pullback(np.ones(y.shape))
        assert y.dtype == F32 and {a.dtype for a in tree.leaves((p, dp, dx))} == {np.dtype(F32)}
    y64 = layer.apply(p, tree.map(lambda a: a.astype(np.float64), xs))
    assert y64.dtype == np.float64
    np.testing.assert_allclose(layer.apply(p, xs), y64, rtol=1e-4, atol=1e-5)


def test_the_softmax_path_is_the_default_and_unchanged():
    """'softmax' is the default, bit for bit, and still the softmax (against test_attention's
    loop reference); sparsemax gives other outputs on the same params."""
    rng = np.random.default_rng(6)
    q, k = rng.normal(size=(3, 4, 8)), rng.normal(size=(3, 5, 8))
    default, soft = MultiHeadAttention(2, causal=False), MultiHeadAttention(
        2, normalizer="softmax")
    assert default.name == soft.name == "MultiHeadAttention(2)"
    _, p = default.init(KEY, ((3, 4, 8), (3, 5, 8)))
    p = {name: a.astype(np.float64) + 0.3 * rng.normal(size=a.shape) for name, a in p.items()}
    dy = rng.normal(size=(3, 4, 8))
    (ya, pa), (yb, pb) = default.vjp(p, (q, k)), soft.vjp(p, (q, k))
    for a, b in zip(tree.leaves((ya, pa(dy))), tree.leaves((yb, pb(dy)))):
        assert a.tobytes() == b.tobytes()
    np.testing.assert_allclose(ya, naive_softmax(p, q, k, k, 2), rtol=1e-12, atol=1e-12)
    check_vjp(default, p, (q, k))  # its own vjp shortcut, untouched by sparsemax's
    sparse = MultiHeadAttention(2, normalizer="sparsemax")
    assert sparse.name == "MultiHeadAttention(2, normalizer='sparsemax')"
    assert not np.allclose(sparse.apply(p, (q, k)), ya)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("value", "error", "words"), [
    (None, TypeError, ("must be a str",)), (3, TypeError, ("must be a str", "int")),
    (np.str_("x").dtype, TypeError, ("must be a str",)),
    ("Softmax", ValueError, ("lower case", "normalizer='softmax'")),
    ("entmax", ValueError, ("got 'entmax'",)), ("", ValueError, ("got ''",))])
def test_bad_normalizer(value, error, words):
    with pytest.raises(error, match=has("MultiHeadAttention(2, normalizer=", "'softmax' or "
                                        "'sparsemax'", *words)):
        MultiHeadAttention(2, normalizer=value)


@pytest.mark.parametrize("make, shape", [
    (lambda: L.TransformerEncoderLayer(4, 2, 6, dropout=0.0, normalizer="sparsemax"),
     (None, 3, 4)),
    (lambda: L.TransformerDecoderLayer(4, 2, 6, dropout=0.0, norm_first=True,
                                       normalizer="sparsemax"), ((None, 3, 4), (None, 5, 4)))])
def test_transformer_blocks_take_the_normalizer(make, shape):
    """The blocks pass normalizer to their attentions: finite differences through sparse
    weights, and a result that differs from softmax's with the same params."""
    block = make()
    check_layer(block, shape)
    _, params = block.init(random.key(1), shape)
    x = tuple(np.random.default_rng(0).standard_normal((2, *s[1:])) for s in
              (shape if isinstance(shape[0], tuple) else (shape,)))
    x = x if isinstance(shape[0], tuple) else x[0]
    soft = (L.TransformerEncoderLayer(4, 2, 6, dropout=0.0) if isinstance(x, np.ndarray) else
            L.TransformerDecoderLayer(4, 2, 6, dropout=0.0, norm_first=True))
    assert not np.allclose(block.apply(params, x), soft.apply(params, x))


def test_transformer_block_names_a_bad_normalizer():
    with pytest.raises(ValueError, match=r"^TransformerEncoderLayer\(4, 2, .*normalizer="
                                         r"'entmax'\): .*'softmax' or 'sparsemax'"):
        L.TransformerEncoderLayer(4, 2, 6, normalizer="entmax")


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax"])
@pytest.mark.parametrize("causal", [False, True])
def test_key_bias_gradient_is_exactly_zero(normalizer, causal):
    """b_k adds q·b_k to every score of a query alike, which both normalisers ignore: its
    gradient is 0 exactly, not the rounding noise (~1e-17) that Adam turns into steps."""
    layer = MultiHeadAttention(2, causal=causal, normalizer=normalizer)
    _, params = layer.init(random.key(3), (None, 4, 6))
    params = {**params, "b_k": np.full(6, 0.3)}
    x = np.random.default_rng(5).standard_normal((3, 4, 6))
    y, pullback = layer.vjp(params, x)
    grads, _ = pullback(np.random.default_rng(6).standard_normal(y.shape))
    np.testing.assert_array_equal(grads["b_k"], 0.0)
    assert np.abs(grads["b_q"]).max() > 1e-3 and np.abs(grads["b_v"]).max() > 1e-3
    shifted = {**params, "b_k": params["b_k"] + 5.0}  # and the output ignores it
    np.testing.assert_allclose(layer.apply(shifted, x), y, rtol=1e-12, atol=1e-12)
