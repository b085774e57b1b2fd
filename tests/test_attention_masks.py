"""MultiHeadAttention(masked=True) and the Transformer blocks' padding masks: vjps against
finite differences with masks; the forward against a naive loop reference with -inf scores;
hidden keys get exactly zero weight and zero gradient; a padded batch gives the outputs and
gradients of its sequences run one by one, unpadded (the point of padding masks); causal
combined with a mask; all-hidden rows (NaN, as torch's); float32 kept; bad masks. PyTorch
cross-checks are in test_attention_masks_torch.py."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import random, tree
from funcdl.layers.attention import MultiHeadAttention
from funcdl.layers.blocks import TransformerDecoderLayer, TransformerEncoderLayer
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
RNG = np.random.default_rng(0)
LENS = (4, 2, 3)  # the valid lengths of the three sequences of a batch padded to 4


def padding(lens, t):
    """key_padding_mask (N, t): True after each sequence's length."""
    return np.arange(t)[None, :] >= np.asarray(lens)[:, None]


def with_biases(params, rng):
    return {k: v.astype(np.float64) + (0.1 * rng.normal(size=v.shape) if k.startswith("b_")
                                       else 0.0) for k, v in params.items()}


def f64(params):
    return tree.map(lambda a: a.astype(np.float64), params)


def naive(p, q, k, v, heads, hidden):
    """The layer by loops over examples, heads and queries; ``hidden`` (N, Tq, Tk) True
    where a score is -inf; all-hidden rows give NaN (0/0)."""
    n, tq, e = q.shape
    d = e // heads
    out = np.zeros((n, tq, e))
    for i in range(n):
        qp, kp, vp = (q[i] @ p["w_q"] + p["b_q"], k[i] @ p["w_k"] + p["b_k"],
                      v[i] @ p["w_v"] + p["b_v"])
        ctx = np.zeros((tq, e))
        for h in range(heads):
            c = slice(h * d, (h + 1) * d)
            for a in range(tq):
                s = kp[:, c] @ qp[a, c] / np.sqrt(d)
                s[hidden[i, a]] = -np.inf
                with np.errstate(invalid="ignore"):
                    w = np.exp(s - s.max())
                    w /= w.sum()
                ctx[a, c] = w @ vp[:, c]
        out[i] = ctx @ p["w_o"] + p["b_o"]
    return out


def layer_and_params(heads=2, e=8, form=1, causal=False, tq=4, tk=4):
    layer = MultiHeadAttention(heads, causal=causal, masked=True)
    shapes = [(3, tq, e)] + [(3, tk, e)] * (form - 1)
    p = layer.init(KEY, (*shapes, (3, tk)))[1]
    return layer, with_biases(p, np.random.default_rng(1))


# ---------------------------------------------------------------------------- forward


@pytest.mark.parametrize("form", [1, 2, 3])
@pytest.mark.parametrize("kind", ["padding", "attn", "attn1"])
@pytest.mark.parametrize("causal", [False, True])
def test_forward_matches_naive(form, kind, causal):
    tq, tk = 4, (4 if form == 1 or causal else 5)
    layer, p = layer_and_params(form=form, causal=causal, tk=tk)
    rng = np.random.default_rng(2)
    q, k, v = (rng.normal(size=(3, t, 8)) for t in (tq, tk, tk))
    if kind == "padding":
        mask = padding((4, 2, 3), tk)
        hidden = np.broadcast_to(mask[:, None, :], (3, tq, tk))
    else:
        mask = rng.random((1 if kind == "attn1" else 3, tq, tk)) < 0.3
        mask[..., 0] = False  # no all-hidden rows here
        hidden = np.broadcast_to(mask, (3, tq, tk))
    if causal:
        hidden = hidden | np.triu(np.ones((tq, tk), bool), 1)
    xs = {1: (q,), 2: (q, k), 3: (q, k, v)}[form]
    if form == 1:
        k = v = q
    elif form == 2:
        v = k
    y = layer.apply(p, (*xs, mask))
    np.testing.assert_allclose(y, naive(p, q, k, v, 2, hidden), rtol=1e-12, atol=1e-12)


