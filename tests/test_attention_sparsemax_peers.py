"""MultiHeadAttention(normalizer='sparsemax') against twins in float64: a torch one on a
real nn.MultiheadAttention's parameters (torch's layout, in_proj_weight rows and
out_proj, mapped as test_attention_torch.py maps them) with a sort-based sparsemax in place
of its softmax, differentiated by autograd; and a JAX one in funcdl's layout with
optax.projections.projection_simplex per row, differentiated by jax.vjp. Outputs and the
gradients of every param and input: self-, cross- and general attention, causal, key
padding and attention masks, dropout (funcdl's mask given to the twin)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402
from test_attention_torch import torch_grads, torch_params  # noqa: E402

from funcdl import random  # noqa: E402
from funcdl.layers.attention import MultiHeadAttention  # noqa: E402

TOL = {"rtol": 1e-10, "atol": 1e-12}
F32 = np.float32


def torch_sparsemax(s):
    """Sparsemax along the last axis by sorting: the support is the k largest z with
    1 + k z_(k) > Σ_{i<=k} z_(i), τ = (Σ_{i<=k} z_(i) - 1) / k, p = max(z - τ, 0)."""
    z = s - s.max(dim=-1, keepdim=True).values
    desc = torch.sort(z, dim=-1, descending=True).values
    cum = torch.cumsum(desc, dim=-1)
    k = torch.arange(1, s.shape[-1] + 1, dtype=s.dtype)
    size = (1 + k * desc > cum).sum(dim=-1, keepdim=True)
    tau = (torch.gather(cum, -1, size - 1) - 1) / size.to(s.dtype)
    return torch.clamp(z - tau, min=0)


def torch_twin(m, q, k, v, heads, hidden=None, keep=None):
    """torch's MultiheadAttention forward, in its own parameters, with sparsemax."""
    e = q.shape[-1]
    d = e // heads
    w, b = m.in_proj_weight, m.in_proj_bias
    proj = [torch.nn.functional.linear(x, w[i * e:(i + 1) * e],
                                       None if b is None else b[i * e:(i + 1) * e])
            for i, x in enumerate((q, k, v))]
    qh, kh, vh = (a.reshape(a.shape[0], a.shape[1], heads, d).transpose(1, 2) for a in proj)
    s = qh @ kh.transpose(-1, -2) / d ** 0.5
    if hidden is not None:
        s = s.masked_fill(torch.as_tensor(hidden)[:, None], -torch.inf)
    p = torch_sparsemax(s)
    if keep is not None:
        p = p * torch.as_tensor(keep)
    c = (p @ vh).transpose(1, 2).reshape(q.shape[0], q.shape[1], e)
    return m.out_proj(c)


def jax_twin(p, q, k, v, heads, hidden=None, keep=None):
    """The same in funcdl's layout (x @ w + b), with optax's projection per row."""
    e = q.shape[-1]
    d = e // heads
    proj = [x @ p[f"w_{r}"] + p.get(f"b_{r}", 0.0) for r, x in zip("qkv", (q, k, v))]
    qh, kh, vh = (a.reshape(a.shape[0], a.shape[1], heads, d).transpose(0, 2, 1, 3)
                  for a in proj)
    s = qh @ kh.swapaxes(-1, -2) / d ** 0.5
    if hidden is not None:
        s = jnp.where(hidden[:, None], -jnp.inf, s)
    rows = jax.vmap(optax.projections.projection_simplex)(s.reshape(-1, s.shape[-1]))
    w = rows.reshape(s.shape)
    if keep is not None:
        w = w * keep
    c = (w @ vh).transpose(0, 2, 1, 3).reshape(q.shape[0], q.shape[1], e)
    return c @ p["w_o"] + p.get("b_o", 0.0)


CASES = [  # (heads, form, mask, use_bias, dropout, tq, tk): form 1 x, 2 (q, kv), 3 (q, k, v)
    (1, 1, None, True, 0.0, 5, 5), (2, 1, "causal", True, 0.0, 6, 6),
    (2, 2, None, True, 0.0, 4, 7), (4, 3, "padding", True, 0.0, 3, 6),
    (2, 3, "attn", False, 0.0, 4, 5), (2, 2, None, True, 0.3, 4, 6)]


