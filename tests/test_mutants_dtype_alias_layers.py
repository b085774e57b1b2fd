"""Kills dtype and aliasing mutants of funcdl.layers (second mutation pass): over every case of
_layer_cases.CASES, float32 in gives float32 out (output, new state, every grad and dx), float64
input with float32 params gives grads in the params' dtypes; no call writes into the params,
the input, the state or the cotangent; and a pullback called again, after the caller scribbled
over everything the first calls returned (output, state, grads, dx), gives the same again."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _layer_cases import CASES, KEY, Case, f
from test_fuzz_layers import frozen

from funcdl import layers as L
from funcdl import tree

F32 = np.float32


def leaves(t: Any) -> list[Any]:
    if isinstance(t, dict):
        return [a for v in t.values() for a in leaves(v)]
    if isinstance(t, (tuple, list)):
        return [a for v in t for a in leaves(v)]
    return [t]


def assert_same(a: Any, b: Any, what: str) -> None:
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb), what
    for u, v in zip(la, lb):
        if u is None or v is None:
            assert u is v, what
            continue
        u, v = np.asarray(u), np.asarray(v)
        assert u.dtype == v.dtype and u.shape == v.shape, what
        assert np.array_equal(u, v, equal_nan=u.dtype.kind in "fc"), what


def scribble(t: Any) -> None:
    """What a caller may do to arrays it was handed: write over them in place."""
    for a in leaves(t):
        if isinstance(a, np.ndarray) and a.flags.writeable and a.dtype.kind == "f":
            a *= 3
            a += 1


def cotangent(y: Any) -> Any:
    if isinstance(y, tuple):
        return tuple(cotangent(e) for e in y)
    return (f(*y.shape) + 0.5).astype(y.dtype if y.dtype.kind == "f" else F32)


def setup(c: Case) -> tuple[Any, Any, dict[str, Any]]:
    shape = (tuple(e.shape for e in c.x) if isinstance(c.x, tuple) else c.x.shape)
    made = c.layer.init(KEY, shape)
    st = {"state": made[2]} if c.layer.stateful else {}
    return made[1], made[2] if c.layer.stateful else None, st


def floats(t: Any) -> list[np.ndarray]:
    return [a for a in leaves(t) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_float32_kept_and_nothing_written_or_shared(c: Case) -> None:
    params, state, st = setup(c)
    x = frozen(c.x)  # our own copy: a pass-through layer may hand it back
    before = frozen((params, x, state))
    out = c.layer.vjp(params, x, **st, **c.kw)
    y, pullback = out[0], out[1]
    dy_ref = cotangent(y)
    dy = frozen(dy_ref)  # a pass-through pullback may hand dy back as dx: the caller's own
    g1 = pullback(dy)
    assert_same((params, x, state), before, "a call wrote into params, x or state")
    assert_same(dy, dy_ref, "the pullback wrote into dy")
    returned = (y, out[2:], g1)
    for a in floats(returned):
        assert a.dtype == F32, f"{c.id}: a float32 call returned {a.dtype}"
    assert _distinct(floats(g1[0])), "two grads share memory: one edit moves both"
    # grads and dx are the caller's to edit (an optimizer may scale them in place)
    assert all(a.flags.writeable for a in floats(g1)), "a read-only grad or dx"
    # apply gives vjp's output, and writes into nothing either
    a = c.layer.apply(params, x, **st, **c.kw)
    assert_same(a[0] if c.layer.stateful else a, y, "apply and vjp differ")
    assert_same((params, x, state), before, "apply wrote into params, x or state")
    # the caller edits all it was handed; the pullback, called again, must not see it
    g_ref = frozen(g1)
    scribble(returned)
    scribble(a)
    dy2 = frozen(dy_ref)
    assert_same(pullback(dy2), g_ref, "a second pullback read an array the caller was handed")
    assert_same(dy2, dy_ref, "the second pullback wrote into dy")


def _as64(x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(_as64(e) for e in x)
    return x.astype(np.float64) if x.dtype.kind == "f" else x


@pytest.mark.parametrize("c", [c for c in CASES if not c.takes_ids and not c.own],
                         ids=[c.id for c in CASES if not c.takes_ids and not c.own])
def test_float64_input_float32_params_grads_keep_params_dtype(c: Case) -> None:
    params, _, st = setup(c)
    x = _as64(c.x)
    out = c.layer.vjp(params, x, **st, **c.kw)
    grads, dx = out[1](cotangent(out[0]))
    for g, p in zip(leaves(grads), leaves(params)):
        if isinstance(g, np.ndarray) and isinstance(p, np.ndarray):
            assert g.dtype == p.dtype, f"{c.id}: a float32 param's grad came out {g.dtype}"
    for d, e in zip(leaves(dx), leaves(x)):
        if isinstance(d, np.ndarray) and isinstance(e, np.ndarray) and e.dtype.kind == "f":
            assert d.dtype == np.float64, f"{c.id}: a float64 input's dx came out {d.dtype}"


@pytest.mark.parametrize("c", [c for c in CASES if not c.takes_ids and not c.own],
                         ids=[c.id for c in CASES if not c.takes_ids and not c.own])
def test_float64_params_float32_input_dx_keeps_input_dtype(c: Case) -> None:
    # as JAX: an input's cotangent in the input's dtype, the grads in the params'
    params, _, st = setup(c)
    params = tree.astype(params, np.float64)
    out = c.layer.vjp(params, c.x, **st, **c.kw)
    grads, dx = out[1](cotangent(out[0]))  # in y's dtype: float64
    for g in floats(grads):
        assert g.dtype == np.float64, f"{c.id}: a float64 param's grad came out {g.dtype}"
    for d, e in zip(leaves(dx), leaves(c.x)):
        if isinstance(d, np.ndarray) and isinstance(e, np.ndarray) and e.dtype.kind == "f":
            assert d.dtype == F32, f"{c.id}: a float32 input's dx came out {d.dtype}"


# ---------------------------------------------------------------------------- specific paths

def _distinct(arrays: list[np.ndarray]) -> bool:
    return not any(np.shares_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:])


@pytest.mark.parametrize("make", [
    lambda: L.SimpleRNN(3, return_sequences=False),  # its pullback reads the last state
    lambda: L.SimpleRNN(3, return_state=True),
    lambda: L.SimpleRNN(3, "relu", return_sequences=False, return_state=True),
    lambda: L.LSTM(3, return_state=True),
    lambda: L.GRU(3, return_sequences=False, return_state=True),
], ids=["rnn-last", "rnn-state", "relu-last-state", "lstm-state", "gru-last-state"])
def test_recurrent_outputs_and_grads_are_fresh(make):
    layer = make()
    _, params, *_ = layer.init(KEY, (2, 4, 3))
    x = f(2, 4, 3)
    y, pullback = layer.vjp(params, x)
    dy = cotangent(y)
    g1 = pullback(frozen(dy))
    ref = frozen(g1)
    # two grads of one array (b_ih's and b_hh's, equal for these cells) would move together
    assert _distinct(floats(g1))
    scribble(y)
    scribble(g1)
    assert_same(pullback(frozen(dy)), ref, "a recurrent pullback read an output")


@pytest.mark.parametrize("lstm", [False, True], ids=["rnn", "lstm"])
def test_recurrent_initial_state_keeps_its_dtype(lstm):
    # float32 x and params with a float64 h0: h0's cotangent float64, dx float32; float32
    # h0 under float64 params: h0's cotangent float32 (as JAX: each input's own dtype)
    layer = L.LSTM(3, initial_state=True) if lstm else L.SimpleRNN(3, initial_state=True)
    _, params, *_ = layer.init(KEY, ((2, 4, 3), ((2, 3), (2, 3)) if lstm else (2, 3)))
    x = f(2, 4, 3)
    for p, h_dtype in ((params, np.float64), (tree.astype(params, np.float64), F32)):
        h0 = (f(2, 3).astype(h_dtype), (f(2, 3) + 1).astype(h_dtype))
        y, pullback = layer.vjp(p, (x, h0 if lstm else h0[0]))
        grads, dx = pullback(cotangent(y))
        assert [d.dtype for d in leaves(dx)] == [F32, *[h_dtype] * (2 if lstm else 1)]
        assert {g.dtype for g in leaves(grads)} == {p["w_ih"].dtype}


def test_embedding_padding_idx_leaves_the_initializers_array_alone():
    table = f(5, 3)
    before = table.copy()
    layer = L.Embedding(5, 3, w_init=lambda key, shape, dtype: table, padding_idx=1)
    _, params = layer.init(KEY, (2,))
    np.testing.assert_array_equal(table, before)
    assert not params["table"][1].any() and not np.shares_memory(params["table"], table)


@pytest.mark.parametrize("layer", [L.AdaptiveAvgPool2D((3, 4)), L.AdaptiveMaxPool2D((3, 4)),
                                   L.AdaptiveAvgPool1D(3), L.Upsample(1), L.Upsample(1, "bilinear"),
                                   L.PixelShuffle(1),
                                   L.PixelUnshuffle(1)], ids=lambda l: l.name)
def test_identity_sized_layers_give_fresh_outputs(layer):
    # each promises "never x itself" at the sizes where it is the identity
    x = f(2, 3, 4, 2)[:, :, 0] if "1D" in layer.name else f(2, 3, 4, 2)
    y, pullback = layer.vjp((), x)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
    dy = cotangent(y)
    assert not np.shares_memory(pullback(dy)[1], dy)


@pytest.mark.parametrize("make", [lambda: L.Sequential(L.MaxPool2D(), L.ReLU()),
                                  lambda: L.Sequential(L.AvgPool2D(), L.Tanh())],
                         ids=["maxpool-relu", "avgpool-tanh"])
def test_fused_pool_activation_output_edit_leaves_the_pullback_alone(make):
    # the fused pool's activation reads its own output z in the pullback
    layer = make()
    _, params, *_ = layer.init(KEY, (2, 4, 4, 2))
    y, pullback = layer.vjp(params, f(2, 4, 4, 2) - 0.5)
    dy = cotangent(y)
    ref = frozen(pullback(frozen(dy)))
    scribble(y)
    assert_same(pullback(frozen(dy)), ref, "the fused pullback read the edited output")
