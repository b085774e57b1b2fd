"""Branching combinators: Parallel, Residual, and weight sharing: Shared (one layer on
several branches) and Repeat (one layer several times in series).

Branching follows stax: ``FanOut(n)`` turns one array into a tuple of ``n``, ``Parallel``
maps a tuple through one layer per entry, and ``FanInSum`` / ``FanInConcat`` merge a tuple
back into one array. Where one value feeds several places (FanOut, shared weights), the
pullback sums the cotangents that come back. Every vjp here comes from the children's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from funcdl import random, tree
from funcdl._args import int_arg
from funcdl.layers import _step as stepping
from funcdl.layers._children import (
    ERRORS,
    build,
    check_children,
    child_apply,
    child_init,
    child_vjp,
    entries,
    is_stateful,
    keys_for,
    mark_repeats,
    mark_shared,
    name_of,
    summary_at,
    summed,
)
from funcdl.layers.base import (
    Layer,
    LayerLike,
    as_array,
    as_floats,
    cast_ints,
    check_cotangent,
    in_input_dtype,
    like,
    located,
    none_cotangent,
)
from funcdl.layers.combinators import no_flow

__all__ = ["Parallel", "Repeat", "Residual", "Shared"]


def _branch_shapes(name: str, in_shapes: Any, n: int) -> Any:
    """``in_shapes`` as one shape per branch; a single shape such as ``(None, 3)`` is a
    tuple of the right length too, so say what its entries should be rather than let the
    first branch report ``in_shape None``."""
    entries(name, in_shapes, n, "in_shape")
    for s in in_shapes:
        if not isinstance(s, (tuple, list)):
            raise TypeError(f"{name}: in_shape must be a tuple of shapes, one per branch "
                            f"(e.g. {((None, 3),) * n}), got {tuple(in_shapes)!r}")
    return in_shapes


def _located_call(where: str, child: str, pullback: Callable[..., Any], dy: Any,
                  params: Any) -> Any:
    if dy is None:  # one entry of the cotangents: that branch's output came from ids
        return no_flow(params)
    try:
        return pullback(dy)
    except ERRORS as e:
        raise located(where, child, e) from e


def _tied(kind: str, layer: LayerLike, n: Any) -> tuple[Layer, int, str, str, list[str]]:
    """A weight-sharing combinator's checked layer and count, its child's name, its own
    name ``Kind(child, n)``, and the places of the uses, ``Kind[i]``."""
    (checked,) = check_children(kind, [layer])
    n = int_arg(n, kind, "n", 1)
    child = name_of(checked)
    return checked, n, child, f"{kind}({child}, {n})", [f"{kind}[{i}]" for i in range(n)]


# ---------------------------------------------------------------------------- branching

def Parallel(*layers: LayerLike) -> Layer:
    """Apply one layer per entry of a tuple: ``(x_1, ..., x_n) -> (f_1(x_1), ..., f_n(x_n))``;
    in_shape is a tuple of shapes. vjp: each branch's pullback on its own cotangent.
    Keys: branch i gets ``random.split(key, n)[i]``, as Sequential's child i."""
    layers = check_children("Parallel", layers)
    name = "Parallel(" + ", ".join(name_of(l) for l in layers) + ")"
    n = len(layers)
    where = [f"Parallel[{i}]" for i in range(n)]

    def init(key: random.Key, in_shapes: Any) -> tuple[Any, Any, Any]:
        _branch_shapes(name, in_shapes, n)
        outs = []
        for i, (layer, k, shape) in enumerate(zip(layers, keys_for(key, n, name), in_shapes)):
            try:
                outs.append(child_init(layer, k, shape))
            except ERRORS as e:
                raise located(where[i], name_of(layer), e) from e
        return tuple(o[0] for o in outs), tuple(o[1] for o in outs), tuple(o[2] for o in outs)

    def apply(params: Any, xs: Any, *, state: Any, key: Any = None,
              train: bool = False) -> tuple[Any, Any]:
        entries(name, params, n, "params")
        entries(name, xs, n, "inputs")
        entries(name, state, n, "state")
        ys, new_state = [], []
        for i, (layer, p, x, s, k) in enumerate(zip(layers, params, xs, state,
                                                     keys_for(key, n, name))):
            try:
                y, s = child_apply(layer, p, x, s, k, train)
            except ERRORS as e:
                raise located(where[i], name_of(layer), e) from e
            ys.append(y)
            new_state.append(s)
        return tuple(ys), tuple(new_state)

    def vjp(params: Any, xs: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        entries(name, params, n, "params")
        entries(name, xs, n, "inputs")
        entries(name, state, n, "state")
        ys, pbs, new_state = [], [], []
        for i, (layer, p, x, s, k) in enumerate(zip(layers, params, xs, state,
                                                     keys_for(key, n, name))):
            try:
                y, pb, s = child_vjp(layer, p, x, s, k, train)
            except ERRORS as e:
                raise located(where[i], name_of(layer), e) from e
            ys.append(y)
            pbs.append(pb)
            new_state.append(s)
        box = type(xs)  # xs's container: each child keeps what its own pullback reads

        def pullback(dys: Any) -> tuple[Any, Any]:
            if dys is None:
                raise none_cotangent(name)
            entries(name, dys, n, "cotangents")
            grads = [_located_call(where[i], name_of(layers[i]), pb, dy, params[i])
                     for i, (pb, dy) in enumerate(zip(pbs, dys))]
            return like(params, [g[0] for g in grads]), like(box, [g[1] for g in grads])

        return tuple(ys), pullback, tuple(new_state)

    return build(name, any(is_stateful(l) for l in layers), init, apply, vjp,
                 empty_state=((),) * n, step=stepping.parallel(layers, where))


def Residual(layer: LayerLike) -> Layer:
    """``y = x + f(x)``; vjp: ``dx = dy + f_xᵀ dy``, ``dparams = f_pᵀ dy``. Its params are
    f's own; its state, as every combinator's, holds one entry per child: ``(f's state,)``
    when f is stateful (a BatchNorm in the branch). Keys: f gets the key itself, unsplit
    (a wrapper, as Remat and Tied; a combinator of several children splits it)."""
    (layer,) = check_children("Residual", [layer])
    child = name_of(layer)
    name = f"Residual({child})"

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any, Any]:
        try:
            out, p, s = child_init(layer, key, in_shape)
        except ERRORS as e:
            raise located("Residual", child, e) from e
        if len(out) != len(in_shape) or any(
                a is not None and b is not None and a != b for a, b in zip(out, in_shape)):
            tupled = bool(in_shape) and isinstance(in_shape[0], (tuple, list))
            hint = ("; for x + f(x, ...) on a tuple, Sequential(FanOut(2), Parallel("
                    "Select(0), f), FanInSum())" if tupled else "")
            raise ValueError(f"{name}: the branch maps {tuple(in_shape)} to {tuple(out)}; a "
                             f"residual needs its output shape equal to its input shape{hint}")
        return tuple(in_shape), p, (s,)

    def merged(x: Any, y: Any) -> Any:
        # int64 ids + float32 must not give float64; ids through Identity() are summed as
        # float32, as the activations take them (uint8 would wrap, bools would or)
        y = as_floats(name, y)
        # a list, as every layer takes one; its Python floats in f(x)'s dtype, as JAX's
        # weakly typed floats (float64 params: not rounded to float32)
        x = as_array(name, x, y.dtype)
        if y.shape != x.shape:
            raise ValueError(f"{name}: the branch maps {x.shape} to {y.shape}; a residual "
                             f"needs equal shapes")
        return cast_ints(x, y.dtype) + y

    def apply(params: Any, x: Any, *, state: Any, key: Any = None,
              train: bool = False) -> tuple[Any, Any]:
        (s,) = entries(name, state, 1, "state")
        try:
            y, s = child_apply(layer, params, x, s, key, train)
        except ERRORS as e:
            raise located("Residual", child, e) from e
        return merged(x, y), (s,)

    def vjp(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        (s,) = entries(name, state, 1, "state")
        try:
            y, pb, s = child_vjp(layer, params, x, s, key, train)
        except ERRORS as e:
            raise located("Residual", child, e) from e

        z = merged(x, y)
        x_dtype = getattr(x, "dtype", None)

        z_shape, z_dtype = z.shape, z.dtype  # not z, which the caller may free

        def pullback(dy: Any) -> tuple[Any, Any]:
            # None from outside is refused: a parent passes None to no child's pullback
            dy = check_cotangent(name, dy, z_shape, z_dtype)
            dparams, dx = _located_call("Residual", child, pb, dy, params)
            # None: x is integer ids; dy is in the output's dtype, float64 under float64
            # params, and dx in x's
            return dparams, (None if dx is None else in_input_dtype(dy + dx, x_dtype))

        return z, pullback, (s,)

    return build(name, is_stateful(layer), init, apply, vjp, empty_state=((),),
                 step=stepping.residual(layer, merged))


def Shared(layer: LayerLike, n: int = 2) -> Layer:
    """Weight sharing: apply one layer, with one set of params, to each of ``n`` inputs:
    ``(x_1, ..., x_n) -> (f(x_1), ..., f(x_n))``. Its params are the layer's own; vjp: the
    gradient is the sum of the per-branch gradients, ``dparams = Σ_i f_pᵀ dy_i``.

    A stateful layer (BatchNorm) is shared with its state as a PyTorch module called ``n``
    times: branch i runs on the state branch i - 1 returned, so in training each branch's
    batch moves the running statistics in turn. Its state, as every combinator's, holds one
    entry per child: ``(the layer's state,)``.

    Keys: branch i gets ``random.split(key, n)[i]`` (its own dropout masks); init draws
    the params once, from the key itself.

    Example (a Siamese pair): ``Sequential(Shared(encoder), FanInConcat(), Dense(1))``.
    """
    layer, n, child, name, where = _tied("Shared", layer, n)

    def init(key: random.Key, in_shapes: Any) -> tuple[Any, Any, Any]:
        _branch_shapes(name, in_shapes, n)
        made = []  # (out_shape, params, state) per branch, all from one key
        for i, shape in enumerate(in_shapes):
            at = summary_at()
            try:
                made.append(child_init(layer, key, shape))
            except ERRORS as e:
                raise located(where[i], child, e) from e
            if i:  # under a summary: branch 0's params, reused
                mark_shared(at)
        _, params, state = made[0]
        for i, (_, p, s) in enumerate(made[1:], 1):
            try:
                tree.check_same((params, state), (p, s), (f"branch 0 {tuple(in_shapes[0])}",
                                                         f"branch {i} {tuple(in_shapes[i])}"),
                                shapes=True)
            except ValueError as e:
                raise ValueError(f"{name}: the branches need params of one shape to share "
                                 f"them: {e}") from None
        return tuple(out for out, _, _ in made), params, (state,)

    def apply(params: Any, xs: Any, *, state: Any, key: Any = None,
              train: bool = False) -> tuple[Any, Any]:
        entries(name, xs, n, "inputs")
        (state,) = entries(name, state, 1, "state")
        out = []
        for i, (x, k) in enumerate(zip(xs, keys_for(key, n, name))):
            try:
                y, state = child_apply(layer, params, x, state, k, train)
            except ERRORS as e:
                raise located(where[i], child, e) from e
            out.append(y)
        return tuple(out), (state,)

    def vjp(params: Any, xs: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        entries(name, xs, n, "inputs")
        (state,) = entries(name, state, 1, "state")
        ys, pbs = [], []
        for i, (x, k) in enumerate(zip(xs, keys_for(key, n, name))):
            try:
                y, pb, state = child_vjp(layer, params, x, state, k, train)
            except ERRORS as e:
                raise located(where[i], child, e) from e
            ys.append(y)
            pbs.append(pb)
        box = type(xs)  # xs's container: the child keeps what its pullbacks read

        def pullback(dys: Any) -> tuple[Any, Any]:
            if dys is None:
                raise none_cotangent(name)
            entries(name, dys, n, "cotangents")
            grads = [_located_call(where[i], child, pb, dy, params) for i, (pb, dy) in
                     enumerate(zip(pbs, dys))]
            return summed([g for g, _ in grads]), like(box, [dx for _, dx in grads])

        return tuple(ys), pullback, (state,)

    return build(name, is_stateful(layer), init, apply, vjp, empty_state=((),),
                 step=stepping.repeated(layer, where, series=False))


def Repeat(layer: LayerLike, n: int) -> Layer:
    """Weight sharing in series: one layer, with one set of params, applied ``n`` times,
    ``x -> f(f(...f(x)))`` (a block tied across depth, as ALBERT's). The layer must map its
    input shape to itself. vjp: the applications' pullbacks in reverse order, and the
    gradient is the sum of theirs, ``dparams = Σ_i f_pᵀ(x_i) dy_i``.

    A stateful layer (BatchNorm) carries its state from one application to the next, as a
    PyTorch module called ``n`` times; dropout draws a new mask at each: application i gets
    ``random.split(key, n)[i]`` (init: the key itself).

    Example (three tied residual blocks): ``Repeat(Residual(Sequential(Dense(64), ReLU(),
    Dense(64))), 3)``.
    """
    layer, n, child, name, where = _tied("Repeat", layer, n)

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any, Any]:
        mark_repeats(n)  # under a summary: its row reads "Repeat ×n"
        try:
            out_shape, params, state = child_init(layer, key, in_shape)
        except ERRORS as e:
            raise located(where[0], child, e) from e
        if tuple(out_shape) != tuple(in_shape):
            raise ValueError(f"{name}: the layer maps in_shape {tuple(in_shape)} to "
                             f"{tuple(out_shape)}; to apply it again it must keep the shape")
        return tuple(in_shape), params, (state,)

    def apply(params: Any, x: Any, *, state: Any, key: Any = None,
              train: bool = False) -> tuple[Any, Any]:
        (state,) = entries(name, state, 1, "state")
        for i, k in enumerate(keys_for(key, n, name)):
            try:
                x, state = child_apply(layer, params, x, state, k, train)
            except ERRORS as e:
                raise located(where[i], child, e) from e
        return x, (state,)

    def vjp(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        (state,) = entries(name, state, 1, "state")
        pbs = []
        for i, k in enumerate(keys_for(key, n, name)):
            try:
                x, pb, state = child_vjp(layer, params, x, state, k, train)
            except ERRORS as e:
                raise located(where[i], child, e) from e
            pbs.append(pb)

        def pullback(dy: Any) -> tuple[Any, Any]:
            if dy is None:
                raise none_cotangent(name)
            grads = []
            for i in reversed(range(n)):
                g, dy = _located_call(where[i], child, pbs[i], dy, params)
                grads.append(g)
            return summed(grads), dy

        return x, pullback, (state,)

    return build(name, is_stateful(layer), init, apply, vjp, empty_state=((),),
                 step=stepping.repeated(layer, where, series=True))
