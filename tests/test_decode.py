"""layers.decode_init / decode_step: incremental decoding with a key/value cache equals the
full apply at every position, keeps float32, never changes a cache, and refuses what it
cannot step by name."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L

V, E, T = 11, 16, 9


def gpt(norm_first: bool, positions: Any, tie: bool = False) -> Any:
    body = L.Sequential(
        L.Embedding(V, E), positions,
        *[L.TransformerEncoderLayer(E, 4, 2 * E, dropout=0.1, causal=True,
                                    norm_first=norm_first) for _ in range(2)],
        L.LayerNorm(), L.Unembed(V))
    return L.Tied(body, [(0, "table"), (5, "table")]) if tie else body


def stepped(model: Any, params: Any, x: Any, max_len: int | None = None,
            state: Any = None) -> np.ndarray:
    """Every position's output by decode_step, stacked on the time axis."""
    first = x[0] if isinstance(x, tuple) else x
    at = (lambda t: (x[0][:, t:t + 1], *x[1:])) if isinstance(x, tuple) else (
        lambda t: x[:, t:t + 1])
    kw = {} if state is None else {"state": state}
    cache = L.decode_init(model, params, at(0), max_len or first.shape[1], **kw)
    ys = []
    for t in range(first.shape[1]):
        y, cache = L.decode_step(model, params, cache, at(t), **kw)
        assert y.shape[1] == 1
        ys.append(y)
    return np.concatenate(ys, axis=1)


def as64(params: Any) -> Any:
    return fd.tree.map(lambda a: a.astype(np.float64), params)


def ids(n: int = 3, t: int = T, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (n, t))


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_a_gpt_stack_steps_to_the_full_apply_at_every_position(norm_first: bool,
                                                                  positions: str) -> None:
    pos = L.PositionalEmbedding(T) if positions == "learned" else \
        L.SinusoidalPositionalEncoding()
    model = gpt(norm_first, pos)
    _, params = model.init(fd.random.key(1), (None, T))
    p64, x = as64(params), ids()
    y = stepped(model, p64, x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, model.apply(p64, x), rtol=0, atol=1e-12)
    y32 = stepped(model, params, x)  # float32 kept, within float32's rounding
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, model.apply(params, x), rtol=1e-4, atol=1e-5)


def test_a_tied_head_steps() -> None:
    model = gpt(True, L.PositionalEmbedding(T), tie=True)
    _, params = model.init(fd.random.key(2), (None, T))
    p64, x = as64(params), ids(seed=3)
    np.testing.assert_allclose(stepped(model, p64, x), model.apply(p64, x), rtol=0,
                               atol=1e-12)


@pytest.mark.parametrize("options", [{}, {"use_bias": False}, {"normalizer": "sparsemax"}])
def test_bare_causal_attention_steps_and_caches_each_position_in_its_place(
        options: dict[str, Any]) -> None:
    mha = L.MultiHeadAttention(4, causal=True, **options)
    _, params = mha.init(fd.random.key(0), (None, T, E))
    p = as64(params)
    x = np.random.default_rng(1).normal(size=(2, T, E))
    np.testing.assert_allclose(stepped(mha, p, x), mha.apply(p, x), rtol=0, atol=1e-12)
    # the cached keys and values: position j's projection at index j, nothing else
    cache = L.decode_init(mha, p, x[:, :1], T)
    for t in range(5):
        _, cache = L.decode_step(mha, p, cache, x[:, t:t + 1])
    for role in "kv":
        want = x[:, :5] @ p[f"w_{role}"] + p.get(f"b_{role}", 0)
        got = cache.layers[role].transpose(0, 2, 1, 3).reshape(2, 5, E)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert int(cache.position) == 5


def test_a_step_sees_no_later_position_and_every_earlier_one() -> None:
    """Changing position j changes the steps at j and after, never those before: the
    cache holds the past, the step adds the present, and nothing else is read."""
    model = gpt(True, L.PositionalEmbedding(T))
    _, params = model.init(fd.random.key(4), (None, T))
    p, x = as64(params), ids(n=2, seed=5)
    base = stepped(model, p, x)
    for j in (0, 4, T - 1):
        other = x.copy()
        other[:, j] = (other[:, j] + 1) % V
        y = stepped(model, p, other)
        np.testing.assert_array_equal(y[:, :j], base[:, :j])
        assert np.all(np.abs(y[:, j:] - base[:, j:]).max(axis=-1) > 1e-9)


