"""Combinators: layers built from layers. They only route shapes, params, keys, state and
cotangents; every vjp comes from the children's.

A combinator is stateful when any child is; its state is a tuple with one entry per child
(``()`` for a stateless child), and each child sees only its own entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from funcdl import random
from funcdl.layers.base import Array, Layer, LayerLike, Shape, located

__all__ = ["Sequential"]


def _keys(key: Any, n: int) -> Sequence[Any]:
    return (None,) * n if key is None else random.split(key, n)


def _check_children(name: str, layers: Sequence[Any]) -> None:
    for i, layer in enumerate(layers):
        if not all(hasattr(layer, f) for f in ("init", "apply", "vjp")):
            hint = " (constructors are called: ReLU(), not ReLU)" if callable(layer) else ""
            raise TypeError(f"{name}: argument {i} is not a layer, got {layer!r}{hint}")


def _check_params(name: str, params: Any, n: int, what: str = "params") -> None:
    if not isinstance(params, (tuple, list)) or len(params) != n:
        got = (f"a {type(params).__name__} of length {len(params)}"
               if isinstance(params, (tuple, list)) else type(params).__name__)
        raise ValueError(f"{name}: expected {what} as a tuple with one entry per layer "
                         f"({n}), got {got}")


def _stateful(layer: Any) -> bool:
    return bool(getattr(layer, "stateful", False))


def _name(layer: Any) -> str:
    return str(getattr(layer, "name", type(layer).__name__))


def Sequential(*layers: LayerLike) -> Layer:
    """Compose layers left to right: ``y = f_n(... f_1(x))``; params are a tuple, one entry
    per layer. vjp: run each child's vjp forward, then the pullbacks in reverse order.
    Keys: one ``random.split`` per call, one key per child."""
    name = "Sequential(" + ", ".join(_name(l) for l in layers) + ")"
    _check_children("Sequential", layers)
    n = len(layers)
    stateful = any(_stateful(l) for l in layers)
    where = [f"Sequential[{i}]" for i in range(n)]
    names = [_name(l) for l in layers]

    def init(key: random.Key, in_shape: Shape) -> Any:
        params, states = [], []
        shape = in_shape
        for i, (layer, k) in enumerate(zip(layers, random.split(key, n) if n else ())):
            try:
                out = layer.init(k, shape)
            except (ValueError, TypeError) as e:
                raise located(where[i], names[i], e) from e
            shape, p = out[0], out[1]
            params.append(p)
            states.append(out[2] if _stateful(layer) else ())
        if stateful:
            return shape, tuple(params), tuple(states)
        return shape, tuple(params)

    if not stateful:
        def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
            _check_params(name, params, n)
            for i, (layer, p, k) in enumerate(zip(layers, params, _keys(key, n))):
                try:
                    x = layer.apply(p, x, key=k, train=train)
                except (ValueError, TypeError) as e:
                    raise located(where[i], names[i], e) from e
            return x

        def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
            _check_params(name, params, n)
            pullbacks = []
            for i, (layer, p, k) in enumerate(zip(layers, params, _keys(key, n))):
                try:
                    x, pb = layer.vjp(p, x, key=k, train=train)
                except (ValueError, TypeError) as e:
                    raise located(where[i], names[i], e) from e
                pullbacks.append(pb)
            return x, _reverse(pullbacks)

        return Layer(init, apply, vjp, name=name)

    def apply_s(params: Any, x: Any, *, state: Any, key: Any = None,
                train: bool = False) -> tuple[Array, Any]:
        _check_params(name, params, n)
        _check_params(name, state, n, "state")
        new_state = []
        for i, (layer, p, s, k) in enumerate(zip(layers, params, state, _keys(key, n))):
            try:
                if _stateful(layer):
                    x, s = layer.apply(p, x, state=s, key=k, train=train)
                else:
                    x = layer.apply(p, x, key=k, train=train)
            except (ValueError, TypeError) as e:
                raise located(where[i], names[i], e) from e
            new_state.append(s)
        return x, tuple(new_state)

    def vjp_s(params: Any, x: Any, *, state: Any, key: Any = None,
              train: bool = False) -> Any:
        _check_params(name, params, n)
        _check_params(name, state, n, "state")
        pullbacks, new_state = [], []
        for i, (layer, p, s, k) in enumerate(zip(layers, params, state, _keys(key, n))):
            try:
                if _stateful(layer):
                    x, pb, s = layer.vjp(p, x, state=s, key=k, train=train)
                else:
                    x, pb = layer.vjp(p, x, key=k, train=train)
            except (ValueError, TypeError) as e:
                raise located(where[i], names[i], e) from e
            pullbacks.append(pb)
            new_state.append(s)
        return x, _reverse(pullbacks), tuple(new_state)

    return Layer(init, apply_s, vjp_s, stateful=True, name=name)


def _reverse(pullbacks: list[Callable[[Array], tuple[Any, Array]]]) -> Callable[..., Any]:
    """The pullback of a composition: children's pullbacks in reverse order."""
    n = len(pullbacks)

    def pullback(dy: Array) -> tuple[tuple[Any, ...], Array]:
        dparams: list[Any] = [None] * n
        for i in range(n - 1, -1, -1):
            try:
                dparams[i], dy = pullbacks[i](dy)
            except (ValueError, TypeError) as e:
                raise located(f"Sequential[{i}]", "pullback", e) from e
        return tuple(dparams), dy

    return pullback
