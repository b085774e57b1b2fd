"""optax's ``masked``: a transform applied to some leaves only, the updates of the others
passing through unchanged; the usual use is weight decay on the weights but not on the
biases and norm scales. Notation as in ``_transforms``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._treenodes import children_of, mismatch_error, same_node
from funcdl.optim._base import GradientTransformation, check_state, transform
from funcdl.optim._keywords import check_extra, extra_keywords, show_keywords

__all__ = ["MaskedState", "masked"]

Tree = Any


class MaskedState(NamedTuple):
    inner_state: Any  # the inner transform's state, over the masked-in leaves only


def masked(inner: GradientTransformation, mask: Tree | Callable[[Tree], Tree]
           ) -> GradientTransformation:
    """``inner`` on the leaves where ``mask`` is True; ``u = g`` on the others, and
    ``inner`` (its state included) sees them as None, as optax's ``masked``.

    ``mask``: a tree of bools with the params' structure, or a prefix of it (a bool for a
    whole subtree, as optax's), or a function returning one from the params (at ``init``)
    or the grads (at ``update``), e.g. ``lambda p: tree.map(lambda x: x.ndim > 1, p)`` for
    the weight matrices and kernels only. State ``MaskedState(inner_state)``.
    """
    if not isinstance(inner, GradientTransformation):
        raise TypeError(f"masked: inner must be a GradientTransformation (e.g. "
                        f"optim.add_decayed_weights(1e-2)), got {type(inner).__name__}")
    return make_masked("masked", inner, mask)


def make_masked(name: str, inner: GradientTransformation,
                mask: Tree | Callable[[Tree], Tree]) -> GradientTransformation:
    """``masked(inner, mask)``, its errors naming ``name`` (``adamw``'s mask is adamw's). A
    mask that is not a function has its flags checked here, once; its fit to each tree is
    checked at every call (by spread, which walks the tree but builds no leaf list)."""
    if not callable(mask):
        check_mask_flags(name, mask)

    def init(params: Tree) -> MaskedState:
        k = iter(mask_flags(f"{name}.init", mask, params, "params"))
        return MaskedState(inner.init(tree.map(lambda x: x if next(k) else None, params)))

    takes = (extra_keywords(inner.update),)

    def update(state: Any, grads: Tree, params: Tree = None, **extra: Any
               ) -> tuple[Tree, MaskedState]:
        check_state(name, state, MaskedState)
        if extra:
            check_extra(name, extra, takes)
        keep = mask_flags(f"{name}.update", mask, grads, "grads")
        k = iter(keep)
        g = tree.map(lambda x: x if next(k) else None, grads)
        p = None if params is None else tree.unflatten(tree.structure(grads), [
            y if k else None for y, k in zip(params_along(name, grads, params), keep)])
        extra = masked_extra(name, extra, keep)
        u, inner_state = inner.update(state.inner_state, g, p, **extra)
        done, k = iter(tree.leaves(u)), iter(keep)
        return tree.map(lambda x: next(done) if next(k) else x, grads), MaskedState(inner_state)

    return transform(name, init, show_keywords(update, takes))


def mask_flags(where: str, mask: Tree | Callable[[Tree], Tree], t: Tree,
               what: str) -> list[bool]:
    """A mask's flags (a tree of bools, a prefix of one, or a function of ``t`` returning
    one), one per leaf of ``t``, in ``t``'s order; errors name ``where``."""
    m = mask(t) if callable(mask) else mask
    keep: list[bool] = []
    try:
        spread(t, m, what, "the mask", "", keep, _flag)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None
    return keep


def masked_extra(name: str, extra: dict[str, Any], keep: list[bool]) -> dict[str, Any]:
    """The update's keyword arguments as the inner transform sees them: a tree-valued
    ``grad=`` masked as the grads are; a function of the params (a line search's
    ``value_fn``/``value_and_grad_fn``, an opaque sam's ``grad_fn``) refused, since the
    inner transform would call it on params with the masked-out leaves removed."""
    for key in ("value_fn", "value_and_grad_fn", "grad_fn"):
        if extra.get(key) is not None:
            raise TypeError(f"{name}.update: masked(...) cannot wrap a transform that "
                            f"evaluates the loss ({key}=): it would see the params with the "
                            f"masked-out leaves removed; to freeze leaves, chain a masked "
                            f"set_to_zero() with the whole optimizer instead: "
                            f"chain(masked(set_to_zero(), frozen_mask), lbfgs())")
    if extra.get("grad") is not None:
        k = iter(keep)
        extra = {**extra, "grad": tree.map(lambda x: x if next(k) else None, extra["grad"])}
    return extra


def is_mask_flag(m: Any) -> bool:
    return isinstance(m, (bool, np.bool_)) or (
        isinstance(m, np.ndarray) and m.shape == () and m.dtype == bool)


def _not_a_flag(m: Any, path: str) -> TypeError:
    return TypeError(f"the mask must hold a bool per leaf (True: apply the transform), got "
                     f"{type(m).__name__} at mask{path}; or pass a function of the params "
                     f"that returns such a tree")


def check_mask_flags(where: str, m: Tree) -> None:
    for path, flag in tree.leaves_with_path(m):
        if not is_mask_flag(flag):
            raise TypeError(f"{where}: {_not_a_flag(flag, path)}")


class _Descend:
    """spread's answer for a mark that stands for a subtree, not a leaf: walk on below it.
    One object, tested by identity, which pickling keeps: a by-value copy (cloudpickle's of
    a closure returning it, as partition's ``mark``, for a Dask worker) is this module's
    instance again, not a new object every leaf would fail to match (a probe: partition's
    labels then all missed, and the raw grads came back as the updates)."""

    def __reduce__(self) -> str:
        return "DESCEND"  # pickled as this module's global of that name

    def __repr__(self) -> str:
        return "DESCEND"


DESCEND: Any = _Descend()


def spread(t: Tree, m: Tree, what: str, against: str, path: str, out: list[Any],
           mark: Callable[[Any, str], Any]) -> None:
    """Append ``mark(m, path)`` once per leaf of ``t`` to ``out``, in ``t``'s order: ``m``
    has ``t``'s structure, or a prefix of it, a mark standing for every leaf of the subtree
    it stands at (as optax's masks: ``{'dense': True, 'norm': False}`` over nested params).
    ``mark`` returns the value a mark gives, ``DESCEND`` for a node of ``m`` to walk into,
    or raises for a mark it refuses; ``against`` names ``m`` in a mismatch."""
    value = mark(m, path)
    if value is not DESCEND:
        out += [value] * len(tree.leaves(t))
        return
    node, marks = children_of(t), children_of(m)
    if not same_node(node, marks):
        raise mismatch_error(path, t, m, (what, against))
    assert node is not None and marks is not None  # same_node: both are nodes
    for child, sub, step in zip(node[2], marks[2], node[3]):
        spread(child, sub, what, against, path + step, out, mark)


def _flag(m: Any, path: str) -> Any:
    """A mask's mark: a bool, or a node to walk into."""
    if is_mask_flag(m):
        return bool(m)
    if children_of(m) is None:
        raise _not_a_flag(m, path)
    return DESCEND


def params_along(name: str, grads: Tree, params: Tree) -> list[Any]:
    """The params' leaves in the grads' order, their structures checked: a ValueError
    naming ``name.update`` and the first differing path."""
    out: list[Any] = []
    try:
        tree.map(lambda g, p: out.append(p), grads, params)
    except ValueError:
        try:
            tree.check_same(grads, params, ("grads", "params"))
        except ValueError as e:
            raise ValueError(f"{name}.update: {e}") from None
        raise
    return out
