"""Recurrent layers as PyTorch's ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` with
``batch_first=True``, one layer, one direction: SimpleRNN, LSTM, GRU.

Input ``(N, T, C)``, channels last; output ``(N, T, H)``, every step's hidden state, or with
``return_sequences=False`` (Keras' name) ``(N, H)``, the last step's; the initial hidden
(and cell) state is zero. ``reverse=True`` runs the steps from ``T-1`` down to 0 and gives
the output in the input's time order: the backward half of a bidirectional layer, built as
``Sequential(FanOut(2), Parallel(LSTM(h), LSTM(h, reverse=True)), FanInConcat())``.

``lengths=True`` takes a padded batch of sequences of their own lengths, as torch's
``pack_padded_sequence``: the input is the pair ``(x, lengths)``, x ``(N, T, C)`` and
lengths ``(N,)`` integers in ``[0, T]``. Each sequence runs its own ``lengths[n]`` steps
(their state is held after: the steps past the end read nothing of x, which may hold
anything there); the output sequence is 0 past each end (torch's ``pad_packed_sequence``),
the last state is each sequence's at its own end (torch's ``h_n``; the zero state for a
length of 0), and ``reverse=True`` runs each sequence from its own last step down to its
first (torch's reverse direction). The vjp's ``dx`` is 0 at the padded steps, and
``(dx, None)`` the input's cotangent (integers have none).

``initial_state=True`` (Keras' ``initial_state``, torch's ``h_0``/``c_0``) takes the initial
state as the input's last entry: ``(x, h0)`` (LSTM ``(x, (h0, c0))``), each ``(N, H)``,
torch's ``h_0[0]`` of its ``(num_layers, N, H)``; with lengths ``(x, lengths, h0)``. The
vjp's input cotangent has the state's in the same place. ``return_state=True`` (Keras')
gives ``(y, h_n)`` (LSTM ``(y, (h_n, c_n))``), y as without it, h_n and c_n the state after
each sequence's last (valid) step (torch's ``h_n``, ``c_n``; for ``reverse=True`` after the
reversed run, at step 0: torch's reverse direction); the pullback takes ``(dy, dh_n)`` (LSTM
``(dy, (dh_n, dc_n))``). Together, an encoder's ``(h_n, c_n)`` starts a decoder (seq2seq).

Params ``{'w_ih': (C, G·H), 'w_hh': (H, G·H), 'b_ih': (G·H,), 'b_hh': (G·H,)}`` (no biases
with ``use_bias=False``), the transposes of torch's ``weight_ih_l0``, ``weight_hh_l0`` and
its ``bias_ih_l0``, ``bias_hh_l0``, gates in torch's order (G = 1; LSTM i, f, g, o; GRU
r, z, n); by default all U(±1/sqrt(H)), as torch draws them.

The forward projects every step's input in one product, ``(N·T, C) @ (C, G·H)``; the steps
then run one ``(N, H) @ (H, G·H)`` product each (``_recurrent``). The vjp is
backpropagation through time, one loop over the steps in reverse, which stacks every step's
gate cotangents: ``dW_ih``, ``dW_hh``, the biases and ``dx`` are then one product each.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from funcdl import initializers, random
from funcdl._args import F32, F64, bool_arg, call_name, int_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers import _recurrent, _recurrent_input, _recurrent_state
from funcdl.layers._params import drawn, in_param_dtypes, initializer_arg, param_arrays
from funcdl.layers._sums import dot, product, rows_sum
from funcdl.layers.base import (
    Array,
    Layer,
    as_array,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
    pair_of_shapes,
)

__all__ = ["GRU", "LSTM", "SimpleRNN"]

_NONLINEARITIES = ("tanh", "relu")


def SimpleRNN(hidden: int, nonlinearity: str = "tanh", *, return_sequences: bool = True,
              use_bias: bool = True, w_init: initializers.Initializer | None = None,
              b_init: initializers.Initializer | None = None, reverse: bool = False,
              lengths: bool = False, initial_state: bool = False,
              return_state: bool = False) -> Layer:
    """Elman RNN, ``torch.nn.RNN(C, hidden, nonlinearity, batch_first=True)``:
    ``(N, T, C) -> (N, T, H)``, or ``(N, H)`` with ``return_sequences=False``; with
    ``lengths=True`` the input is ``(x, lengths)``, a padded batch; ``initial_state=True``
    appends h0 to the input, ``return_state=True`` h_n to the output (the module's doc).

    params: ``{'w_ih': (C, H), 'w_hh': (H, H), 'b_ih': (H,), 'b_hh': (H,)}``, by default
    all U(±1/sqrt(H)), as torch's.
    forward: ``h_t = f(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh)``, ``h_0 = 0``, f tanh or ReLU;
    vjp: ``da_t = (dy_t + da_{t+1} W_hhᵀ) ⊙ f'`` (``1 - h_t²``, or ``[h_t > 0]``), then
    ``dW_ih = Σ_t x_tᵀ da_t``, ``dW_hh = Σ_t h_{t-1}ᵀ da_t``, ``db_ih = db_hh = Σ_t da_t``,
    ``dx_t = da_t W_ihᵀ``.
    """
    hidden = int_arg(hidden, "SimpleRNN", "hidden (the number of hidden units)", minimum=1)
    if not isinstance(nonlinearity, str):
        raise TypeError(f"SimpleRNN({hidden}): nonlinearity must be 'tanh' or 'relu', got "
                        f"{nonlinearity!r} ({type(nonlinearity).__name__})")
    if nonlinearity not in _NONLINEARITIES:
        raise ValueError(f"SimpleRNN({hidden}): nonlinearity must be 'tanh' or 'relu' (as "
                         f"torch.nn.RNN's), got {nonlinearity!r}; another activation needs "
                         f"a layer of its own")
    return _recurrent_layer("SimpleRNN", hidden, _recurrent.rnn_cell(nonlinearity == "relu"),
                            {"nonlinearity": (nonlinearity, "tanh")}, return_sequences,
                            use_bias, w_init, b_init, reverse, lengths, initial_state, return_state)


def LSTM(hidden: int, *, return_sequences: bool = True, use_bias: bool = True,
         w_init: initializers.Initializer | None = None,
         b_init: initializers.Initializer | None = None, reverse: bool = False,
         lengths: bool = False, initial_state: bool = False,
         return_state: bool = False) -> Layer:
    """Long short-term memory, ``torch.nn.LSTM(C, hidden, batch_first=True)``:
    ``(N, T, C) -> (N, T, H)``, or ``(N, H)`` with ``return_sequences=False``; with
    ``lengths=True`` the input is ``(x, lengths)``, a padded batch; ``initial_state=True``
    appends ``(h0, c0)`` to the input, ``return_state=True`` ``(h_n, c_n)`` to the output
    (the module's doc).

    params: ``{'w_ih': (C, 4H), 'w_hh': (H, 4H), 'b_ih': (4H,), 'b_hh': (4H,)}``, gates
    i, f, g, o in blocks of H columns; by default all U(±1/sqrt(H)), as torch's.
    forward: ``[i, f, g, o] = x_t W_ih + b_ih + h_{t-1} W_hh + b_hh`` through σ, σ, tanh, σ;
    ``c_t = f ⊙ c_{t-1} + i ⊙ g``, ``h_t = o ⊙ tanh(c_t)``, ``h_0 = c_0 = 0``;
    vjp: ``dh_t = dy_t + da_{t+1} W_hhᵀ``, ``dc_t = dh_t ⊙ o ⊙ (1 - tanh² c_t) + dc_{t+1} ⊙
    f_{t+1}``, ``da_t = [dc ⊙ g ⊙ i(1-i), dc ⊙ c_{t-1} ⊙ f(1-f), dc ⊙ i ⊙ (1-g²), dh ⊙
    tanh(c_t) ⊙ o(1-o)]``; then ``dW_ih = Σ_t x_tᵀ da_t``, ``dW_hh = Σ_t h_{t-1}ᵀ da_t``,
    ``db_ih = db_hh = Σ_t da_t``, ``dx_t = da_t W_ihᵀ``.
    """
    hidden = int_arg(hidden, "LSTM", "hidden (the number of hidden units)", minimum=1)
    return _recurrent_layer("LSTM", hidden, _recurrent.LSTM_CELL, {}, return_sequences,
                            use_bias, w_init, b_init, reverse, lengths, initial_state, return_state)


def GRU(hidden: int, *, return_sequences: bool = True, use_bias: bool = True,
        w_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None, reverse: bool = False,
        lengths: bool = False, initial_state: bool = False,
        return_state: bool = False) -> Layer:
    """Gated recurrent unit, ``torch.nn.GRU(C, hidden, batch_first=True)``:
    ``(N, T, C) -> (N, T, H)``, or ``(N, H)`` with ``return_sequences=False``; with
    ``lengths=True`` the input is ``(x, lengths)``, a padded batch; ``initial_state=True``
    appends h0 to the input, ``return_state=True`` h_n to the output (the module's doc).

    params: ``{'w_ih': (C, 3H), 'w_hh': (H, 3H), 'b_ih': (3H,), 'b_hh': (3H,)}``, gates
    r, z, n in blocks of H columns; by default all U(±1/sqrt(H)), as torch's.
    forward (torch's): ``r, z = σ(x_t W_i[rz] + b_i[rz] + h_{t-1} W_h[rz] + b_h[rz])``,
    ``n = tanh(x_t W_in + b_in + r ⊙ (h_{t-1} W_hn + b_hn))``,
    ``h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}``, ``h_0 = 0``;
    vjp: ``dn = dh_t ⊙ (1-z)(1-n²)``, ``dz = dh_t ⊙ (h_{t-1} - n) z(1-z)``,
    ``dr = dn ⊙ (h_{t-1} W_hn + b_hn) ⊙ r(1-r)``; ``dh_{t-1} = dy_{t-1} + dh_t ⊙ z +
    [dr, dz, dn ⊙ r] W_hhᵀ``; ``dW_ih = Σ_t x_tᵀ [dr, dz, dn]``, ``dW_hh = Σ_t h_{t-1}ᵀ
    [dr, dz, dn ⊙ r]``, the biases the sums of the same, ``dx_t = [dr, dz, dn] W_ihᵀ``.
    """
    hidden = int_arg(hidden, "GRU", "hidden (the number of hidden units)", minimum=1)
    return _recurrent_layer("GRU", hidden, _recurrent.GRU_CELL, {}, return_sequences,
                            use_bias, w_init, b_init, reverse, lengths, initial_state, return_state)


def _recurrent_layer(kind: str, hidden: int, cell: _recurrent.Cell,
                     options: dict[str, tuple[Any, Any]], return_sequences: bool,
                     use_bias: bool, w_init: Any, b_init: Any, reverse: bool,
                     lengths: bool, initial_state: bool, return_state: bool) -> Layer:
    """The layer around ``cell``: params, checks, time-major layout, the products."""
    where = f"{kind}({hidden})"
    return_sequences = bool_arg(return_sequences, where, "return_sequences")
    use_bias = bool_arg(use_bias, where, "use_bias")
    reverse = bool_arg(reverse, where, "reverse")
    padded = bool_arg(lengths, where, "lengths")
    given_state = bool_arg(initial_state, where, "initial_state")
    give_state = bool_arg(return_state, where, "return_state")
    name = call_name(kind, (hidden,), **options, return_sequences=(return_sequences, True),
                     use_bias=(use_bias, True), reverse=(reverse, False),
                     lengths=(padded, False), initial_state=(given_state, False),
                     return_state=(give_state, False))
    lstm = kind == "LSTM"
    bound = 1 / math.sqrt(hidden)
    torch_init = initializers.uniform(bound, -bound)
    w_init = initializer_arg(name, "w_init", w_init) or torch_init
    b_init = initializer_arg(name, "b_init", b_init) or torch_init
    gh = cell.gates * hidden
    keys = ("w_ih", "w_hh", "b_ih", "b_hh") if use_bias else ("w_ih", "w_hh")
    # time <-> processing order; padded, a reversed layer gathers each row by its length
    order = slice(None, None, -1) if reverse and not padded else slice(None)

    flag = f"; a padded batch (x, lengths) needs {name.split('(')[0]}(..., lengths=True)"

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any]:
        if given_state:
            in_shape = _recurrent_state.split_in_shape(name, in_shape, lstm, padded, hidden)[0]
        if not padded and pair_of_shapes(in_shape):
            raise ValueError(f"{name}: expected an input shape (N, T, C), got the pair "
                             f"{tuple(in_shape)!r}{flag}")
        shape = (_recurrent_input.padded_in_shape(name, in_shape) if padded
                 else check_in_shape(name, in_shape, rank=3, layout="(N, T, C)"))
        n, t, c = shape
        if c is None or c == 0:
            raise ValueError(f"{name}: the channel axis of in_shape must be a known size > 0, "
                             f"got {shape}")
        if t == 0:
            raise ValueError(f"{name}: in_shape {shape} has no time steps (T = 0); a "
                             f"recurrence needs T >= 1 (None for any length)")
        k_wi, k_wh, k_bi, k_bh = random.split_for(key, 4, name)
        params = {"w_ih": drawn(name, "w_init", w_init, k_wi, (c, gh)),
                  "w_hh": drawn(name, "w_init", w_init, k_wh, (hidden, gh))}
        if use_bias:
            params["b_ih"] = drawn(name, "b_init", b_init, k_bi, (gh,))
            params["b_hh"] = drawn(name, "b_init", b_init, k_bh, (gh,))
        y_shape = (n, t, hidden) if return_sequences else (n, hidden)
        if give_state:
            return (y_shape, _recurrent_state.state_shape(n, hidden, lstm)), params
        return y_shape, params

    def checked(params: Any, x: Any,
                state: list[Array]) -> tuple[list[Array], Array, np.dtype[Any]]:
        """The params cast to the computing dtype, the input as given (converted, not
        cast), and that dtype: float64 if the input, the state or any param is, else
        float32."""
        ps = param_arrays(name, params, keys)
        want = {"w_ih": ("C", gh), "w_hh": (hidden, gh), "b_ih": (gh,), "b_hh": (gh,)}
        for k, p in zip(keys, ps):
            if p.ndim != len(want[k]) or p.shape[-1] != gh or (k == "w_hh" and p.shape[0]
                                                               != hidden):
                raise ValueError(f"{name}: params[{k!r}] must have shape "
                                 f"{_shown(want[k])}, got {p.shape}")
        c = ps[0].shape[0]
        if c == 0:
            raise ValueError(f"{name}: params['w_ih'] must have shape (C, {gh}) with C >= 1 "
                             f"input channels, got {ps[0].shape}")
        if type(x) is tuple and len(x) == 2 and np.ndim(x[1]) == 1:
            raise ValueError(f"{name}: expected input (N, T, {c}), one array, got a pair of "
                             f"shapes {tuple(np.shape(a) for a in x)}{flag}")
        x = as_array(name, x, ps[0].dtype)
        if x.ndim != 3:
            raise ValueError(f"{name}: expected input (N, T, {c}) of rank 3 (batch, time "
                             f"steps, channels last), got shape {x.shape} (rank {x.ndim})"
                             + ("; a single sequence needs a batch axis: x[None]"
                                if x.ndim == 2 and x.shape[-1] == c else
                                "; integer token ids (N, T) need an Embedding first"
                                if x.ndim == 2 and x.dtype.kind in "iu" else ""))
        if x.shape[2] != c:
            raise ValueError(f"{name}: expected input (N, T, {c}), channels last as the "
                             f"params were initialised (params['w_ih'] {ps[0].shape}), got "
                             f"shape {x.shape}; an (N, C, T) input needs "
                             f"x.transpose(0, 2, 1)")
        if x.shape[1] == 0:
            raise ValueError(f"{name}: expected at least one time step, got input of shape "
                             f"{x.shape} (T = 0); drop empty sequences (PyTorch refuses "
                             f"them too)")
        dt = F64 if any(a.dtype.char == "d" for a in (x, *ps, *state)) else F32
        return [p.astype(dt, copy=False) for p in ps], x, dt

    def forward(params: Any, x: Any) -> tuple[Any, Any, Array, Array, list[Array],
                                              Array | None, Array | None, list[Array]]:
        """``(trace, y, x_steps, x, params, pad, idx, state)``: x_steps ``(T·N, C)`` is the
        input time-major in processing order, as dW_ih = x_stepsᵀ dgx reads it; padded, pad
        ``(T, N, 1)`` is True past each sequence's end (in processing order) and idx
        ``(N, T)`` a reversed layer's gather between time and processing order (else None);
        state the initial state as given (converted, not cast; [] without)."""
        state: list[Array] = []
        if given_state:
            x, raw = _recurrent_state.split_input(name, x, lstm, padded)
            state = _recurrent_state.state_dtypes(name, raw, lstm)
        else:
            _recurrent_state.refuse_state(name, x, padded)
        if padded:
            x, given = _recurrent_input.pair(name, x)
        ps, x, dt = checked(params, x, state)
        w_ih, w_hh = ps[0], ps[1]
        n, t, c = x.shape
        pad = idx = ln = None
        first = (_recurrent_state.check_state(name, state, n, hidden, dt) if given_state
                 else None)
        if padded:
            ln = _recurrent_input.lengths_arg(name, given, x.shape)
            steps = np.arange(t)
            pad = (steps[:, None] >= ln)[:, :, None]
            if reverse:  # idx[n, s] = len_n - 1 - s inside the sequence, s after: an involution
                idx = np.where(pad[:, :, 0].T, steps, ln[:, None] - 1 - steps)
            x_steps = np.empty((t, n, c), dt)
            np.copyto(x_steps, _in_time(x, idx).swapaxes(0, 1), casting="unsafe")
            np.copyto(x_steps, 0, where=pad)  # what the padding holds (NaN even) reaches nothing
            x_steps = x_steps.reshape(t * n, c)
        else:
            x_steps = np.ascontiguousarray(x.swapaxes(0, 1)[order], dtype=dt).reshape(t * n, c)
        xp = product(dot, x_steps, w_ih).reshape(t, n, gh)
        b_hn = None
        if use_bias:
            b = ps[2] + ps[3]
            if cell.split_n:  # GRU's n: b_hn is scaled by r, so it stays in the loop
                b[-hidden:] = ps[2][-hidden:]
                b_hn = ps[3][-hidden:]
            xp += b
        trace = cell.forward(xp, w_hh, b_hn, pad, first)
        states = trace.hidden  # padded: held past each end, so states[-1] is h_n
        y: Any
        if not return_sequences:
            y = states[-1].copy()  # not views of the states the pullback reads
        elif pad is None:
            y = np.array(states[1:][order].swapaxes(0, 1), order="C")  # a copy: with N or T
            # of 1 the swapped view is contiguous, and a view is what the pullback reads
        else:
            y = _in_time(np.where(pad, 0, states[1:]).swapaxes(0, 1), idx)
        if give_state:
            h_n = states[-1].copy()
            y = (y, (h_n, _recurrent_state.last_cell(trace.cells, ln)) if lstm else h_n)
        return trace, y, x_steps, x, ps, pad, idx, state

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        return forward(params, x)[1]

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        trace, y, x_steps, x_in, ps, pad, idx, state = forward(params, x)
        y_main = y[0] if give_state else y
        y_shape, y_dtype, x_dtype = y_main.shape, y_main.dtype, x_in.dtype
        n, t, c = x_in.shape
        each = per_example.ON.get()  # the params' grads per example (_per_example)

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Any]:
            d_last = None
            if give_state:
                dy, d_last = _recurrent_state.split_cotangent(name, dy, lstm, y_shape,
                                                              (n, hidden), y_dtype)
            else:
                dy = check_cotangent(name, dy, y_shape, y_dtype)
            dy_steps = None
            if return_sequences:  # padded: the zeroed outputs pass no gradient
                dy_steps = (dy.swapaxes(0, 1)[order] if pad is None else
                            np.where(pad, 0, _in_time(dy, idx).swapaxes(0, 1)))
            dgx, dgh, d0 = cell.backward(trace, ps[1], dy_steps,
                                         None if return_sequences else dy, pad, d_last,
                                         given_state and need_dx)
            flat_dgx, flat_dgh = dgx.reshape(t * n, gh), dgh.reshape(t * n, gh)
            # h_0 = 0 adds nothing to dW_hh: the steps after the first, h_{t-1}ᵀ da_t
            skip = 0 if given_state else 1
            h_prev = trace.hidden[skip:-1].reshape((t - skip) * n, hidden)
            if each:  # time-major (T, N, ·): each example's sums over its steps
                by_n = [a.reshape(steps, n, a.shape[-1]).swapaxes(0, 1) for steps, a in
                        ((t, x_steps), (t, dgx), (t - skip, h_prev), (t - skip, dgh[skip:]))]
                grads = {"w_ih": per_example.outer(by_n[0], by_n[1]),
                         "w_hh": per_example.outer(by_n[2], by_n[3])}
                if use_bias:
                    grads["b_ih"] = dgx.sum(axis=0)
                    grads["b_hh"] = grads["b_ih"].copy() if dgh is dgx else dgh.sum(axis=0)
            else:
                grads = {"w_ih": product(np.matmul, x_steps.T, flat_dgx),
                         "w_hh": product(np.matmul, h_prev.T, flat_dgh[skip * n:])}
            if use_bias and not each:
                # rows_sum: one gemv up to CASCADE rows, in blocks past it (T·N rows)
                grads["b_ih"] = rows_sum(flat_dgx)
                grads["b_hh"] = (grads["b_ih"].copy() if dgh is dgx
                                 else rows_sum(flat_dgh))
            in_param_dtypes(grads, params)
            if not need_dx:
                return grads, None
            dx = product(np.matmul, flat_dgx, ps[0].T).reshape(t, n, c)[order].swapaxes(0, 1)
            dx = in_input_dtype(_in_time(dx, idx), x_dtype)
            if not given_state:
                return grads, ((dx, None) if padded else dx)
            assert d0 is not None
            d_state = tuple(in_input_dtype(d, a.dtype) for d, a in zip(d0, state))
            return grads, (dx, *((None,) if padded else ()),
                           d_state if lstm else d_state[0])

        return y, pullback

    return Layer(init, apply, vjp, name=name, dx_optional=True)


def _in_time(a: Array, idx: Array | None) -> Array:
    """``a (N, T, ...)`` gathered along time by ``idx (N, T)`` (None: as it is), contiguous:
    a reversed padded layer's way between time and processing order, both ways."""
    if idx is None:
        return np.ascontiguousarray(a)
    return np.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)


def _shown(shape: tuple[Any, ...]) -> str:
    """A shape with a named size unquoted: ``(C, 32)``."""
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"

