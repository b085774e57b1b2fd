"""MultiHeadAttention(return_weights='heads' | 'mean'): the attention weights returned beside
y, as torch's need_weights=True (average_attn_weights=False | True). Against torch in
float64 (outputs, weights, and the gradients of sum(y·a) + sum(A·b) for every param and
input), with key padding, attention and causal masks and kdim/vdim; finite differences
(check_vjp, check_layer) through both outputs, in eval and with dropout; dA = None gives
return_weights=False's gradients; the returned weights are after dropout, as torch's; the
names and the errors."""

from __future__ import annotations

import numpy as np
import pytest
from _torch_util import mha_params

from funcdl import random
from funcdl.layers.attention import MultiHeadAttention
from funcdl.testing import check_layer, check_vjp

E = 8
RNG = np.random.default_rng(7)


def padding(lens, t):
    """A key_padding_mask (N, t), True past each row's length (key 0 always visible)."""
    return np.arange(t)[None, :] >= np.asarray(lens)[:, None]


# ---------------------------------------------------------------------------- torch twin

TWINS = [  # (mode, heads, form, kdim, vdim, mask, causal, tq, tk)
    ("heads", 2, 1, None, None, None, False, 5, 5), ("mean", 2, 1, None, None, None, False, 5, 5),
    ("heads", 4, 1, None, None, "pad", True, 5, 5), ("mean", 4, 1, None, None, "pad", True, 5, 5),
    ("heads", 2, 2, None, None, "attn", False, 4, 6), ("mean", 2, 2, None, None, "both", False,
                                                        4, 6),
    ("heads", 2, 3, 6, 10, "pad", False, 3, 7), ("mean", 2, 3, 6, 10, "both", True, 4, 4),
    ("mean", 1, 3, 5, None, None, True, 4, 4), ("heads", 4, 2, 6, 6, "pad", False, 3, 5)]


@pytest.mark.parametrize(("mode", "heads", "form", "kdim", "vdim", "mask", "causal", "tq",
                          "tk"), TWINS)