def test_vjp_finite_differences():
    for form in (1, 2, 3):
        for causal in (False, True):
            tk = 4 if form == 1 or causal else 5
            layer, p = layer_and_params(form=form, causal=causal, tk=tk)
            xs = [RNG.normal(size=(3, 4, 8))] + [RNG.normal(size=(3, tk, 8))] * (form - 1)
            if form == 3:
                xs[2] = RNG.normal(size=(3, tk, 8))
            check_vjp(layer, p, (*xs, padding((4, 2, 3), tk)))
            attn = RNG.random((3, 4, tk)) < 0.4
            attn[..., 0] = False
            check_vjp(layer, p, (*xs, attn))


def test_check_layer_float32_and_rows():
    layer = MultiHeadAttention(2, masked=True)
    x = RNG.normal(size=(3, 4, 8)).astype(np.float32)
    check_layer(layer, ((None, 4, 8), (None, 4)), x=(x, padding(LENS, 4)))
    _, p = layer.init(KEY, ((3, 4, 8), (3, 4)))
    y, pb = layer.vjp(p, (x, padding(LENS, 4)))
    g, dx = pb(np.ones_like(y))
    assert y.dtype == dx[0].dtype == np.float32 and dx[1] is None
    assert all(a.dtype == np.float32 for a in tree.leaves(g))


# ---------------------------------------------------------------------------- padding


def test_hidden_keys_get_zero_weight_and_gradient():
    """Changing the values at hidden keys changes nothing; their dk, dv are exactly 0."""
    layer, p = layer_and_params(form=3, tk=5)
    q, k, v = RNG.normal(size=(3, 4, 8)), RNG.normal(size=(3, 5, 8)), RNG.normal(size=(3, 5, 8))
    mask = padding((5, 2, 3), 5)
    y, pb = layer.vjp(p, (q, k, v, mask))
    k2, v2 = k.copy(), v.copy()
    k2[mask], v2[mask] = 1e3, -1e3
    assert np.array_equal(layer.apply(p, (q, k2, v2, mask)), y)
    _, (_, dk, dv, dm) = pb(RNG.normal(size=y.shape))
    assert dm is None
    assert not dk[mask].any() and not dv[mask].any()
    assert np.abs(dk[~mask]).min(axis=-1).max() > 0


