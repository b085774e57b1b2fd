"""Fused steps of a Sequential: which neighbouring children run as one step, and in what
order. A layer offering ``vjp_then`` (Dense, MaxPool2D) and the ``pointwise`` activation
after it run as one call with one pullback; an activation that ``commutes_with_max`` (ReLU)
before a layer that ``selects_max`` (MaxPool2D) runs after it, on fewer values. Both give
the numbers that running the layers one by one gives (see ``Layer`` and ``Pointwise``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from funcdl.layers._guard import checked_pointwise
from funcdl.layers.base import check_cotangent, no_params

__all__ = ["order", "owner", "steps", "swaps"]

Steps = list[tuple[int, Any, Any]]


def _stateful(layer: Any) -> bool:
    return bool(getattr(layer, "stateful", False))


def steps(layers: Sequence[Any]) -> Steps:
    """The forward pass as ``(i, vjp_then, pointwise)`` steps: a layer offering ``vjp_then``
    (Dense) followed by a ``pointwise`` activation is one step that runs both, saving a
    call and a pullback per pair; an activation that ``commutes_with_max`` (ReLU) before a
    layer that ``selects_max`` (MaxPool2D) is one step that runs the pool first, then the
    activation on its output. ``python -m benchmarks.fusion_ab`` (its output in
    benchmarks/results/fusion_ab.md): the disk step fused takes 0.92-0.96x its time layer by
    layer, the mlp's 0.99-1.01x, the cnn's (both ReLUs before 2 x 2 pools) 0.86-0.88x. Any
    other layer is ``(i, None, None)``. Stateful layers are never fused. The same
    arithmetic either way, so the same numbers (see ``Pointwise.commutes_with_max`` for
    the swap)."""
    out: Steps = []
    n, i = len(layers), 0
    while i < n:
        act = checked_pointwise(getattr(layers[i], "pointwise", None))
        if (act is not None and act.commutes_with_max and _selects_max(layers, i + 1)
                and not _stateful(layers[i])):
            out.append((i, _swapped(layers[i + 1]), act))
            i += 2
            continue
        then = getattr(layers[i], "vjp_then", None)
        act = checked_pointwise(getattr(layers[i + 1], "pointwise", None) if i + 1 < n else None)
        # an activation that can run after a pool behind it is left for that step
        if (then is not None and act is not None and not _stateful(layers[i])
                and not _stateful(layers[i + 1])
                and not (act.commutes_with_max and _selects_max(layers, i + 2))):
            out.append((i, then, act))
            i += 2
        else:
            out.append((i, None, None))
            i += 1
    return out


def _selects_max(layers: Sequence[Any], i: int) -> bool:
    return (i < len(layers) and getattr(layers[i], "selects_max", False)
            and getattr(layers[i], "vjp_then", None) is not None and not _stateful(layers[i]))


def swaps(layers: Sequence[Any], steps: Steps) -> dict[int, int]:
    """``{pool's index: activation's index}`` for each swapped pair (a fused step whose
    function is not the first layer's own ``vjp_then``). ``act_of.get(i + 1)`` is then
    the activation of a failed step ``i`` when it is swapped, and None otherwise: the
    activation, which sees the input first layer by layer, is asked first whose the error
    is (``Sequential``'s error paths run it on the pair's input)."""
    return {i + 1: i for i, then, _ in steps
            if then is not None and then is not getattr(layers[i], "vjp_then", None)}


def order(steps: Steps, act_of: dict[int, int]) -> list[int]:
    """The children's indices in the order ``apply`` runs them: ``steps``'s, a swapped
    pair's pool before its activation (the same output, fewer values to activate)."""
    out: list[int] = []
    for i, then, _ in steps:
        out += [i] if then is None else [i + 1, i] if i + 1 in act_of else [i, i + 1]
    return out


def _swapped(pool: Any) -> Callable[..., Any]:
    """The step ``(activation i, pool i + 1)`` run as ``act.f(pool(x))``: ``then(params_i,
    x, act)`` as a fused pair's; the pool's params are checked by the caller. Its
    cotangent is the pool's output's, so it is checked in the pool's name."""
    then, name = pool.vjp_then, pool.name

    def run(params: Any, x: Any, act: Any) -> tuple[Any, Callable[..., Any]]:
        no_params(act.name, params)
        z, pull = then((), x, act)
        z_shape, z_dtype = z.shape, z.dtype
        # dparams: the activation's own entry, as given (no leaves: (), {} or None)
        return z, lambda dz: (params, pull(check_cotangent(name, dz, z_shape, z_dtype))[1])

    return run


def owner(i: int, e: Exception, fused: bool, names: list[str]) -> int:
    """The index of the layer an error belongs to: in a fused step (``steps``'s ``i``,
    layers i and i + 1 as one) layer i + 1's errors start with its name, forward and
    backward."""
    return i + 1 if fused and str(e).startswith(names[i + 1]) else i
