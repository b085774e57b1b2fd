"""The checks a combinator puts around a user's own layer (``Layer(init, apply, vjp)`` with
functions defined outside funcdl), so that a malformed return fails in that layer's name
instead of being taken apart wrongly further on.

NumPy unpacks an array like a tuple: a vjp returning only ``y`` of batch 2 would read as
``(y[0], y[1])``, and a pullback returning only ``dx`` as ``(dx[0], dx[1])``; a dx of the
wrong shape would be blamed on the layer before. funcdl's own layers are not wrapped: their
returns are tested, and the checks would cost every step of every model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import _per_example_mode as per_example_mode
from funcdl import tree
from funcdl._treenodes import describe
from funcdl.layers.base import Layer, Pointwise, ours


def foreign(layer: Any) -> bool:
    """Whether any of ``layer``'s functions was written outside funcdl."""
    return not all(ours(getattr(layer, f, None)) for f in ("init", "apply", "vjp"))


def guarded(layer: Any) -> Any:
    """``layer`` itself, or for a user's own layer the same layer with its vjp's and its
    pullbacks' returns checked: ``(y, pullback)`` (``(y, pullback, new_state)`` when
    stateful), a pullback returning ``(dparams, dx)`` with dparams shaped as the params
    and dx as the input; a stateful layer's apply returning ``(y, new_state)``."""
    if not isinstance(layer, Layer) or not foreign(layer):
        return layer
    apply = _checked_apply(layer.name, layer.apply) if layer.stateful else layer.apply
    return dataclasses.replace(layer, apply=apply,
                               vjp=_checked_vjp(layer.name, layer.vjp, layer.stateful))


def _checked_apply(name: str, apply: Callable[..., Any]) -> Callable[..., Any]:
    """A stateful layer's apply that forgot its state would return y alone, which a batch
    of 2 unpacks as ``(y[0], y[1])``: the rows read as the output and the new state."""

    def checked(params: Any, x: Any, **kwargs: Any) -> Any:
        out = apply(params, x, **kwargs)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(f"{name}: a stateful layer's apply must return (y, new_state) "
                            f"(the state unchanged at inference); got {describe(out)}")
        return out

    return checked


def _checked_vjp(name: str, vjp: Callable[..., Any], stateful: bool) -> Callable[..., Any]:
    want = "(y, pullback, new_state)" if stateful else "(y, pullback)"

    def checked(params: Any, x: Any, **kwargs: Any) -> Any:
        out = vjp(params, x, **kwargs)
        if not (isinstance(out, (tuple, list)) and len(out) == 2 + stateful
                and callable(out[1])):
            raise TypeError(f"{name}: vjp must return {want}, pullback a function dy -> "
                            f"(dparams, dx); got {describe(out)}")
        x_shape = x.shape if isinstance(x, np.ndarray) else None

        def pullback(dy: Any, **kw: Any) -> tuple[Any, Any]:  # need_dx, if dx_optional
            back = out[1](dy, **kw)
            if not (isinstance(back, (tuple, list)) and len(back) == 2):
                raise TypeError(f"{name}: the pullback must return (dparams, dx), dparams "
                                f"shaped as the params (() when there are none); got "
                                f"{describe(back)}")
            dparams, dx = back
            try:
                tree.check_same(params, dparams, ("params", "dparams"), shapes=True)
            except ValueError as e:
                if not _per_example(params, dparams):  # (its funcdl layers' per example)
                    raise ValueError(f"{name}: the pullback's dparams must have the "
                                     f"structure and shapes of the params: {e}") from None
            if x_shape is not None and dx is not None and np.shape(dx) != x_shape:
                raise ValueError(f"{name}: the pullback returned dx of shape "
                                 f"{np.shape(dx)}; it must have the input's, {x_shape}")
            return dparams, dx

        return (out[0], pullback, *out[2:])

    return checked


def _per_example(params: Any, dparams: Any) -> bool:
    """Whether ``dparams`` are per-example gradients, each leaf ``(N, *param.shape)``, while
    ``autodiff.per_example_*`` asks for them: what a user's layer built of funcdl layers
    (a cell calling their vjps) returns then."""
    if not per_example_mode.ON.get():
        return False
    n = per_example_mode.SIZE.get()
    try:
        tree.check_same(params, dparams, ("params", "dparams"))
    except ValueError:
        return False
    return per_example_mode.first_summed(params, dparams, n) is None


def checked_pointwise(act: Any) -> Any:
    """``act``, or a user's own ``Pointwise`` with the shapes of its ``f`` and ``df`` checked:
    in a fused step a wrong dx goes straight into the layer before's pullback, where NumPy's
    error would blame that layer."""
    if act is None or (ours(act.f) and ours(act.df)):
        return act

    def same(what: str, got: Any, want: tuple[int, ...]) -> Any:
        if np.shape(got) != want:
            raise ValueError(f"{act.name}: its Pointwise {what} of shape {np.shape(got)}; an "
                             f"elementwise map keeps the shape, {want}")
        return got

    def df(x: Any, y: Any, dy: Any) -> Any:
        try:
            dx = act.df(x, y, dy)
        except (TypeError, AttributeError) as e:
            if x is not None and y is not None:
                raise
            # None came for what reads= says df does not read: the likelier fault is there
            # than in the layer before, which the error would otherwise name
            gone = "x" if x is None else "y"
            raise TypeError(f"{act.name}: its Pointwise df failed ({type(e).__name__}: {e}) "
                            f"given None for {gone}, which its reads={act.reads!r} says it "
                            f"does not read; declare reads='xy' if df reads both") from e
        return same("df returned dx", dx, dy.shape)

    return Pointwise(act.name, lambda x: same("f returned y", act.f(x), x.shape), df,
                     act.commutes_with_max, act.reads)