def unpadded_equal(layer, p, seqs, run_padded):
    """The padded batch's outputs and gradients at valid rows against each sequence run
    alone, unpadded; the gradients of params summed over the sequences."""
    y, grads, dxs = run_padded
    total = None
    for i, (args, dy) in enumerate(seqs):
        yi, pbi = layer.vjp(p, args)
        gi, dxi = pbi(dy)
        t = yi.shape[1]
        np.testing.assert_allclose(y[i, :t], yi[0], rtol=1e-10, atol=1e-12)
        for dx, d in zip(dxs, dxi if isinstance(dxi, tuple) else (dxi,)):
            if d is not None:
                np.testing.assert_allclose(dx[i, :d.shape[1]], d[0], rtol=1e-10, atol=1e-12)
        total = gi if total is None else tree.map(np.add, total, gi)
    for a, b in zip(tree.leaves(grads), tree.leaves(total)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_padded_batch_equals_sequences_one_by_one(causal):
    layer, p = layer_and_params(causal=causal)
    plain = MultiHeadAttention(2, causal=causal)
    x = RNG.normal(size=(3, 4, 8))
    mask = padding(LENS, 4)
    dy = RNG.normal(size=x.shape) * ~mask[..., None]  # padded rows' outputs unused
    y, pb = layer.vjp(p, (x, mask))
    g, (dx, _) = pb(dy)
    seqs = [((x[i:i + 1, :t]), dy[i:i + 1, :t]) for i, t in enumerate(LENS)]
    unpadded_equal(plain, p, seqs, (y, g, (dx,)))
    assert not dx[mask].any()  # padded rows: neither queried (dy 0) nor seen


def test_padded_memory_equals_sequences_one_by_one():
    layer, p = layer_and_params(form=2, tk=5)
    plain = MultiHeadAttention(2)
    q, kv = RNG.normal(size=(3, 4, 8)), RNG.normal(size=(3, 5, 8))
    lens = (5, 1, 3)
    y, pb = layer.vjp(p, (q, kv, padding(lens, 5)))
    dy = RNG.normal(size=y.shape)
    g, (dq, dkv, _) = pb(dy)
    seqs = [((q[i:i + 1], kv[i:i + 1, :t]), dy[i:i + 1]) for i, t in enumerate(lens)]
    unpadded_equal(plain, p, seqs, (y, g, (dq, dkv)))


@pytest.mark.parametrize("first", [False, True])
def test_blocks_padded_equal_one_by_one(first):
    enc = TransformerEncoderLayer(8, 2, 16, dropout=0.0, norm_first=first, masked=True)
    enc_plain = TransformerEncoderLayer(8, 2, 16, dropout=0.0, norm_first=first)
    p = f64(enc.init(KEY, ((3, 4, 8), (3, 4)))[1])
    x = RNG.normal(size=(3, 4, 8))
    mask = padding(LENS, 4)
    dy = RNG.normal(size=x.shape) * ~mask[..., None]
    y, pb = enc.vjp(p, (x, mask))
    g, (dx, dm) = pb(dy)
    assert dm is None
    unpadded_equal(enc_plain, p, [(x[i:i + 1, :t], dy[i:i + 1, :t])
                                  for i, t in enumerate(LENS)], (y, g, (dx,)))
    dec = TransformerDecoderLayer(8, 2, 16, dropout=0.0, norm_first=first, masked=True)
    dec_plain = TransformerDecoderLayer(8, 2, 16, dropout=0.0, norm_first=first)
    p = f64(dec.init(KEY, ((3, 4, 8), (3, 5, 8), (3, 5)))[1])
    mem, lens = RNG.normal(size=(3, 5, 8)), (5, 1, 3)
    y, pb = dec.vjp(p, (x, mem, padding(lens, 5)))
    dy = RNG.normal(size=y.shape)
    g, (dt, dmem, dm) = pb(dy)
    assert dm is None
    unpadded_equal(dec_plain, p, [((x[i:i + 1], mem[i:i + 1, :t]), dy[i:i + 1])
                                  for i, t in enumerate(lens)], (y, g, (dt, dmem)))


def test_blocks_vjp_finite_differences():
    enc = TransformerEncoderLayer(4, 2, 6, dropout=0.0, masked=True)
    p = f64(enc.init(KEY, ((2, 3, 4), (2, 3)))[1])
    check_vjp(enc, p, (RNG.normal(size=(2, 3, 4)), padding((3, 2), 3)))
    dec = TransformerDecoderLayer(4, 2, 6, dropout=0.0, norm_first=True, masked=True)
    p = f64(dec.init(KEY, ((2, 3, 4), (2, 5, 4), (2, 5)))[1])
    check_vjp(dec, p, (RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 5, 4)),
                       padding((2, 5), 5)))


# ---------------------------------------------------------------------------- edges


def test_causal_and_mask_both_apply():
    layer, p = layer_and_params(causal=True)
    x = RNG.normal(size=(3, 4, 8))
    mask = np.zeros((3, 4), bool)
    mask[:, 0] = True  # hides key 0; causal hides j > i
    y = layer.apply(p, (x, mask))
    x2 = x.copy()
    x2[:, 0] += 5.0  # key 0 hidden: only row 0 (whose keys are all hidden) may change
    x2[:, 3] += 5.0  # key 3: seen by query 3 only
    y2 = layer.apply(p, (x2, mask))
    np.testing.assert_allclose(y2[:, 1:3], y[:, 1:3], rtol=1e-12, atol=1e-12)
    assert np.isnan(y[:, 0]).all()  # query 0 sees key 0 only, which is hidden


