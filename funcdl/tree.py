"""Pytrees: nested dict / list / tuple / NamedTuple / None containers of array leaves.

Every module of funcdl walks parameters, gradients and optimizer states through these
functions; nothing else flattens a tree by hand.

* dict keys are visited in sorted order (as JAX does), so ``{'w': .., 'b': ..}`` flattens
  as ``[b, w]``;
* an OrderedDict or a defaultdict comes back as one (its default factory kept) from
  ``map`` and ``unflatten``, as in JAX; its keys are visited sorted too, where JAX visits an
  OrderedDict's in insertion order, so that a layer's grads (plain dicts) match such params
  whatever their order; any other dict subclass comes back as a plain dict;
* ``None`` is an empty container (no leaves), so are ``()``, ``[]`` and ``{}``;
* anything else (arrays, NumPy and Python scalars, keys) is a leaf.

A structure mismatch between trees that must agree raises ``ValueError`` naming the first
differing path, written as it would be indexed: ``[1]['w']``, ``.mu[0]``.

``map``, ``map_with_path``, ``reduce``, ``leaves``, ``leaves_with_path``, ``flatten`` and
``structure`` take JAX's ``is_leaf=``: a predicate called on every node top-down, the root
and None included, before it is taken apart; where it is true the node is kept whole as a
leaf (``is_leaf=lambda x: x is None`` makes None a leaf). With several trees, ``map`` takes
the first tree's structure so cut; the others must share it down to the cuts, where ``f``
gets their subtrees whole.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from funcdl._args import foreign_dtype, int_arg, is_masked, masked_error
from funcdl._treeleaf import build, check_pred, cut_flatten, cut_paths, map_is_leaf
from funcdl._treemaps import (
    Args,
    _map1,
    _map2,
    _mapn,
    _Mismatch,
    _multi,
    _same_shapes,
    check_callable,
    names,
)
from funcdl._treenodes import (
    LEAF,
    NONE,
    TreeDef,
    children_of,
    collect,
    paths,
    same_walk,
    sorted_keys,
)
from funcdl._treeravel import check_ints, exact_ints, from_complex

__all__ = [
    "TreeDef",
    "astype",
    "check_same",
    "flatten",
    "leaves",
    "leaves_with_path",
    "map",
    "map_multi",
    "map_with_path",
    "ravel",
    "reduce",
    "structure",
    "unflatten",
    "zeros_like",
]

Tree = Any


# ---------------------------------------------------------------------------- traversal

def map(f: Callable[..., Any], tree: Tree, *rest: Tree, shapes: bool = False,
        is_leaf: Callable[[Any], bool] | None = None) -> Tree:
    """Apply ``f`` leaf-wise: ``f(leaf, *leaves_of_rest)``; all trees must share a structure
    (and, with ``shapes=True``, array leaves their shapes: an optimizer's grads and params).
    ``is_leaf``: nodes of ``tree`` where it is true are leaves; ``rest``'s subtrees there go whole.

    Example: ``tree.map(lambda p, g: p - 0.1 * g, params, grads)``.
    """
    if is_leaf is not None:  # checked once per call: the default path gains nothing per node
        return _map_is_leaf(f, tree, rest, shapes, is_leaf)
    try:
        if not rest:
            return _map1(f, tree)
        if len(rest) == 1:
            return _map2(f, tree, rest[0], shapes)
        return _mapn(_same_shapes(f) if shapes else f, tree, rest)
    except _Mismatch:
        # Only on failure: walk again, slowly, to name the first differing path.
        for i, r in enumerate(rest):
            check_same(tree, r, names(i), shapes=shapes)
        raise ValueError("tree structure mismatch") from None
    except TypeError:
        check_callable("tree.map", f)  # only on failure: the check costs nothing else
        raise


def _map_is_leaf(f: Callable[..., Any], tree: Tree, rest: tuple[Tree, ...], shapes: bool,
                 is_leaf: Callable[[Any], bool]) -> Tree:
    check_pred("tree.map", is_leaf)
    try:
        return map_is_leaf(f, tree, rest, is_leaf, [names(i) for i in range(len(rest))],
                           shapes)
    except TypeError:
        check_callable("tree.map", f)
        raise


def map_multi(f: Callable[..., tuple[Any, ...]], n_out: int, tree: Tree,
              *rest: Tree, shapes: bool = False) -> tuple[Tree, ...]:
    """As ``map``, for an ``f`` returning ``n_out`` values per leaf: returns ``n_out`` trees
    of ``tree``'s structure, in one traversal (an optimizer's new moments and update)."""
    if type(n_out) is not int or n_out < 1:
        n_out = int_arg(n_out, "tree.map_multi", "n_out", 1)
    try:
        return _multi(f, n_out, tree, rest, shapes)
    except _Mismatch:
        map(lambda *xs: None, tree, *rest, shapes=shapes)  # raises, naming the path
        raise
    except TypeError:
        check_callable("tree.map_multi", f)
        raise


def map_with_path(f: Callable[..., Any], tree: Tree, *rest: Tree,
                  is_leaf: Callable[[Any], bool] | None = None) -> Tree:
    """As ``map``, with each leaf's path first: ``f(path, leaf, *leaves_of_rest)``, the path
    as ``leaves_with_path`` writes it (``"[1]['w']"``, ``''`` for a root leaf): JAX's
    ``tree.map_with_path``, its key paths as strings.

    Example, a weight-decay mask by name for ``optim.masked``:
    ``tree.map_with_path(lambda path, p: not path.endswith("['b']"), params)``.
    """
    check_callable("tree.map_with_path", f)
    if is_leaf is not None:
        check_pred("tree.map_with_path", is_leaf)
    # each leaf's arguments packed first (map pairs the trees' leaves, is_leaf called once
    # a node), then paths and packs from one walk: f never relies on map's call order
    packed = map(Args, tree, *rest, is_leaf=is_leaf)
    pairs = leaves_with_path(packed, Args.packed)
    return unflatten(structure(packed, Args.packed), [f(p, *a.xs) for p, a in pairs])


_NO_INITIALIZER: Any = object()


def reduce(f: Callable[[Any, Any], Any], tree: Tree, initializer: Any = _NO_INITIALIZER,
           is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """``functools.reduce(f, leaves(tree))``, from ``initializer`` when given: JAX's
    ``tree.reduce``. Example: ``tree.reduce(max, tree.map(lambda g: float(np.abs(g).max()),
    grads), 0.0)``, the largest gradient entry."""
    check_callable("tree.reduce", f)
    if is_leaf is not None:
        check_pred("tree.reduce", is_leaf)
    xs = leaves(tree, is_leaf)
    if initializer is not _NO_INITIALIZER:
        return functools.reduce(f, xs, initializer)
    if not xs:
        raise TypeError("tree.reduce: the tree has no leaves and no initializer was given; "
                        "pass one, e.g. tree.reduce(f, tree, 0.0)")
    return functools.reduce(f, xs)


def leaves(tree: Tree, is_leaf: Callable[[Any], bool] | None = None) -> list[Any]:
    """The leaves in flattening order (dict keys sorted); nodes where ``is_leaf`` is true too."""
    if is_leaf is not None:
        return cut_flatten("tree.leaves", tree, is_leaf)[0]
    out: list[Any] = []
    collect(tree, out)
    return out


def odd_leaf(tree: Tree, kinds: str) -> tuple[str, np.dtype[Any]] | None:
    """The path (``''`` for a bare leaf) and dtype of the first leaf whose dtype kind is not
    in ``kinds`` (``"fc"``: floating point; ``"biufc"``: numbers), or None: the one walk
    behind every "the leaf at ... has dtype ..." error."""
    for path, x in leaves_with_path(tree):
        dtype = x.dtype if isinstance(x, (np.ndarray, np.generic)) else np.asarray(x).dtype
        if dtype.kind not in kinds:
            return path, dtype
    return None


def masked_leaf(tree: Tree) -> str | None:
    """The path (``''`` for a bare leaf) of the first NumPy masked array among the leaves,
    whose mask ``np.asarray`` would drop without a word, or None."""
    return next((path for path, x in leaves_with_path(tree) if is_masked(x)), None)


def leaves_with_path(tree: Tree, is_leaf: Callable[[Any], bool] | None = None
                     ) -> list[tuple[str, Any]]:
    """``(path, leaf)`` pairs in flattening order; the root leaf has path ``''``; ``is_leaf``
    as in ``leaves``."""
    if is_leaf is not None:
        return cut_paths("tree.leaves_with_path", tree, is_leaf)
    out: list[tuple[str, Any]] = []
    paths(tree, "", out)
    return out


def structure(tree: Tree, is_leaf: Callable[[Any], bool] | None = None) -> TreeDef:
    """The TreeDef of ``tree``, with a leaf wherever ``is_leaf`` is true."""
    if is_leaf is not None:
        return cut_flatten("tree.structure", tree, is_leaf)[1]
    # Arrays, tuples, lists and dicts without children_of, which also spells path steps.
    tp = type(tree)
    if tp is np.ndarray:
        return LEAF
    if tp is tuple or tp is list:
        return TreeDef(tp.__name__, None, tuple([structure(c) for c in tree]))
    if tp is dict:
        keys = tuple(sorted_keys(tree))
        return TreeDef("dict", keys, tuple([structure(tree[k]) for k in keys]))
    node = children_of(tree)
    if node is None:
        return LEAF
    kind, meta, kids, _ = node
    if kind == "none":
        return NONE
    return TreeDef(kind, meta, tuple(structure(c) for c in kids))


def flatten(tree: Tree, is_leaf: Callable[[Any], bool] | None = None
            ) -> tuple[list[Any], TreeDef]:
    """``(leaves, treedef)``, cut where ``is_leaf`` is true; ``unflatten`` rebuilds the tree."""
    if is_leaf is not None:
        return cut_flatten("tree.flatten", tree, is_leaf)
    return leaves(tree), structure(tree)


def unflatten(treedef: TreeDef, leaves: Iterable[Any]) -> Tree:
    """Rebuild a tree of structure ``treedef`` from its leaves, in flattening order."""
    if not isinstance(treedef, TreeDef):
        raise TypeError(f"unflatten: expected a TreeDef (from tree.flatten or tree.structure), "
                        f"got {type(treedef).__name__}")
    if type(leaves) is not list and (
            not isinstance(leaves, Iterable) or isinstance(leaves, (str, bytes, Mapping))
            or (isinstance(leaves, np.ndarray) and leaves.ndim == 0)):
        # (a str, a dict or a 0-d array would iterate over characters, keys, or not at all)
        got = "a 0-d array" if isinstance(leaves, np.ndarray) else type(leaves).__name__
        raise TypeError(f"unflatten: leaves must be a list of the tree's leaves in flattening "
                        f"order, got {got}")
    items = list(leaves)
    if len(items) != treedef.num_leaves:
        raise ValueError(
            f"unflatten: the treedef {treedef!r} holds {treedef.num_leaves} leaves, "
            f"got {len(items)}")
    return build(treedef, iter(items))


def check_same(a: Tree, b: Tree, names: tuple[str, str] = ("the first tree", "the second"),
               *, shapes: bool = False, dtypes: bool = False) -> None:
    """Raise ``ValueError`` at the first path where ``a`` and ``b`` differ in structure
    (and, when asked, in leaf shape or dtype)."""

    def leaf(x: Any, y: Any, path: str) -> None:
        xs, ys = np.shape(x), np.shape(y)
        if shapes and xs != ys:
            raise ValueError(
                f"shape mismatch at {path or 'the root'}: {names[0]} has {xs}, "
                f"{names[1]} has {ys}")
        if dtypes and not (type(x) is int and type(y) is int):  # 2**63 is no other kind
            xd, yd = np.asarray(x).dtype, np.asarray(y).dtype
            if xd != yd:
                raise ValueError(
                    f"dtype mismatch at {path or 'the root'}: {names[0]} has {xd}, "
                    f"{names[1]} has {yd}")

    same_walk(a, b, "", leaf, names)


# ---------------------------------------------------------------------------- helpers

def zeros_like(tree: Tree) -> Tree:
    """A tree of zero arrays with the shapes and dtypes of ``tree``'s leaves, which must be
    numbers (bool, int, float, complex): a TypeError names any other leaf's path."""
    try:
        return _map1(_zero, tree)
    except TypeError:
        odd = odd_leaf(tree, "biufc")
        if odd is None:
            raise
        raise TypeError(f"tree.zeros_like: the leaf at {odd[0] or 'the root'} has dtype "
                        f"{odd[1]}; zeros are numbers (bool, int, float, complex)") from None


