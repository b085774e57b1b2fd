"""Combinators: layers built from layers. They only route shapes, params, keys, state and
cotangents; every vjp comes from the children's.

This module holds Sequential; the helpers every combinator uses are ``_children``'s
(``branching`` builds Parallel, Residual and Shared on them).

State: a combinator is stateful when any child is. Its state holds one entry per child
(``()`` for a stateless child) and each child sees only its own entry: Residual's and
Shared's are ``(its layer's state,)`` (Shared's layer runs once per branch on it, in turn).
A wrapper of a single layer (Residual, Shared) has that layer's params unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcdl import debug, random, tree
from funcdl.layers import _fusion
from funcdl.layers import _per_example as per_example
from funcdl.layers import _step as stepping
from funcdl.layers._children import (
    ERRORS,
    check_children,
    child_apply,
    child_init,
    child_vjp,
    entries,
    is_stateful,
    kept,
    keys_for,
    name_of,
    no_state,
)
from funcdl.layers.base import (
    Layer,
    LayerLike,
    Shape,
    like,
    located,
    need_state,
    no_params,
    none_cotangent,
)

__all__ = ["Sequential"]



def _sequential_init(name: str, layers: Sequence[Any], where: list[str]) -> Callable[..., Any]:
    """Fold the shape through the children, one key each: ``(out_shape, params, state)``."""
    n = len(layers)

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any, Any]:
        params, states = [], []
        shape = in_shape
        keys = random.split_for(key, n, name) if n else ()
        for i, (layer, k) in enumerate(zip(layers, keys)):
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
    entry per layer. vjp: each child's vjp forward, then the pullbacks in reverse order;
    some neighbours run as one step (Dense + activation; ReLU after MaxPool2D: ``_fusion``),
    with the numbers of running them one by one, which ``debug.check_finite`` does.
    Keys: when a key is given, child i gets ``random.split(key, n)[i]`` (n children), so a
    twin in another framework can reproduce each child's draws."""
    layers = check_children("Sequential", layers)
    name = "Sequential(" + ", ".join(name_of(l) for l in layers) + ")"
    n = len(layers)
    where = [f"Sequential[{i}]" for i in range(n)]
    names = [name_of(l) for l in layers]
    init = _sequential_init(name, layers, where)

    nones, empty = (None,) * n, ((),) * n  # no keys; the states of stateless children
    steps = _fusion.steps(layers)
    act_of = _fusion.swaps(layers, steps)
    order = _fusion.order(steps, act_of)
    # check_layer's input
    ids, frozen = ((getattr(layers[0], "ids", None), getattr(layers[0], "frozen_id", None))
                   if layers else (None, None))
    vjps = [layer.vjp for layer in layers]

    def forward(params: Any, x: Any, states: Any, keys: Sequence[Any],
                train: bool) -> tuple[Any, list[Any], list[Any]]:
        """vjp's forward over ``steps``: ``(y, pullbacks, new states)``; a pullback is None
        after a fused pair's first layer. ``states`` None: a stateless model, whose hot path
        calls each child's own vjp (no state bookkeeping; new states ``[]``)."""
        pullbacks: list[Any] = [None] * n
        new_state: list[Any] = [] if states is None else [()] * n
        i, then = 0, None
        try:
            for i, then, act in steps:
                if then is not None:  # two stateless layers, the second parameterless
                    if states is not None:
                        no_state(layers[i], states[i])
                        no_state(layers[i + 1], states[i + 1])
                    second = params[i + 1]
                    if not (type(second) is tuple and not second):  # () as init gave it
                        no_params(names[i + 1], second)
                    x, pullbacks[i] = then(params[i], x, act)
                elif states is None:
                    x, pullbacks[i] = vjps[i](params[i], x, key=keys[i], train=train)
                else:
                    x, pullbacks[i], new_state[i] = child_vjp(layers[i], params[i], x,
                                                              states[i], keys[i], train)
        except ERRORS as e:
            k, err = _blame(layers, act_of.get(i + 1),
                            _fusion.owner(i, e, then is not None, names), e, params, x,
                            empty if states is None else states, train)
            raise located(where[k], names[k], err) from err
        return x, pullbacks, new_state

    applies = [layer.apply for layer in layers]

    def run(params: Any, x: Any, states: Any, keys: Sequence[Any],
            train: bool) -> tuple[Any, list[Any]]:
        """apply's loop over ``order``: ``(y, new states)``; ``states`` None as in
        ``forward``."""
        new_state: list[Any] = [] if states is None else [()] * n
        for i in order:
            try:
                if states is None:
                    x = applies[i](params[i], x, key=keys[i], train=train)
                else:
                    x, new_state[i] = child_apply(layers[i], params[i], x, states[i], keys[i],
                                                  train)
            except ERRORS as e:
                k, err = _blame(layers, act_of.get(i), i, e, params, x,
                                empty if states is None else states, train)
                raise located(where[k], names[k], err) from err
        return x, new_state

    if not any(is_stateful(l) for l in layers):
        # The hot path of every model: a plain loop, no state bookkeeping.
        def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
            entries(name, params, n, "params")
            if debug.enabled():  # the one read the unchecked path pays
                return _checked(name, layers, where, names, params, x, empty, key, train, False)[0]
            keys = nones if key is None else keys_for(key, n, name)
            return run(params, x, None, keys, train)[0]

        def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
            if type(params) is not tuple or len(params) != n:
                entries(name, params, n, "params")
            if debug.enabled():  # every layer's own output is checked, so nothing is fused
                x, pbs, _ = _checked(name, layers, where, names, params, x, empty, key, train, True)
                return x, _reverse(name, pbs, where, names, layers, params)
            keys = nones if key is None else keys_for(key, n, name)
            x, pullbacks, _ = forward(params, x, None, keys, train)
            return x, _reverse(name, pullbacks, where, names, layers, params)

        def init0(key: random.Key, in_shape: Shape) -> tuple[Any, Any]:
            out_shape, params, _ = init(key, in_shape)
            return out_shape, params

        return Layer(init0, apply, vjp, name=name, dx_optional=True, ids=ids,
                     frozen_id=frozen, step=stepping.sequential(layers, where))

    def apply_s(params: Any, x: Any, *, state: Any = None, key: Any = None,
                train: bool = False) -> tuple[Any, Any]:
        entries(name, params, n, "params")
        entries(name, need_state(name, state), n, "state")
        if debug.enabled():
            x, _, checked_state = _checked(name, layers, where, names, params, x, state, key, train,
                                           False)
            return x, kept(state, checked_state)
        x, new_state = run(params, x, state, keys_for(key, n, name), train)
        return x, kept(state, tuple(new_state))

    def vjp_s(params: Any, x: Any, *, state: Any = None, key: Any = None,
              train: bool = False) -> Any:
        entries(name, params, n, "params")
        entries(name, need_state(name, state), n, "state")
        if debug.enabled():
            x, pbs, checked_state = _checked(name, layers, where, names, params, x, state, key,
                                             train, True)
            return (x, _reverse(name, pbs, where, names, layers, params),
                    kept(state, checked_state))
        x, pullbacks, new_state = forward(params, x, state, keys_for(key, n, name), train)
        return (x, _reverse(name, pullbacks, where, names, layers, params),
                kept(state, tuple(new_state)))

    return Layer(init, apply_s, vjp_s, stateful=True, name=name, dx_optional=True,
                 ids=ids, frozen_id=frozen, step=stepping.sequential(layers, where))


