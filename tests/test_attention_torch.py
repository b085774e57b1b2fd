"""MultiHeadAttention against torch.nn.MultiheadAttention(batch_first=True) in float64:
outputs, and the gradients of every param and of q, k, v, for self-attention (one tensor
as query, key and value), cross-attention (key = value) and three tensors; one and several
heads, causal (torch's boolean attn_mask), without biases; and the default init's ranges."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from funcdl import random  # noqa: E402
from funcdl.layers.attention import MultiHeadAttention  # noqa: E402

TOL = {"rtol": 1e-10, "atol": 1e-12}


def torch_params(m, e):
    """funcdl's params from torch's module: the in_proj rows sliced and transposed."""
    w, b = m.in_proj_weight.detach().numpy(), m.in_proj_bias
    p = {f"w_{r}": w[i * e:(i + 1) * e].T.copy() for i, r in enumerate("qkv")}
    p["w_o"] = m.out_proj.weight.detach().numpy().T.copy()
    if b is not None:
        b = b.detach().numpy()
        p.update({f"b_{r}": b[i * e:(i + 1) * e].copy() for i, r in enumerate("qkv")})
        p["b_o"] = m.out_proj.bias.detach().numpy().copy()
    return p


def torch_grads(m, e):
    """torch's parameter gradients in funcdl's layout."""
    w, b = m.in_proj_weight.grad.numpy(), m.in_proj_bias
    g = {f"w_{r}": w[i * e:(i + 1) * e].T for i, r in enumerate("qkv")}
    g["w_o"] = m.out_proj.weight.grad.numpy().T
    if b is not None:
        g.update({f"b_{r}": b.grad.numpy()[i * e:(i + 1) * e] for i, r in enumerate("qkv")})
        g["b_o"] = m.out_proj.bias.grad.numpy()
    return g


CASES = [  # (heads, form, causal, use_bias, tq, tk): form 1 x, 2 (q, kv), 3 (q, k, v)
    (1, 1, False, True, 5, 5), (4, 1, False, True, 6, 6), (2, 1, True, True, 6, 6),
    (2, 2, False, True, 4, 7), (4, 2, True, True, 5, 5), (2, 3, False, True, 3, 6),
    (2, 3, True, False, 5, 5), (4, 1, False, False, 4, 4)]


@pytest.mark.parametrize(("heads", "form", "causal", "use_bias", "tq", "tk"), CASES)
def test_matches_torch(heads, form, causal, use_bias, tq, tk):
    e, n = 8, 3
    torch.manual_seed(heads * 10 + form)
    m = torch.nn.MultiheadAttention(e, heads, bias=use_bias, batch_first=True,
                                    dtype=torch.float64)
    if use_bias:  # torch starts them at 0, where a misplaced bias would pass unseen
        with torch.no_grad():
            m.in_proj_bias.normal_()
            m.out_proj.bias.normal_()
    rng = np.random.default_rng(form)
    q, k, v = (rng.normal(size=(n, t, e)) for t in (tq, tk, tk))
    tq_, tk_, tv_ = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    if form == 1:
        tk_ = tv_ = tq_
    elif form == 2:
        tv_ = tk_
    mask = torch.triu(torch.ones(tq, tk, dtype=torch.bool), 1) if causal else None
    out, _ = m(tq_, tk_, tv_, need_weights=False, attn_mask=mask)
    dy = rng.normal(size=out.shape)
    out.backward(torch.tensor(dy))

    layer = MultiHeadAttention(heads, causal=causal, use_bias=use_bias)
    xs = {1: q, 2: (q, k), 3: (q, k, v)}[form]
    p = torch_params(m, e)
    y, pullback = layer.vjp(p, xs)
    np.testing.assert_allclose(y, out.detach().numpy(), **TOL)
    dp, dx = pullback(dy)
    want = torch_grads(m, e)
    assert sorted(dp) == sorted(want)
    for name in want:
        np.testing.assert_allclose(dp[name], want[name], **TOL, err_msg=name)
    got = [dx] if form == 1 else list(dx)
    for g, t in zip(got, (tq_, tk_, tv_)):
        np.testing.assert_allclose(g, t.grad.numpy(), **TOL)


def test_default_init_ranges_match_torchs():
    """The same bounds: xavier_uniform over torch's stacked (3E, E) in_proj (fan_in E,
    fan_out 3E), nn.Linear's U(±1/sqrt(E)) on out_proj, zero biases."""
    e = 64
    m = torch.nn.MultiheadAttention(e, 4, batch_first=True)
    _, p = MultiHeadAttention(4).init(random.key(0), (None, 5, e))
    ours = torch_params(m, e)
    for name in ("w_q", "w_k", "w_v", "w_o"):
        bound = np.sqrt(6 / (4 * e)) if name != "w_o" else 1 / np.sqrt(e)
        for got in (p[name], ours[name]):  # each reaches near its bound, not beyond
            assert 0.97 * bound < np.abs(got).max() <= bound, name
        assert p[name].dtype == np.float32
    for name in ("b_q", "b_k", "b_v", "b_o"):
        assert not p[name].any() and not ours[name].any()
