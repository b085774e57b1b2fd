"""MultiHeadAttention(kdim=, vdim=): keys and values of other feature sizes than the
queries', as torch's nn.MultiheadAttention(kdim=, vdim=). Against torch in float64 (outputs,
every param's gradient, dq, dk, dv; biases or not; key padding and attention masks; causal),
torch's default init (separate xavier_uniform bounds, the stacked one kept when both are E),
the naive reference of test_attention, check_vjp and check_layer on each configuration, the
fused (q, kv) path against (q, kv, kv), and bad inputs named."""

from __future__ import annotations

import numpy as np
import pytest
from _catalogue import has
from _torch_util import mha_params
from test_attention import naive, setup

import funcdl as fd
from funcdl import random, tree
from funcdl.layers.attention import MultiHeadAttention
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
F32 = np.float32
TOL = {"rtol": 1e-10, "atol": 1e-10}
E = 8


def make(heads, form, kdim, vdim, tq=4, tk=6, n=3, use_bias=True, causal=False, seed=0):
    """test_attention's setup at E, keys and values of kdim and vdim features."""
    return setup(heads, E, tq, tk, form, causal, use_bias=use_bias, n=n, seed=seed,
                 kdim=kdim, vdim=vdim)


CONFIGS = [  # (heads, form, kdim, vdim, use_bias, causal, tq, tk)
    (2, 3, 6, 10, True, False, 4, 7), (1, 3, 6, 10, False, False, 3, 5),
    (4, 2, 12, 12, True, False, 4, 6), (2, 3, None, 5, True, False, 3, 6),
    (2, 3, 6, None, True, True, 5, 5), (2, 2, 6, 6, False, True, 4, 4),
    (2, 3, 8, 8, True, False, 3, 5), (2, 1, 8, 8, True, True, 4, 4)]
IDS = [f"h{c[0]}-form{c[1]}-k{c[2]}-v{c[3]}-bias{c[4]:d}-causal{c[5]:d}" for c in CONFIGS]


@pytest.mark.parametrize(("heads", "form", "kdim", "vdim", "use_bias", "causal", "tq", "tk"),
                         CONFIGS, ids=IDS)
def test_forward_vjp_and_check_layer(heads, form, kdim, vdim, use_bias, causal, tq, tk):
    """The naive loop reference, finite differences, and check_layer in float32."""
    layer, p, xs, (q, k, v) = make(heads, form, kdim, vdim, tq, tk, use_bias=use_bias,
                                   causal=causal)
    assert p["w_k"].shape == (kdim or E, E) and p["w_v"].shape == (vdim or E, E)
    np.testing.assert_allclose(layer.apply(p, xs), naive(p, q, k, v, heads, causal),
                               rtol=1e-12, atol=1e-12)
    check_vjp(layer, p, xs)
    check_layer(layer, tree.map(lambda a: (None, *np.shape(a)[1:]), xs))


def test_masked_check_vjp_and_check_layer():
    layer = MultiHeadAttention(2, kdim=6, vdim=10, masked=True, causal=True)
    rng = np.random.default_rng(1)
    q, k, v = (rng.normal(size=(2, 4, c)) for c in (E, 6, 10))
    pad = np.zeros((2, 4), bool)
    pad[1, 3] = True
    _, p = layer.init(KEY, ((None, 4, E), (None, 4, 6), (None, 4, 10), (None, 4)))
    p = {name: a.astype(np.float64) + rng.normal(scale=0.3, size=a.shape)
         for name, a in p.items()}
    check_vjp(layer, p, (q, k, v, pad))
    attn = rng.random((2, 4, 4)) < 0.3
    attn[..., 0] = False  # with causal, query 0 sees key 0 alone: keep it, no NaN row
    check_vjp(layer, p, (q, k, v, attn))
    x3 = tuple(rng.normal(size=(3, 4, c)).astype(F32) for c in (E, 6, 10))
    check_layer(layer, ((None, 4, E), (None, 4, 6), (None, 4, 10), (None, 4)),
                x=(*x3, np.tile(pad[1], (3, 1))))


