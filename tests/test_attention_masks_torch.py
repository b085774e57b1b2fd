"""MultiHeadAttention(masked=True) and the masked Transformer blocks against torch.nn's
(batch_first=True), float64, training mode with dropout 0 (torch's math path; its eval-mode
fast path may take padding masks another way): outputs, every param's gradient and the
inputs', with key_padding_mask, bool attn_mask, src_key_padding_mask and
memory_key_padding_mask (with a causal tgt)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _torch_util import block_params

from funcdl.layers.attention import MultiHeadAttention
from funcdl.layers.blocks import TransformerDecoderLayer, TransformerEncoderLayer

torch = pytest.importorskip("torch")

TOL = {"rtol": 1e-10, "atol": 1e-11}
N, T, S, E, H, FF = 3, 5, 4, 8, 2, 12
RNG = np.random.default_rng(0)


def jiggled(module: Any) -> Any:
    torch.manual_seed(0)
    module = module.double().train()  # dropout 0: training mode is deterministic
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


def tt(a: Any) -> Any:
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def close(ours: Any, theirs: Any) -> None:
    if isinstance(ours, dict):
        assert set(ours) == set(theirs)
        for k in ours:
            close(ours[k], theirs[k])
    else:
        np.testing.assert_allclose(ours, theirs, **TOL)


def padding(lens: Any, t: int) -> Any:
    return np.arange(t)[None, :] >= np.asarray(lens)[:, None]


@pytest.mark.parametrize("kind", ["padding", "attn2", "attn3", "both"])
@pytest.mark.parametrize("causal", [False, True])
def test_multihead_attention(kind, causal):
    mod = jiggled(torch.nn.MultiheadAttention(E, H, dropout=0.0, batch_first=True))
    q = RNG.normal(size=(N, T, E))
    kv = q if causal else RNG.normal(size=(N, S, E))
    tk = kv.shape[1]
    kpm = padding((tk, 2, 3), tk)
    attn = RNG.random((N, T, tk)) < 0.3
    attn[..., 0] = False  # no all-hidden rows: torch gives NaN there, as we do
    if causal:
        attn = attn & ~np.eye(T, dtype=bool)  # the diagonal stays visible
    tq, tkv = tt(q), tt(kv)
    kw: dict[str, Any] = {}
    if kind in ("padding", "both"):
        kw["key_padding_mask"] = torch.tensor(kpm)
    ours_mask = kpm
    if kind == "attn2":
        kw["attn_mask"] = torch.tensor(attn[0])
        ours_mask = attn[:1]
    elif kind in ("attn3", "both"):
        kw["attn_mask"] = torch.tensor(np.repeat(attn, H, axis=0))  # torch's (N·H, T, S)
        ours_mask = attn
    if causal:
        c = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        kw["attn_mask"] = c | kw["attn_mask"] if "attn_mask" in kw else c
    y_t = mod(tq, tkv, tkv, **kw)[0]
    dy = RNG.normal(size=y_t.shape)
    y_t.backward(torch.tensor(dy))
    layer = MultiHeadAttention(H, causal=causal, masked=True)
    if kind == "both":  # our one mask holds both: padding folded into the attention mask
        ours_mask = attn | kpm[:, None, :]
    y, pb = layer.vjp(block_params(mod, block=False), (q, kv, ours_mask))
    g, (dq, dkv, dm) = pb(dy)
    close(y, y_t.detach().numpy())
    close(g, block_params(mod, grads=True, block=False))
    close(dq, tq.grad.numpy())
    close(dkv, tkv.grad.numpy())
    assert dm is None


@pytest.mark.parametrize("first", [False, True])
def test_encoder_src_key_padding_mask(first):
    mod = jiggled(torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True,
                                                   norm_first=first))
    x = RNG.normal(size=(N, T, E))
    kpm = padding((T, 2, 4), T)
    tx = tt(x)
    y_t = mod(tx, src_key_padding_mask=torch.tensor(kpm))
    dy = RNG.normal(size=y_t.shape)
    y_t.backward(torch.tensor(dy))
    layer = TransformerEncoderLayer(E, H, FF, dropout=0.0, norm_first=first, masked=True)
    y, pb = layer.vjp(block_params(mod), (x, kpm))
    g, (dx, _) = pb(dy)
    close(y, y_t.detach().numpy())
    close(g, block_params(mod, grads=True))
    close(dx, tx.grad.numpy())


@pytest.mark.parametrize("first", [False, True])
def test_decoder_memory_key_padding_mask(first):
    mod = jiggled(torch.nn.TransformerDecoderLayer(E, H, FF, dropout=0.0, batch_first=True,
                                                   norm_first=first))
    tgt, mem = RNG.normal(size=(N, T, E)), RNG.normal(size=(N, S, E))
    mkpm = padding((S, 1, 3), S)
    tt_, tm = tt(tgt), tt(mem)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
    y_t = mod(tt_, tm, tgt_mask=causal, tgt_is_causal=True,
              memory_key_padding_mask=torch.tensor(mkpm))
    dy = RNG.normal(size=y_t.shape)
    y_t.backward(torch.tensor(dy))
    layer = TransformerDecoderLayer(E, H, FF, dropout=0.0, norm_first=first, masked=True)
    y, pb = layer.vjp(block_params(mod), (tgt, mem, mkpm))
    g, (dt, dm, dmask) = pb(dy)
    close(y, y_t.detach().numpy())
    close(g, block_params(mod, grads=True))
    close(dt, tt_.grad.numpy())
    close(dm, tm.grad.numpy())
    assert dmask is None


def test_all_hidden_row_nan_where_torch_has_it():
    mod = jiggled(torch.nn.MultiheadAttention(E, H, dropout=0.0, batch_first=True))
    x = RNG.normal(size=(N, T, E))
    attn = np.zeros((N, T, T), bool)
    attn[1, 2] = True
    y_t = mod(*(torch.tensor(x),) * 3, attn_mask=torch.tensor(np.repeat(attn, H, 0)))[0]
    y = MultiHeadAttention(H, masked=True).apply(block_params(mod, block=False), (x, attn))
    theirs = y_t.detach().numpy()
    assert np.array_equal(np.isnan(y), np.isnan(theirs)) and np.isnan(y).any()
    ok = ~np.isnan(y)
    np.testing.assert_allclose(y[ok], theirs[ok], **TOL)
