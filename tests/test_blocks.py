"""TransformerEncoderLayer, TransformerDecoderLayer and Bidirectional (funcdl.layers.blocks):
forwards against a naive NumPy reference written from PyTorch's equations (a wrong norm
placement, a missing residual or a swapped direction shows), vjps against finite
differences in float64 (eval, and train with dropout and a key), check_layer (shapes,
float32 kept, apply == vjp), the dropouts' placement at rate 1, the params' names, and bad
arguments and inputs. PyTorch cross-checks are in test_blocks_torch.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random, tree
from funcdl.layers.blocks import Bidirectional, TransformerDecoderLayer, TransformerEncoderLayer
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
TRAIN = {"train": True, "key": random.key(5)}
N, T, S, E, H, FF = 2, 4, 3, 6, 2, 10
ENC = (None, T, E)
DEC = ((None, T, E), (None, S, E))


def params64(layer: Any, in_shape: Any, seed: int = 1) -> Any:
    """The layer's params in float64, each moved off its init (LayerNorm's 1 and 0, the
    attention's zero biases), so that a missing or swapped one shows."""
    _, params = layer.init(random.key(seed), in_shape)
    leaves, treedef = tree.flatten(params)
    keys = random.split(random.key(seed + 100), len(leaves))
    return tree.unflatten(treedef, [a.astype(np.float64)
                                    + 0.3 * random.normal(k, a.shape, np.float64)
                                    for a, k in zip(leaves, keys)])


def normal(seed: int, *shape: int) -> np.ndarray:
    return random.normal(random.key(seed), shape, np.float64)


# ---------------------------------------------------------------------------- reference

def ln(x: np.ndarray, p: dict[str, np.ndarray], eps: float = 1e-5) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def attention(q: np.ndarray, kv: np.ndarray, p: dict[str, np.ndarray], heads: int,
              causal: bool) -> np.ndarray:
    """One head at a time, softmax written out: torch's MultiheadAttention."""
    d = q.shape[-1] // heads
    qq, kk, vv = (a @ p[f"w_{r}"] + p[f"b_{r}"] for a, r in ((q, "q"), (kv, "k"), (kv, "v")))
    outs = []
    for h in range(heads):
        cols = slice(h * d, (h + 1) * d)
        s = qq[..., cols] @ kk[..., cols].transpose(0, 2, 1) / math.sqrt(d)
        if causal:
            s = s + np.triu(np.full(s.shape[-2:], -np.inf), 1)
        w = np.exp(s - s.max(-1, keepdims=True))
        outs.append((w / w.sum(-1, keepdims=True)) @ vv[..., cols])
    return np.concatenate(outs, -1) @ p["w_o"] + p["b_o"]


def act(x: np.ndarray, name: str) -> np.ndarray:
    if name == "relu":
        return np.maximum(x, 0)
    return x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def ff(x: np.ndarray, p: dict[str, Any], activation: str) -> np.ndarray:
    h = act(x @ p["linear1"]["w"] + p["linear1"]["b"], activation)
    return h @ p["linear2"]["w"] + p["linear2"]["b"]


def encoder_ref(x: np.ndarray, p: dict[str, Any], norm_first: bool, activation: str,
                causal: bool) -> np.ndarray:
    def sa(a: np.ndarray) -> np.ndarray:
        return attention(a, a, p["self_attn"], H, causal)
    if norm_first:
        x = x + sa(ln(x, p["norm1"]))
        return x + ff(ln(x, p["norm2"]), p, activation)
    x = ln(x + sa(x), p["norm1"])
    return ln(x + ff(x, p, activation), p["norm2"])


def decoder_ref(tgt: np.ndarray, mem: np.ndarray, p: dict[str, Any], norm_first: bool,
                causal: bool = True) -> np.ndarray:
    def sa(a: np.ndarray) -> np.ndarray:
        return attention(a, a, p["self_attn"], H, causal)

    def ca(a: np.ndarray) -> np.ndarray:
        return attention(a, mem, p["multihead_attn"], H, False)
    if norm_first:
        x = tgt + sa(ln(tgt, p["norm1"]))
        x = x + ca(ln(x, p["norm2"]))
        return x + ff(ln(x, p["norm3"]), p, "relu")
    x = ln(tgt + sa(tgt), p["norm1"])
    x = ln(x + ca(x), p["norm2"])
    return ln(x + ff(x, p, "relu"), p["norm3"])