def test_the_fused_kv_is_kv_twice():
    """(q, kv) runs kv's two roles as one product: the same output and dparams as
    (q, kv, kv), and kv's dx the sum of dk and dv."""
    layer, p, (q, kv), _ = make(2, 2, 6, 6)
    y2, pb2 = layer.vjp(p, (q, kv))
    y3, pb3 = layer.vjp(p, (q, kv, kv))
    np.testing.assert_allclose(y2, y3, rtol=1e-13, atol=1e-13)
    dy = np.random.default_rng(2).normal(size=y2.shape)
    (dp2, (dq2, dkv)), (dp3, (dq3, dk, dv)) = pb2(dy), pb3(dy)
    for name in dp3:
        np.testing.assert_allclose(dp2[name], dp3[name], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dq2, dq3, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dkv, dk + dv, rtol=1e-12, atol=1e-12)
    assert dkv.shape == kv.shape == (3, 6, 6)


# ---------------------------------------------------------------------------- torch twins


TWINS = [  # (heads, form, kdim, vdim, use_bias, mask, causal, tq, tk)
    (2, 3, 6, 10, True, None, False, 4, 7), (1, 3, 6, 10, False, "pad", False, 3, 5),
    (4, 2, 12, 12, True, "attn", False, 4, 6), (2, 3, None, 5, True, "both", False, 3, 6),
    (2, 3, 6, None, False, None, True, 5, 5), (2, 2, 6, 6, True, "pad", True, 5, 5),
    (4, 3, 6, 10, True, "both", True, 4, 4), (2, 3, 8, 8, True, "attn", False, 3, 5),
    (2, 1, 8, 8, True, None, True, 4, 4)]


@pytest.mark.parametrize(("heads", "form", "kdim", "vdim", "use_bias", "mask", "causal", "tq",
                          "tk"), TWINS)
def test_matches_torch(heads, form, kdim, vdim, use_bias, mask, causal, tq, tk):
    torch = pytest.importorskip("torch")
    n = 3
    torch.manual_seed(heads + 10 * form)
    m = torch.nn.MultiheadAttention(E, heads, bias=use_bias, kdim=kdim, vdim=vdim,
                                    batch_first=True, dtype=torch.float64)
    m.train()  # the math path: dropout 0, no fast path
    if use_bias:  # torch starts them at 0, where a misplaced bias would pass unseen
        with torch.no_grad():
            m.in_proj_bias.normal_()
            m.out_proj.bias.normal_()
    kd, vd = kdim or E, vdim or E
    rng = np.random.default_rng(form + 7)
    q, k, v = (rng.normal(size=(n, t, c)) for t, c in ((tq, E), (tk, kd), (tk, vd)))
    tq_, tk_, tv_ = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    if form == 1:
        tk_ = tv_ = tq_
    elif form == 2:
        tv_ = tk_
    pad = np.zeros((n, tk), bool)
    pad[1, -2:] = True  # key 0 stays visible: no query has every key hidden
    attn = rng.random((n, tq, tk)) < 0.3
    attn[..., 0] = False
    later = np.triu(np.ones((tq, tk), bool), 1)
    kpm = torch.tensor(pad) if mask in ("pad", "both") else None
    am = None
    if mask in ("attn", "both"):  # torch's 3-D attn_mask is per (batch, head)
        am = torch.tensor(np.repeat(attn, heads, axis=0) | (later if causal else False))
    elif causal:
        am = torch.tensor(later)
    out, _ = m(tq_, tk_, tv_, key_padding_mask=kpm, attn_mask=am, need_weights=False)
    dy = rng.normal(size=out.shape)
    out.backward(torch.tensor(dy))

    layer = MultiHeadAttention(heads, kdim=kdim, vdim=vdim, use_bias=use_bias, causal=causal,
                               masked=mask is not None)
    xs = {1: (q,), 2: (q, k), 3: (q, k, v)}[form]
    ours = {None: None, "pad": pad, "attn": attn, "both": attn | pad[:, None, :]}[mask]
    xs = (*xs, ours) if mask is not None else (xs[0] if form == 1 else xs)
    _, p0 = layer.init(KEY, tree.map(np.shape, xs))
    p = mha_params(m)
    assert {name: a.shape for name, a in p.items()} == {name: a.shape for name, a in p0.items()}
    y, pullback = layer.vjp(p, xs)
    np.testing.assert_allclose(y, out.detach().numpy(), **TOL)
    dp, dx = pullback(dy)
    want = mha_params(m, grad=True)
    assert sorted(dp) == sorted(want)
    for name in want:
        np.testing.assert_allclose(dp[name], want[name], **TOL, err_msg=name)
    got = [dx] if form == 1 and mask is None else list(dx)[:form]
    for g, t in zip(got, (tq_, tk_, tv_)):
        np.testing.assert_allclose(g, t.grad.numpy(), **TOL)