def _zero(x: Any) -> Any:
    z = np.zeros_like(x)
    if z.dtype.kind not in "biufc":  # a str leaf would give '', an object one 0
        raise TypeError("a leaf that is not a number")  # zeros_like names it
    return z


def astype(tree: Tree, dtype: DTypeLike) -> Tree:
    """Cast every floating-point leaf to ``dtype`` (integer and boolean leaves are kept),
    as PyTorch's ``module.double()``: ``params64 = tree.astype(params, np.float64)``. The
    dtype must be floating point (or complex), as ``module.to`` requires: an integer one
    would truncate the params silently."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"tree.astype: {dtype!r} is not a NumPy dtype; pass one such as "
                        f"np.float64") from None
    if foreign_dtype(dt):
        raise TypeError(f"tree.astype: {dt} is not supported, here as in the rest of "
                        f"funcdl; pass np.float32 (or np.float64)")
    if dt.kind not in "fc":
        raise TypeError(f"tree.astype: casts the floating-point leaves to a floating-point "
                        f"dtype, such as np.float64; got {dt}, which would truncate them")

    def cast(x: Any) -> Any:
        a = np.asarray(x)
        return a.astype(dt) if np.issubdtype(a.dtype, np.floating) else x

    return _map1(cast, tree)


def ravel(tree: Tree) -> tuple[NDArray[Any], Callable[[ArrayLike], Tree]]:
    """Concatenate all leaves into one 1-D vector; ``unravel(vector)`` inverts it, restoring
    each leaf's shape and dtype (casting the vector's entries, so a float64 vector from an
    optimiser such as SciPy's gives back float32 params; leaves may be views of it).

    The vector has NumPy's promotion of the leaves' dtypes, so float leaves come back exact:
    float32 with an int64 step count gives float64 (``jax.flatten_util.ravel_pytree`` keeps
    float32 there, and loses integers above 2**24); integers next to floats come back exact:
    one beyond ±2**53, which float64 cannot hold (a uint64 random key), is a ValueError
    naming its leaf (JAX's ravel_pytree changes it silently). Complex leaves make the
    vector complex; real leaves come back from its
    real part, which must then be all there is (a nonzero imaginary part is a ValueError).
    A Python float leaf counts as float64 (JAX's weak types would keep float32). Leaves
    must be numbers (bool, int, float, complex): a TypeError names any other leaf's path.
    So must the vector's entries; an integer leaf takes its entries
    truncated (as JAX casts them), and a ValueError names it if one is NaN, inf or beyond
    its range; a float leaf takes an entry beyond its range as ±inf (as JAX casts it), without
    NumPy's overflow warning. A masked array leaf is a ValueError (its mask would be lost)."""
    flat, treedef = flatten(tree)
    if any(is_masked(x) for x in flat):  # JAX refuses one too
        raise masked_error("tree.ravel", f"the leaf at {masked_leaf(tree) or 'the root'}")
    arrays = [np.asarray(x) for x in flat]
    if any(a.dtype.kind not in "biufc" for a in arrays):
        path, dtype = odd_leaf(tree, "biufc")  # type: ignore[misc]
        raise TypeError(f"tree.ravel: the leaf at {path or 'the root'} has dtype {dtype}; a "
                        f"ravelled tree holds numbers only (bool, int, float, complex)")
    shapes = [a.shape for a in arrays]
    dtypes = [a.dtype for a in arrays]
    sizes = [a.size for a in arrays]
    dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float32)
    vector = (np.concatenate([a.ravel() for a in arrays]).astype(dtype, copy=False)
              if arrays else np.zeros(0, dtype))
    offsets = np.cumsum([0, *sizes]).tolist()
    total = offsets[-1]
    ints = any(d.kind in "iu" for d in dtypes)
    # the narrowest float leaf's bytes per real number: a wider float vector may overflow it
    narrowest = min((d.itemsize // (2 if d.kind == "c" else 1) for d in dtypes
                     if d.kind in "fc"), default=16)  # 16: none, no vector is wider
    if ints and dtype.kind in "fc":  # int64 or uint64 next to floats: exact to 2**53 only
        exact_ints([p for p, _ in leaves_with_path(tree)], arrays, dtype)

    def unravel(v: ArrayLike) -> Tree:  # a list too, as JAX's unravel takes
        v = np.asarray(v)
        if v.shape != (total,):
            raise ValueError(f"unravel: expected a vector of shape ({total},), got {v.shape}")
        kind = v.dtype.kind
        if kind not in "biufc":  # '1.5' would be parsed, None would fail in int()
            raise TypeError(f"unravel: expected a vector of numbers (bool, int, float, "
                            f"complex), got dtype {v.dtype}")
        if ints and kind in "fciu":  # NaN, inf, 1e300 (or 300 for an int8) cast to garbage
            check_ints(v, offsets, dtypes,
                       lambda i: leaves_with_path(unflatten(treedef, range(len(dtypes))))[i][0])
        if kind == "c":  # real leaves take the real part: the cast would warn
            parts = [from_complex(v[offsets[i]:offsets[i + 1]], dtypes[i]).reshape(shapes[i])
                     for i in range(len(shapes))]
        elif kind == "f" and v.dtype.itemsize > narrowest:
            with np.errstate(over="ignore"):  # 1e300 into a float32 leaf: inf, as JAX's cast
                parts = cast(v)
        else:  # no float leaf narrower than v: no overflow, and no errstate to pay for
            parts = cast(v)
        return unflatten(treedef, parts)

    def cast(v: NDArray[Any]) -> list[NDArray[Any]]:
        return [v[offsets[i]:offsets[i + 1]].reshape(shapes[i]).astype(dtypes[i], copy=False)
                for i in range(len(shapes))]

    return vector, unravel
