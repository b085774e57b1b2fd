"""Combinators: layers built from layers. They only route shapes, params, keys, state and
cotangents; every vjp comes from the children's.

Branching follows stax: ``FanOut(n)`` turns one array into a tuple of ``n``, ``Parallel``
maps a tuple through one layer per entry, and ``FanInSum`` / ``FanInConcat`` merge a tuple
back into one array. Where one value feeds several places (FanOut, shared weights), the
pullback sums the cotangents that come back.

State: a combinator is stateful when any child is. Its state holds one entry per child
(``()`` for a stateless child) and each child sees only its own entry; a wrapper of a single
layer (``Residual``, ``Shared``) has that layer's params and state unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcdl import debug, random, tree
from funcdl.layers.base import Layer, LayerLike, Shape, located, need_state

__all__ = ["Parallel", "Residual", "Sequential", "Shared"]


# ---------------------------------------------------------------------------- child calls
# Each combinator is written once in the stateful form, with the three helpers below giving
# a uniform view of any child (a stateless child's state is ()); `build` then drops the
# state from the signatures when no child has any.

# Errors a combinator re-raises with the child's place prefixed (``Sequential[3] ...``).
ERRORS = (ValueError, TypeError, FloatingPointError)


def is_stateful(layer: Any) -> bool:
    return bool(getattr(layer, "stateful", False))


def name_of(layer: Any) -> str:
    return str(getattr(layer, "name", type(layer).__name__))


def check_children(name: str, layers: Sequence[Any]) -> None:
    for i, layer in enumerate(layers):
        if not all(hasattr(layer, f) for f in ("init", "apply", "vjp")):
            hint = " (constructors are called: ReLU(), not ReLU)" if callable(layer) else ""
            raise TypeError(f"{name}: argument {i} is not a layer, got {layer!r}{hint}")


def child_init(layer: Any, key: Any, in_shape: Any) -> tuple[Any, Any, Any]:
    out = layer.init(key, in_shape)
    return (out[0], out[1], out[2]) if is_stateful(layer) else (out[0], out[1], ())


def child_apply(layer: Any, p: Any, x: Any, s: Any, key: Any, train: bool) -> tuple[Any, Any]:
    if is_stateful(layer):
        y, s = layer.apply(p, x, state=s, key=key, train=train)
        return y, s
    return layer.apply(p, x, key=key, train=train), s


def child_vjp(layer: Any, p: Any, x: Any, s: Any, key: Any,
              train: bool) -> tuple[Any, Callable[..., Any], Any]:
    if is_stateful(layer):
        y, pullback, s = layer.vjp(p, x, state=s, key=key, train=train)
        return y, pullback, s
    y, pullback = layer.vjp(p, x, key=key, train=train)
    return y, pullback, s


def _located_call(where: str, child: str, pullback: Callable[..., Any], dy: Any) -> Any:
    try:
        return pullback(dy)
    except ERRORS as e:
        raise located(where, child, e) from e


def keys_for(key: Any, n: int) -> Sequence[Any]:
    """One key per child, or Nones when no key was given (most models need none)."""
    return (None,) * n if key is None else random.split(key, n)


def entries(name: str, value: Any, n: int, what: str) -> Sequence[Any]:
    """``value`` as a tuple/list with one entry per child, or a clear error."""
    if not isinstance(value, (tuple, list)) or len(value) != n:
        got = (f"a {type(value).__name__} of length {len(value)}"
               if isinstance(value, (tuple, list)) else type(value).__name__)
        raise ValueError(f"{name}: expected {what} as a tuple with one entry per layer "
                         f"({n}), got {got}")
    return value


def build(name: str, stateful: bool, init: Callable[..., Any], apply: Callable[..., Any],
          vjp: Callable[..., Any], empty_state: Any = ()) -> Layer:
    """A Layer from stateful-form functions; the plain signatures when ``stateful`` is
    False (then ``empty_state`` stands in for the state the functions expect)."""
    if stateful:
        def apply_s(params: Any, x: Any, *, state: Any = None, key: Any = None,
                    train: bool = False) -> Any:
            return apply(params, x, state=need_state(name, state), key=key, train=train)

        def vjp_s(params: Any, x: Any, *, state: Any = None, key: Any = None,
                  train: bool = False) -> Any:
            return vjp(params, x, state=need_state(name, state), key=key, train=train)

        return Layer(init, apply_s, vjp_s, stateful=True, name=name)

    def init0(key: random.Key, in_shape: Shape) -> tuple[Any, Any]:
        out_shape, params, _ = init(key, in_shape)
        return out_shape, params

    def apply0(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        return apply(params, x, state=empty_state, key=key, train=train)[0]

    def vjp0(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        y, pullback, _ = vjp(params, x, state=empty_state, key=key, train=train)
        return y, pullback

    return Layer(init0, apply0, vjp0, name=name)


def _sequential_init(layers: Sequence[Any], where: list[str]) -> Callable[..., Any]:
    """Fold the shape through the children, one key each: ``(out_shape, params, state)``."""
    n = len(layers)

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any, Any]:
        params, states = [], []
        shape = in_shape
        for i, (layer, k) in enumerate(zip(layers, random.split(key, n) if n else ())):
            try:
                shape, p, s = child_init(layer, k, shape)
            except ERRORS as e:
                raise located(where[i], name_of(layer), e) from e
            params.append(p)
            states.append(s)
        return shape, tuple(params), tuple(states)

    return init


# ---------------------------------------------------------------------------- Sequential

def Sequential(*layers: LayerLike) -> Layer:
    """Compose layers left to right: ``y = f_n(... f_1(x))``; params are a tuple with one
    entry per layer. vjp: each child's vjp forward, then the pullbacks in reverse order.
    Keys: one ``random.split`` per call (only when a key is given), one key per child."""
    check_children("Sequential", layers)
    name = "Sequential(" + ", ".join(name_of(l) for l in layers) + ")"
    n = len(layers)
    where = [f"Sequential[{i}]" for i in range(n)]
    names = [name_of(l) for l in layers]
    init = _sequential_init(layers, where)

    if not any(is_stateful(l) for l in layers):
        # The hot path of every model: a plain loop, no state bookkeeping.
        def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
            entries(name, params, n, "params")
            for i, (layer, p, k) in enumerate(zip(layers, params, keys_for(key, n))):
                try:
                    x = layer.apply(p, x, key=k, train=train)
                except ERRORS as e:
                    raise located(where[i], names[i], e) from e
            return x

        def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
            entries(name, params, n, "params")
            pullbacks = []
            checking = debug.enabled()
            for i, (layer, p, k) in enumerate(zip(layers, params, keys_for(key, n))):
                try:
                    x, pb = layer.vjp(p, x, key=k, train=train)
                except ERRORS as e:
                    raise located(where[i], names[i], e) from e
                if checking:
                    debug.verify(f"{where[i]} {names[i]}", "forward output", x)
                pullbacks.append(pb)
            return x, _reverse(pullbacks, where, names, checking, layers, params)

        def init0(key: random.Key, in_shape: Shape) -> tuple[Any, Any]:
            out_shape, params, _ = init(key, in_shape)
            return out_shape, params

        return Layer(init0, apply, vjp, name=name, dx_optional=True)

    def apply_s(params: Any, x: Any, *, state: Any = None, key: Any = None,
                train: bool = False) -> tuple[Any, Any]:
        entries(name, params, n, "params")
        entries(name, need_state(name, state), n, "state")
        new_state = []
        for i, (layer, p, s, k) in enumerate(zip(layers, params, state, keys_for(key, n))):
            try:
                x, s = child_apply(layer, p, x, s, k, train)
            except ERRORS as e:
                raise located(where[i], names[i], e) from e
            new_state.append(s)
        return x, tuple(new_state)

    def vjp_s(params: Any, x: Any, *, state: Any = None, key: Any = None,
              train: bool = False) -> Any:
        entries(name, params, n, "params")
        entries(name, need_state(name, state), n, "state")
        pullbacks, new_state = [], []
        checking = debug.enabled()
        for i, (layer, p, s, k) in enumerate(zip(layers, params, state, keys_for(key, n))):
            try:
                x, pb, s = child_vjp(layer, p, x, s, k, train)
            except ERRORS as e:
                raise located(where[i], names[i], e) from e
            if checking:
                debug.verify(f"{where[i]} {names[i]}", "forward output", x)
            pullbacks.append(pb)
            new_state.append(s)
        return x, _reverse(pullbacks, where, names, checking, layers, params), tuple(new_state)

    return Layer(init, apply_s, vjp_s, stateful=True, name=name, dx_optional=True)


def _reverse(pullbacks: list[Callable[..., tuple[Any, Any]]], where: list[str],
             names: list[str], checking: bool, layers: Sequence[Any],
             params: Sequence[Any]) -> Callable[..., Any]:
    """The pullback of a composition: the children's pullbacks in reverse order.

    ``need_dx=False`` (value_and_grad's call when nobody reads the input's cotangent) stops
    at the first child with parameters and asks it to skip its dx when it can."""
    n = len(pullbacks)

    def pullback(dy: Any, need_dx: bool = True) -> tuple[tuple[Any, ...], Any]:
        dparams: list[Any] = [None] * n
        stop = 0 if need_dx else next((i for i in range(n) if tree.leaves(params[i])), n)
        for i in range(n - 1, stop - 1, -1):
            try:
                if i == stop and not need_dx and getattr(layers[i], "dx_optional", False):
                    dparams[i], dy = pullbacks[i](dy, need_dx=False)
                else:
                    dparams[i], dy = pullbacks[i](dy)
            except ERRORS as e:
                raise located(where[i], names[i], e) from e
            if checking:
                if dy is not None:
                    debug.verify(f"{where[i]} {names[i]}", "backward pass: dx", dy)
                debug.verify(f"{where[i]} {names[i]}", "backward pass: dparams", dparams[i])
        dparams[:stop] = params[:stop]  # no leaves: (), {} or None, as given
        return tuple(dparams), (dy if need_dx else None)

    return pullback


# ---------------------------------------------------------------------------- branching

def Parallel(*layers: LayerLike) -> Layer:
    """Apply one layer per entry of a tuple: ``(x_1, ..., x_n) -> (f_1(x_1), ..., f_n(x_n))``;
    in_shape is a tuple of shapes. vjp: each branch's pullback on its own cotangent."""
    check_children("Parallel", layers)
    name = "Parallel(" + ", ".join(name_of(l) for l in layers) + ")"
    n = len(layers)
    where = [f"Parallel[{i}]" for i in range(n)]

    def init(key: random.Key, in_shapes: Any) -> tuple[Any, Any, Any]:
        entries(name, in_shapes, n, "in_shape")
        outs = []
        for i, (layer, k, shape) in enumerate(zip(layers, keys_for(key, n), in_shapes)):
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
                                                     keys_for(key, n))):
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
                                                     keys_for(key, n))):
            try:
                y, pb, s = child_vjp(layer, p, x, s, k, train)
            except ERRORS as e:
                raise located(where[i], name_of(layer), e) from e
            ys.append(y)
            pbs.append(pb)
            new_state.append(s)

        def pullback(dys: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
            entries(name, dys, n, "cotangents")
            grads = [_located_call(where[i], name_of(layers[i]), pb, dy)
                     for i, (pb, dy) in enumerate(zip(pbs, dys))]
            return tuple(g[0] for g in grads), tuple(g[1] for g in grads)

        return tuple(ys), pullback, tuple(new_state)

    return build(name, any(is_stateful(l) for l in layers), init, apply, vjp,
                 empty_state=((),) * n)




def Residual(layer: LayerLike) -> Layer:
    """``y = x + f(x)``, f's params and state unchanged; vjp: ``dx = dy + f_xᵀ dy``,
    ``dparams = f_pᵀ dy``."""
    check_children("Residual", [layer])
    child = name_of(layer)
    name = f"Residual({child})"

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any, Any]:
        try:
            out, p, s = child_init(layer, key, in_shape)
        except ERRORS as e:
            raise located("Residual", child, e) from e
        if len(out) != len(in_shape) or any(
                a is not None and b is not None and a != b for a, b in zip(out, in_shape)):
            raise ValueError(f"{name}: the branch maps {tuple(in_shape)} to {tuple(out)}; a "
                             f"residual needs its output shape equal to its input shape")
        return tuple(in_shape), p, s

    def merged(x: Any, y: Any) -> Any:
        if y.shape != x.shape:
            raise ValueError(f"{name}: the branch maps {x.shape} to {y.shape}; a residual "
                             f"needs equal shapes")
        return x + y

    def apply(params: Any, x: Any, *, state: Any, key: Any = None,
              train: bool = False) -> tuple[Any, Any]:
        try:
            y, s = child_apply(layer, params, x, state, key, train)
        except ERRORS as e:
            raise located("Residual", child, e) from e
        return merged(x, y), s

    def vjp(params: Any, x: Any, *, state: Any, key: Any = None, train: bool = False) -> Any:
        try:
            y, pb, s = child_vjp(layer, params, x, state, key, train)
        except ERRORS as e:
            raise located("Residual", child, e) from e

        def pullback(dy: Any) -> tuple[Any, Any]:
            dparams, dx = _located_call("Residual", child, pb, dy)
            return dparams, dy + dx

        return merged(x, y), pullback, s

    return build(name, is_stateful(layer), init, apply, vjp)


