"""Transforms from plain functions, and target-network updates, as optax's: ``stateless`` /
``stateless_with_tree_map`` (a transform from a function of the updates and params), and
``incremental_update`` (Polyak averaging) and ``periodic_update``. optax's ``scale_gradient``
is left out: it is a JAX stop-gradient trick, with no meaning without JAX's autodiff."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import tree
from funcdl.optim._base import (
    EmptyState,
    GradientTransformation,
    check_state,
    empty_init,
    leafwise,
    like,
    real_grad,
    transform,
)
from funcdl.optim._checks import check_float, real_grads, real_param, same_trees
from funcdl.optim._leaf_errors import param_dtype_error
from funcdl.optim._schedules import check_steps

__all__ = ["incremental_update", "periodic_update", "stateless", "stateless_with_tree_map"]

Tree = Any


def stateless(f: Callable[[Tree, Tree], Tree]) -> GradientTransformation:
    """optax's ``stateless``: ``u = f(g, params)`` on whole trees (``params`` may be None).
    The grads and params must be real floating point, and ``f`` must return a tree of the
    grads' structure and leaf shapes. State ``EmptyState()``. Example: ``stateless(lambda
    g, p: tree.map(np.sign, g))``."""
    name = "stateless"
    if not callable(f):
        raise TypeError(f"{name}: f must be a function (updates, params) -> updates, got "
                        f"{type(f).__name__}")

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        where = f"{name}.update"
        check_state(name, state, EmptyState)
        real_grads(where, grads)
        if params is not None:
            same_trees(where, grads, params, ("grads", "params"), shapes=True)
            odd = tree.odd_leaf(params, "f")
            if odd is not None:
                raise param_dtype_error(where, *odd)
        out = f(grads, params)
        same_trees(where, grads, out, ("grads", "f(grads, params)"), shapes=True)
        return out, state

    return transform(name, empty_init(), update)


def stateless_with_tree_map(f: Callable[[Any, Any], Any]) -> GradientTransformation:
    """optax's ``stateless_with_tree_map``: ``u_i = f(g_i, p_i)`` leaf by leaf (``p_i =
    None`` when the update gets no params; grads and params real floating point). State
    ``EmptyState()``. Example: ``stateless_with_tree_map(lambda g, p: g + 1e-4 * p)``."""
    name = "stateless_with_tree_map"
    if not callable(f):
        raise TypeError(f"{name}: f must be a function (update leaf, param leaf) -> update "
                        f"leaf, got {type(f).__name__}")

    def leaf(g: Any, p: Any = None) -> Any:
        real_grad(g)
        if p is not None:
            real_param(p)
        return f(g, p)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        check_state(name, state, EmptyState)
        where = f"{name}.update"
        if params is None:
            (out,) = leafwise(where, leaf, (grads,), ("grads",))
        else:
            (out,) = leafwise(where, leaf, (grads, params), ("grads", "params"))
        # as stateless: f's leaves must be updates, each its grad's shape (a (1,) for a
        # (4,) would be broadcast, or named by the next stage, far from f)
        same_trees(where, grads, out, ("grads", "f(g, p) per leaf"), shapes=True)
        real_grads(where, out)
        return out, state

    return transform(name, empty_init(), update)


def incremental_update(new_tensors: Tree, old_tensors: Tree, step_size: float) -> Tree:
    """optax's ``incremental_update`` (Polyak averaging, a target network's soft update):
    ``step_size · new + (1 - step_size) · old`` leaf by leaf, ``step_size`` in [0, 1]. Each
    result keeps its ``old_tensors`` leaf's dtype (float32 stays float32). Nothing is
    mutated."""
    name = "incremental_update"
    s = check_float(name, "step_size", step_size, high=1.0)

    def leaf(new: Any, old: Any) -> Any:
        n, o = real_param(new), real_param(old)
        return like(s * n + (1.0 - s) * o, o)

    with np.errstate(all="ignore"):  # inf and NaN: carried silently, as optax's
        return leafwise(name, leaf, (new_tensors, old_tensors),
                        ("new_tensors", "old_tensors"))[0]


def periodic_update(new_tensors: Tree, old_tensors: Tree, steps: int, update_period: int
                    ) -> Tree:
    """optax's ``periodic_update`` (a target network's hard update): ``new_tensors`` when
    ``steps % update_period == 0``, else ``old_tensors``, returned as they are (not
    copied). The two trees must agree in structure and leaf shapes."""
    name = "periodic_update"
    step = check_steps(name, "steps", steps)
    period = check_steps(name, "update_period", update_period, positive=True)
    same_trees(name, new_tensors, old_tensors, ("new_tensors", "old_tensors"), shapes=True)
    return new_tensors if step % period == 0 else old_tensors
