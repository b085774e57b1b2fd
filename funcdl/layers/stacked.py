"""Stacked recurrent layers: torch's ``nn.LSTM(C, H, num_layers=L, dropout=p,
batch_first=True)`` (nn.RNN, nn.GRU alike) as a combinator of L recurrent layers,
``StackedRNN(LSTM(H), LSTM(H), dropout=p)``.

Each layer's output sequence is the next one's input; in training, Dropout(p) (inverted:
kept entries scaled by 1/(1-p)) acts on each output but the last, as torch's ``dropout``.
The layers keep their own flags, which must agree (``lengths``, ``initial_state``,
``return_state``; ``return_sequences`` for the last only, the others passing sequences on),
and the stack takes and gives what they do, with the states of all layers in one entry:

- input ``x`` (N, T, C), ``(x, lengths)``, ``(x, states)`` or ``(x, lengths, states)``;
- output ``y`` (the last layer's), or ``(y, states_n)`` with ``return_state=True``;
- states: a tuple with one entry per layer, each the layer's own (h0 (N, H), LSTM's
  ``(h0, c0)``), or torch's stacked form, ``h_0`` (L, N, H) (LSTM's pair ``(h_0, c_0)``),
  entry k the k-th layer's (``_stacked_state`` says how the two are told apart). The
  output's ``states_n`` and every cotangent of states take the form the input's came in;
  without input states, one entry per layer.

Chunks of a long sequence (truncated backpropagation through time) chain by passing one
call's ``states_n`` as the next call's states: the same numbers as one call on the whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import random
from funcdl._args import F32, real_arg, train_arg
from funcdl.layers import _stacked_state as states_of
from funcdl.layers._children import ERRORS, child_init, is_stateful, name_of
from funcdl.layers._shapes import located
from funcdl.layers.base import Layer, LayerLike, layer_arg
from funcdl.layers.core import Dropout

__all__ = ["StackedRNN"]

_FLAGS = ("lengths", "initial_state", "return_state")


def StackedRNN(*layers: LayerLike, dropout: float = 0.0) -> Layer:
    """L recurrent layers run one after the other, torch's ``num_layers=L``:
    ``(N, T, C) -> (N, T, H_L)`` (or ``(N, H_L)``: the last layer's ``return_sequences``).

    layers: SimpleRNN, LSTM, GRU (any mix), or Bidirectional of one when no state is passed,
    built with the same ``lengths``, ``initial_state`` and ``return_state``; all but the
    last with ``return_sequences=True``. The stack's input and output are the layers' own
    forms with the states of all layers in one entry (the module's doc).
    params: a tuple, one entry per layer (torch's ``_l0``, ``_l1``, ... weights).
    forward: ``h^0 = x``, ``(h^k, s_n^k) = f_k(m_k ⊙ h^{k-1}, s_0^k)``, ``y = h^L``, with
    ``m_k`` the Dropout(p) mask of gap k (training, p > 0; 1 otherwise);
    vjp: the layers' pullbacks in reverse, ``(dθ_k, dh^{k-1}, ds_0^k) = f_kᵀ(dh^k, ds_n^k)``,
    ``dh^{k-1} ⊙= m_k``, ``dx = dh^0``.
    Keys: gap k (after layer k) draws with ``random.split(key, L - 1)[k]``, the mask of
    ``Dropout(p)`` called with that key; ``train=True`` with p > 0 needs a key.
    """
    rate = real_arg(dropout, "StackedRNN", "dropout (the fraction dropped between layers)",
                    low=0.0, high=1.0)
    if not layers:
        raise ValueError("StackedRNN: expected at least one recurrent layer, as "
                         "StackedRNN(LSTM(32), LSTM(32)), got none")
    for i, layer in enumerate(layers):
        layer_arg("StackedRNN", layer, f"layer {i}: expected a recurrent layer")
    names = [name_of(l) for l in layers]
    name = ("StackedRNN(" + ", ".join(names) + (f", dropout={rate}" if rate else "") + ")")
    children = _children(name, layers, names)
    n = len(layers)
    padded, given, give = (getattr(children[0], f) for f in _FLAGS)
    lstm = children[0].kind == "LSTM"
    where = [f"StackedRNN[{i}]" for i in range(n)]
    drop = Dropout(rate) if rate > 0.0 else None
    optional = [getattr(l, "dx_optional", False) for l in layers]
    form = "(x" + (", lengths" if padded else "") + (", states" if given else "") + ")"
    size = 1 + padded + given
    flags = ", ".join(f"{f}=True" for f, on in zip(_FLAGS, (padded, given)) if on)

    def split(x: Any, weak: np.dtype[Any]) -> tuple[Any, Any, list[Any], bool]:
        """``(x, lengths or None, one state per layer or Nones, stacked)``."""
        if size == 1:
            return x, None, [None] * n, False
        if not (isinstance(x, (tuple, list)) and len(x) == size):
            got = (f"a {type(x).__name__} of {len(x)}" if isinstance(x, (tuple, list))
                   else f"shape {x.shape}" if hasattr(x, "shape") else type(x).__name__)
            raise TypeError(f"{name}: expected the input {form}, as the layers take it "
                            f"({flags}), got {got}")
        ln = x[1] if padded else None
        if not given:
            return x[0], ln, [None] * n, False
        per_layer, stacked = states_of.split_states(name, x[-1], children, weak)
        return x[0], ln, per_layer, stacked

    def packed(h: Any, ln: Any, state: Any) -> Any:
        """A layer's input: ``h``, ``(h, lengths)``, ``(h, state)`` or all three."""
        if size == 1:
            return h
        return (h, *((ln,) if padded else ()), *((state,) if given else ()))

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any]:
        x_shape, ln_shape, st_shapes, stacked = split_shape(in_shape)
        keys = random.split_for(key, n, name)
        params, shape, out_states = [], x_shape, []
        for i, (layer, k) in enumerate(zip(layers, keys)):
            try:
                out, p, _ = child_init(layer, k, packed(shape, ln_shape, st_shapes[i]))
            except ERRORS as e:
                raise located(where[i], names[i], e) from e
            if give:
                out, s = out
                out_states.append(s)
            params.append(p)
            shape = out
        if give:
            return (shape, states_of.join_shapes(out_states, stacked, lstm)), tuple(params)
        return shape, tuple(params)

    def split_shape(in_shape: Any) -> tuple[Any, Any, list[Any], bool]:
        if size == 1:
            return in_shape, None, [None] * n, False
        if not (isinstance(in_shape, (tuple, list)) and len(in_shape) == size):
            raise ValueError(f"{name}: expected the in_shape of the input {form}, a tuple of "
                             f"{size} shapes, got {in_shape!r}")
        ln = in_shape[1] if padded else None
        if not given:
            return in_shape[0], ln, [None] * n, False
        st, stacked = states_of.split_shapes(name, in_shape[-1], children)
        return in_shape[0], ln, st, stacked

    def gap_keys(key: Any, train: Any) -> tuple[Any, ...] | None:
        """The gaps' keys when this call drops (training, p > 0), else None."""
        if drop is None or not train_arg(train, name) or n == 1:
            return None
        if key is None:
            raise ValueError(f"{name}: train=True with dropout={rate} needs a random key: "
                             f"pass key= to the call that runs it, apply(params, x, "
                             f"train=True, key=funcdl.random.key(seed)), vjp, or the "
                             f"function from value_and_grad, f(params, x, target, key=...); "
                             f"a new key per step, e.g. from funcdl.random.split")
        return random.split_for(key, n - 1, name)

    def params_of(params: Any) -> Any:
        if not (isinstance(params, (tuple, list)) and len(params) == n):
            got = (f"a {type(params).__name__} of {len(params)}"
                   if isinstance(params, (tuple, list)) else type(params).__name__)
            raise ValueError(f"{name}: expected params as a tuple with one entry per layer "
                             f"({n}), got {got}")
        return params

    def run(params: Any, x: Any, key: Any, train: Any, vjp: bool) -> tuple[Any, list[Any],
                                                                            list[Any], bool]:
        """``(y, the layers' pullbacks, the gaps' pullbacks, stacked)``; apply's call keeps
        no pullbacks (``vjp`` False)."""
        params = params_of(params)
        keys = gap_keys(key, train)
        h, ln, st, stacked = split(x, _weak(params[0]))
        pullbacks: list[Any] = []
        gaps: list[Any] = []
        finals = []
        for i, layer in enumerate(layers):
            try:
                if vjp:
                    out, pb = layer.vjp(params[i], packed(h, ln, st[i]), train=train)
                    pullbacks.append(pb)
                else:
                    out = layer.apply(params[i], packed(h, ln, st[i]), train=train)
            except ERRORS as e:
                raise located(where[i], names[i], e) from e
            if give:
                out, s = out
                finals.append(s)
            if keys is not None and i < n - 1:
                assert drop is not None
                if vjp:
                    out, pb = drop.vjp((), out, key=keys[i], train=True)
                    gaps.append(pb)
                else:
                    out = drop.apply((), out, key=keys[i], train=True)
            h = out
        y = (h, states_of.join(finals, stacked, lstm)) if give else h
        return y, pullbacks, gaps, stacked

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        return run(params, x, key, train, False)[0]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        y, pullbacks, gaps, stacked = run(params, x, key, train, True)

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Any]:
            if give:
                if not (isinstance(dy, (tuple, list)) and len(dy) == 2):
                    raise TypeError(f"{name}: the pullback expected the cotangent (dy, "
                                    f"d_states) of the output (y, states_n) (return_state="
                                    f"True), got {type(dy).__name__}")
                dy, d_st = dy[0], states_of.split_cotangent(name, dy[1], stacked, children)
            else:
                d_st = [None] * n
            grads: list[Any] = [None] * n
            d0: list[Any] = [None] * n
            d = dy
            for i in range(n - 1, -1, -1):
                if gaps and i < n - 1:
                    d = gaps[i](d)[1]
                ct = (d, d_st[i]) if give else d
                skip = i == 0 and not need_dx and optional[0]
                try:
                    grads[i], dx = pullbacks[i](ct, need_dx=False) if skip else pullbacks[i](ct)
                except ERRORS as e:
                    raise located(where[i], names[i], e) from e
                if i == 0 and not need_dx:
                    return tuple(grads), None
                if given:
                    d0[i] = dx[-1]
                d = dx if size == 1 else dx[0]
            if size == 1:
                return tuple(grads), d
            return tuple(grads), (d, *((None,) if padded else ()),
                                  *((states_of.join(d0, stacked, lstm),) if given else ()))

        return y, pullback

    return Layer(init, apply, vjp, name=name, dx_optional=True)


def _weak(params: Any) -> np.dtype[Any]:
    """The dtype Python floats in the states take: the first layer's params' (w_ih)."""
    dtype = getattr(params.get("w_ih") if isinstance(params, dict) else None, "dtype", None)
    return dtype if isinstance(dtype, np.dtype) and dtype.char in "fd" else F32


def _children(name: str, layers: tuple[Any, ...], names: list[str]) -> list[Any]:
    """Each layer's kind, size and flags, or an error naming the layer and what it needs."""
    children = []
    for i, (layer, shown) in enumerate(zip(layers, names)):
        child = states_of.read(layer)
        if child is None or is_stateful(layer):
            raise TypeError(f"{name}: layer {i} is {shown}; expected a recurrent layer, "
                            f"SimpleRNN, LSTM or GRU, or a Bidirectional of one, as "
                            f"StackedRNN(LSTM(32), LSTM(32))")
        children.append(child)
    first = children[0]
    for i, child in enumerate(children):
        for flag in _FLAGS:
            if getattr(child, flag) != getattr(first, flag):
                raise ValueError(
                    f"{name}: layer {i} {names[i]} has {flag}={getattr(child, flag)} where "
                    f"layer 0 {names[0]} has {flag}={getattr(first, flag)}; every layer of a "
                    f"stack is built with the same lengths=, initial_state= and return_state="
                    + ("; Bidirectional routes no states: stack the directions' layers "
                       "yourself to pass them" if first.bidirectional != child.bidirectional
                       and flag != "lengths" else ""))
        if i < len(children) - 1 and not child.return_sequences:
            raise ValueError(f"{name}: layer {i} {names[i]} has return_sequences=False, "
                             f"but layer {i + 1} reads a sequence (N, T, ·); every layer but "
                             f"the last is built with return_sequences=True (torch's stack "
                             f"passes every step on)")
        if i < len(children) - 1 and child.pair_out:
            raise ValueError(f"{name}: layer {i} {names[i]} gives the pair of its two "
                             f"directions (merge=None), but layer {i + 1} reads one sequence; "
                             f"use merge='concat' (torch's) or 'sum'")
    return children