# ---------------------------------------------------------------------------- init


def _uniform_fits(w, bound):
    """max |w| within the bound and near it; the std bound/sqrt(3) within 3%; and a
    Kolmogorov-Smirnov distance to U(-bound, bound) below its 0.1% critical value."""
    a = np.sort(w.ravel()) / bound
    assert 0.97 < np.abs(a).max() <= 1.0
    assert abs(a.std() * np.sqrt(3) - 1) < 0.03
    cdf = (a + 1) / 2
    steps = np.arange(1, a.size + 1) / a.size
    ks = max(np.abs(steps - cdf).max(), np.abs(steps - 1 / a.size - cdf).max())
    assert ks < 1.95 / np.sqrt(a.size)


def test_default_init_is_torchs_separate_xavier():
    e, kdim, vdim = 256, 64, 384
    layer = MultiHeadAttention(4, kdim=kdim, vdim=vdim)
    out, p = layer.init(KEY, ((None, 5, e), (None, 7, kdim), (None, 7, vdim)))
    assert out == (None, 5, e)
    for name, rows in (("w_q", e), ("w_k", kdim), ("w_v", vdim)):
        assert p[name].shape == (rows, e) and p[name].dtype == F32
        _uniform_fits(p[name], np.sqrt(6 / (rows + e)))  # fan_in rows, fan_out E
    _uniform_fits(p["w_o"], 1 / np.sqrt(e))
    assert all(not p[b].any() and p[b].shape == (e,) for b in ("b_q", "b_k", "b_v", "b_o"))
    _, own = MultiHeadAttention(2, kdim=6, w_init=fd.initializers.ones()).init(
        KEY, ((None, 3, 8), (None, 4, 6), (None, 4, 8)))
    assert own["w_k"].shape == (6, 8) and all((own[w] == 1).all() for w in ("w_q", "w_k"))


def test_default_init_statistics_match_torchs():
    torch = pytest.importorskip("torch")
    e, kdim, vdim = 256, 64, 384
    torch.manual_seed(0)
    m = torch.nn.MultiheadAttention(e, 4, kdim=kdim, vdim=vdim, batch_first=True)
    theirs = mha_params(m)
    _, ours = MultiHeadAttention(4, kdim=kdim, vdim=vdim).init(
        KEY, ((None, 5, e), (None, 7, kdim), (None, 7, vdim)))
    for name in ("w_q", "w_k", "w_v"):
        assert ours[name].shape == theirs[name].shape
        bound = np.sqrt(6 / sum(theirs[name].shape))
        _uniform_fits(theirs[name], bound)  # the bound read off torch is the one we draw to
        _uniform_fits(ours[name], bound)
        assert abs(ours[name].std() / theirs[name].std() - 1) < 0.04


def test_kdim_vdim_equal_to_e_keep_todays_init_bit_for_bit():
    shapes = ((None, 3, 8), (None, 5, 8))
    _, today = MultiHeadAttention(2).init(KEY, shapes)
    _, same = MultiHeadAttention(2, kdim=8, vdim=8).init(KEY, shapes)
    assert all(np.array_equal(today[k], same[k]) for k in today)
    bound = np.sqrt(6 / (4 * 8))  # the stacked in_proj's, not each block's sqrt(6 / 16)
    assert max(np.abs(today[w]).max() for w in ("w_q", "w_k", "w_v")) <= bound


def test_names():
    assert MultiHeadAttention(2).name == "MultiHeadAttention(2)"
    assert MultiHeadAttention(2, kdim=6, vdim=10, causal=True).name == \
        "MultiHeadAttention(2, kdim=6, vdim=10, causal=True)"
    assert MultiHeadAttention(2, vdim=4).name == "MultiHeadAttention(2, vdim=4)"


# ---------------------------------------------------------------------------- bad inputs


def test_x_alone_is_refused_when_kdim_or_vdim_differs_from_e():
    layer = MultiHeadAttention(2, kdim=6, vdim=6)
    name = "MultiHeadAttention(2, kdim=6, vdim=6)"
    parts = (name, "self-attention", "x (2, 3, 8)", "kdim = 6", "k (N, Tk, 6)", "(q, kv)")
    with pytest.raises(ValueError, match=has(*parts)):
        layer.init(KEY, (2, 3, 8))
    _, p = layer.init(KEY, ((None, 3, 8), (None, 4, 6)))
    for call in (layer.apply, layer.vjp):
        with pytest.raises(ValueError, match=has(*parts)):
            call(p, np.zeros((2, 3, 8), F32))
    with pytest.raises(ValueError, match=has("MultiHeadAttention(2, vdim=4)", "x (2, 3, 8)",
                                             "vdim = 4")):
        MultiHeadAttention(2, vdim=4).init(KEY, (2, 3, 8))


