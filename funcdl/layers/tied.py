"""Weight tying at any places of a model: one parameter subtree used at several paths of its
params (a layer reused further on, weights tied across an encoder and a decoder of one
shape), its gradients summed, as a PyTorch module's parameters called at several places of
a forward (not its buffers: a BatchNorm's running statistics stay one per place, where
``Shared`` and ``Repeat`` move one set through every use, as PyTorch's).
``Shared`` (branches) and ``Repeat`` (in series) cover the two regular cases; ``Tied`` any
other. Its vjp comes from the model's: ``dp = Σ_k dp_k`` over the places ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from funcdl import random, tree
from funcdl.layers import _step as stepping
from funcdl.layers._children import (
    ERRORS,
    build,
    check_children,
    child_apply,
    child_init,
    child_vjp,
    is_stateful,
    mark_tied,
    name_of,
    summary_at,
    summed,
)
from funcdl.layers._wrap import like_child
from funcdl.layers.base import Layer, LayerLike, located

__all__ = ["Tied"]

Path = tuple[Any, ...]


def _path(name: str, p: Any) -> Path:
    """A path into params: one step (an index or a dict key) or a tuple of steps."""
    steps = tuple(p) if isinstance(p, (tuple, list)) else (p,)
    for s in steps:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer, str)):
            raise TypeError(f"{name}: a path is an index or key, or a tuple of them (e.g. 2 "
                            f"or (1, 'w')), got {p!r}")
        if not isinstance(s, str) and s < 0:  # -1 and 2 may be one place: say it once
            raise ValueError(f"{name}: a path's indices count from 0, got {p!r}")
    return tuple(int(s) if isinstance(s, np.integer) else s for s in steps)


def _shown(path: Path) -> str:
    return "".join(f"[{s!r}]" for s in path) or "the root"


def _get(name: str, t: Any, path: Path, what: str) -> Any:
    """The subtree at ``path`` (None where a tied copy was taken out), or a ValueError."""
    for i, s in enumerate(path):
        if not isinstance(t, (tuple, list, dict)):  # an array's rows are not a subtree
            raise ValueError(f"{name}: the tie path {_shown(path)} goes past a leaf at "
                             f"{_shown(path[:i])}; a path ends at a leaf or above it")
        try:
            t = t[s]
        except (IndexError, KeyError, TypeError):
            raise ValueError(f"{name}: the {what} have nothing at {_shown(path[:i + 1])} "
                             f"(tie path {_shown(path)})") from None
    return t


def _put(t: Any, path: Path, value: Any) -> Any:
    """``t`` with ``value`` at ``path``: new containers along the path, the rest shared."""
    if not path:
        return value
    s, child = path[0], _put(t[path[0]], path[1:], value)
    if isinstance(t, dict):
        return {**t, s: child}
    items = list(t)
    items[s] = child
    return items if isinstance(t, list) else type(t)(*items) if hasattr(t, "_fields") \
        else tuple(items)


def Tied(model: LayerLike, *ties: Sequence[Any]) -> Layer:
    """``model`` with the params at the paths of each tie shared: the first path's subtree
    is kept and used at every path of the tie; the others hold None in the params and the
    gradients, so optimizers, ``io.save`` and ``tree.ravel`` see one copy. vjp: the kept
    subtree's gradient is the sum of the gradients at its places.

    A tie lists two or more paths; a path is an index or a dict key into the params (``2``:
    a Sequential's third layer), or a tuple of them (``(2, 'w')``: its weight alone). Every
    place must hold params of one structure, shapes and dtypes (checked at init). A stateful
    layer's running statistics are not tied: each place keeps its own, in the state. Keys:
    the model gets the key itself, unsplit.

    Example (one Dense before and after a nonlinearity; the biases tied too):
    ``Tied(Sequential(Dense(8), Tanh(), Dense(8)), [0, 2])``.
    """
    (model,) = check_children("Tied", [model])
    child = name_of(model)
    name = f"Tied({child})"
    groups = []
    for tie in ties:
        if isinstance(tie, (str, int)) or not isinstance(tie, Sequence) or len(tie) < 2:
            raise TypeError(f"{name}: each tie is a list of two or more paths (e.g. [0, 2]), "
                            f"got {tie!r}")
        groups.append([_path(name, p) for p in tie])
    if not groups:
        raise TypeError(f"{name}: give at least one tie, a list of paths (e.g. [0, 2])")
    every = [p for g in groups for p in g]
    for i, p in enumerate(every):
        for q in every[i + 1:]:
            if p[:len(q)] == q or q[:len(p)] == p:
                raise ValueError(f"{name}: the tie paths {_shown(p)} and {_shown(q)} "
                                 f"overlap; each place may be tied once")
    copies = [p for g in groups for p in g[1:]]

    def fill(params: Any) -> Any:
        for p in copies:
            if _get(name, params, p, "params") is not None:
                raise ValueError(f"{name}: the params at {_shown(p)} must be None, tied to "
                                 f"{_shown(next(g[0] for g in groups if p in g))}: take the "
                                 f"params from this layer's init")
        for g in groups:
            kept = _get(name, params, g[0], "params")
            for p in g[1:]:
                params = _put(params, p, kept)
        return params

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any, Any]:
        at, gone = summary_at(), []
        try:
            out_shape, params, state = child_init(model, key, in_shape)
        except ERRORS as e:
            raise located("Tied", child, e) from e
        for g in groups:
            kept = _get(name, params, g[0], "params")
            for p in g[1:]:
                other = _get(name, params, p, "params")
                try:
                    tree.check_same(kept, other, (_shown(g[0]), _shown(p)), shapes=True)
                except ValueError as e:
                    raise ValueError(f"{name}: tied params must be alike: {e}"
                                     + _transposed_hint(kept, other)) from None
                kinds = [(np.dtype(a.dtype), np.dtype(b.dtype)) for a, b in
                         zip(tree.leaves(kept), tree.leaves(other))]
                if any(a != b for a, b in kinds):
                    raise ValueError(f"{name}: the params at {_shown(g[0])} and {_shown(p)} "
                                     f"differ in dtype; tied params must be alike")
                params = _put(params, p, None)
                gone += tree.leaves(other)
        mark_tied(at, gone)  # under a summary: rows count without the dropped copies
        return out_shape, params, state

    def apply(params: Any, x: Any, *, state: Any, key: Any = None,
              train: bool = False) -> tuple[Any, Any]:
        full = fill(params)
        try:
            return child_apply(model, full, x, state, key, train)
        except ERRORS as e:
            raise located("Tied", child, e) from e

    def vjp(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        full = fill(params)
        try:
            y, pull, new_state = child_vjp(model, full, x, state, key, train)
        except ERRORS as e:
            raise located("Tied", child, e) from e

        def pullback(dy: Any, **kw: Any) -> tuple[Any, Any]:
            try:
                grads, dx = pull(dy, **kw)
            except ERRORS as e:
                raise located("Tied", child, e) from e
            for g in groups:
                places = [_get(name, grads, p, "gradients") for p in g]
                grads = _put(grads, g[0], summed(places))
                for p in g[1:]:
                    grads = _put(grads, p, None)
            return grads, dx

        return y, pullback, new_state

    return like_child(build(name, is_stateful(model), init, apply, vjp,
                            step=stepping.wrapped(model, fill, "Tied")), model)


def _transposed_hint(a: Any, b: Any) -> str:
    """A fix where two tied matrices are each other's transpose: an Embedding's (vocab,
    dim) table and a Dense's (dim, vocab) w, the usual tied language-model head."""
    if (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.ndim == b.ndim == 2
            and a.shape == b.shape[::-1]):
        return ("; they are each other's transpose: to tie an Embedding's table to the "
                "output head, make the head Unembed(vocab), whose 'table' is (vocab, dim) "
                "as the Embedding's, and tie the two 'table' paths")
    return ""
