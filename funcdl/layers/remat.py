"""Remat: gradient checkpointing, ``jax.checkpoint`` (``jax.remat``) and
``torch.utils.checkpoint`` for a funcdl layer.

``Remat(f).vjp`` runs only ``f.apply`` and keeps what the call was given (params, x, key,
train, and a stateful child's input state), none of ``f``'s intermediate values; its
pullback runs ``f.vjp`` again on exactly those arguments, then that vjp's pullback. The
recomputation sees the same key, flag and input state, so Dropout draws the same masks and
BatchNorm in training normalises by the same batch statistics: the gradients are those of
``f`` bit for bit, for one more forward pass of ``f`` in the backward pass, and the memory
of the activations ``f``'s vjp keeps is held only while its pullback runs.

A wrapper that is the child in every other respect: the same init, output shape, params
and state (the child's own state, not a one-entry tuple, so ``Remat(BatchNorm())`` takes
and returns BatchNorm's state), ``dx_optional`` and ``ids``. The fusion fields
(``pointwise``, ``vjp_then``, ``selects_max``) are not passed on: Sequential would then run
the child's vjp fused with a neighbour's in the forward pass, keeping its activations.
"""

from __future__ import annotations

from typing import Any

from funcdl import random
from funcdl.layers import _step as stepping
from funcdl.layers._children import build, child_apply, child_init, child_vjp, is_stateful, name_of
from funcdl.layers._guard import guarded
from funcdl.layers._wrap import child_call, like_child, pulled
from funcdl.layers.base import Layer, LayerLike, layer_arg

__all__ = ["Remat"]


def Remat(layer: LayerLike) -> Layer:
    """Gradient checkpointing (``jax.checkpoint``): ``y = f(x)`` as ``f``, with the
    residuals recomputed in the backward pass instead of kept.

    forward: ``y = f.apply(params, x)``; vjp: ``pullback(dy) = f.vjp(params, x)[1](dy)``,
    run at pullback time with the same key, train flag and input state, so the gradients
    are ``f``'s exactly. Params, output shape and state are ``f``'s own. The closure holds
    ``params``, ``x``, ``key`` and the input state only (the caller must not write to ``x``
    before the pullback runs, as for any layer).

    Example: ``Sequential(Remat(Sequential(Dense(512), ReLU(), Dense(512), ReLU())),
    Dense(10))`` keeps no activations of the first block between the passes.
    """
    layer_arg("Remat", layer, "expected a layer to recompute, as Remat(Sequential(Dense(64), "
              "ReLU())); a layer is a value")
    layer = guarded(layer)
    child = name_of(layer)
    dx_optional = bool(getattr(layer, "dx_optional", False))

    def call(fn: Any, *args: Any) -> Any:
        return child_call("Remat", child, fn, *args)

    def init(key: random.Key, in_shape: Any) -> Any:
        return call(child_init, layer, key, in_shape)

    def apply(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        return call(child_apply, layer, params, x, state, key, train)

    def vjp(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        y, new_state = call(child_apply, layer, params, x, state, key, train)

        def pullback(dy: Any, need_dx: bool = True) -> Any:
            # the child's vjp again on the kept arguments, then its pullback
            pull = call(child_vjp, layer, params, x, state, key, train)[1]
            return call(pulled, pull, dy, need_dx, dx_optional)

        return y, pullback, new_state

    return like_child(build(f"Remat({child})", is_stateful(layer), init, apply, vjp,
                            step=stepping.wrapped(layer, lambda p: p, "Remat")), layer)