# ---------------------------------------------------------------------------- encoder

ENC_OPTIONS = [dict(norm_first=nf, activation=a, causal=c)
               for nf in (False, True) for a in ("relu", "gelu") for c in (False, True)]
ENC_IDS = ["-".join(f"{k}={v}" for k, v in o.items()) for o in ENC_OPTIONS]


@pytest.mark.parametrize("options", ENC_OPTIONS, ids=ENC_IDS)
def test_encoder_forward_matches_reference(options: dict[str, Any]) -> None:
    layer = TransformerEncoderLayer(E, H, FF, **options)
    params = params64(layer, ENC)
    x = normal(2, N, T, E)
    np.testing.assert_allclose(layer.apply(params, x), encoder_ref(x, params, **options),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("options", ENC_OPTIONS, ids=ENC_IDS)
def test_encoder_vjp(options: dict[str, Any]) -> None:
    layer = TransformerEncoderLayer(E, H, FF, dropout=0.0, **options)
    check_vjp(layer, params64(layer, ENC), normal(3, N, T, E))
    check_layer(layer, ENC)
    dropping = TransformerEncoderLayer(E, H, FF, dropout=0.3, **options)
    check_vjp(dropping, params64(dropping, ENC), normal(3, N, T, E), **TRAIN)
    check_layer(dropping, ENC, **TRAIN)


def test_encoder_dropout_ends_each_branch() -> None:
    """At rate 1 every dropout zeroes: the attention and feed-forward branches add
    nothing, so post-norm gives norm2(norm1(x)) and pre-norm x; a branch without its
    final dropout would add its bias."""
    x = normal(4, N, T, E)
    post = TransformerEncoderLayer(E, H, FF, dropout=1.0)
    p = params64(post, ENC)
    np.testing.assert_allclose(post.apply(p, x, **TRAIN), ln(ln(x, p["norm1"]), p["norm2"]),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(post.apply(p, x), encoder_ref(x, p, False, "relu", False),
                               rtol=1e-10, atol=1e-12)  # inference: nothing dropped
    pre = TransformerEncoderLayer(E, H, FF, dropout=1.0, norm_first=True)
    np.testing.assert_array_equal(pre.apply(params64(pre, ENC), x, **TRAIN), x)


def test_encoder_train_draws_from_the_key() -> None:
    layer = TransformerEncoderLayer(E, H, FF, dropout=0.3)
    p, x = params64(layer, ENC), normal(4, N, T, E)
    a = layer.apply(p, x, **TRAIN)
    np.testing.assert_array_equal(a, layer.apply(p, x, **TRAIN))
    assert not np.allclose(a, layer.apply(p, x, train=True, key=random.key(6)))
    assert not np.allclose(a, layer.apply(p, x))
    with pytest.raises(ValueError, match="key"):
        layer.apply(p, x, train=True)


def test_dropout_zero_trains_without_a_key() -> None:
    """As MultiHeadAttention(dropout=0): nothing is drawn, so training needs no key."""
    x, mem = normal(4, N, T, E), normal(5, N, S, E)
    enc = TransformerEncoderLayer(E, H, FF, dropout=0.0)
    p = params64(enc, ENC)
    np.testing.assert_array_equal(enc.apply(p, x, train=True), enc.apply(p, x))
    dec = TransformerDecoderLayer(E, H, FF, dropout=0.0, norm_first=True)
    p = params64(dec, DEC)
    np.testing.assert_array_equal(dec.vjp(p, (x, mem), train=True)[0], dec.apply(p, (x, mem)))


def test_encoder_params_are_torchs_names() -> None:
    out, p = TransformerEncoderLayer(E, H, FF).init(KEY, ENC)
    assert out == ENC
    assert sorted(p) == ["linear1", "linear2", "norm1", "norm2", "self_attn"]
    assert p["linear1"]["w"].shape == (E, FF) and p["linear2"]["w"].shape == (FF, E)
    assert p["self_attn"]["w_q"].shape == (E, E) and p["norm1"]["scale"].shape == (E,)
    assert all(a.dtype == np.float32 for a in tree.leaves(p))


def test_encoder_activation_layer() -> None:
    """A funcdl layer as the activation: GELU(approximate=True) is torch's 'tanh' GELU."""
    layer = TransformerEncoderLayer(E, H, FF, activation=L.GELU(approximate=True))
    assert "activation=GELU(approximate=True)" in layer.name
    check_layer(layer, ENC)


@pytest.mark.parametrize("make, in_shape", [(TransformerEncoderLayer, ENC),
                                            (TransformerDecoderLayer, DEC)])
def test_an_activation_with_params_keeps_them_under_activation(make: Any, in_shape: Any) -> None:
    # the blocks dropped a given activation's params: PReLU's slope was not in init's dict,
    # and apply then refused the params init had returned
    layer = make(E, H, FF, dropout=0.0, activation=L.PReLU())
    params = params64(layer, in_shape)
    assert "activation" in params and set(params["activation"]) == {"a"}
    x = (normal(2, N, T, E) if in_shape == ENC else (normal(2, N, T, E), normal(3, N, S, E)))
    check_vjp(layer, params, x)
    y, pullback = layer.vjp(params, x)
    slope = pullback(np.ones_like(y))[0]["activation"]["a"]
    assert slope.shape == (1,) and slope[0] != 0
    # the slope is used: a different one changes the output
    moved = {**params, "activation": {"a": params["activation"]["a"] + 1.0}}
    assert not np.allclose(layer.apply(moved, x), y)
    assert "activation" not in make(E, H, FF, activation=L.ReLU()).init(KEY, in_shape)[1]


# ---------------------------------------------------------------------------- decoder

@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_forward_matches_reference(norm_first: bool) -> None:
    layer = TransformerDecoderLayer(E, H, FF, norm_first=norm_first)
    params = params64(layer, DEC)
    tgt, mem = normal(2, N, T, E), normal(3, N, S, E)
    np.testing.assert_allclose(layer.apply(params, (tgt, mem)),
                               decoder_ref(tgt, mem, params, norm_first),
                               rtol=1e-10, atol=1e-12)
    loose = TransformerDecoderLayer(E, H, FF, norm_first=norm_first, causal=False)
    np.testing.assert_allclose(loose.apply(params, [tgt, mem]),
                               decoder_ref(tgt, mem, params, norm_first, causal=False),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_vjp(norm_first: bool) -> None:
    layer = TransformerDecoderLayer(E, H, FF, dropout=0.0, norm_first=norm_first)
    xs = (normal(3, N, T, E), normal(4, N, S, E))
    check_vjp(layer, params64(layer, DEC), xs)
    check_layer(layer, DEC)
    dropping = TransformerDecoderLayer(E, H, FF, dropout=0.3, norm_first=norm_first)
    check_vjp(dropping, params64(dropping, DEC), xs, **TRAIN)
    check_layer(dropping, DEC, **TRAIN)


def test_decoder_dropout_ends_each_branch() -> None:
    layer = TransformerDecoderLayer(E, H, FF, dropout=1.0)
    p = params64(layer, DEC)
    tgt, mem = normal(2, N, T, E), normal(3, N, S, E)
    y, pullback = layer.vjp(p, (tgt, mem), **TRAIN)
    np.testing.assert_allclose(y, ln(ln(ln(tgt, p["norm1"]), p["norm2"]), p["norm3"]),
                               rtol=1e-12, atol=1e-12)
    _, (_, dmem) = pullback(np.ones_like(y))
    np.testing.assert_array_equal(dmem, 0)  # the cross-attention was dropped


def test_decoder_params_and_shapes() -> None:
    out, p = TransformerDecoderLayer(E, H, FF).init(KEY, ((None, 5, E), (7, None, E)))
    assert out == (7, 5, E)  # the batch size memory gives
    assert sorted(p) == ["linear1", "linear2", "multihead_attn", "norm1", "norm2", "norm3",
                         "self_attn"]
    y = TransformerDecoderLayer(E, H, FF).apply(p, (np.ones((2, 5, E), np.float32),
                                                    np.ones((2, 3, E), np.float32)))
    assert y.shape == (2, 5, E) and y.dtype == np.float32


# ---------------------------------------------------------------------------- Bidirectional

RNNS = {"lstm": L.LSTM, "gru": L.GRU, "rnn": L.SimpleRNN}


@pytest.mark.parametrize("kind", list(RNNS))
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("merge", ["concat", "sum", None])
def test_bidirectional_is_both_directions(kind: str, return_sequences: bool,
                                          merge: str | None) -> None:
    """The forward layer and the reverse=True one on the same params, merged; the default
    (flipped) twin and a given backward_layer agree, gradients included."""
    rnn = RNNS[kind]
    layer = Bidirectional(rnn(3, return_sequences=return_sequences), merge)
    back = rnn(3, return_sequences=return_sequences, reverse=True)
    given = Bidirectional(rnn(3, return_sequences=return_sequences), merge,
                          backward_layer=back)
    p = params64(layer, (None, 5, 2))
    x = normal(7, N, 5, 2)
    f = rnn(3, return_sequences=return_sequences).apply(p["forward"], x)
    b = back.apply(p["backward"], x)
    want = {"concat": np.concatenate([f, b], -1), "sum": f + b, None: (f, b)}[merge]
    y, pullback = layer.vjp(p, x)
    yg, pullback_g = given.vjp(p, x)
    for got in (y, yg):
        for a, w in zip(tree.leaves(got), tree.leaves(want)):
            np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-13)
    dy = tree.map(lambda a: normal(8, *a.shape), y)
    for a, w in zip(tree.leaves(pullback(dy)), tree.leaves(pullback_g(dy))):
        np.testing.assert_allclose(a, w, rtol=1e-10, atol=1e-12)
    check_vjp(layer, p, x)
    if merge is not None:
        check_layer(layer, (None, 5, 2))


def test_bidirectional_shapes_and_params() -> None:
    out, p = Bidirectional(L.LSTM(4)).init(KEY, (None, 6, 3))
    assert out == (None, 6, 8) and sorted(p) == ["backward", "forward"]
    assert p["forward"]["w_ih"].shape == p["backward"]["w_ih"].shape == (3, 16)
    assert not np.array_equal(p["forward"]["w_ih"], p["backward"]["w_ih"])
    assert Bidirectional(L.GRU(4, return_sequences=False), "sum").init(
        KEY, (None, 6, 3))[0] == (None, 4)


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("call", "exc", "words"), [
    (lambda: TransformerEncoderLayer(10, 3), ValueError,
     ("TransformerEncoderLayer(10, 3)", "not divisible by nhead 3", "2 or 5")),
    (lambda: TransformerDecoderLayer(10, 4), ValueError,
     ("TransformerDecoderLayer(10, 4)", "divisible")),
    (lambda: TransformerEncoderLayer(8, 2, activation="tanh"), ValueError,
     ("TransformerEncoderLayer(8, 2)", "'relu' or 'gelu'", "'tanh'")),
    (lambda: TransformerEncoderLayer(8, 2, activation=np.tanh), TypeError,
     ("TransformerEncoderLayer(8, 2)", "activation")),
    (lambda: TransformerEncoderLayer(8, 2, bias="no"), TypeError,
     ("TransformerEncoderLayer(8, 2)", "bias")),
    (lambda: TransformerDecoderLayer(8, 2, batch_first=False), ValueError,
     ("TransformerDecoderLayer(8, 2)", "batch_first=False", "transpose")),
    (lambda: TransformerEncoderLayer(8, 0), ValueError, ("TransformerEncoderLayer", "nhead")),
    (lambda: TransformerEncoderLayer(8, 2, dropout=1.5), ValueError,
     ("TransformerEncoderLayer(8, 2)", "dropout")),
    (lambda: TransformerEncoderLayer(8, 2, norm_first="yes"), TypeError,
     ("TransformerEncoderLayer(8, 2)", "norm_first")),
    (lambda: Bidirectional(L.LSTM(3), "mul"), ValueError,
     ("Bidirectional(LSTM(3))", "'concat', 'sum' or None", "'mul'")),
    (lambda: Bidirectional(L.LSTM(3, reverse=True)), ValueError,
     ("Bidirectional(LSTM(3, reverse=True))", "backward_layer")),
    (lambda: Bidirectional(L.LSTM), TypeError, ("Bidirectional", "layer")),
    (lambda: Bidirectional(L.BatchNorm()), TypeError, ("Bidirectional", "stateful")),
    (lambda: TransformerEncoderLayer(8, 2).init(KEY, (None, 4, 6)), ValueError,
     ("TransformerEncoderLayer(8, 2)", "(N, T, 8)", "(None, 4, 6)")),
    (lambda: TransformerEncoderLayer(8, 2).init(KEY, (None, 4)), ValueError,
     ("TransformerEncoderLayer(8, 2)", "Embedding")),
    (lambda: TransformerDecoderLayer(8, 2).init(KEY, (None, 4, 8)), ValueError,
     ("TransformerDecoderLayer(8, 2)", "(tgt, memory)")),
    (lambda: TransformerEncoderLayer(8, 2).apply({"self_attn": {}}, np.ones((2, 3, 8))),
     ValueError, ("TransformerEncoderLayer(8, 2)", "keys", "linear1")),
])
def test_bad_arguments(call: Any, exc: type[Exception], words: tuple[str, ...]) -> None:
    with pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_bad_inputs_name_the_block() -> None:
    enc = TransformerEncoderLayer(8, 2, 16)
    _, p = enc.init(KEY, (None, 4, 8))
    with pytest.raises(ValueError, match=r"^TransformerEncoderLayer\(8, 2, dim_feedforward"
                                         r"=16\): .*\(N, T, 8\)"):
        enc.apply(p, np.ones((2, 4, 6), np.float32))
    _, pullback = enc.vjp(p, np.ones((2, 4, 8), np.float32))
    with pytest.raises(ValueError, match=r"^TransformerEncoderLayer\(8, 2, dim_f"):
        pullback(np.ones((2, 4, 7), np.float32))
    dec = TransformerDecoderLayer(8, 2, 16)
    _, p = dec.init(KEY, ((None, 4, 8), (None, 3, 8)))
    with pytest.raises(ValueError, match=r"^TransformerDecoderLayer\(8, 2, dim_f.*tuple"):
        dec.apply(p, np.ones((2, 4, 8), np.float32))
    with pytest.raises(ValueError, match=r"^TransformerDecoderLayer\(8, 2, dim_f\w*=16\): "
                                         r"expected memory \(the input\[1\]\) \(N, S, 8\) .*got "
                                         r"\(2, 3, 6\)"):
        dec.vjp(p, (np.ones((2, 4, 8), np.float32), np.ones((2, 3, 6), np.float32)))
    bi = Bidirectional(L.GRU(3))
    _, p = bi.init(KEY, (None, 4, 2))
    with pytest.raises(ValueError, match=r"^Bidirectional\(GRU\(3\)\): .*GRU\(3\): "
                                         r"expected input \(N, T, 2\)"):
        bi.apply(p, np.ones((2, 2), np.float32))


# ---------------------------------------------------------------------------- by hand

def test_train_mode_is_torchs_composition_by_hand() -> None:
    """In training, the blocks are the layers of torch's equations composed by hand, each
    dropout where torch has one (after the attention weights, after each attention, after
    the activation, after linear2): the same key draws the same masks."""
    r = 0.4
    x, mem = normal(2, N, T, E), normal(3, N, S, E)

    def ff_hand() -> Any:
        return L.Sequential(L.Dense(FF), L.ReLU(), L.Dropout(r), L.Dense(E), L.Dropout(r))

    def ff_p(p: Any) -> Any:
        return (p["linear1"], (), (), p["linear2"], ())

    enc = TransformerEncoderLayer(E, H, FF, dropout=r)
    hand = L.Sequential(L.Residual(L.Sequential(L.MultiHeadAttention(H, dropout=r),
                                                L.Dropout(r))),
                        L.LayerNorm(), L.Residual(ff_hand()), L.LayerNorm())
    p = params64(enc, ENC)
    hp = ((p["self_attn"], ()), p["norm1"], ff_p(p), p["norm2"])
    np.testing.assert_array_equal(enc.apply(p, x, **TRAIN), hand.apply(hp, x, **TRAIN))

    dec = TransformerDecoderLayer(E, H, FF, dropout=r)
    hand = L.Sequential(
        L.Parallel(L.Sequential(L.Residual(L.Sequential(
            L.MultiHeadAttention(H, causal=True, dropout=r), L.Dropout(r))), L.LayerNorm()),
            L.Identity()),
        L.FanOut(2),
        L.Parallel(L.Select(0), L.Sequential(L.MultiHeadAttention(H, dropout=r), L.Dropout(r))),
        L.FanInSum(), L.LayerNorm(), L.Residual(ff_hand()), L.LayerNorm())
    p = params64(dec, DEC)
    hp = ((((p["self_attn"], ()), p["norm1"]), ()), (), ((), (p["multihead_attn"], ())), (),
          p["norm2"], ff_p(p), p["norm3"])
    np.testing.assert_array_equal(dec.apply(p, (x, mem), **TRAIN),
                                  hand.apply(hp, (x, mem), **TRAIN))
