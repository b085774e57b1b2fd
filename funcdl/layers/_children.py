"""The helpers every combinator uses: a uniform view of any child (its init, apply and vjp
in the stateful form, a stateless child's state ``()``), one key per child, summed
gradients of shared params, and ``build``, which drops the state from the signatures when
no child has any. ``child_init`` also keeps ``layers.summary``'s rows while one runs.
Split from ``combinators`` (Sequential)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np

from funcdl import random, tree
from funcdl._treenodes import describe
from funcdl.layers._guard import guarded
from funcdl.layers._stepper import Stepper
from funcdl.layers.base import Layer, Shape, layer_arg, need_state

# Each combinator is written once in the stateful form, with the three helpers below giving
# a uniform view of any child (a stateless child's state is ()); `build` then drops the
# state from the signatures when no child has any.

# Errors a combinator re-raises with the child's place prefixed (``Sequential[3] ...``), each
# as its own class: a user's layer reading a wrong key or index is placed like a bad shape.
ERRORS = (ValueError, TypeError, ArithmeticError, LookupError, AttributeError)


def is_stateful(layer: Any) -> bool:
    return bool(getattr(layer, "stateful", False))


def name_of(layer: Any) -> str:
    return str(getattr(layer, "name", type(layer).__name__))


def check_children(name: str, layers: Sequence[Any]) -> tuple[Any, ...]:
    """The children, each a layer, a user's own with its returns checked (``_guard``)."""
    for i, layer in enumerate(layers):
        layer_arg(name, layer, f"argument {i} is not a layer: expected one")
    return tuple(guarded(layer) for layer in layers)


# layers.summary's record of the inits called under it: one row per child, with its depth
# (None outside a summary: child_init's one extra lookup)
TRACE: ContextVar[list[list[Any]] | None] = ContextVar("funcdl_summary", default=None)
DEPTH: ContextVar[int] = ContextVar("funcdl_summary_depth", default=0)


def child_init(layer: Any, key: Any, in_shape: Any) -> tuple[Any, Any, Any]:
    rows = TRACE.get()
    if rows is None:
        return _init(layer, key, in_shape)
    depth, at = DEPTH.get(), len(rows)
    # (out shape, params, state) once known; then what the part shows otherwise (mark_*)
    row: list[Any] = [depth, name_of(layer), None, None, None, {}]
    rows.append(row)  # before the children's rows
    token = DEPTH.set(depth + 1)
    try:
        out = _init(layer, key, in_shape)
    except BaseException:
        del rows[at:]  # a failed init shows no rows (a layer may catch it and try again)
        raise
    finally:
        DEPTH.reset(token)
    row[2:5] = out
    return out


def summary_at() -> int | None:
    """Where the next child's summary rows start; None outside a summary."""
    rows = TRACE.get()
    return None if rows is None else len(rows)


def mark_repeats(n: int) -> None:
    """Called first in a Repeat's init: under a summary its row, the last so far, shows its
    kind with the count of applications, ``Repeat ×3``, as its one child row stands for n."""
    rows = TRACE.get()
    if rows:
        rows[-1][5]["kind"] = f"{rows[-1][1].split('(', 1)[0]} ×{n}"


def mark_shared(at: int | None) -> None:
    """The rows from ``at`` on are a child initialised again only to check that it can reuse
    the params of an earlier one (a later branch of Shared): kept as the child's one row,
    its params column ``(shared)`` (torchinfo's ``(recursive)``)."""
    rows = TRACE.get()
    if rows is not None and at is not None and at < len(rows):
        parent = len(rows) > at + 1  # still shown by its kind, as branch 0's row
        del rows[at + 1:]
        rows[at][5].update(params="(shared)", parent=parent)


def mark_tied(at: int | None, gone: Sequence[Any]) -> None:
    """The rows from ``at`` on hold params of which tying dropped the arrays ``gone`` (a
    Tied model's): each such row shows what it keeps and ``(+n tied)``, or ``(n tied)``
    when tying dropped all of it, so that its count adds up to its parent's."""
    rows, ids = TRACE.get(), {id(a) for a in gone if isinstance(a, np.ndarray)}
    if rows is None or at is None or not ids:
        return
    for row in rows[at:]:
        sizes = [(id(a) in ids, int(np.size(a))) for a in tree.leaves(row[3])]
        tied = sum(n for dropped, n in sizes if dropped)
        if any(dropped for dropped, _ in sizes):
            kept = sum(n for _, n in sizes) - tied
            row[5]["params"] = f"{kept:,} (+{tied:,} tied)" if kept else f"({tied:,} tied)"


