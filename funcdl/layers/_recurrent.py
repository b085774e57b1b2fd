"""The recurrences behind ``funcdl.layers.recurrent``: a forward and a backward function per
cell (SimpleRNN, LSTM, GRU), on time-major arrays in processing order (a reversed layer's
caller flips the time axis before and after, so nothing here knows about direction).

Shapes: ``T`` steps, ``N`` examples, ``H`` hidden units, ``G`` gates (1, 4, 3).

- ``xp (T, N, G·H)``: the input projection ``x_t W_ih + b`` of every step, computed by the
  caller in one product, the caller's scratch: LSTM's and GRU's forwards overwrite it with
  the activated gates, which their backwards read.
- ``hidden (T+1, N, H)``: ``hidden[0]`` the initial state (0, or the caller's ``first``),
  ``hidden[s+1]`` the state after step ``s``, so that ``hidden[:-1]`` stacks every step's
  ``h_{t-1}``.
- Each backward takes the output's cotangent either per step, ``dy_steps (T, N, H)``, or for
  the last step only, ``dy_last (N, H)``, and returns the pre-activation gate cotangents of
  the input side and of the hidden side, ``(dgx, dgh)``, each ``(T, N, G·H)`` (one array
  for both but in GRU, whose candidate gate sees ``r ⊙ (h W_hn + b_hn)``): the caller takes
  ``dW_ih``, ``dW_hh``, the biases and ``dx`` from them in one product each.
- Initial and final states (the layers' ``initial_state``, ``return_state``): each forward
  takes ``first``, None (the zero state) or ``(h_0,)`` (LSTM ``(h_0, c_0)``), each ``(N, H)``;
  each backward takes ``d_last``, None or the cotangents of the last state ``(dh_n,)``
  (LSTM ``(dh_n, dc_n)``), added where the output's enters, and ``want_d0``, and returns a
  third entry, the cotangent of the initial state (``dh_0 = da_0 W_hhᵀ`` (+ GRU's
  ``dh ⊙ z``), LSTM's ``dc_0 = dc ⊙ f_0``) when asked, else None.

Per step: one ``(N, H) @ (H, G·H)`` product and whole-block gate operations, forward and
backward; step 0 skips ``h_0 W_hh`` when ``h_0 = 0`` (no ``first``). The backward computes
each step's slopes (``σ' = σ(1-σ)``, ``tanh' = 1 - tanh²``) from the kept gates inside its
loop: over the whole sequence at once, before the loop, the LSTM backward took 18-21 ms
against 14-15 per step ((64, 50, 32) -> 128, float32, one thread, one-off), its T·N·4H
arrays out of the cache.

Padded batches (the layers' ``lengths=True``): ``pad (T, N, 1)``, True at the steps past a
sequence's end (in processing order a suffix of each row). The forward holds the state
there (``h_s = h_{s-1}``), so ``hidden[-1]`` is each sequence's last valid state (LSTM's
cell is not held: no valid step comes after, so nothing reads it; its ``c_n`` is gathered
at each sequence's end by the caller); the backward zeroes those steps' gate cotangents and
passes ``dh`` through unchanged (LSTM's ``dc`` is 0 there, or with a ``dc_n`` passed
through as the held cell's would be). ``pad`` None is the unpadded path, untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdl.layers._sums import dot, product
from funcdl.layers.base import Array


def _sigmoid_(a: Array) -> None:
    """``a ← σ(a) = 1 / (1 + e^-a)`` in place. Below about -88 (float32) ``e^-a`` overflows to
    inf and σ is the correct 0: the forwards run under ``errstate(over='ignore')``."""
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1
    np.reciprocal(a, out=a)


def _states(xp: Array, h: int, first: Array | None = None) -> Array:
    """``(T+1, N, H)`` in xp's dtype, the first step's slot the initial state (0 or
    ``first``)."""
    out = np.empty((xp.shape[0] + 1, xp.shape[1], h), xp.dtype)
    out[0] = 0 if first is None else first
    return out


def _last(dy_steps: Array | None, dy_last: Array | None,
          d_last: tuple[Array, ...] | None) -> Array:
    """The cotangent of the last step's state: the output's there, plus ``dh_n`` when the
    state is an output too (read, never written)."""
    out = dy_last if dy_steps is None else dy_steps[-1]
    assert out is not None
    return out if d_last is None else out + d_last[0]


def _first(first: tuple[Array, ...] | None, i: int) -> Array | None:
    return None if first is None else first[i]


def _hold(new: Array, old: Array, pad: Array | None, s: int) -> None:
    """``new ← old`` at step ``s``'s padded rows: a state held, or a cotangent passed
    through, past a sequence's end (nothing when unpadded)."""
    if pad is not None:
        np.copyto(new, old, where=pad[s])


