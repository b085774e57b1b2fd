"""The traversals behind ``funcdl.tree.map`` and ``map_multi``: the hot path of every
optimizer step and Sequential, so each node kind is told by exact type checks, array
children are handled in their parent's loop, and no path strings are built. A structure
mismatch raises ``_Mismatch``; the public functions then walk again, slowly, to name it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from funcdl._treenodes import Node, children_of, rebuild, same_node, sorted_keys

Tree = Any

class _Mismatch(Exception):
    pass


_ND = np.ndarray


def _map1(f: Callable[[Any], Any], t: Tree) -> Tree:
    # Array children are handled in the loop, not by a call each: a layer's params are a
    # dict of arrays, a model's a tuple of those.
    tp = type(t)
    if tp is tuple or tp is list:
        out = [f(c) if type(c) is _ND else _map1(f, c) for c in t]
        return tuple(out) if tp is tuple else out
    if tp is dict:
        return {k: f(t[k]) if type(t[k]) is _ND else _map1(f, t[k]) for k in sorted_keys(t)}
    if t is None:
        return None
    if tp is _ND:
        return f(t)
    node = children_of(t)
    if node is None:
        return f(t)
    kind, meta, kids, _ = node
    return rebuild(kind, meta, [_map1(f, c) for c in kids])


_CONTAINERS = (tuple, list, dict)


def _map2(f: Callable[..., Any], a: Tree, b: Tree, shapes: bool) -> Tree:
    # Two trees (params and grads, grads and a moment): the commonest case, kept lean.
    ta = type(a)
    if ta is dict:
        return _dict2(f, a, b, shapes)
    if ta is tuple or ta is list:
        if type(b) is not ta or len(a) != len(b):
            raise _Mismatch
        if not a:  # a parameterless layer's ()
            return () if ta is tuple else []
        # A model's params: per-layer dicts of arrays, and () for a parameterless layer;
        # each child's kind is told here, saving a call per child.
        res = [_dict2(f, x, y, shapes) if type(x) is dict
               else f(x, y) if type(x) is _ND and type(y) is _ND
               and not (shapes and x.shape != y.shape)
               else () if type(x) is tuple and type(y) is tuple and not x and not y
               else _map2(f, x, y, shapes) for x, y in zip(a, b)]
        return tuple(res) if ta is tuple else res
    if ta is _ND:
        if type(b) is _ND:
            if shapes and a.shape != b.shape:
                raise _Mismatch
            return f(a, b)
        if b is None or isinstance(b, _CONTAINERS):
            raise _Mismatch
    return _mapn(_same_shapes(f) if shapes else f, a, (b,))


def _dict2(f: Callable[..., Any], a: dict[Any, Any], b: Tree, shapes: bool) -> Tree:
    if not isinstance(b, dict) or len(a) != len(b):  # OrderedDict too
        raise _Mismatch
    try:  # the order a one-tree map and flatten visit, as in JAX
        if len(a) == 2:  # a layer's {'w', 'b'}: one comparison, not a sort
            k0, k1 = a
            keys: Any = (k1, k0) if k1 < k0 else (k0, k1)  # sorted's one comparison
        else:
            keys = sorted(a)
    except TypeError:
        keys = sorted_keys(a)  # raises, naming the keys that cannot be ordered
    out = {}
    for k in keys:
        x = a[k]
        if k not in b:  # not b[k] alone: a defaultdict would add the key
            raise _Mismatch
        y = b[k]
        if type(x) is _ND and type(y) is _ND and not (shapes and x.shape != y.shape):
            out[k] = f(x, y)
        else:
            out[k] = _map2(f, x, y, shapes)
    return out


def _same_shapes(f: Callable[..., Any]) -> Callable[..., Any]:
    def leaf(*xs: Any) -> Any:
        shape = np.shape(xs[0])
        if any(np.shape(x) != shape for x in xs[1:]):
            raise _Mismatch
        return f(*xs)
    return leaf


def _multi(f: Callable[..., Any], n: int, t: Tree, rest: Sequence[Tree],
           shapes: bool) -> tuple[Tree, ...]:
    # n trees at once: each node returns its n versions, and zip(*...) regroups a node's
    # children by output, so nothing is walked twice. Array children are handled in the
    # node's loop, without a call each.
    tp = type(t)
    if tp is _ND:
        for r in rest:
            if type(r) is _ND:
                if shapes and r.shape != t.shape:
                    raise _Mismatch
            elif r is None or isinstance(r, _CONTAINERS) or (shapes and np.shape(r) != t.shape):
                raise _Mismatch
        return _outputs(f(t, *rest), n)
    if tp is tuple or tp is list or tp is dict:
        if tp is dict:
            for r in rest:
                if not isinstance(r, dict) or r.keys() != t.keys():
                    raise _Mismatch
            keys = sorted_keys(t)
            kids: Sequence[Any] = [t[k] for k in keys]
            others: Sequence[Sequence[Any]] = [[r[k] for k in keys] for r in rest]
        else:
            for r in rest:
                if type(r) is not tp or len(r) != len(t):
                    raise _Mismatch
            kids, others = t, rest
        if not kids:
            return ((),) * n if tp is tuple else tuple(tp() for _ in range(n))
        outs = []
        for c, cs in zip(kids, zip(*others) if others else repeat((), len(kids))):
            if type(c) is _ND:
                for x in cs:
                    if type(x) is not _ND or (shapes and x.shape != c.shape):
                        break
                else:
                    v = f(c, *cs)
                    outs.append(v if type(v) is tuple and len(v) == n else _outputs(v, n))
                    continue
            outs.append(_multi(f, n, c, cs, shapes))
        cols = zip(*outs)
        if tp is dict:
            return tuple(dict(zip(keys, c)) for c in cols)
        return tuple(cols) if tp is tuple else tuple(list(c) for c in cols)
    node = children_of(t)
    if node is None:  # a scalar leaf
        for r in rest:
            if r is None or children_of(r) is not None or (shapes and np.shape(r) != np.shape(t)):
                raise _Mismatch
        return _outputs(f(t, *rest), n)
    kind, meta, kids, _ = node  # None, a NamedTuple, a dict subclass
    others = _same_node(node, rest)
    if not kids:
        return tuple(rebuild(kind, meta, []) for _ in range(n))
    cols = zip(*[_multi(f, n, c, [o[j] for o in others], shapes) for j, c in enumerate(kids)])
    return tuple(rebuild(kind, meta, list(c)) for c in cols)


def _outputs(values: Any, n: int) -> tuple[Any, ...]:
    if not isinstance(values, (tuple, list)) or len(values) != n:
        got = f"{len(values)} values" if isinstance(values, (tuple, list)) else \
            type(values).__name__
        raise ValueError(f"tree.map_multi: f must return a tuple of {n} values per leaf, got "
                         f"{got}")
    return tuple(values)


def _mapn(f: Callable[..., Any], t: Tree, rest: tuple[Tree, ...] | list[Tree]) -> Tree:
    # The hot path of every optimizer step: exact-type checks, no path strings.
    tp = type(t)
    if tp is tuple or tp is list:
        n = len(t)
        for r in rest:
            if type(r) is not tp or len(r) != n:
                raise _Mismatch
        out = [_mapn(f, t[i], [r[i] for r in rest]) for i in range(n)]
        return tuple(out) if tp is tuple else out
    if tp is dict:
        for r in rest:
            if not isinstance(r, dict) or r.keys() != t.keys():  # OrderedDict too
                raise _Mismatch
        return {k: _mapn(f, t[k], [r[k] for r in rest]) for k in sorted_keys(t)}
    if tp is np.ndarray:
        for r in rest:
            if type(r) is not np.ndarray and (isinstance(r, _CONTAINERS) or r is None):
                raise _Mismatch
        return f(t, *rest)
    node = children_of(t)
    if node is None:
        for r in rest:
            if children_of(r) is not None:
                raise _Mismatch
        return f(t, *rest)
    kind, meta, kids, _ = node
    others = _same_node(node, rest)
    return rebuild(kind, meta, [_mapn(f, c, [o[j] for o in others]) for j, c in enumerate(kids)])


def _same_node(node: Node, rest: Sequence[Tree]) -> list[list[Any]]:
    """The children of each tree in ``rest``, which must be nodes like ``node``."""
    others = []
    for r in rest:
        rnode = children_of(r)
        if rnode is None or not same_node(node, rnode):
            raise _Mismatch
        others.append(rnode[2])
    return others


def names(i: int) -> tuple[str, str]:
    """How a mismatch error names the first tree and ``rest[i]``."""
    return "the first tree", f"the {_ORDINALS[i]} tree" if i < 8 else f"tree number {i + 2}"


def check_callable(where: str, f: Any) -> None:
    if not callable(f):
        raise TypeError(f"{where}: f must be a function of the leaves, got "
                        f"{type(f).__name__} (the function comes first: {where}(f, tree))"
                        ) from None


_ORDINALS = ("second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")


class Args:
    """One leaf's arguments to ``map_with_path``'s ``f``, a leaf whatever they hold."""

    __slots__ = ("xs",)

    def __init__(self, *xs: Any) -> None:
        self.xs = xs

    @staticmethod
    def packed(x: Any) -> bool:
        return type(x) is Args
