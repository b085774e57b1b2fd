"""Eval: a part of a model held in inference mode while the rest trains.

PyTorch's ``backbone.eval()`` inside a model in ``train()``, Flax's
``BatchNorm(use_running_average=True)`` on one module, equinox's ``nn.inference_mode`` on a
subtree, Keras' BatchNorm with ``trainable=False``: the usual fine-tuning recipe keeps a
pretrained backbone's BatchNorm on its running statistics (and its Dropout off) while the
new head trains, where funcdl's one ``train=`` flag reaches every layer of a call.

``Eval(f)`` calls ``f`` with ``train=False`` whatever the call's flag, so the statistics are
neither used from the batch nor moved. It is not a stop-gradient: the gradients of ``f``'s
params and input flow as the inference vjp gives them (BatchNorm's is its affine map's), so
a backbone can still be fine-tuned at a small rate; freezing its params is the optimizer's
part (``optim.freeze`` or ``optim.partition``).

A wrapper that is the child in every other respect, as Remat: the same init, output shape,
params and state (the child's own, not a one-entry tuple), ``dx_optional`` and ``ids``; the
fusion fields are not passed on, so Sequential runs it on its own.
"""

from __future__ import annotations

from typing import Any

from funcdl import random
from funcdl._args import train_arg
from funcdl.layers import _step as stepping
from funcdl.layers._children import build, child_apply, child_init, child_vjp, is_stateful, name_of
from funcdl.layers._guard import guarded
from funcdl.layers._wrap import child_call, like_child, pulled
from funcdl.layers.base import Layer, LayerLike, layer_arg

__all__ = ["Eval"]


def Eval(layer: LayerLike) -> Layer:
    """``f`` in inference mode at every call, ``y = f(x; train=False)`` (torch's
    ``module.eval()`` on a part of a model).

    forward: ``y = f.apply(params, x, train=False)``; vjp: ``f.vjp(params, x,
    train=False)``'s, ``dparams = f_pᵀ dy``, ``dx = f_xᵀ dy`` at inference (a BatchNorm's
    ``dx = dy·scale/sqrt(var + eps)`` with the running ``var``). The state comes back as
    given. Params, output shape and state are ``f``'s own; the call's ``key`` is passed on
    (Dropout draws nothing at inference).

    Example, a pretrained backbone's BatchNorm kept on its running statistics while the head
    trains: ``Sequential(Eval(backbone), Dropout(0.5), Dense(10))``, called with
    ``train=True`` and a key; with ``optim.freeze((True, False, False))`` its params stay
    as they are too.
    """
    layer_arg("Eval", layer, "expected a layer to run in inference mode, as "
              "Eval(Sequential(Conv2D(16, 3), BatchNorm())); a layer is a value")
    layer = guarded(layer)
    child = name_of(layer)
    dx_optional = bool(getattr(layer, "dx_optional", False))

    def call(fn: Any, *args: Any) -> Any:
        return child_call("Eval", child, fn, *args)

    def init(key: random.Key, in_shape: Any) -> Any:
        return call(child_init, layer, key, in_shape)

    def apply(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        train_arg(train, "Eval")  # ignored, but a train='no' is refused as everywhere
        return call(child_apply, layer, params, x, state, key, False)

    def vjp(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        train_arg(train, "Eval")
        y, pull, new_state = call(child_vjp, layer, params, x, state, key, False)

        def pullback(dy: Any, need_dx: bool = True) -> Any:
            return call(pulled, pull, dy, need_dx, dx_optional)

        return y, pullback, new_state

    return like_child(build(f"Eval({child})", is_stateful(layer), init, apply, vjp,
                            step=stepping.wrapped(layer, lambda p: p, "Eval")), layer)