def _stop(d: Array, pad: Array | None, s: int) -> None:
    """Zero step ``s``'s padded rows of a gate cotangent (copyto, not a product: a NaN there
    stays out)."""
    if pad is not None:
        np.copyto(d, 0, where=pad[s])


def _transposed(w_hh: Array) -> Array:
    """``W_hhᵀ`` contiguous: each backward step's ``da W_hhᵀ`` reads it in place."""
    return np.ascontiguousarray(w_hh.T)


# ---------------------------------------------------------------------------- SimpleRNN

class RNNTrace(NamedTuple):
    hidden: Array  # (T+1, N, H): h_0 = 0, then h_t = f(x_t W_ih + b + h_{t-1} W_hh)


def rnn_forward(xp: Array, w_hh: Array, b_hn: Array | None, pad: Array | None,
                first: tuple[Array, ...] | None, relu: bool) -> RNNTrace:
    """``h_t = f(xp_t + h_{t-1} W_hh)``, f tanh or ReLU (held where ``pad``); ``b_hn`` is
    unused (None)."""
    del b_hn
    hidden = _states(xp, xp.shape[2], _first(first, 0))
    for s in range(xp.shape[0]):
        h = hidden[s + 1]
        if s or first is not None:
            np.add(xp[s], product(dot, hidden[s], w_hh), out=h)
        else:
            h[...] = xp[0]
        if relu:
            np.maximum(h, 0, out=h)
        else:
            np.tanh(h, out=h)
        _hold(h, hidden[s], pad, s)
    return RNNTrace(hidden)


def rnn_backward(trace: RNNTrace, w_hh: Array, dy_steps: Array | None,
                 dy_last: Array | None, pad: Array | None, d_last: tuple[Array, ...] | None,
                 want_d0: bool, relu: bool) -> tuple[Array, Array, tuple[Array, ...] | None]:
    """``da_t = dh_t ⊙ f'``, f' from the output (``1 - h_t²``, or ``[h_t > 0]``);
    ``dh_{t-1} = dy_{t-1} + da_t W_hhᵀ``."""
    hidden = trace.hidden
    da = np.empty((len(hidden) - 1, *hidden.shape[1:]), hidden.dtype)
    w_t, dh = _transposed(w_hh), _last(dy_steps, dy_last, d_last)
    for s in range(len(da) - 1, -1, -1):
        d = da[s]
        if relu:
            np.greater(hidden[s + 1], 0, out=d, casting="unsafe")
        else:
            np.square(hidden[s + 1], out=d)
            np.subtract(1, d, out=d)
        d *= dh
        _stop(d, pad, s)
        if s or want_d0:
            held, dh = dh, product(dot, d, w_t)
            _hold(dh, held, pad, s)
            if dy_steps is not None and s:
                dh += dy_steps[s - 1]
    return da, da, ((dh,) if want_d0 else None)


# ---------------------------------------------------------------------------- LSTM

class LSTMTrace(NamedTuple):
    hidden: Array     # (T+1, N, H): h_0 = 0, then h_t = o ⊙ tanh(c_t)
    gates: Array      # (T, N, 4H): i, f, g, o after their σ, σ, tanh, σ
    cells: Array      # (T+1, N, H): c_0 = 0, then c_t = f ⊙ c_{t-1} + i ⊙ g
    cell_tanh: Array  # (T, N, H): tanh(c_t), which h_t and the backward both need


def lstm_forward(xp: Array, w_hh: Array, b_hn: Array | None, pad: Array | None = None,
                 first: tuple[Array, ...] | None = None) -> LSTMTrace:
    """Gates ``[i, f, g, o] = xp_t + h_{t-1} W_hh``, then ``c_t`` and ``h_t`` (LSTMTrace)."""
    del b_hn
    t_len, n, g4 = xp.shape
    h = g4 // 4
    hidden, cells = _states(xp, h, _first(first, 0)), _states(xp, h, _first(first, 1))
    cell_tanh = np.empty((t_len, n, h), xp.dtype)
    with np.errstate(over="ignore"):
        for s in range(t_len):
            a = xp[s]
            if s or first is not None:
                a += product(dot, hidden[s], w_hh)
            # σ over the whole block, g's tanh put back after: one σ of 4H values beat two
            # of 2H and H by 15% (the loop, (64, 50, 32) -> 128, float32, one thread)
            g = a[:, 2 * h:3 * h]
            ig = np.tanh(g)
            _sigmoid_(a)
            g[...] = ig
            c = cells[s + 1]
            np.multiply(a[:, h:2 * h], cells[s], out=c)
            ig *= a[:, :h]
            c += ig
            np.tanh(c, out=cell_tanh[s])
            np.multiply(a[:, 3 * h:], cell_tanh[s], out=hidden[s + 1])
            _hold(hidden[s + 1], hidden[s], pad, s)
    return LSTMTrace(hidden, xp, cells, cell_tanh)