def _blame(layers: Sequence[Any], act: int | None, k: int, e: Exception, params: Any, x: Any,
           states: Any, train: bool) -> tuple[int, Exception]:
    """``(index, error)`` to report for error ``e`` of child ``k``: when it came from a
    swapped pair (activation index ``act``, whose pool ran first on ``x``), the
    activation's own error on ``x`` if it has one, as layer by layer (a float16 input is
    the ReLU's to refuse, not the pool's). Runs only on the way out of a failure."""
    if act is not None:
        try:
            child_apply(layers[act], params[act], x, states[act], None, train)
        except ERRORS as first:
            return act, first
    return k, e


def _checked(name: str, layers: Sequence[Any], where: list[str], names: list[str],
             params: Any, x: Any, states: Any, key: Any, train: bool,
             vjp: bool) -> tuple[Any, list[Any], Any]:
    """The forward of a Sequential while ``debug.check_finite`` is on, for apply and vjp:
    ``(y, pullbacks or [], new_state)``. Child by child, unfused, under ``debug.quiet``;
    each output and stateful child's new state is verified inside the ``try``, in the
    child's own name, so ``located`` adds the place once (``Sequential[3] Dense(25): NaN
    ...``), as for any other error of that child."""
    pullbacks, new_state = [], []
    debug.verify_input("Sequential", x)  # the data's NaN, not its first layer's
    with debug.quiet(), debug.inside():
        for i, (layer, p, s, k) in enumerate(zip(layers, params, states,
                                                 keys_for(key, len(layers), name))):
            try:
                if vjp:
                    x, pb, s = child_vjp(layer, p, x, s, k, train)
                    pullbacks.append(pb)
                else:
                    x, s = child_apply(layer, p, x, s, k, train)
                debug.verify(names[i], "forward output", x)
                if is_stateful(layer):
                    debug.verify(names[i], "new state", s)
            except ERRORS as e:
                raise located(where[i], names[i], e) from e
            new_state.append(s)
    return x, pullbacks, tuple(new_state)


