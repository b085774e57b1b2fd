"""What ``layers.StackedRNN`` reads of its children and how it carries their states.

The children: each a recurrent layer (SimpleRNN, LSTM, GRU) or a Bidirectional of one, its
kind, hidden size and flags read off its name, which the constructors write with
``call_name`` (flags shown only off their default), as Bidirectional reads its layer's
direction.

The states, in one of two forms, told apart by type alone:

- per layer (funcdl's): a tuple with one entry per layer, each the layer's own state form,
  ``h0`` (N, H) or LSTM's tuple ``(h0, c0)``; any mix of kinds and sizes.
- stacked (torch's ``h_0``, ``(h_0, c_0)``): one array ``(L, N, H)``, or for LSTM a pair of
  them, entry k the k-th layer's; only for layers of one kind and one hidden size.

The container decides, as for every funcdl input (a tuple holds several arrays, a list is
an array's rows): states that are not a tuple are the stacked array; for LSTM, a pair with
no tuple in it is the stacked pair (each layer's ``(h0, c0)`` being a tuple, never an
array). One case would read both ways, an LSTM pair of lists of arrays with L = 2 (the
layers' ``[h0, c0]``, or ``h_0`` and ``c_0`` as lists of rows): refused, with the two ways
to write it. The output's states and every cotangent of them take the form the input's
states came in (per layer without input states).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl.layers._children import name_of
from funcdl.layers.base import as_array

KINDS = ("SimpleRNN", "LSTM", "GRU")


class Child(NamedTuple):
    """A child's kind, hidden size and flags (a Bidirectional's read from its layer)."""

    kind: str
    hidden: int
    bidirectional: bool
    pair_out: bool  # Bidirectional(..., merge=None): the output is the pair (f, b)
    return_sequences: bool
    lengths: bool
    initial_state: bool
    return_state: bool


def _args(inner: str) -> list[str]:
    """A call's arguments split at its top-level commas."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    return parts


def _read(name: str) -> Child | None:
    kind, _, rest = name.partition("(")
    if not rest.endswith(")"):
        return None
    args = _args(rest[:-1])
    opts = dict(a.split("=", 1) for a in args[1:] if "=" in a)
    if kind == "Bidirectional":
        inner = _read(args[0])
        if inner is None or inner.bidirectional:
            return None
        return inner._replace(bidirectional=True, pair_out=opts.get("merge") == "None")
    if kind not in KINDS or not args[0].isdigit():
        return None
    return Child(kind, int(args[0]), False, False, opts.get("return_sequences") != "False",
                 *(opts.get(k) == "True" for k in ("lengths", "initial_state", "return_state")))


def read(layer: Any) -> Child | None:
    """The child's kind, size and flags; None for a layer that is none of KINDS (nor a
    Bidirectional of one)."""
    return _read(name_of(layer))


def uniform(children: list[Child]) -> bool:
    """Whether torch's stacked form fits: one kind, one hidden size, one direction."""
    first = children[0]
    return all(c.kind == first.kind and c.hidden == first.hidden and not c.bidirectional
               for c in children)


def _is_shape(s: Any) -> bool:
    return isinstance(s, (tuple, list)) and all(d is None or isinstance(d, int) for d in s)


def _form(children: list[Child]) -> str:
    lstm = children[0].kind == "LSTM"
    each = "a (h0, c0) pair of (N, H)" if lstm else "an h0 (N, H)"
    out = f"a tuple with one state per layer ({len(children)}), each {each}"
    if uniform(children):
        size = f"({len(children)}, N, {children[0].hidden})"
        out += (f", or torch's stacked (h_0, c_0), each {size}" if lstm
                else f", or torch's stacked h_0 {size}")
    return out


def _stacked(s: Any, lstm: bool) -> bool:
    if lstm:
        return (isinstance(s, (tuple, list)) and len(s) == 2
                and not any(isinstance(p, tuple) for p in s))
    return not isinstance(s, tuple)


def _rows_of_arrays(p: Any) -> bool:
    return isinstance(p, list) and any(isinstance(q, np.ndarray) for q in p)


def _refuse_stacked(name: str, children: list[Child], got: str) -> None:
    if not uniform(children):
        kinds = ", ".join(f"{c.kind}({c.hidden})" for c in children)
        raise ValueError(f"{name}: torch's stacked state (L, N, H) needs layers of one kind "
                         f"and one hidden size, got {got} for layers {kinds}; pass "
                         f"{_form(children)}")