def _init(layer: Any, key: Any, in_shape: Any) -> tuple[Any, Any, Any]:
    out, stateful = layer.init(key, in_shape), is_stateful(layer)
    if not (isinstance(out, tuple) and len(out) == 2 + stateful  # a user's own Layer
            and isinstance(out[0], (tuple, list))):  # (None, 3) is a shape, not the pair
        want = "(out_shape, params, state)" if stateful else "(out_shape, params)"
        raise TypeError(f"{name_of(layer)}: init must return {want}, out_shape a tuple, "
                        f"got {describe(out)}"
                        + (f" whose first entry is {describe(out[0])}"
                           if isinstance(out, tuple) and len(out) == 2 + stateful else
                           ": return a tuple, not a list" if isinstance(out, list) else ""))
    return (out[0], out[1], out[2]) if stateful else (out[0], out[1], ())


def no_state(layer: Any, s: Any) -> tuple[()]:
    """A stateless child's state entry, which must be ``()`` as init made it: another
    child's state passed here would otherwise be echoed into the new state unnoticed."""
    if type(s) is not tuple or s:
        raise ValueError(f"{name_of(layer)}: expected () as the state entry of this "
                         f"stateless layer, got {describe(s)}; pass the state init returned, one "
                         f"entry per layer in order")
    return ()


def child_apply(layer: Any, p: Any, x: Any, s: Any, key: Any, train: bool) -> tuple[Any, Any]:
    if is_stateful(layer):
        y, s = layer.apply(p, x, state=s, key=key, train=train)
        return y, s
    s = no_state(layer, s)
    return layer.apply(p, x, key=key, train=train), s


def child_vjp(layer: Any, p: Any, x: Any, s: Any, key: Any,
              train: bool) -> tuple[Any, Callable[..., Any], Any]:
    if is_stateful(layer):
        y, pullback, s = layer.vjp(p, x, state=s, key=key, train=train)
        return y, pullback, s
    s = no_state(layer, s)
    y, pullback = layer.vjp(p, x, key=key, train=train)
    return y, pullback, s


def keys_for(key: Any, n: int, name: str) -> Sequence[Any]:
    """One key per child, or Nones when no key was given (most models need none); a bad key
    is named as the combinator's, not as random.split's."""
    return (None,) * n if key is None else random.split_for(key, n, name)


def summed(grads: Sequence[Any]) -> Any:
    """The gradient of params used in several places (Shared, Repeat, Tied): the sum of
    each use's, leaf by leaf."""
    total = grads[0]
    for g in grads[1:]:
        total = tree.map(np.add, total, g)
    return total


def entries(name: str, value: Any, n: int, what: str) -> Sequence[Any]:
    """``value`` as a tuple/list with one entry per child, or a clear error."""
    if not isinstance(value, (tuple, list)) or len(value) != n:
        got = (f"a {type(value).__name__} of length {len(value)}"
               if isinstance(value, (tuple, list)) else type(value).__name__)
        raise ValueError(f"{name}: expected {what} as a tuple with one entry per layer "
                         f"({n}), got {got}")
    return value


def kept(old: Any, new: Any) -> Any:
    """``old`` itself where ``new`` holds only ``old``'s own entries (inference, or no child
    moved its state), so that a combinator returns the state object it was given, as a
    layer does; else ``new``."""
    return old if _same(old, new) else new


def _same(old: Any, new: Any) -> bool:
    return new is old or (type(new) is tuple and type(old) is tuple and len(new) == len(old)
                          and all(_same(a, b) for a, b in zip(old, new)))


def build(name: str, stateful: bool, init: Callable[..., Any], apply: Callable[..., Any],
          vjp: Callable[..., Any], empty_state: Any = (), step: Stepper | None = None) -> Layer:
    """A Layer from stateful-form functions; the plain signatures when ``stateful`` is
    False (then ``empty_state`` stands in for the state the functions expect); ``step``
    its incremental form (``_step``), if any."""
    if stateful:
        def apply_s(params: Any, x: Any, *, state: Any = None, key: Any = None,
                    train: bool = False) -> Any:
            y, new = apply(params, x, state=need_state(name, state), key=key, train=train)
            return y, kept(state, new)

        def vjp_s(params: Any, x: Any, *, state: Any = None, key: Any = None,
                  train: bool = False) -> Any:
            y, pullback, new = vjp(params, x, state=need_state(name, state), key=key,
                                   train=train)
            return y, pullback, kept(state, new)

        return Layer(init, apply_s, vjp_s, stateful=True, name=name, step=step)

    def init0(key: random.Key, in_shape: Shape) -> tuple[Any, Any]:
        out_shape, params, _ = init(key, in_shape)
        return out_shape, params

    def apply0(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        return apply(params, x, state=empty_state, key=key, train=train)[0]

    def vjp0(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        y, pullback, _ = vjp(params, x, state=empty_state, key=key, train=train)
        return y, pullback

    return Layer(init0, apply0, vjp0, name=name, step=step)