def Shared(layer: LayerLike, n: int = 2) -> Layer:
    """Weight sharing: apply one layer, with one set of params, to each of ``n`` inputs:
    ``(x_1, ..., x_n) -> (f(x_1), ..., f(x_n))``. Its params are the layer's own; vjp: the
    gradient is the sum of the per-branch gradients, ``dparams = Σ_i f_pᵀ dy_i``.

    Example (a Siamese pair): ``Sequential(Shared(encoder), FanInConcat(), Dense(1))``.
    """
    check_children("Shared", [layer])
    if is_stateful(layer):
        raise TypeError(f"Shared: {name_of(layer)} keeps running statistics; sharing it "
                        f"between branches is not supported (share the layers around it)")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"Shared: n must be a positive int, got {n!r}")
    child = name_of(layer)
    name = f"Shared({child}, {n})"
    where = [f"Shared[{i}]" for i in range(n)]

    def init(key: random.Key, in_shapes: Any) -> tuple[Any, Any]:
        entries(name, in_shapes, n, "in_shape")
        outs = []
        params = None
        for i, shape in enumerate(in_shapes):
            try:
                out, p = layer.init(key, shape)
            except ERRORS as e:
                raise located(where[i], child, e) from e
            if params is None:
                params = p
            else:
                try:
                    tree.check_same(params, p, (f"branch 0 {tuple(in_shapes[0])}",
                                                f"branch {i} {tuple(shape)}"), shapes=True)
                except ValueError as e:
                    raise ValueError(f"{name}: the branches need params of one shape to "
                                     f"share them: {e}") from None
            outs.append(out)
        return tuple(outs), params

    def apply(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Any:
        entries(name, xs, n, "inputs")
        out = []
        for i, (x, k) in enumerate(zip(xs, keys_for(key, n))):
            try:
                out.append(layer.apply(params, x, key=k, train=train))
            except ERRORS as e:
                raise located(where[i], child, e) from e
        return tuple(out)

    def vjp(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Any:
        entries(name, xs, n, "inputs")
        ys, pbs = [], []
        for i, (x, k) in enumerate(zip(xs, keys_for(key, n))):
            try:
                y, pb = layer.vjp(params, x, key=k, train=train)
            except ERRORS as e:
                raise located(where[i], child, e) from e
            ys.append(y)
            pbs.append(pb)

        def pullback(dys: Any) -> tuple[Any, tuple[Any, ...]]:
            entries(name, dys, n, "cotangents")
            grads = [_located_call(where[i], child, pb, dy) for i, (pb, dy) in
                     enumerate(zip(pbs, dys))]
            total = grads[0][0]
            for g in grads[1:]:
                total = tree.map(np.add, total, g[0])
            return total, tuple(g[1] for g in grads)

        return tuple(ys), pullback

    return Layer(init, apply, vjp, name=name)
