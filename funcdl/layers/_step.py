"""How a layer takes part in incremental decoding (``layers.decode``): its ``Stepper``, held
in the Layer's optional ``step`` field, runs the layer on one new position at a time.

A stepper is two functions, each given the layer itself first::

    y, cache = stepper.start(layer, params, x, max_len, state)    # x: an example position
    y, cache = stepper.step(layer, params, cache, x, t, state)    # x: the input at position t

``start`` builds the layer's cache for sequences of up to ``max_len`` positions from an
example input of one position (its values unused but for the shapes and dtypes) and returns
the output an example gives (the next layer's example); ``step`` runs position ``t`` and
returns the new cache, the old one left as it was. ``state`` is the layer's own (``()`` for a
stateless one); decoding is inference, ``train=False``.

Three kinds: a position-wise layer (``POSITIONWISE``: it acts on each time step alone, so a
step is its apply on that step; ``LAST_AXIS``: the same for a layer acting on the last axis,
which must not be the time axis, so its input needs rank >= 3), a layer with its own cache
(causal self-attention, the positional encodings), and the combinators, whose steppers run
their children's in their order (``sequential``, ``parallel``, ``residual``, ``repeated``,
``wrapped``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from funcdl.layers._children import ERRORS, entries, is_stateful, name_of
from funcdl.layers._shapes import located
from funcdl.layers._stepper import Stepper
from funcdl.layers._wrap import relabelled

__all__ = ["LAST_AXIS", "POSITIONWISE", "Stepper", "parallel", "repeated", "residual",
           "sequential", "stepper_of", "wrapped"]


_WHY = ("decoding runs one position at a time, which needs each layer to act on every "
        "time step alone (Dense, LayerNorm, the activations, Embedding), to keep its own "
        "cache (causal MultiHeadAttention, the positional encodings) or to be a combinator "
        "of such layers (Sequential, Residual, Parallel, Repeat, Shared, FanOut, Select, FanInSum)")


def stepper_of(layer: Any) -> Stepper:
    """``layer``'s stepper, or a TypeError naming it and saying why it cannot be stepped."""
    got = getattr(layer, "step", None)
    if not isinstance(got, Stepper):
        raise TypeError(f"{name_of(layer)} cannot be stepped: {_WHY}; this layer is none of "
                        f"these (a recurrent layer, a convolution over time, or a layer "
                        f"mixing positions needs the whole prefix)")
    return got


def _run(layer: Any, params: Any, x: Any, state: Any) -> Any:
    if is_stateful(layer):  # inference: running statistics, the state left as it was
        return layer.apply(params, x, state=state, train=False)[0]
    return layer.apply(params, x)


def _pw_start(layer: Any, params: Any, x: Any, max_len: int, state: Any) -> tuple[Any, Any]:
    del max_len
    return _run(layer, params, x, state), ()


def _pw_step(layer: Any, params: Any, cache: Any, x: Any, t: int,
             state: Any) -> tuple[Any, Any]:
    del t
    return _run(layer, params, x, state), cache


def _time_axis_kept(layer: Any, x: Any) -> None:
    ndim = getattr(x, "ndim", None)
    if ndim is not None and ndim < 3:
        raise TypeError(f"{name_of(layer)} cannot be stepped on an input of shape "
                        f"{x.shape}: it acts on the last axis, which is the time axis of "
                        f"(N, T); a step is position-wise only on (N, T, features)")


def _last_start(layer: Any, params: Any, x: Any, max_len: int,
                state: Any) -> tuple[Any, Any]:
    _time_axis_kept(layer, x)
    return _pw_start(layer, params, x, max_len, state)


POSITIONWISE = Stepper(_pw_start, _pw_step)
LAST_AXIS = Stepper(_last_start, _pw_step)


# ---------------------------------------------------------------------------- combinators

def _parts(layer: Any, layers: Sequence[Any], params: Any, state: Any,
           stateful: bool) -> tuple[Sequence[Any], Sequence[Any]]:
    """The params and states, one entry per child, or the combinator's own error."""
    n, name = len(layers), name_of(layer)
    return (entries(name, params, n, "params"),
            entries(name, state, n, "state") if stateful else ((),) * n)


def _start_child(where: str, child: Any, p: Any, x: Any, max_len: int,
                 s: Any) -> tuple[Any, Any]:
    try:
        return stepper_of(child).start(child, p, x, max_len, s)
    except ERRORS as e:
        raise located(where, name_of(child), e) from e


def _step_child(where: str, child: Any, p: Any, c: Any, x: Any, t: int,
                s: Any) -> tuple[Any, Any]:
    try:
        return stepper_of(child).step(child, p, c, x, t, s)
    except ERRORS as e:
        raise located(where, name_of(child), e) from e


