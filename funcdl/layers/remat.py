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
from funcdl.layers._guard import guarded
from funcdl.layers.base import Layer, LayerLike, layer_arg, located, need_state
from funcdl.layers.combinators import ERRORS, is_stateful, name_of

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
    name = f"Remat({child})"
    stateful = is_stateful(layer)
    dx_optional = bool(getattr(layer, "dx_optional", False))

    def call(fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except ERRORS as e:
            raise located("Remat", child, e) from e

    def init(key: random.Key, in_shape: Any) -> Any:
        return call(layer.init, key, in_shape)

    def recompute(params: Any, x: Any, kw: dict[str, Any]) -> Any:
        """The child's pullback, from its vjp run again on the kept arguments."""
        return call(layer.vjp, params, x, **kw)[1]

    def backward(params: Any, x: Any, kw: dict[str, Any], dy: Any, need_dx: bool) -> Any:
        pullback = recompute(params, x, kw)
        if not need_dx and dx_optional:
            return call(pullback, dy, need_dx=False)
        dparams, dx = call(pullback, dy)
        return dparams, (dx if need_dx else None)

    if stateful:
        def apply_s(params: Any, x: Any, *, state: Any = None, key: Any = None,
                    train: bool = False) -> Any:
            return call(layer.apply, params, x, state=need_state(name, state), key=key,
                        train=train)

        def vjp_s(params: Any, x: Any, *, state: Any = None, key: Any = None,
                  train: bool = False) -> Any:
            kw = {"state": need_state(name, state), "key": key, "train": train}
            y, new_state = call(layer.apply, params, x, **kw)

            def pullback_s(dy: Any, need_dx: bool = True) -> Any:
                return backward(params, x, kw, dy, need_dx)

            return y, pullback_s, new_state

        return Layer(init, apply_s, vjp_s, stateful=True, name=name, dx_optional=dx_optional,
                     ids=getattr(layer, "ids", None))

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        return call(layer.apply, params, x, key=key, train=train)

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        kw = {"key": key, "train": train}
        y = call(layer.apply, params, x, **kw)

        def pullback(dy: Any, need_dx: bool = True) -> Any:
            return backward(params, x, kw, dy, need_dx)

        return y, pullback

    return Layer(init, apply, vjp, name=name, dx_optional=dx_optional,
                 ids=getattr(layer, "ids", None))