def lstm_backward(trace: LSTMTrace, w_hh: Array, dy_steps: Array | None,
                  dy_last: Array | None, pad: Array | None = None,
                  d_last: tuple[Array, ...] | None = None,
                  want_d0: bool = False) -> tuple[Array, Array, tuple[Array, ...] | None]:
    """``dh_t = dy_t + da_{t+1} W_hhᵀ``, ``dc_t = dh_t ⊙ o ⊙ (1 - tanh² c_t) + dc_{t+1} ⊙
    f_{t+1}``; ``da_t = [dc ⊙ g ⊙ i(1-i), dc ⊙ c_{t-1} ⊙ f(1-f), dc ⊙ i ⊙ (1-g²),
    dh ⊙ tanh c_t ⊙ o(1-o)]``; ``dc_{T}`` starts at ``dc_n`` (0 without)."""
    t_len, n, g4 = trace.gates.shape
    h = g4 // 4
    da = np.empty((t_len, n, g4), trace.gates.dtype)
    w_t, dh = _transposed(w_hh), _last(dy_steps, dy_last, d_last)
    dc_next = None if d_last is None else d_last[1]
    # a dc_n passes the padded steps as if the cell were held there: to each sequence's end
    carry = dc_next is not None and pad is not None
    for s in range(t_len - 1, -1, -1):
        a, tc = trace.gates[s], trace.cell_tanh[s]
        i, f, g, o = a[:, :h], a[:, h:2 * h], a[:, 2 * h:3 * h], a[:, 3 * h:]
        dc = np.square(tc)
        np.subtract(1, dc, out=dc)
        dc *= o
        dc *= dh
        if dc_next is not None:
            dc += dc_next
        if carry and dc_next is not None:
            _hold(dc, dc_next, pad, s)
        else:
            _stop(dc, pad, s)
        # σ' = σ(1-σ) over all four blocks in one pass, then g's tanh' = 1 - g² over its
        # own; each block times its other factor, then dc (i, f, g) or dh (o)
        d = da[s]
        np.subtract(1, a, out=d)
        d *= a
        d4 = d.reshape(n, 4, h)
        np.square(g, out=d4[:, 2])
        np.subtract(1, d4[:, 2], out=d4[:, 2])
        d4[:, 0] *= g
        d4[:, 1] *= trace.cells[s]
        d4[:, 2] *= i
        d4[:, 3] *= tc
        d4[:, :3] *= dc[:, None]
        d4[:, 3] *= dh
        _stop(d, pad, s)
        if s or want_d0:
            if carry:
                dc_next = dc * f
                _hold(dc_next, dc, pad, s)
            else:
                dc_next = dc
                dc_next *= f
            held, dh = dh, product(dot, d, w_t)
            _hold(dh, held, pad, s)
            if dy_steps is not None and s:
                dh += dy_steps[s - 1]
    assert dc_next is not None or not want_d0
    return da, da, ((dh, dc_next) if want_d0 and dc_next is not None else None)


# ---------------------------------------------------------------------------- GRU

class GRUTrace(NamedTuple):
    hidden: Array    # (T+1, N, H): h_0 = 0, then h_t = n + z ⊙ (h_{t-1} - n)
    gates: Array     # (T, N, 3H): r, z after σ, n after tanh
    hidden_n: Array  # (T, N, H): h_{t-1} W_hn + b_hn, what r scales inside n


