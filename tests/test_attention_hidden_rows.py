"""A query whose keys are all hidden (an empty sequence's key padding, or causal attention
with left padding, where query 0 sees only a padded key): MultiHeadAttention's
``hidden_rows='zero'`` gives it weights 0 (its row of y is b_o, no gradient through it), as
torch's need_weights=False training path, and the Transformer blocks take it by default;
``'nan'`` keeps torch's math-path NaN. Torch twins in float64 (skipped without torch),
plain checks (exact b_o rows, exact zero gradients, no NaN) and the option's errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _torch_util import block_params

from funcdl import random, tree
from funcdl.layers import MaskedMean
from funcdl.layers.attention import MultiHeadAttention
from funcdl.layers.blocks import TransformerDecoderLayer, TransformerEncoderLayer
from funcdl.testing import check_layer, check_vjp

TOL = {"rtol": 1e-10, "atol": 1e-10}
N, T, S, E, H, FF = 3, 4, 5, 8, 2, 12
RNG = np.random.default_rng(3)
KEY = random.key(0)
# row 0 an empty sequence, row 1 right-padded, row 2 whole
EMPTY = np.array([[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]], bool)
# row 0 left-padded: with causality its query 0 sees key 0 only, which is padding
LEFT = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], bool)
MEMORY = np.array([[1, 1, 1, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], bool)


def finite(*trees: Any) -> bool:
    return all(np.isfinite(a).all() for t in trees for a in tree.leaves(t) if a is not None)


def params_of(layer: Any, in_shape: Any) -> Any:
    """Float64 params with nonzero biases, so that b_o and the b_k/b_v paths show."""
    _, p = layer.init(KEY, in_shape)
    return {k: (v + 0.3 * RNG.normal(size=v.shape)).astype(np.float64) for k, v in p.items()}


# ---------------------------------------------------------------------------- torch twins

def torch_or_skip() -> Any:
    return pytest.importorskip("torch")


def training(module: Any, seed: int = 0) -> Any:
    """The module in float64 and training mode (dropout 0: torch's autograd path, which
    calls its attention with need_weights=False), every param moved off its init."""
    torch = torch_or_skip()
    torch.manual_seed(seed)
    module = module.double().train()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


def leaf(a: Any) -> Any:
    return torch_or_skip().tensor(np.asarray(a), dtype=torch_or_skip().float64,
                                  requires_grad=True)


def same(ours: Any, theirs: Any) -> None:
    assert tree.structure(ours) == tree.structure(theirs)
    for a, b in zip(tree.leaves(ours), tree.leaves(theirs)):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, **TOL)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("pad, causal", [(EMPTY, False), (LEFT, True)])
def test_encoder_matches_torch_training_with_an_all_hidden_query(norm_first, pad, causal):
    torch = torch_or_skip()
    mod = training(torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True,
                                                    norm_first=norm_first))
    layer = TransformerEncoderLayer(E, H, FF, dropout=0.0, norm_first=norm_first,
                                    causal=causal, masked=True)
    x = RNG.normal(size=(N, T, E))
    y, pb = layer.vjp(block_params(mod), (x, pad))
    dy = RNG.normal(size=y.shape)
    xt = leaf(x)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None
    yt = mod(xt, src_mask=mask, src_key_padding_mask=torch.tensor(pad), is_causal=causal)
    yt.backward(torch.tensor(dy))
    g, (dx, dmask) = pb(dy)
    same(y, yt.detach().numpy())
    same(g, block_params(mod, grads=True))
    same(dx, xt.grad.numpy())
    assert dmask is None


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_matches_torch_training_with_an_empty_memory(norm_first):
    torch = torch_or_skip()
    mod = training(torch.nn.TransformerDecoderLayer(E, H, FF, dropout=0.0, batch_first=True,
                                                    norm_first=norm_first))
    layer = TransformerDecoderLayer(E, H, FF, dropout=0.0, norm_first=norm_first, masked=True)
    tgt, mem = RNG.normal(size=(N, T, E)), RNG.normal(size=(N, S, E))
    y, pb = layer.vjp(block_params(mod), (tgt, mem, MEMORY))
    dy = RNG.normal(size=y.shape)
    tt, tm = leaf(tgt), leaf(mem)
    yt = mod(tt, tm, tgt_mask=torch.triu(torch.ones(T, T, dtype=torch.bool), 1),
             tgt_is_causal=True, memory_key_padding_mask=torch.tensor(MEMORY))
    yt.backward(torch.tensor(dy))
    g, (dt, dm, dmask) = pb(dy)
    same(y, yt.detach().numpy())
    same(g, block_params(mod, grads=True))
    same(dt, tt.grad.numpy())
    same(dm, tm.grad.numpy())
    assert dmask is None and (dm[0] == 0).all()


@pytest.mark.parametrize("case", ["padding", "attn_mask", "causal_left"])
def test_zero_matches_torch_multihead_attention_need_weights_false(case):
    torch = torch_or_skip()
    mod = training(torch.nn.MultiheadAttention(E, H, dropout=0.0, batch_first=True))
    causal = case == "causal_left"
    layer = MultiHeadAttention(H, causal=causal, masked=True, hidden_rows="zero")
    x = RNG.normal(size=(N, T, E))
    kw: dict[str, Any] = {}
    if case == "attn_mask":
        mask = RNG.random((N, T, T)) < 0.3
        mask[1, 2] = mask[0, 0] = True  # two queries with every key hidden
        kw["attn_mask"] = torch.tensor(np.repeat(mask, H, 0))
    else:
        mask = EMPTY if case == "padding" else LEFT
        kw["key_padding_mask"] = torch.tensor(mask)
        if causal:
            kw["attn_mask"] = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    y, pb = layer.vjp(block_params(mod, block=False), (x, mask))
    dy = RNG.normal(size=y.shape)
    xt = leaf(x)
    yt = mod(xt, xt, xt, need_weights=False, is_causal=causal, **kw)[0]
    yt.backward(torch.tensor(dy))
    g, (dx, _) = pb(dy)
    same(y, yt.detach().numpy())
    same(g, block_params(mod, grads=True, block=False))
    same(dx, xt.grad.numpy())


# ---------------------------------------------------------------------------- plain checks

@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax"])
@pytest.mark.parametrize("pad, causal", [(EMPTY, False), (LEFT, True)])
def test_all_hidden_query_gives_b_o_and_exact_zero_gradients(normalizer, pad, causal):
    layer = MultiHeadAttention(H, causal=causal, masked=True, hidden_rows="zero",
                               normalizer=normalizer)
    p = params_of(layer, ((N, T, E), (N, T)))
    x = RNG.normal(size=(N, T, E))
    y, pb = layer.vjp(p, (x, pad))
    g, (dx, _) = pb(RNG.normal(size=y.shape))
    empty = (slice(0, 1), slice(None)) if not causal else (0, 0)
    # the empty rows: no key seen, context 0, and (as keys) seen by no query either
    assert (y[empty] == p["b_o"]).all()
    assert (dx[empty] == 0).all()
    assert finite(y, g, dx)
    # the other rows as without the empty ones: the batch's row 2 alone
    alone = layer.apply(p, (x[2:], pad[2:]))
    np.testing.assert_allclose(y[2:], alone, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax"])
def test_cross_attention_and_3d_masks_zero_rows(normalizer):
    layer = MultiHeadAttention(H, masked=True, hidden_rows="zero", normalizer=normalizer)
    p = params_of(layer, ((N, T, E), (N, S, E), (1, T, S)))
    q, kv = RNG.normal(size=(N, T, E)), RNG.normal(size=(N, S, E))
    for mask in (np.broadcast_to(MEMORY[:, None], (N, T, S)).copy(),
                 np.eye(T, S, dtype=bool)[None] | (np.arange(T) == 1)[None, :, None]):
        y, pb = layer.vjp(p, (q, kv, mask))
        g, (dq, dkv, _) = pb(RNG.normal(size=y.shape))
        rows = mask.all(axis=-1)
        assert rows.any() and finite(y, g, dq, dkv)
        assert (np.broadcast_to(rows, (N, T))[..., None] == (y == p["b_o"])).all()
        assert (dq[np.broadcast_to(rows, (N, T))] == 0).all()


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax"])
def test_dropout_with_zero_rows_stays_finite(normalizer):
    layer = MultiHeadAttention(H, causal=True, masked=True, dropout=0.3, hidden_rows="zero",
                               normalizer=normalizer)
    p = tree.astype(params_of(layer, ((N, T, E), (N, T))), np.float32)
    x = RNG.normal(size=(N, T, E)).astype(np.float32)
    pad = EMPTY | LEFT
    y, pb = layer.vjp(p, (x, pad), key=random.key(5), train=True)
    g, (dx, _) = pb(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32 and finite(y, g, dx)
    assert (y[0] == p["b_o"]).all() and (dx[0] == 0).all()
    assert (y[1, 0] != p["b_o"]).any()  # query 0 of row 1 sees key 0: not zeroed
    check_vjp(layer, p, (x, pad), key=random.key(5), train=True)


def test_nan_stays_the_default():
    x = RNG.normal(size=(N, T, E))
    for layer in (MultiHeadAttention(H, masked=True),
                  MultiHeadAttention(H, masked=True, hidden_rows="nan", normalizer="sparsemax")):
        p = params_of(layer, ((N, T, E), (N, T)))
        y, pb = layer.vjp(p, (x, EMPTY))
        assert np.isnan(y[0]).all() and not np.isnan(y[1:]).any()
        assert np.isnan(pb(np.ones_like(y))[0]["w_q"]).any()
    enc = TransformerEncoderLayer(E, H, FF, dropout=0.0, masked=True, hidden_rows="nan")
    _, p = enc.init(KEY, ((N, T, E), (N, T)))
    assert np.isnan(enc.apply(p, (x, EMPTY))[0]).all()


@pytest.mark.parametrize("kind", ["encoder", "encoder_first", "decoder"])
def test_blocks_default_to_zero_and_train_finite_through_masked_mean(kind):
    x = RNG.normal(size=(N, T, E)).astype(np.float32)
    if kind == "decoder":
        layer = TransformerDecoderLayer(E, H, FF, dropout=0.1, masked=True)
        xs: Any = (x, RNG.normal(size=(N, S, E)).astype(np.float32), MEMORY)
        _, p = layer.init(KEY, ((N, T, E), (N, S, E), (N, S)))
    else:
        layer = TransformerEncoderLayer(E, H, FF, dropout=0.1, masked=True, causal=True,
                                        norm_first=kind == "encoder_first")
        xs = (x, EMPTY | LEFT)
        _, p = layer.init(KEY, ((N, T, E), (N, T)))
    y, pb = layer.vjp(p, xs, key=random.key(1), train=True)
    pool = MaskedMean()
    pooled, ppb = pool.vjp((), (y, xs[-1] if kind != "decoder" else np.zeros((N, T), bool)))
    _, (dy, _) = ppb(RNG.normal(size=pooled.shape).astype(np.float32))
    g, dx = pb(dy)
    assert finite(y, pooled, g, dx)


def test_check_layer_and_check_vjp_on_zero_configurations():
    layer = MultiHeadAttention(H, causal=True, masked=True, hidden_rows="zero")
    x = RNG.normal(size=(N, T, E)).astype(np.float32)
    check_layer(layer, ((None, T, E), (None, T)), x=(x, EMPTY | LEFT))
    sparse = MultiHeadAttention(H, masked=True, hidden_rows="zero", normalizer="sparsemax")
    check_layer(sparse, ((None, T, E), (None, T)), x=(x, EMPTY))
    p = params_of(layer, ((N, T, E), (N, T)))
    check_vjp(layer, p, (x.astype(np.float64), EMPTY | LEFT))
    enc = TransformerEncoderLayer(E, H, FF, dropout=0.0, masked=True)
    check_layer(enc, ((None, T, E), (None, T)), x=(x, EMPTY))
    dec = TransformerDecoderLayer(E, H, FF, dropout=0.0, masked=True)
    check_layer(dec, ((None, T, E), (None, S, E), (None, S)),
                x=(x, RNG.normal(size=(N, S, E)).astype(np.float32), MEMORY))


def test_names_show_hidden_rows_off_its_default():
    assert MultiHeadAttention(H).name == "MultiHeadAttention(2)"
    assert MultiHeadAttention(H, hidden_rows="zero").name == \
        "MultiHeadAttention(2, hidden_rows='zero')"
    assert "hidden_rows" not in TransformerEncoderLayer(E, H).name
    assert "hidden_rows" not in TransformerDecoderLayer(E, H).name
    assert TransformerEncoderLayer(E, H, hidden_rows="nan").name == \
        "TransformerEncoderLayer(8, 2, hidden_rows='nan')"
    assert "hidden_rows='nan'" in repr(TransformerDecoderLayer(E, H, hidden_rows="nan"))


@pytest.mark.parametrize("value, error", [("Zero", ValueError), ("none", ValueError),
                                          (None, TypeError), (0, TypeError),
                                          (True, TypeError)])
@pytest.mark.parametrize("ctor, where", [
    (lambda v: MultiHeadAttention(H, hidden_rows=v), r"^MultiHeadAttention\(2"),
    (lambda v: TransformerEncoderLayer(E, H, hidden_rows=v), r"^TransformerEncoderLayer\(8, 2"),
    (lambda v: TransformerDecoderLayer(E, H, hidden_rows=v), r"^TransformerDecoderLayer\(8, 2")])
def test_bad_hidden_rows(value, error, ctor, where):
    with pytest.raises(error, match=where + r".*hidden_rows must be 'nan'.*or 'zero'"):
        ctor(value)


def test_masked_mean_lengths_given_a_boolean_mask_says_it_is_a_padding_mask():
    x = RNG.normal(size=(N, T, E))
    with pytest.raises(TypeError, match=r"^MaskedMean\('lengths'\): lengths must be integers"
                       r".*got dtype bool; pass a boolean \(N, T\) padding mask.*to "
                       r"MaskedMean\(\) instead.*not lengths") as e:
        MaskedMean("lengths").apply((), (x, EMPTY))
    assert "astype(np.int64)" not in str(e.value)