def test_a_cache_is_never_changed_so_a_decode_can_branch() -> None:
    model = gpt(False, L.SinusoidalPositionalEncoding())
    _, params = model.init(fd.random.key(5), (None, T))
    p, x = as64(params), ids(n=2, seed=6)
    cache = L.decode_init(model, p, x[:, :1], T)
    for t in range(4):
        _, cache = L.decode_step(model, p, cache, x[:, t:t + 1])
    before = [a.copy() for a in fd.tree.leaves(cache)]
    branches = []
    for token in (1, 7):
        nxt = np.full((2, 1), token)
        y, new = L.decode_step(model, p, cache, nxt)
        assert int(new.position) == 5 and int(cache.position) == 4
        full = model.apply(p, np.concatenate([x[:, :4], nxt], axis=1))[:, 4:]
        np.testing.assert_allclose(y, full, rtol=0, atol=1e-12)
        branches.append(y)
    assert not np.allclose(branches[0], branches[1])
    for a, b in zip(before, fd.tree.leaves(cache)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("norm_first", [True, False])
def test_a_decoder_with_memory_steps_and_refuses_another_memory(norm_first: bool) -> None:
    model = L.Sequential(
        L.Parallel(L.Sequential(L.Embedding(V, E), L.PositionalEmbedding(T)), L.Identity()),
        L.TransformerDecoderLayer(E, 4, 2 * E, norm_first=norm_first), L.Dense(V))
    _, params = model.init(fd.random.key(6), ((None, T), (None, 5, E)))
    p = as64(params)
    x, memory = ids(n=2, seed=7), np.random.default_rng(8).normal(size=(2, 5, E))
    np.testing.assert_allclose(stepped(model, p, (x, memory)), model.apply(p, (x, memory)),
                               rtol=0, atol=1e-12)
    cache = L.decode_init(model, p, (x[:, :1], memory), T)
    with pytest.raises(ValueError, match=r"MultiHeadAttention.*memory kv .*not the one "
                                         r"decode_init saw"):
        L.decode_step(model, p, cache, (x[:, :1], memory + 1.0))


def test_a_stateful_model_steps_on_its_running_statistics() -> None:
    model = L.Sequential(L.Dense(E), L.BatchNorm(), L.MultiHeadAttention(2, causal=True),
                         L.Dense(3))
    _, params, state = model.init(fd.random.key(7), (None, T, 5))
    x = np.random.default_rng(9).normal(size=(3, T, 5))
    _, state = model.apply(params, x, state=state, train=True)  # statistics moved
    p = as64(params)
    want = model.apply(p, x, state=state)[0]
    np.testing.assert_allclose(stepped(model, p, x, state=state), want, rtol=0, atol=1e-12)


def test_going_past_max_len_is_refused_naming_it() -> None:
    model = gpt(True, L.SinusoidalPositionalEncoding())
    _, params = model.init(fd.random.key(8), (None, T))
    cache = L.decode_init(model, params, ids()[:, :1], 2)
    for _ in range(2):
        _, cache = L.decode_step(model, params, cache, ids()[:, :1])
    with pytest.raises(ValueError, match=r"max_len=2 positions and all are taken"):
        L.decode_step(model, params, cache, ids()[:, :1])
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(9\).*max_len=10"):
        L.decode_init(gpt(True, L.PositionalEmbedding(T)), params, ids()[:, :1], 10)


@pytest.mark.parametrize("layer, in_shape, match", [
    (L.LSTM(4), (None, T, 3), r"Sequential\[1\] LSTM\(4\) cannot be stepped"),
    (L.Conv1D(4, 3), (None, T, 3), r"Sequential\[1\] Conv1D\(.*cannot be stepped"),
    (L.MultiHeadAttention(1), (None, T, 3),
     r"MultiHeadAttention\(1\) cannot be stepped: non-causal self-attention"),
    (L.TransformerEncoderLayer(3, 1, 6), (None, T, 3),
     r"TransformerEncoderLayer\(3, 1.*cannot be stepped: non-causal"),
    (L.LayerNorm(axis=(1, 2)), (None, T, 3), r"LayerNorm\(axis=\(1, 2\)\) cannot be stepped"),
    (L.Repeat(L.Conv1D(3, 3), 2), (None, T, 3), r"Repeat\[0\] Conv1D\(.*cannot be stepped"),
])
def test_what_cannot_step_is_refused_by_name(layer: Any, in_shape: Any, match: str) -> None:
    model = L.Sequential(L.Dense(3), layer)
    _, params = model.init(fd.random.key(0), in_shape)
    with pytest.raises(TypeError, match=match):
        L.decode_init(model, params, np.zeros((2, 1, 3)), T)


def test_a_last_axis_layer_on_ids_is_refused_as_the_time_axis() -> None:
    model = L.Dense(3)
    _, params = model.init(fd.random.key(0), (None, T))
    with pytest.raises(TypeError, match=r"Dense\(3\) cannot be stepped on an input of shape "
                                        r"\(2, 1\).*time axis"):
        L.decode_init(model, params, np.zeros((2, 1)), T)


def test_bad_calls_are_named() -> None:
    model = gpt(True, L.PositionalEmbedding(T))
    _, params = model.init(fd.random.key(0), (None, T))
    with pytest.raises(ValueError, match=r"decode_init: expected the input at one position.*"
                                         r"got shape \(3, 2\)"):
        L.decode_init(model, params, ids()[:, :2], T)
    cache = L.decode_init(model, params, ids()[:, :1], T)
    with pytest.raises(ValueError, match=r"decode_step: expected the input at one position"):
        L.decode_step(model, params, cache, ids())
    with pytest.raises(TypeError, match=r"decode_step: expected the cache .*DecodeCache"):
        L.decode_step(model, params, tuple(cache), ids()[:, :1])
    with pytest.raises(ValueError, match=r"decode_init: max_len"):
        L.decode_init(model, params, ids()[:, :1], 0)
    with pytest.raises(TypeError, match=r"Layer: step must be None or a Stepper"):
        L.Layer(lambda k, s: (s, ()), lambda p, x: x, lambda p, x: (x, None), step=3)


def test_wrappers_step_as_their_child() -> None:
    model = L.Sequential(
        L.Embedding(V, E), L.SinusoidalPositionalEncoding(),
        L.Remat(L.TransformerEncoderLayer(E, 2, 2 * E, causal=True)),
        L.Repeat(L.TransformerEncoderLayer(E, 2, 2 * E, causal=True, norm_first=True), 2),
        L.FanOut(2), L.Shared(L.Dense(E)), L.FanInSum(),
        L.Eval(L.Sequential(L.RMSNorm(), L.Dropout(0.5), L.GELU(), L.Dense(V))))
    _, params = model.init(fd.random.key(9), (None, T))
    p, x = as64(params), ids(seed=10)
    np.testing.assert_allclose(stepped(model, p, x), model.apply(p, x), rtol=0, atol=1e-12)


def test_the_other_position_wise_layers_step() -> None:
    # PReLU's slope per channel, GLU and FanInConcat on the last axis, AlphaDropout at
    # inference and LocalResponseNorm across the channels act on each position alone
    model = L.Sequential(
        L.Embedding(V, E), L.SinusoidalPositionalEncoding(),
        L.TransformerEncoderLayer(E, 2, 2 * E, causal=True),
        L.FanOut(2), L.Parallel(L.Dense(E), L.Sequential(L.Dense(2 * E), L.GLU())),
        L.FanInConcat(), L.PReLU(2 * E), L.AlphaDropout(0.2), L.FeatureAlphaDropout(0.1),
        L.LocalResponseNorm(3, alpha=0.5), L.Dense(V))
    _, params = model.init(fd.random.key(11), (None, T))
    p, x = as64(params), ids(seed=12)
    np.testing.assert_allclose(stepped(model, p, x), model.apply(p, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("layer", [L.GLU(axis=1), L.FanInConcat(axis=1)])
def test_a_layer_on_the_time_axis_is_refused(layer: Any) -> None:
    model = L.Sequential(L.Embedding(V, E), L.FanOut(2), L.FanInConcat(axis=1)) if (
        "FanInConcat" in layer.name) else L.Sequential(L.Embedding(V, E), layer)
    _, params = model.init(fd.random.key(0), (None, 4))
    with pytest.raises(TypeError, match=r"cannot be stepped"):
        L.decode_init(model, params, ids(t=4)[:, :1], 4)


@pytest.mark.parametrize("positions", [L.PositionalEmbedding(T), L.SinusoidalPositionalEncoding()],
                         ids=lambda layer: layer.name)
def test_a_positional_layer_on_rank_4_is_refused(positions: Any) -> None:
    # on (N, T, H, E) its positions run along axis -2 (H), a decode's along axis 1: a step
    # added pos[t] to every H row, 0.08-2.0 away from the full apply
    model = L.Sequential(L.Dense(E), positions)
    _, params = model.init(fd.random.key(0), (None, T, 3, E))
    x = np.random.default_rng(0).standard_normal((2, T, 3, E))
    with pytest.raises(TypeError, match=r"Sequential\[1\] .*cannot be stepped on an input "
                                        r"of rank 4"):
        L.decode_init(model, params, x[:, :1], T)


def test_a_cache_of_another_batch_size_or_model_is_named() -> None:
    # before: NumPy's concatenate message, and 'tuple indices must be integers or slices'
    model = L.Sequential(L.Dense(E), L.MultiHeadAttention(4, causal=True))
    _, params = model.init(fd.random.key(0), (None, T, 3))
    cache = L.decode_init(model, params, np.zeros((2, 1, 3)), T)
    with pytest.raises(ValueError, match=r"Sequential\[1\] MultiHeadAttention\(4, causal="
                                         r"True\): the cache holds 2 sequences .* batch size 3"):
        L.decode_step(model, params, cache, np.zeros((3, 1, 3)))
    plain = L.Sequential(L.Dense(E), L.Dense(E))
    _, plain_params = plain.init(fd.random.key(0), (None, T, 3))
    other = L.decode_init(plain, plain_params, np.zeros((2, 1, 3)), T)
    with pytest.raises(TypeError, match=r"MultiHeadAttention\(4, causal=True\): expected its "
                                        r"own cache.*got a tuple"):
        L.decode_step(model, params, other, np.zeros((2, 1, 3)))
