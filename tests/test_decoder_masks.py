"""TransformerDecoderLayer's padding masks: ``tgt_masked=True`` (torch's
``tgt_key_padding_mask``, on the self-attention) with and without ``masked=True`` (its
``memory_key_padding_mask``, on the cross-attention), causal or not. Finite differences in
float64, torch's layer in float64 (skipped without torch), outputs at valid positions
blind to padded keys' values, all-hidden rows ('zero' and 'nan'), decoding step by step
with the masks, and bad masks refused by name."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _torch_util import block_params

from funcdl import layers as L
from funcdl import random
from funcdl.layers.blocks import TransformerDecoderLayer
from funcdl.testing import check_vjp

TOL = {"rtol": 1e-10, "atol": 1e-10}
N, T, S, E, H, FF = 3, 5, 4, 8, 2, 12
RNG = np.random.default_rng(17)
TGT = RNG.normal(size=(N, T, E))
MEM = RNG.normal(size=(N, S, E))
# tgt: row 0 whole, row 1 right-padded to 3, row 2 to 1 (True at padding)
RIGHT = np.arange(T) >= np.array([5, 3, 1])[:, None]
# tgt left-padded: row 1's first 2 positions, row 2's first 4 (causal: its queries 0-3 see
# padding alone)
LEFT = np.arange(T) < np.array([0, 2, 4])[:, None]
# memory: row 0 whole, row 1 two keys, row 2 one key
MEMORY = np.arange(S) >= np.array([4, 2, 1])[:, None]


def decoder(**kw: Any) -> Any:
    return TransformerDecoderLayer(E, H, FF, dropout=0.0, tgt_masked=True, **kw)


def inputs(tgt_mask: Any, memory_mask: Any = None) -> tuple[Any, ...]:
    return (TGT, MEM, tgt_mask) + (() if memory_mask is None else (memory_mask,))


def params_of(layer: Any, x: Any, seed: int = 0) -> Any:
    """Float64 params moved off their init (nonzero biases, LayerNorms off 1 and 0), so
    that a term dropped or given the wrong sign shows."""
    _, p = layer.init(random.key(seed), tuple(a.shape for a in x))
    rng = np.random.default_rng(seed)
    return {k: {n: v + 0.3 * rng.normal(size=v.shape) for n, v in sub.items()}
            for k, sub in p.items()}


# ---------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("causal, tgt_mask", [(False, RIGHT), (True, LEFT)])
@pytest.mark.parametrize("memory", [False, True])
def test_vjp_matches_finite_differences(norm_first: bool, causal: bool, tgt_mask: Any,
                                        memory: bool) -> None:
    layer = decoder(norm_first=norm_first, causal=causal, masked=memory)
    x = inputs(tgt_mask, MEMORY if memory else None)
    check_vjp(layer, params_of(layer, x), x)


def test_an_attention_mask_for_tgt_passes_to_the_self_attention() -> None:
    attn = RNG.random((N, T, T)) < 0.4
    attn[:, np.arange(T), np.arange(T)] = False  # every query keeps a key
    layer = decoder(causal=False, masked=True)
    x = inputs(attn, MEMORY)
    check_vjp(layer, params_of(layer, x), x)


# ---------------------------------------------------------------------------- torch

def torch_or_skip() -> Any:
    return pytest.importorskip("torch")


def training(module: Any) -> Any:
    """float64, training mode with dropout 0 (torch's autograd path: need_weights=False,
    whose all-hidden rows give context 0, as hidden_rows='zero'), params off their init."""
    torch = torch_or_skip()
    torch.manual_seed(0)
    module = module.double().train()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("causal, tgt_mask", [(False, RIGHT), (True, RIGHT), (True, LEFT)])
@pytest.mark.parametrize("memory", [False, True])
def test_matches_torch_decoder_layer(norm_first: bool, causal: bool, tgt_mask: Any,
                                     memory: bool) -> None:
    torch = torch_or_skip()
    mod = training(torch.nn.TransformerDecoderLayer(E, H, FF, dropout=0.0, batch_first=True,
                                                    norm_first=norm_first))
    layer = decoder(norm_first=norm_first, causal=causal, masked=memory)
    x = inputs(tgt_mask, MEMORY if memory else None)
    valid = ~tgt_mask
    dy = RNG.normal(size=(N, T, E)) * valid[..., None]  # a loss on the valid positions
    tt, tm = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (TGT, MEM))
    kw: dict[str, Any] = {"tgt_key_padding_mask": torch.tensor(tgt_mask)}
    if causal:  # boolean, as the padding masks (torch warns on mixed mask types)
        kw.update(tgt_mask=torch.triu(torch.ones(T, T, dtype=torch.bool), 1),
                  tgt_is_causal=True)
    if memory:
        kw["memory_key_padding_mask"] = torch.tensor(MEMORY)
    yt = mod(tt, tm, **kw)
    yt.backward(torch.tensor(dy))
    y, pb = layer.vjp(block_params(mod), x)
    g, dx = pb(dy)
    np.testing.assert_allclose(y[valid], yt.detach().numpy()[valid], **TOL)
    theirs = block_params(mod, grads=True)
    assert sorted(g) == sorted(theirs)
    for k in g:
        for n in g[k]:
            np.testing.assert_allclose(g[k][n], theirs[k][n], err_msg=f"{k}.{n}", **TOL)
    np.testing.assert_allclose(dx[0][valid], tt.grad.numpy()[valid], **TOL)
    np.testing.assert_allclose(dx[1], tm.grad.numpy(), **TOL)
    assert all(d is None for d in dx[2:]) and len(dx) == len(x)


# ---------------------------------------------------------------------------- the mask acts

@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("causal, tgt_mask", [(False, RIGHT), (True, LEFT)])
def test_valid_positions_do_not_see_padded_tgt_keys(norm_first: bool, causal: bool,
                                                    tgt_mask: Any) -> None:
    layer = decoder(norm_first=norm_first, causal=causal)
    x = inputs(tgt_mask)
    params = params_of(layer, x)
    junk = TGT + 5.0 * RNG.normal(size=TGT.shape) * tgt_mask[..., None]  # padding changed
    valid = ~tgt_mask
    y, y_junk = layer.apply(params, x), layer.apply(params, (junk, MEM, tgt_mask))
    np.testing.assert_allclose(y_junk[valid], y[valid], rtol=0, atol=1e-12)
    # the same change shows without the mask, so the check above can fail
    seen = layer.apply(params, (junk, MEM, np.zeros_like(tgt_mask)))
    assert np.abs(seen[valid] - y[valid]).max() > 1e-3
    # and no gradient reaches a padded position from the valid ones' loss
    _, pb = layer.vjp(params, x)
    _, dx = pb(np.ones_like(y) * valid[..., None])
    assert (dx[0][tgt_mask] == 0).all() and np.abs(dx[0][valid]).max() > 0


def test_valid_positions_do_not_see_padded_memory_keys() -> None:
    layer = decoder(causal=False, masked=True)
    x = inputs(RIGHT, MEMORY)
    params = params_of(layer, x)
    junk = MEM + 5.0 * RNG.normal(size=MEM.shape) * MEMORY[..., None]
    y = layer.apply(params, x)
    np.testing.assert_allclose(layer.apply(params, (TGT, junk, RIGHT, MEMORY))[~RIGHT],
                               y[~RIGHT], rtol=0, atol=1e-12)
    seen = layer.apply(params, (TGT, junk, RIGHT, np.zeros_like(MEMORY)))
    assert np.abs(seen[~RIGHT] - y[~RIGHT]).max() > 1e-3


def test_the_two_masks_are_not_swapped() -> None:
    # with T = S a swap would pass the shape checks: the tgt mask hides tgt's keys only
    mem = MEM[:, :1].repeat(T, axis=1) + 0.1 * RNG.normal(size=(N, T, E))
    tgt_mask, memory_mask = RIGHT, np.zeros((N, T), bool)
    layer = decoder(causal=False, masked=True)
    x = (TGT, mem, tgt_mask, memory_mask)
    params = params_of(layer, x)
    junk = mem + 5.0 * RNG.normal(size=mem.shape) * tgt_mask[..., None]
    # memory's positions under the tgt mask are not hidden: changing them shows
    y, y_junk = layer.apply(params, x), layer.apply(params, (TGT, junk, tgt_mask, memory_mask))
    assert np.abs(y_junk - y)[~tgt_mask].max() > 1e-3


# ---------------------------------------------------------------------------- all hidden

def test_an_all_padded_tgt_row_gets_context_zero_by_default() -> None:
    # row 2 wholly padded, not causal: each of its queries has every key hidden
    mask = RIGHT.copy()
    mask[2] = True
    layer = decoder(causal=False)
    x = inputs(mask)
    params = params_of(layer, x)
    y, pb = layer.vjp(params, x)
    assert np.isfinite(y).all()
    # context 0: self_attn gives b_o there whatever its other weights
    other = {**params, "self_attn": {k: v + (0.0 if k == "b_o" else 1.0)
                                     for k, v in params["self_attn"].items()}}
    np.testing.assert_array_equal(layer.apply(other, x)[2], y[2])
    dy = np.zeros_like(y)
    dy[2] = 1.0
    g, dx = pb(dy)
    assert all((g["self_attn"][k] == 0).all() for k in ("w_q", "w_k", "w_v", "w_o"))
    assert np.isfinite(dx[0]).all() and np.abs(dx[0][2]).max() > 0  # the residual path


def test_hidden_rows_nan_gives_nan_on_all_padded_rows_alone() -> None:
    mask = RIGHT.copy()
    mask[2] = True
    y = decoder(causal=False, hidden_rows="nan").apply(params_of(decoder(causal=False),
                                                                 inputs(mask)), inputs(mask))
    assert np.isnan(y[2]).all() and np.isfinite(y[:2]).all()


# ---------------------------------------------------------------------------- decoding

@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("hidden_rows", ["zero", "nan"])
@pytest.mark.parametrize("memory", [False, True])
def test_decoding_with_the_masks_equals_the_full_apply(norm_first: bool, hidden_rows: str,
                                                       memory: bool) -> None:
    layer = decoder(norm_first=norm_first, masked=memory, hidden_rows=hidden_rows)
    memory_mask = MEMORY.copy()
    memory_mask[2] = True  # an empty memory: its queries' cross-attention rows all hidden
    x = inputs(LEFT, memory_mask if memory else None)
    params = params_of(layer, x)
    full = layer.apply(params, x)

    def at(t: int) -> tuple[Any, ...]:
        return (TGT[:, t:t + 1], MEM, LEFT[:, t:t + 1], *x[3:])

    cache = L.decode_init(layer, params, at(0), T)
    for t in range(T):
        y, cache = L.decode_step(layer, params, cache, at(t))
        assert np.array_equal(np.isnan(y[:, 0]), np.isnan(full[:, t]))
        np.testing.assert_allclose(np.nan_to_num(y[:, 0]), np.nan_to_num(full[:, t]),
                                   rtol=1e-12, atol=1e-12)
    assert np.isnan(full).any() == (hidden_rows == "nan")


def test_decoding_honours_the_memory_mask_at_every_step() -> None:
    layer = TransformerDecoderLayer(E, H, FF, dropout=0.0, masked=True)
    params = params_of(layer, (TGT, MEM, MEMORY))
    ones = np.zeros((N, S), bool)
    cache = L.decode_init(layer, params, (TGT[:, :1], MEM, MEMORY), T)
    for t in range(T):
        x_t = (TGT[:, t:t + 1], MEM, MEMORY)
        y, next_cache = L.decode_step(layer, params, cache, x_t)
        np.testing.assert_allclose(y[:, 0], layer.apply(params, (TGT[:, :t + 1], MEM,
                                                                 MEMORY))[:, t], **TOL)
        # the mask is read at the step, not only at decode_init
        other, _ = L.decode_step(layer, params, cache, (*x_t[:2], ones))
        assert np.abs(other - y).max() > 1e-3
        cache = next_cache


def test_a_masked_causal_encoder_steps_too() -> None:
    # the same stepper: before, any masked attention was refused
    enc = L.TransformerEncoderLayer(E, H, FF, dropout=0.0, causal=True, masked=True)
    _, params = enc.init(random.key(0), (TGT.shape, LEFT.shape))
    full = enc.apply(params, (TGT, LEFT))
    cache = L.decode_init(enc, params, (TGT[:, :1], LEFT[:, :1]), T)
    for t in range(T):
        y, cache = L.decode_step(enc, params, cache, (TGT[:, t:t + 1], LEFT[:, t:t + 1]))
        np.testing.assert_allclose(y[:, 0], full[:, t], rtol=1e-12, atol=1e-12)


def test_decoding_keeps_float32() -> None:
    layer = decoder(masked=True)
    x32 = (TGT.astype(np.float32), MEM.astype(np.float32), LEFT, MEMORY)
    _, params = layer.init(random.key(0), tuple(a.shape for a in x32))
    cache = L.decode_init(layer, params, (x32[0][:, :1], x32[1], LEFT[:, :1], MEMORY), T)
    y, _ = L.decode_step(layer, params, cache, (x32[0][:, :1], x32[1], LEFT[:, :1], MEMORY))
    y_full, pb = layer.vjp(params, x32)
    g, dx = pb(np.ones_like(y_full))
    assert y.dtype == y_full.dtype == dx[0].dtype == dx[1].dtype == np.float32
    assert g["self_attn"]["w_q"].dtype == np.float32


def test_decoding_refuses_an_attention_mask_by_name() -> None:
    layer = decoder(masked=True)
    x = inputs(LEFT, MEMORY)
    params = params_of(layer, x)
    with pytest.raises(TypeError, match=r"TransformerDecoderLayer\(8, 2.* MultiHeadAttention"
                                        r"\(2, causal=True, masked=True.* cannot be stepped: "
                                        r"its mask of shape \(3, 1, 1\) is an attention mask"):
        L.decode_init(layer, params, (TGT[:, :1], MEM, np.zeros((N, 1, 1), bool), MEMORY), T)
    with pytest.raises(TypeError, match=r"MultiHeadAttention\(2, masked=True.* cannot be "
                                        r"stepped: its mask of shape \(3, 1, 4\)"):
        L.decode_init(layer, params, (TGT[:, :1], MEM, LEFT[:, :1],
                                      np.zeros((N, 1, S), bool)), T)


def test_a_step_mask_of_the_whole_sequence_is_refused_naming_the_shapes() -> None:
    layer = decoder()
    params = params_of(layer, inputs(LEFT))
    cache = L.decode_init(layer, params, (TGT[:, :1], MEM, LEFT[:, :1]), T)
    with pytest.raises(ValueError, match=r"TransformerDecoderLayer\(8, 2.*MultiHeadAttention"
                                         r".*N = 3, Tq = 1, Tk = 1, got shape \(3, 5\)"):
        L.decode_step(layer, params, cache, (TGT[:, :1], MEM, LEFT))


# ---------------------------------------------------------------------------- bad input

NAME = r"TransformerDecoderLayer\(8, 2, dim_feedforward=12, dropout=0.0, masked=True, " \
       r"tgt_masked=True\)"


@pytest.mark.parametrize("bad, error, match", [
    ((TGT, MEM, RIGHT[:, :4], MEMORY), ValueError,
     r"tgt_key_padding_mask \(the input\[2\]\) of shape \(N, T\) = \(3, 5\).*got \(3, 4\)"),
    ((TGT, MEM, RIGHT, RIGHT), ValueError,
     r"memory_key_padding_mask \(the input\[3\]\) of shape \(N, S\) = \(3, 4\).*got \(3, 5\)"),
    ((TGT, MEM, RIGHT[:2], MEMORY), ValueError,
     r"tgt_key_padding_mask .* = \(3, 5\).*got \(2, 5\)"),
    ((TGT, MEM, RIGHT.astype(np.float64), MEMORY), TypeError,
     r"tgt_key_padding_mask \(N, T\) boolean.*got dtype float64 \(shape \(3, 5\)\)"),
    ((TGT, MEM, RIGHT, MEMORY.astype(np.int64)), TypeError,
     r"memory_key_padding_mask \(N, S\) boolean.*got dtype int64"),
    ((TGT, MEM, RIGHT), ValueError,
     r"the input as a tuple \(tgt, memory, tgt_key_padding_mask, memory_key_padding_mask\), "
     r"of shapes \(\(N, T, 8\), \(N, S, 8\), \(N, T\), \(N, S\)\), got a tuple of 3 arrays"),
])
def test_bad_masks_are_refused_naming_the_layer_and_shapes(bad: Any, error: Any,
                                                           match: str) -> None:
    layer = decoder(masked=True)
    params = params_of(layer, inputs(RIGHT, MEMORY))
    for call in (layer.apply, layer.vjp):
        with pytest.raises(error, match=NAME + ": expected " + match):
            call(params, bad)


def test_a_bad_mask_shape_is_refused_at_init() -> None:
    with pytest.raises(ValueError, match=r"TransformerDecoderLayer\(8, 2.*tgt_masked=True\): "
                                         r"expected tgt_key_padding_mask \(in_shape\[2\]\) "
                                         r"of shape \(N, T\) = \(None, 5\).*got \(None, 4\)"):
        decoder().init(random.key(0), ((None, T, E), (None, S, E), (None, S)))
    with pytest.raises(TypeError, match=r"TransformerDecoderLayer.*tgt_masked"):
        TransformerDecoderLayer(E, H, FF, tgt_masked="yes")