def sequential(layers: Sequence[Any], where: Sequence[str]) -> Stepper:
    """``y = f_n(... f_1(x))`` one position at a time; the cache a tuple, one per child."""
    stateful = any(is_stateful(c) for c in layers)

    def start(layer: Any, params: Any, x: Any, max_len: int, state: Any) -> tuple[Any, Any]:
        caches = []
        for w, child, p, s in zip(where, layers, *_parts(layer, layers, params, state,
                                                         stateful)):
            x, c = _start_child(w, child, p, x, max_len, s)
            caches.append(c)
        return x, tuple(caches)

    def step(layer: Any, params: Any, cache: Any, x: Any, t: int,
             state: Any) -> tuple[Any, Any]:
        caches = []
        ps, ss = _parts(layer, layers, params, state, stateful)
        for w, child, p, c, s in zip(where, layers, ps, cache, ss):
            x, c = _step_child(w, child, p, c, x, t, s)
            caches.append(c)
        return x, tuple(caches)

    return Stepper(start, step)


def parallel(layers: Sequence[Any], where: Sequence[str]) -> Stepper:
    """``(f_1(x_1), ..., f_n(x_n))`` one position at a time; a cache per branch."""
    stateful = any(is_stateful(c) for c in layers)

    def start(layer: Any, params: Any, xs: Any, max_len: int, state: Any) -> tuple[Any, Any]:
        ps, ss = _parts(layer, layers, params, state, stateful)
        entries(name_of(layer), xs, len(layers), "inputs")
        out = [_start_child(w, child, p, x, max_len, s)
               for w, child, p, x, s in zip(where, layers, ps, xs, ss)]
        return tuple(o[0] for o in out), tuple(o[1] for o in out)

    def step(layer: Any, params: Any, cache: Any, xs: Any, t: int,
             state: Any) -> tuple[Any, Any]:
        ps, ss = _parts(layer, layers, params, state, stateful)
        entries(name_of(layer), xs, len(layers), "inputs")
        out = [_step_child(w, child, p, c, x, t, s)
               for w, child, p, c, x, s in zip(where, layers, ps, cache, xs, ss)]
        return tuple(o[0] for o in out), tuple(o[1] for o in out)

    return Stepper(start, step)


def residual(child: Any, merged: Callable[[Any, Any], Any]) -> Stepper:
    """``x + f(x)`` one position at a time (``merged(x, f(x))``, the Residual's own sum);
    the cache f's."""
    stateful = is_stateful(child)

    def start(layer: Any, params: Any, x: Any, max_len: int, state: Any) -> tuple[Any, Any]:
        y, c = _start_child("Residual", child, params, x, max_len,
                            state[0] if stateful else ())
        return merged(x, y), c

    def step(layer: Any, params: Any, cache: Any, x: Any, t: int,
             state: Any) -> tuple[Any, Any]:
        y, c = _step_child("Residual", child, params, cache, x, t,
                           state[0] if stateful else ())
        return merged(x, y), c

    return Stepper(start, step)


def wrapped(child: Any, params_of: Callable[[Any], Any], name: str) -> Stepper:
    """A wrapper's stepper (a transformer block): its child's, on ``params_of(params)``,
    errors placed under ``name``."""
    def start(layer: Any, params: Any, x: Any, max_len: int, state: Any) -> tuple[Any, Any]:
        p = params_of(params)
        try:
            return stepper_of(child).start(child, p, x, max_len, state)
        except ERRORS as e:
            raise relabelled(name, e) from e

    def step(layer: Any, params: Any, cache: Any, x: Any, t: int,
             state: Any) -> tuple[Any, Any]:
        p = params_of(params)
        try:
            return stepper_of(child).step(child, p, cache, x, t, state)
        except ERRORS as e:
            raise relabelled(name, e) from e

    return Stepper(start, step)


def repeated(child: Any, where: Sequence[str], series: bool) -> Stepper:
    """One child with one set of params applied ``len(where)`` times: in series (Repeat,
    as ``sequential``) or on each entry of a tuple (Shared, as ``parallel``); a cache per
    application. Its state, ``(the child's,)``, is each application's (inference)."""
    n, stateful = len(where), is_stateful(child)
    inner = (sequential if series else parallel)([child] * n, where)

    def spread(params: Any, state: Any) -> tuple[Any, Any]:
        return (params,) * n, ((state[0],) * n if stateful else ())

    def start(layer: Any, params: Any, x: Any, max_len: int, state: Any) -> tuple[Any, Any]:
        ps, ss = spread(params, state)
        return inner.start(layer, ps, x, max_len, ss)

    def step(layer: Any, params: Any, cache: Any, x: Any, t: int,
             state: Any) -> tuple[Any, Any]:
        ps, ss = spread(params, state)
        return inner.step(layer, ps, cache, x, t, ss)

    return Stepper(start, step)