def gru_forward(xp: Array, w_hh: Array, b_hn: Array | None, pad: Array | None = None,
                first: tuple[Array, ...] | None = None) -> GRUTrace:
    """``[r, z] = σ(xp_t + h_{t-1} W_h[rz])`` (xp holding b_hr, b_hz too), ``n = tanh(xp_n +
    r ⊙ (h_{t-1} W_hn + b_hn))``, ``h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}``, as torch.nn.GRU."""
    t_len, n, g3 = xp.shape
    h = g3 // 3
    hidden = _states(xp, h, _first(first, 0))
    hidden_n = np.empty((t_len, n, h), xp.dtype)
    with np.errstate(over="ignore"):
        for s in range(t_len):
            a = xp[s]
            if s or first is not None:
                hp = product(dot, hidden[s], w_hh)
                a[:, :2 * h] += hp[:, :2 * h]
                if b_hn is None:
                    hidden_n[s] = hp[:, 2 * h:]
                else:
                    np.add(hp[:, 2 * h:], b_hn, out=hidden_n[s])
            else:
                hidden_n[0] = 0 if b_hn is None else b_hn
            _sigmoid_(a[:, :2 * h])
            cand = a[:, 2 * h:]
            cand += a[:, :h] * hidden_n[s]
            np.tanh(cand, out=cand)
            nxt = hidden[s + 1]
            np.subtract(hidden[s], cand, out=nxt)
            nxt *= a[:, h:2 * h]
            nxt += cand
            _hold(nxt, hidden[s], pad, s)
    return GRUTrace(hidden, xp, hidden_n)


def gru_backward(trace: GRUTrace, w_hh: Array, dy_steps: Array | None,
                 dy_last: Array | None, pad: Array | None = None,
                 d_last: tuple[Array, ...] | None = None,
                 want_d0: bool = False) -> tuple[Array, Array, tuple[Array, ...] | None]:
    """``dn = dh ⊙ (1-z)(1-n²)``, ``dz = dh ⊙ (h_{t-1} - n) z(1-z)``, ``dr = dn ⊙ hn ⊙
    r(1-r)`` (hn = h_{t-1} W_hn + b_hn); input side ``[dr, dz, dn]``, hidden side
    ``[dr, dz, dn ⊙ r]``; ``dh_{t-1} = dy_{t-1} + dh_t ⊙ z + [dr, dz, dn ⊙ r] W_hhᵀ``."""
    t_len, n, g3 = trace.gates.shape
    h = g3 // 3
    dgx = np.empty((t_len, n, g3), trace.gates.dtype)
    dgh = np.empty_like(dgx)
    w_t, dh = _transposed(w_hh), _last(dy_steps, dy_last, d_last)
    for s in range(t_len - 1, -1, -1):
        a, gx, gh = trace.gates[s], dgx[s], dgh[s]
        r, z, cand = a[:, :h], a[:, h:2 * h], a[:, 2 * h:]
        dr, dz, dhn, dn = gh[:, :h], gh[:, h:2 * h], gh[:, 2 * h:], gx[:, 2 * h:]
        np.subtract(1, a[:, :2 * h], out=gh[:, :2 * h])  # σ' of r and z in one pass
        gh[:, :2 * h] *= a[:, :2 * h]
        np.square(cand, out=dn)
        np.subtract(1, dn, out=dn)
        np.subtract(1, z, out=dhn)  # (dhn's slot as scratch until its turn)
        dn *= dhn
        dn *= dh
        dr *= trace.hidden_n[s]
        dr *= dn
        np.subtract(trace.hidden[s], cand, out=dhn)
        dz *= dhn
        dz *= dh
        np.multiply(dn, r, out=dhn)
        gx[:, :2 * h] = gh[:, :2 * h]  # r and z see x and h alike
        _stop(gx, pad, s)
        _stop(gh, pad, s)
        if s or want_d0:
            through_z = dh * z
            held, dh = dh, product(dot, gh, w_t)
            dh += through_z
            _hold(dh, held, pad, s)
            if dy_steps is not None and s:
                dh += dy_steps[s - 1]
    return dgx, dgh, ((dh,) if want_d0 else None)


class Cell(NamedTuple):
    """A recurrence: its gate count and its forward and backward (see the module's doc)."""

    gates: int
    forward: Callable[[Array, Array, Array | None, Array | None,
                       tuple[Array, ...] | None], Any]
    backward: Callable[[Any, Array, Array | None, Array | None, Array | None,
                        tuple[Array, ...] | None, bool],
                       tuple[Array, Array, tuple[Array, ...] | None]]
    split_n: bool = False  # GRU: b_hn stays inside r ⊙ (...), not folded into xp


def rnn_cell(relu: bool) -> Cell:
    return Cell(1, lambda xp, w, b, pad, first: rnn_forward(xp, w, b, pad, first, relu),
                lambda tr, w, dys, dyl, pad, d_last, want_d0: rnn_backward(
                    tr, w, dys, dyl, pad, d_last, want_d0, relu))


LSTM_CELL = Cell(4, lstm_forward, lstm_backward)
GRU_CELL = Cell(3, gru_forward, gru_backward, split_n=True)
