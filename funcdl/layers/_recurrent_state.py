"""The initial and final states of ``funcdl.layers.recurrent``'s layers (their
``initial_state=True`` and ``return_state=True``): splitting them off the input, the shapes
at init, the checks, and the cotangents' structure.

A state is ``h`` ``(N, H)`` (SimpleRNN, GRU) or the pair ``(h, c)`` (LSTM), torch's
``h_0[0]`` / ``(h_0[0], c_0[0])`` of its ``(num_layers, N, H)``: one layer, one direction.
With ``initial_state=True`` the state is the input's last entry, ``(x, h0)`` or with lengths
``(x, lengths, h0)``; with ``return_state=True`` the output is ``(y, h_n)``, and the
pullback takes ``(dy, dh_n)`` (LSTM ``(dy, (dh_n, dc_n))``) and returns the state's
cotangent in the input's place of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl._args import array_arg
from funcdl.layers.base import Array, as_array, check_cotangent, check_in_shape


def _form(lstm: bool, padded: bool, what: str = "0") -> str:
    state = f"(h{what}, c{what})" if lstm else f"h{what}"
    return f"(x, lengths, {state})" if padded else f"(x, {state})"


def _what(a: Any) -> str:
    """What came, for an error: ``a tuple of 3``, ``an array of shape (4, 5)``."""
    if isinstance(a, (tuple, list)):
        return f"a {type(a).__name__} of {len(a)}"
    return f"an array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__


def split_in_shape(name: str, in_shape: Any, lstm: bool, padded: bool,
                   hidden: int) -> tuple[Any, Any]:
    """``(the input's in_shape without the state, the state's)``, the state's checked
    ``(N, H)`` (LSTM a pair of them) with H the layer's."""
    size = 3 if padded else 2
    if not (isinstance(in_shape, (tuple, list)) and len(in_shape) == size
            and all(isinstance(s, (tuple, list)) for s in in_shape)):
        raise ValueError(f"{name}: expected the in_shape of the input {_form(lstm, padded)}, "
                         f"a tuple of {size} shapes, got {in_shape!r}")
    state = in_shape[-1]
    parts = state if lstm else (state,)
    if lstm and not (len(state) == 2 and all(isinstance(s, (tuple, list)) for s in state)):
        raise ValueError(f"{name}: expected the state's in_shape ((N, {hidden}), "
                         f"(N, {hidden})), of (h0, c0), got {state!r}")
    x_shape = in_shape[0]
    n = x_shape[0] if len(x_shape) else None
    for s in parts:
        s = check_in_shape(name, s)
        if len(s) != 2 or s[1] not in (None, hidden):
            raise ValueError(f"{name}: the initial state's in_shape must be (N, {hidden}), got "
                             f"{s}")
        if None not in (n, s[0]) and s[0] != n:  # no input could match both
            raise ValueError(f"{name}: the initial state's in_shape must be ({n}, {hidden}), "
                             f"one row per sequence of the input's in_shape {tuple(x_shape)}, "
                             f"got {s}")
        n = s[0] if n is None else n
    rest = in_shape[0] if not padded else (in_shape[0], in_shape[1])
    return rest, state


def state_shape(n: Any, hidden: int, lstm: bool) -> Any:
    """h_n's shape ``(N, H)``, LSTM's ``((N, H), (N, H))``."""
    return ((n, hidden), (n, hidden)) if lstm else (n, hidden)


def split_input(name: str, x: Any, lstm: bool, padded: bool) -> tuple[Any, Any]:
    """``(the input without its state, the state as given)``, or a TypeError saying the
    form wanted."""
    size = 3 if padded else 2
    if not (isinstance(x, (tuple, list)) and len(x) == size):
        raise TypeError(f"{name}: expected the input {_form(lstm, padded)} (initial_state="
                        f"True), got {_what(x)}; without an initial state build the layer with "
                        f"initial_state=False")
    return (x[0] if not padded else (x[0], x[1])), x[-1]


def _ndim(a: Any) -> int:
    """``a``'s rank, -1 for what is no rectangular array (a ragged tuple)."""
    try:
        return int(np.ndim(a))
    except (ValueError, TypeError):
        return -1


def _is_pair_of_matrices(a: Any) -> bool:
    """Whether ``a`` is two 2-D arrays, as LSTM's state ``(h0, c0)``."""
    return isinstance(a, (tuple, list)) and len(a) == 2 and all(_ndim(p) == 2 for p in a)