def _wrong_sizes():
    q = np.zeros((2, 3, 8), F32)
    yield "k", (q, np.zeros((2, 4, 5), F32), np.zeros((2, 4, 10), F32)), (
        "expected k of shape (N, T, 6)", "kdim = 6", "k (2, 4, 5)")
    yield "v", (q, np.zeros((2, 4, 6), F32), np.zeros((2, 4, 6), F32)), (
        "expected v of shape (N, T, 10)", "vdim = 10", "v (2, 4, 6)")
    yield "q", (np.zeros((2, 3, 12), F32), np.zeros((2, 4, 6), F32), np.zeros((2, 4, 10))), (
        "expected q of shape (N, T, 8)", "q (2, 3, 12)")
    yield "kv", (q, np.zeros((2, 4, 6), F32)), ("(q, kv)", "kdim = vdim", "kdim = 6",
                                                 "vdim = 10", "v (N, Tk, 10)")


@pytest.mark.parametrize(("what", "xs", "parts"), list(_wrong_sizes()),
                         ids=[c[0] for c in _wrong_sizes()])
def test_wrong_feature_sizes_are_named(what, xs, parts):
    layer = MultiHeadAttention(2, kdim=6, vdim=10)
    name = "MultiHeadAttention(2, kdim=6, vdim=10)"
    _, p = layer.init(KEY, ((None, 3, 8), (None, 4, 6), (None, 4, 10)))
    for call in (layer.apply, layer.vjp):
        with pytest.raises(ValueError, match=has(name, *parts)):
            call(p, xs)
    if what != "q":  # at init, q's size is E
        with pytest.raises(ValueError, match=has(name, *parts)):
            layer.init(KEY, tree.map(np.shape, xs))


def test_bad_kdim_vdim_and_params_are_named():
    for bad, err in ((0, ValueError), (-3, ValueError), (6.0, TypeError), (True, TypeError),
                     ("6", TypeError)):
        for arg in ("kdim", "vdim"):
            with pytest.raises(err, match=has("MultiHeadAttention", arg, repr(bad))):
                MultiHeadAttention(2, **{arg: bad})
    layer = MultiHeadAttention(2, kdim=6)
    _, p = layer.init(KEY, ((None, 3, 8), (None, 4, 6), (None, 4, 8)))
    xs = (np.zeros((2, 3, 8)), np.zeros((2, 4, 6)), np.zeros((2, 4, 8)))
    with pytest.raises(ValueError, match=has("MultiHeadAttention(2, kdim=6)", "w_k (6, E)",
                                             "w_v (E, E)", "got", "w_k (8, 8)")):
        layer.apply({**p, "w_k": np.zeros((8, 8), F32)}, xs)
    # params of a layer without kdim do not fit one with it, and the other way round
    _, plain = MultiHeadAttention(2).init(KEY, (None, 3, 8))
    with pytest.raises(ValueError, match=has("w_k (6, E)", "w_k (8, 8)")):
        layer.apply(plain, xs)
    with pytest.raises(ValueError, match=has("MultiHeadAttention(2)", "(E, E)", "w_k (6, 8)")):
        MultiHeadAttention(2).apply(p, xs)


def test_a_size_mismatch_without_kdim_points_at_kdim_vdim():
    layer = MultiHeadAttention(2)
    xs = (np.zeros((2, 3, 8), F32), np.zeros((2, 4, 6), F32), np.zeros((2, 4, 10), F32))
    with pytest.raises(ValueError, match=has("MultiHeadAttention(2)", "k (2, 4, 6)",
                                             "kdim=", "vdim=", "kdim=6, vdim=10")):
        layer.init(KEY, tree.map(np.shape, xs))
    _, p = layer.init(KEY, (None, 3, 8))
    for call in (layer.apply, layer.vjp):
        with pytest.raises(ValueError, match=has("MultiHeadAttention(2)", "(N, T, 8)",
                                                 "v (2, 4, 10)", "kdim=", "vdim=")):
            call(p, xs)