def test_all_hidden_row_is_nan_as_torch():
    layer, p = layer_and_params()
    x = RNG.normal(size=(3, 4, 8))
    attn = np.zeros((3, 4, 4), bool)
    attn[1, 2] = True  # query 2 of example 1 sees nothing
    y, pb = layer.vjp(p, (x, attn))
    nan = np.isnan(y).any(axis=-1)
    assert nan[1, 2] and nan.sum() == 1
    assert np.isnan(pb(np.ones_like(y))[0]["w_q"]).any()


def test_bad_masks():
    layer, p = layer_and_params()
    x = RNG.normal(size=(3, 4, 8))
    with pytest.raises(TypeError, match=r"MultiHeadAttention\(2, masked=True\).*boolean"):
        layer.apply(p, (x, padding(LENS, 4).astype(float)))
    for shape, got in [((3, 5), r"\(3, 5\)"), ((2, 4), r"\(2, 4\)"), ((3, 4, 5), r"\(3, 4, 5\)"),
                       ((2, 4, 4), r"\(2, 4, 4\)"), ((3,), r"\(3,\)")]:
        with pytest.raises(ValueError, match=r"MultiHeadAttention\(2, masked=True\): expected "
                           r"the mask as .*key_padding_mask \(N, Tk\).*got shape " + got):
            layer.apply(p, (x, np.zeros(shape, bool)))
    with pytest.raises(ValueError, match="masked=True takes the mask as the input's last"):
        layer.apply(p, x)
    with pytest.raises(ValueError, match="mask"):
        layer.init(KEY, (3, 4, 8))
    with pytest.raises(ValueError, match=r"got shape \(3, 5\)"):
        layer.init(KEY, ((3, 4, 8), (3, 5)))
    enc = TransformerEncoderLayer(8, 2, 16, masked=True)
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer\(.*masked=True\).*"
                       r"\(x, src_key_padding_mask\)"):
        enc.init(KEY, (3, 4, 8))
    pe = enc.init(KEY, ((3, 4, 8), (3, 4)))[1]
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer.*expected "
                       r"src_key_padding_mask .* \(N, T\) = \(3, 4\).* got \(3, 5\)"):
        enc.apply(pe, (x, np.zeros((3, 5), bool)))
    with pytest.raises(ValueError, match=r"src_key_padding_mask \(in_shape\[1\]\) of shape "
                       r"\(N, T\) = \(3, 4\).* got \(3, 5\)"):
        enc.init(KEY, ((3, 4, 8), (3, 5)))
    with pytest.raises(TypeError, match=r"TransformerEncoderLayer.*src_key_padding_mask "
                       r"\(N, T\) boolean.* got dtype float64"):
        enc.apply(pe, (x, np.zeros((3, 4))))
    dec = TransformerDecoderLayer(8, 2, 16, masked=True)
    with pytest.raises(ValueError, match=r"memory_key_padding_mask"):
        dec.init(KEY, ((3, 4, 8), (3, 5, 8)))


def test_a_mask_without_masked_true_says_to_pass_it():
    x, m = np.zeros((3, 4, 8)), np.zeros((3, 4), bool)
    mha = MultiHeadAttention(2)
    _, p = mha.init(random.key(0), (None, 4, 8))
    with pytest.raises(ValueError, match=r"a mask as its last entry needs "
                                         r"MultiHeadAttention\(\.\.\., masked=True\)"):
        mha.apply(p, (x, m))
    enc = TransformerEncoderLayer(8, 2, 16)
    with pytest.raises(ValueError, match=r"got \(\(None, 4, 8\), \(None, 4\)\); an input with "
                                         r"a padding mask needs TransformerEncoderLayer\("):
        enc.init(random.key(0), ((None, 4, 8), (None, 4)))
    _, p = enc.init(random.key(0), (None, 4, 8))
    with pytest.raises(ValueError, match=r"got a tuple of 2 arrays of shapes .*masked=True"):
        enc.apply(p, (x, m))
    masked = MultiHeadAttention(2, masked=True)
    _, p = masked.init(random.key(0), ((None, 4, 8), (None, 4)))
    with pytest.raises(TypeError, match=r"got None; with masked=True every input carries one"):
        masked.apply(p, (x, None))