def split_shapes(name: str, st: Any, children: list[Child]) -> tuple[list[Any], bool]:
    """``(one state in_shape per layer, stacked)`` from the states' in_shape."""
    lstm, n = children[0].kind == "LSTM", len(children)
    stacked = (_is_shape(st) if not lstm else isinstance(st, (tuple, list)) and len(st) == 2
               and all(_is_shape(p) for p in st))
    if stacked:
        _refuse_stacked(name, children, f"the in_shape {st!r}")
        h = children[0].hidden
        for p in (st if lstm else (st,)):
            if len(p) != 3 or p[0] not in (None, n) or p[2] not in (None, h):
                raise ValueError(f"{name}: torch's stacked state in_shape must be ({n}, N, "
                                 f"{h}) (num_layers, N, hidden), got {tuple(p)!r}")
        parts = [tuple(p[1:]) for p in (st if lstm else (st,))]
        return [tuple(parts) if lstm else parts[0]] * n, True
    if not (isinstance(st, (tuple, list)) and len(st) == n):
        raise ValueError(f"{name}: expected the states' in_shape as {_form(children)}, got "
                         f"{st!r}")
    return list(st), False


def join_shapes(shapes: list[Any], stacked: bool, lstm: bool) -> Any:
    """The layers' state shapes in the form given: per layer a tuple, else ``(L, N, H)``."""
    if not stacked:
        return tuple(shapes)
    n = len(shapes)
    return tuple((n, *s) for s in shapes[0]) if lstm else (n, *shapes[0])


def split_states(name: str, s: Any, children: list[Child],
                 weak: np.dtype[Any]) -> tuple[list[Any], bool]:
    """``(one state per layer, stacked)`` from the input's states; a stacked array is
    checked ``(L, ·, H)`` here, each layer's ``(N, H)`` by the layer; Python floats take
    the dtype ``weak``, the first layer's params'."""
    lstm, n = children[0].kind == "LSTM", len(children)
    if _stacked(s, lstm):
        if lstm and n == 2 and all(_rows_of_arrays(p) for p in s):
            raise ValueError(f"{name}: the states, a pair of lists of arrays, read as each "
                             f"layer's [h0, c0] or as torch's stacked h_0 and c_0 alike; "
                             f"write each layer's state as a tuple ((h0, c0), (h0, c0)), or "
                             f"the stacked form as arrays (np.stack(h_0), np.stack(c_0))")
        parts = [as_array(name, p, weak) for p in (s if lstm else (s,))]
        _refuse_stacked(name, children, "arrays of shapes "
                        + ", ".join(str(p.shape) for p in parts))
        h = children[0].hidden
        for which, p in zip(("h_0", "c_0") if lstm else ("h_0",), parts):
            if p.ndim != 3 or p.shape[0] != n or p.shape[2] != h:
                raise ValueError(f"{name}: torch's stacked {which} must have shape ({n}, N, "
                                 f"{h}) (num_layers, N, hidden), got shape {p.shape}; the "
                                 f"states are {_form(children)}")
        return [(parts[0][k], parts[1][k]) if lstm else parts[0][k] for k in range(n)], True
    if not isinstance(s, (tuple, list)):
        raise TypeError(f"{name}: expected the initial states as {_form(children)}, got "
                        f"{type(s).__name__}")
    if len(s) != n:
        raise ValueError(f"{name}: expected the initial states as {_form(children)}, got a "
                         f"{type(s).__name__} of {len(s)}")
    return list(s), False


def join(parts: list[Any], stacked: bool, lstm: bool) -> Any:
    """Per-layer states (or their cotangents) in the form given: stacked, ``np.stack``."""
    if not stacked:
        return tuple(parts)
    if lstm:
        return tuple(np.stack([p[i] for p in parts]) for i in range(2))
    return np.stack(parts)


def split_cotangent(name: str, d: Any, stacked: bool, children: list[Child]) -> list[Any]:
    """One cotangent per layer from the states' cotangent (None: 0 for every layer; an LSTM
    pair's None entry too, which each layer reads as 0)."""
    lstm, n = children[0].kind == "LSTM", len(children)
    if d is None:
        return [None] * n
    if not stacked:
        if not (isinstance(d, tuple) and len(d) == n):
            got = (f"a {type(d).__name__} of {len(d)}" if isinstance(d, (tuple, list))
                   else type(d).__name__)
            raise ValueError(f"{name}: the pullback expected the states' cotangent as a tuple "
                             f"with one entry per layer ({n}), as the states came, got {got}")
        return list(d)
    h = children[0].hidden
    if lstm and not (isinstance(d, (tuple, list)) and len(d) == 2):
        raise TypeError(f"{name}: the pullback expected the states' cotangent (dh_n, dc_n), "
                        f"each ({n}, N, {h}) as torch's h_n and c_n, got {type(d).__name__}")
    parts = [None if p is None else as_array(name, p, cotangent=True)
             for p in (d if lstm else (d,))]
    for which, p in zip(("dh_n", "dc_n"), parts):
        if p is not None and (p.ndim != 3 or p.shape[0] != n or p.shape[2] != h):
            raise ValueError(f"{name}: the pullback expected {which} of shape ({n}, N, {h}) "
                             f"(h_n's, stacked), got shape {p.shape}")
    if lstm:
        return [tuple(None if p is None else p[k] for p in parts) for k in range(n)]
    return list(parts[0]) if parts[0] is not None else [None] * n