def refuse_state(name: str, x: Any, padded: bool) -> None:
    """A TypeError for an input that ends in a state ``(N, H)`` (LSTM's pair of them) when
    the layer was built without ``initial_state=True``, the hint fitted to the layer's kind:
    a GRU's or SimpleRNN's state is one array, never a tuple (a pair of matrices is LSTM's
    state, and said so). Lengths (ints, one per sequence, in any container) are nobody's
    state: they pass on to the input's own check, whose hint is ``lengths=True``."""
    if not (isinstance(x, tuple) and len(x) == 2 + padded and _ndim(x[0]) == 3):
        return
    kind, last = name.split("(")[0], x[-1]
    if _is_pair_of_matrices(last):
        if kind == "LSTM":
            raise TypeError(f"{name}: got the input as a tuple of {len(x)} whose last entry "
                            f"looks like an initial state (h0, c0); that needs LSTM(..., "
                            f"initial_state=True)")
        raise TypeError(f"{name}: got the input as a tuple of {len(x)} whose last entry looks "
                        f"like LSTM's state (h0, c0); {kind}'s initial state is one array h0 "
                        f"(N, H), taken as {_form(False, padded)} by {kind}(..., "
                        f"initial_state=True)")
    if _ndim(last) == 2 and not isinstance(last, tuple):
        raise TypeError(f"{name}: got the input as a tuple of {len(x)} whose last entry looks "
                        f"like an initial state; that needs {kind}(..., initial_state=True)")


def state_dtypes(name: str, given: Any, lstm: bool) -> list[Array]:
    """The state's arrays (one, or LSTM's two) converted, not cast; floating only."""
    if lstm and not (isinstance(given, (tuple, list)) and len(given) == 2):
        raise TypeError(f"{name}: the initial state must be the pair (h0, c0), each (N, H), "
                        f"got {_what(given)}")
    parts = list(given) if lstm else [given]
    if not lstm and isinstance(given, tuple):
        raise TypeError(f"{name}: the initial state must be one array h0 (N, H), got a tuple "
                        f"of {len(given)}; only LSTM takes (h0, c0)")
    out = [as_array(name, p) for p in parts]
    for which, a in zip(("h0", "c0"), out):
        if a.dtype.kind != "f":
            raise TypeError(f"{name}: the initial state {which} must be floating (float32 or "
                            f"float64), got dtype {a.dtype}")
    return out


def check_state(name: str, parts: list[Array], n: int, hidden: int,
                dt: np.dtype[Any]) -> tuple[Array, ...]:
    """The state's arrays in the computing dtype, each checked ``(N, H)``."""
    for which, a in zip(("h0", "c0"), parts):
        if a.shape != (n, hidden):
            # torch's h_0 is (num_layers·num_directions, N, H); this layer is one of each
            torch_form = a.ndim == 3 and a.shape[1:] == (n, hidden)
            raise ValueError(f"{name}: the initial state {which} must have shape "
                             f"({n}, {hidden}), (N, H) of x's N and the layer's H, got shape "
                             f"{a.shape}" + (f"; torch's {which[0]}_0 of shape (num_layers"
                                             f"·num_directions, N, H) holds one state per "
                                             f"layer and direction: pass {which}[0] here, "
                                             f"{which}[k] to the k-th layer of a stack"
                                             if torch_form else ""))
    return tuple(a.astype(dt, copy=False) for a in parts)


def split_cotangent(name: str, d: Any, lstm: bool, y_shape: tuple[int, ...],
                    h_shape: tuple[int, int],
                    dt: np.dtype[Any]) -> tuple[Array, tuple[Array, ...]]:
    """``(dy, (dh_n,))`` or LSTM's ``(dy, (dh_n, dc_n))`` from a return_state pullback's
    cotangent, each the shape of its output; an entry None is 0 (its output unread)."""
    form = "(dy, (dh_n, dc_n))" if lstm else "(dy, dh_n)"
    pair = isinstance(d, (tuple, list)) and len(d) == 2
    state = d[1] if pair else None
    if not pair or (lstm and state is not None
                    and not (isinstance(state, (tuple, list)) and len(state) == 2)):
        got = f"(dy, {_what(state)})" if pair else _what(d)
        raise TypeError(f"{name}: the pullback expected the cotangent {form} of the output "
                        f"(y, {'(h_n, c_n)' if lstm else 'h_n'}) (return_state=True), got "
                        f"{got}")
    parts = [None] * (1 + lstm) if state is None else list(state) if lstm else [state]
    for which, p in zip(("dh_n", "dc_n"), parts):
        shape = None if p is None else array_arg(p, name, which).shape  # ragged: named
        if shape not in (None, h_shape):
            raise ValueError(f"{name}: the pullback expected {which} of shape {h_shape} "
                             f"(h_n's), got {shape}")
    # None in an entry, as Select's pullback gives for an output not read: 0 flows back
    return (np.zeros(y_shape, dt) if d[0] is None else
            check_cotangent(name, d[0], y_shape, dt),
            tuple(np.zeros(h_shape, dt) if p is None else check_cotangent(name, p, h_shape, dt)
                  for p in parts))


def last_cell(cells: Array, ln: Array | None) -> Array:
    """LSTM's ``c_n``: the cell after each sequence's last valid step, ``cells[ln[n], n]``
    (padded: the forward does not hold the cell), else the last; a copy."""
    out: Array = cells[-1].copy() if ln is None else cells[ln, np.arange(cells.shape[1])]
    return out