def test_matches_torch_need_weights(mode, heads, form, kdim, vdim, mask, causal, tq, tk):
    torch = pytest.importorskip("torch")
    n = 3
    torch.manual_seed(heads * 10 + form)
    m = torch.nn.MultiheadAttention(E, heads, batch_first=True, kdim=kdim, vdim=vdim,
                                    dtype=torch.float64).eval()
    with torch.no_grad():  # torch starts the biases at 0, where a misplaced one hides
        m.in_proj_bias.normal_()
        m.out_proj.bias.normal_()
    sizes = (E, kdim or E, vdim or E)
    arrays = [RNG.normal(size=(n, t, c)) for t, c in zip((tq, tk, tk), sizes)][:form]
    tens = [torch.tensor(a, requires_grad=True) for a in arrays]
    q_, k_, v_ = (tens * 3 if form == 1 else [tens[0], tens[1], tens[1]] if form == 2
                  else tens)
    kw, hidden = {}, []
    if mask in ("pad", "both"):
        pad = padding(RNG.integers(1, tk + 1, size=n), tk)
        kw["key_padding_mask"] = torch.tensor(pad)
        hidden.append(pad[:, None, :])
    attn = np.zeros((n, tq, tk), bool)
    if mask in ("attn", "both"):
        attn = RNG.random((n, tq, tk)) < 0.3
        attn[:, :, 0] = False  # no query with every key hidden: no NaN rows
        hidden.append(attn)
    if causal:
        attn = attn | np.triu(np.ones((tq, tk), bool), 1)
    if mask in ("attn", "both") or causal:  # torch's 3-D attn_mask is per (batch, head)
        kw["attn_mask"] = torch.tensor(np.repeat(attn, heads, axis=0))
    y_t, a_t = m(q_, k_, v_, need_weights=True, average_attn_weights=mode == "mean", **kw)
    a, b = RNG.normal(size=y_t.shape), RNG.normal(size=a_t.shape)
    ((y_t * torch.tensor(a)).sum() + (a_t * torch.tensor(b)).sum()).backward()

    layer = MultiHeadAttention(heads, causal=causal, masked=mask is not None, kdim=kdim,
                               vdim=vdim, return_weights=mode)
    xs = arrays[0] if form == 1 else tuple(arrays)
    if mask is not None:
        full = np.zeros((n, tq, tk), bool)
        for h in hidden:
            full = full | h
        xs = (*(xs if form > 1 else (xs,)), full)
    p = mha_params(m)
    (y, w), pullback = layer.vjp(p, xs)
    y_a, w_a = layer.apply(p, xs)
    np.testing.assert_array_equal(y, y_a)
    np.testing.assert_array_equal(w, w_a)
    assert w.shape == tuple(a_t.shape)
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(w, a_t.detach().numpy(), rtol=0, atol=1e-12)
    grads, dx = pullback((a, b))
    want = mha_params(m, grad=True)
    for k in want:
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-10, atol=1e-10, err_msg=k)
    dxs = list(dx)[:form] if isinstance(dx, tuple) else [dx]  # a mask's None dropped
    for d, t in zip(dxs, tens):
        np.testing.assert_allclose(d, t.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_torch_returns_the_weights_after_dropout():
    """torch's need_weights=True weights in training are P⊙M (0 or P/(1 - p)), so are ours."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = torch.nn.MultiheadAttention(E, 2, dropout=0.5, batch_first=True, dtype=torch.float64)
    x = torch.tensor(RNG.normal(size=(2, 6, E)))
    with torch.no_grad():
        _, eval_w = m.eval()(x, x, x, need_weights=True, average_attn_weights=False)
        _, train_w = m.train()(x, x, x, need_weights=True, average_attn_weights=False)
    eval_w, train_w = eval_w.numpy(), train_w.numpy()
    assert (train_w == 0).any()
    kept = train_w != 0
    np.testing.assert_allclose(train_w[kept], eval_w[kept] * 2, rtol=1e-12)

    layer = MultiHeadAttention(2, dropout=0.5, return_weights="heads")
    p = mha_params(m)
    _, ours_eval = layer.apply(p, x.numpy())
    _, ours = layer.apply(p, x.numpy(), train=True, key=random.key(3))
    assert (ours == 0).any() and not np.allclose(ours.sum(-1), 1)
    kept = ours != 0
    np.testing.assert_allclose(ours[kept], ours_eval[kept] * 2, rtol=1e-12)
    mean = MultiHeadAttention(2, dropout=0.5, return_weights="mean")
    _, ours_mean = mean.apply(p, x.numpy(), train=True, key=random.key(3))
    np.testing.assert_allclose(ours_mean, ours.mean(axis=1), rtol=1e-12)


# ---------------------------------------------------------------------------- our own

CONFIGS = [  # (kwargs, in_shape)
    ({"causal": True}, (None, 5, E)),
    ({"masked": True, "kdim": 6, "vdim": 10}, ((None, 3, E), (None, 6, 6), (None, 6, 10),
                                                (None, 6))),
    ({"normalizer": "sparsemax"}, ((None, 4, E), (None, 5, E))),
    ({"masked": True, "hidden_rows": "zero"}, ((None, 4, E), (None, 4, 4))),
]


def inputs_for(in_shape, masked, n=3):
    """A float32 input of ``in_shape`` (batch n); with ``masked``, its last entry a boolean
    key padding mask (N, Tk) or attention mask (N, Tq, Tk), this one with a query whose
    keys are all hidden."""
    if not isinstance(in_shape[0], tuple):
        return RNG.normal(size=(n, *in_shape[1:])).astype(np.float32)
    data = in_shape[:-1] if masked else in_shape
    xs = [RNG.normal(size=(n, *s[1:])).astype(np.float32) for s in data]
    if masked and len(in_shape[-1]) == 2:
        xs.append(padding(np.arange(n) % in_shape[-1][1] + 1, in_shape[-1][1]))
    elif masked:
        attn = RNG.random((n, *in_shape[-1][1:])) < 0.4
        attn[:, :, 0] = False
        attn[0, 1] = True
        xs.append(attn)
    return xs[0] if len(xs) == 1 else tuple(xs)


@pytest.mark.parametrize("mode", ["heads", "mean"])
@pytest.mark.parametrize(("kwargs", "in_shape"), CONFIGS)
def test_check_vjp_and_check_layer(mode, kwargs, in_shape):
    layer = MultiHeadAttention(2, return_weights=mode, **kwargs)
    out_shape, p = layer.init(random.key(1), in_shape)
    x = inputs_for(in_shape, kwargs.get("masked", False))
    y, w = layer.apply(p, x)
    assert y.dtype == w.dtype == np.float32
    assert out_shape[0] == (None, *y.shape[1:]) and out_shape[1] == (None, *w.shape[1:])
    check_vjp(layer, p, x)
    check_layer(layer, in_shape, x=x)


@pytest.mark.parametrize("mode", ["heads", "mean"])
def test_check_vjp_with_dropout_in_training(mode):
    """The weights' cotangent enters at P⊙M, the weights returned."""
    layer = MultiHeadAttention(2, dropout=0.3, return_weights=mode)
    _, p = layer.init(random.key(0), (None, 5, E))
    x = RNG.normal(size=(2, 5, E))
    check_vjp(layer, p, x, key=random.key(4), train=True)
    check_layer(layer, (None, 5, E), key=random.key(4), train=True)


@pytest.mark.parametrize("mode", ["heads", "mean"])
@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax"])
def test_no_weights_cotangent_gives_return_weights_false_grads(mode, normalizer):
    plain = MultiHeadAttention(2, causal=True, dropout=0.2, normalizer=normalizer)
    both = MultiHeadAttention(2, causal=True, dropout=0.2, normalizer=normalizer,
                              return_weights=mode)
    _, p = plain.init(random.key(0), (None, 5, E))
    x = RNG.normal(size=(3, 5, E)).astype(np.float32)
    kw = {"train": True, "key": random.key(2)}
    y, pb = plain.vjp(p, x, **kw)
    (y2, _), pb2 = both.vjp(p, x, **kw)
    np.testing.assert_array_equal(y, y2)
    dy = RNG.normal(size=y.shape).astype(np.float32)
    g, dx = pb(dy)
    for dys in ((dy, None), [dy, None]):
        g2, dx2 = pb2(dys)
        np.testing.assert_array_equal(dx, dx2)
        for k in g:
            np.testing.assert_array_equal(g[k], g2[k])
    # a zero dA changes nothing but rounding (the general softmax vjp runs)
    _, w = both.apply(p, x, **kw)
    _, dx3 = pb2((dy, np.zeros_like(w)))
    np.testing.assert_allclose(dx3, dx, rtol=1e-4, atol=1e-6)


def test_init_out_shapes_and_names():
    mha = MultiHeadAttention(4, return_weights="heads")
    assert mha.name == "MultiHeadAttention(4, return_weights='heads')"
    assert MultiHeadAttention(4).name == "MultiHeadAttention(4)"
    assert MultiHeadAttention(4, return_weights=False).name == "MultiHeadAttention(4)"
    assert mha.init(random.key(0), ((2, 3, E), (2, 7, E)))[0] == ((2, 3, E), (2, 4, 3, 7))
    mean = MultiHeadAttention(2, masked=True, return_weights="mean")
    shape = mean.init(random.key(0), ((None, 3, E), (None, 6, E), (None, 6)))[0]
    assert shape == ((None, 3, E), (None, 3, 6))


@pytest.mark.parametrize(("value", "error", "words"), [
    (True, ValueError, "got True: pass 'mean'"), ("Mean", ValueError, "lower case"),
    ("both", ValueError, "'heads'"), (1, TypeError, "(int)"), (None, TypeError, "NoneType")])
def test_bad_return_weights(value, error, words):
    with pytest.raises(error, match=r"MultiHeadAttention\(2, return_weights=") as e:
        MultiHeadAttention(2, return_weights=value)
    assert words in str(e.value) and "False" in str(e.value) and "'mean'" in str(e.value)


def test_bad_pullback_cotangents_are_named():
    layer = MultiHeadAttention(2, return_weights="mean")
    _, p = layer.init(random.key(0), (None, 4, E))
    x = RNG.normal(size=(2, 4, E)).astype(np.float32)
    (y, w), pb = layer.vjp(p, x)
    with pytest.raises(TypeError, match=r"MultiHeadAttention.*takes \(dy, dP\)"):
        pb(np.ones_like(y))
    with pytest.raises(ValueError, match=r"MultiHeadAttention.*dP of shape \(2, 4, 4\)"):
        pb((np.ones_like(y), np.ones((2, 2, 4, 4), np.float32)))
    with pytest.raises(ValueError, match=r"MultiHeadAttention.*dy of shape"):
        pb((np.ones((2, 4)), np.ones_like(w)))
    g, _ = pb((np.ones_like(y), np.ones_like(w, dtype=np.float64)))
    assert all(v.dtype == np.float32 for v in g.values())


def test_returned_weights_do_not_alias_what_the_pullback_reads():
    layer = MultiHeadAttention(2, return_weights="heads")
    _, p = layer.init(random.key(0), (None, 4, E))
    x = RNG.normal(size=(2, 4, E))
    (y, w), pb = layer.vjp(p, x)
    dy = RNG.normal(size=y.shape)
    before = pb((dy, None))
    w[...] = 7.0
    after = pb((dy, None))
    np.testing.assert_array_equal(before[1], after[1])