def setup(heads, form, mask, use_bias, dropout, tq, tk, n=3, e=8):
    """torch's module (biases drawn, w_q scaled up so that some weights are 0), funcdl's
    layer and params, the inputs (q, k, v) and the funcdl input form, the hidden keys
    (N, Tq, Tk) and the dropout factors (N, H, Tq, Tk) funcdl draws, or None."""
    torch.manual_seed(heads * 10 + form)
    m = torch.nn.MultiheadAttention(e, heads, bias=use_bias, batch_first=True,
                                    dtype=torch.float64)
    with torch.no_grad():
        m.in_proj_weight[:e] *= 3.0
        if use_bias:
            m.in_proj_bias.normal_()
            m.out_proj.bias.normal_()
    rng = np.random.default_rng(form)
    q, k, v = (rng.normal(size=(n, t, e)) for t in (tq, tk, tk))
    if form == 1:
        k = v = q
    elif form == 2:
        v = k
    xs = {1: (q,), 2: (q, k), 3: (q, k, v)}[form]
    hidden, given = None, None
    if mask == "causal":
        hidden = np.broadcast_to(np.triu(np.ones((tq, tk), bool), 1), (n, tq, tk)).copy()
    elif mask == "padding":
        given = np.arange(tk)[None, :] >= np.array([tk, 2, 4])[:, None]
        hidden = np.broadcast_to(given[:, None, :], (n, tq, tk)).copy()
    elif mask == "attn":
        given = rng.random((n, tq, tk)) < 0.4
        given[..., 0] = False
        hidden = given
    layer = MultiHeadAttention(heads, causal=mask == "causal", dropout=dropout,
                               use_bias=use_bias, masked=given is not None,
                               normalizer="sparsemax")
    keep = None
    if dropout:
        keep = ((random.uniform(random.key(5), (n, heads, tq, tk), dtype=F32) >= F32(dropout))
                / (1.0 - dropout))
    fx = (*xs, given) if given is not None else (xs[0] if form == 1 else xs)
    return m, layer, torch_params(m, e), (q, k, v), fx, hidden, keep


def funcdl_run(layer, p, fx, form, dy, dropout):
    call = {"key": random.key(5), "train": True} if dropout else {}
    y, pullback = layer.vjp(p, fx, **call)
    dp, dx = pullback(dy)
    dx = [dx] if form == 1 else list(dx)[:form]
    assert not (np.asarray(y) == 0).all()
    return y, dp, dx


def summed(grads, form):
    """The twins' (dq, dk, dv) as the funcdl input form's dx: an entry in several roles
    gets their sum."""
    dq, dk, dv = grads
    return [dq + dk + dv] if form == 1 else [dq, dk + dv] if form == 2 else [dq, dk, dv]


@pytest.mark.parametrize(("heads", "form", "mask", "use_bias", "dropout", "tq", "tk"), CASES)
def test_matches_the_torch_twin(heads, form, mask, use_bias, dropout, tq, tk):
    m, layer, p, (q, k, v), fx, hidden, keep = setup(heads, form, mask, use_bias, dropout,
                                                      tq, tk)
    tq_, tk_, tv_ = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    out = torch_twin(m, tq_, tk_, tv_, heads, hidden, keep)
    dy = np.random.default_rng(11).normal(size=out.shape)
    out.backward(torch.tensor(dy))
    y, dp, dx = funcdl_run(layer, p, fx, form, dy, dropout)
    np.testing.assert_allclose(y, out.detach().numpy(), **TOL)
    want = torch_grads(m, q.shape[-1])
    assert sorted(dp) == sorted(want)
    for name in want:
        np.testing.assert_allclose(dp[name], want[name], **TOL, err_msg=name)
    for got, exp in zip(dx, summed([a.grad.numpy() for a in (tq_, tk_, tv_)], form)):
        np.testing.assert_allclose(got, exp, **TOL)


@pytest.mark.parametrize(("heads", "form", "mask", "use_bias", "dropout", "tq", "tk"), CASES)
def test_matches_the_optax_projection_twin(heads, form, mask, use_bias, dropout, tq, tk):
    _, layer, p, (q, k, v), fx, hidden, keep = setup(heads, form, mask, use_bias, dropout,
                                                      tq, tk)
    dy = np.random.default_rng(12).normal(size=q.shape)
    with jax.enable_x64(True):
        h = None if hidden is None else jnp.asarray(hidden)
        kp = None if keep is None else jnp.asarray(keep, jnp.float64)
        out, pull = jax.vjp(lambda p_, a, b, c: jax_twin(p_, a, b, c, heads, h, kp),
                            {n_: jnp.asarray(a) for n_, a in p.items()}, *map(jnp.asarray,
                                                                             (q, k, v)))
        dp_want, *dxs = pull(jnp.asarray(dy))
    y, dp, dx = funcdl_run(layer, p, fx, form, dy, dropout)
    np.testing.assert_allclose(y, np.asarray(out), **TOL)
    assert sorted(dp) == sorted(dp_want)
    for name in dp:
        np.testing.assert_allclose(dp[name], np.asarray(dp_want[name]), **TOL, err_msg=name)
    for got, exp in zip(dx, summed([np.asarray(a) for a in dxs], form)):
        np.testing.assert_allclose(got, exp, **TOL)