def no_flow(params: Any) -> tuple[Any, None]:
    """A child's pullback when its cotangent is None: nothing flows back (the output came
    from integer ids, as Embedding's input does), so zero dparams and a None dx."""
    return per_example.zeros(params), None


def _reverse(name: str, pullbacks: list[Callable[..., tuple[Any, Any]]], where: list[str],
             names: list[str], layers: Sequence[Any],
             params: Sequence[Any]) -> Callable[..., Any]:
    """The pullback of a composition: the children's pullbacks in reverse order.

    A child's dx may be None (nothing flows back from integer ids); the ``dy`` given from
    outside may not. ``need_dx=False`` (value_and_grad's call when nobody reads the input's
    cotangent) stops at the first child with parameters and asks it to skip its dx when it
    can. Whether ``debug.check_finite`` checks each child's dx and dparams is read when the
    pullback is called (as torch's anomaly mode, at backward time), not when it was made."""
    n = len(pullbacks)

    def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Any]:
        if dy is None:
            raise none_cotangent(name)
        if debug.enabled():
            with debug.quiet():  # NumPy's warnings must not pre-empt the check's error
                return backward(dy, need_dx, True)
        return backward(dy, need_dx, False)

    # apart from pullback, so that pullback never names itself: a function in its own
    # closure is a reference cycle, and every activation the children's pullbacks hold
    # would then wait for the garbage collector instead of going with the pullback
    def backward(dy: Any, need_dx: bool, checking: bool) -> tuple[Any, Any]:
        dparams: list[Any] = [None] * n
        stop = 0 if need_dx else _first_with_params(params)
        i = n - 1
        try:
            for i in range(n - 1, stop - 1, -1):
                pb = pullbacks[i]
                if pb is None:  # the second layer of a fused step (see _fusion)
                    dparams[i] = params[i]  # no leaves: (), {} or None, as given
                elif dy is None:  # below an Embedding: nothing flows back
                    dparams[i], dy = no_flow(params[i])
                elif i == stop and not need_dx and getattr(layers[i], "dx_optional", False):
                    dparams[i], dy = pb(dy, need_dx=False)
                else:
                    dparams[i], dy = pb(dy)
                if checking:  # in the child's name: `located` below adds the place
                    if dy is not None:
                        debug.verify(names[i], "backward pass: dx", dy)
                    debug.verify(names[i], "backward pass: dparams", dparams[i])
        except ERRORS as e:
            k = _fusion.owner(i, e, i + 1 < n and pullbacks[i + 1] is None, names)
            raise located(where[k], names[k], e) from e
        dparams[:stop] = params[:stop]  # no leaves: (), {} or None, as given
        return like(params, dparams), (dy if need_dx else None)

    return pullback


def _first_with_params(params: Sequence[Any]) -> int:
    """The index of the first entry holding a leaf (len(params) if none does)."""
    for i, p in enumerate(params):
        # A layer's params are () or a non-empty dict of arrays in the common case.
        if p is None or (type(p) is tuple and not p):
            continue
        if type(p) is dict:
            for v in p.values():
                if type(v) is np.ndarray:
                    return i
        if tree.leaves(p):
            return i
    return len(params)
