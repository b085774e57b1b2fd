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
    # a tuple's entries too: FanInConcat of (N, T) entries joins them along time
    for a in (x if isinstance(x, (tuple, list)) else (x,)):
        ndim = getattr(a, "ndim", None)
        if ndim is not None and ndim < 3:
            raise TypeError(f"{name_of(layer)} cannot be stepped on an input of shape "
                            f"{a.shape}: it acts on the last axis, which is the time axis "
                            f"of (N, T); a step is position-wise only on (N, T, features)")


def _last_start(layer: Any, params: Any, x: Any, max_len: int,
                state: Any) -> tuple[Any, Any]:
    _time_axis_kept(layer, x)
    return _pw_start(layer, params, x, max_len, state)


POSITIONWISE = Stepper(_pw_start, _pw_step)
LAST_AXIS = Stepper(_last_start, _pw_step)


# ---------------------------------------------------------------------------- combinators

# A combinator runs its children through ``call(child, params, cache, x, state) -> (y,
# cache)``: their starts at decode_init (no cache yet: None), their steps after; one
# ``run`` per combinator serves both (``_both``).
Call = Callable[[Any, Any, Any, Any, Any], tuple[Any, Any]]
Run = Callable[[Any, Any, Any, Any, Any, Call], tuple[Any, Any]]


def _both(run: Run) -> Stepper:
    """The stepper whose start and step are ``run(layer, params, cache, x, state, call)``
    with ``call`` the children's start or step."""
    def start(layer: Any, params: Any, x: Any, max_len: int, state: Any) -> tuple[Any, Any]:
        def call(child: Any, p: Any, c: Any, x: Any, s: Any) -> tuple[Any, Any]:
            del c
            return stepper_of(child).start(child, p, x, max_len, s)
        return run(layer, params, None, x, state, call)

    def step(layer: Any, params: Any, cache: Any, x: Any, t: int,
             state: Any) -> tuple[Any, Any]:
        def call(child: Any, p: Any, c: Any, x: Any, s: Any) -> tuple[Any, Any]:
            return stepper_of(child).step(child, p, c, x, t, s)
        return run(layer, params, cache, x, state, call)

    return Stepper(start, step)


def _parts(layer: Any, layers: Sequence[Any], params: Any, state: Any, cache: Any,
           stateful: bool) -> tuple[Sequence[Any], Sequence[Any], Sequence[Any]]:
    """The params, states and caches (None before the start), one entry per child, or the
    combinator's own error."""
    n, name = len(layers), name_of(layer)
    return (entries(name, params, n, "params"),
            entries(name, state, n, "state") if stateful else ((),) * n,
            (None,) * n if cache is None else cache)


def _located(where: str, call: Call, child: Any, p: Any, c: Any, x: Any,
             s: Any) -> tuple[Any, Any]:
    try:
        return call(child, p, c, x, s)
    except ERRORS as e:
        raise located(where, name_of(child), e) from e


def _in_series(layers: Sequence[Any], where: Sequence[str]) -> Run:
    stateful = any(is_stateful(c) for c in layers)

    def run(layer: Any, params: Any, cache: Any, x: Any, state: Any,
            call: Call) -> tuple[Any, Any]:
        caches = []
        for w, child, p, s, c in zip(where, layers, *_parts(layer, layers, params, state,
                                                            cache, stateful)):
            x, c = _located(w, call, child, p, c, x, s)
            caches.append(c)
        return x, tuple(caches)

    return run


def _side_by_side(layers: Sequence[Any], where: Sequence[str]) -> Run:
    stateful = any(is_stateful(c) for c in layers)

    def run(layer: Any, params: Any, cache: Any, xs: Any, state: Any,
            call: Call) -> tuple[Any, Any]:
        ps, ss, cs = _parts(layer, layers, params, state, cache, stateful)
        entries(name_of(layer), xs, len(layers), "inputs")
        out = [_located(w, call, child, p, c, x, s)
               for w, child, p, c, x, s in zip(where, layers, ps, cs, xs, ss)]
        return tuple(o[0] for o in out), tuple(o[1] for o in out)

    return run


def sequential(layers: Sequence[Any], where: Sequence[str]) -> Stepper:
    """``y = f_n(... f_1(x))`` one position at a time; the cache a tuple, one per child."""
    return _both(_in_series(layers, where))


def parallel(layers: Sequence[Any], where: Sequence[str]) -> Stepper:
    """``(f_1(x_1), ..., f_n(x_n))`` one position at a time; a cache per branch."""
    return _both(_side_by_side(layers, where))


def residual(child: Any, merged: Callable[[Any, Any], Any]) -> Stepper:
    """``x + f(x)`` one position at a time (``merged(x, f(x))``, the Residual's own sum);
    the cache f's."""
    stateful = is_stateful(child)

    def run(layer: Any, params: Any, cache: Any, x: Any, state: Any,
            call: Call) -> tuple[Any, Any]:
        y, c = _located("Residual", call, child, params, cache, x,
                        state[0] if stateful else ())
        return merged(x, y), c

    return _both(run)


def wrapped(child: Any, params_of: Callable[[Any], Any], name: str) -> Stepper:
    """A wrapper's stepper (a transformer block): its child's, on ``params_of(params)``,
    errors placed under ``name``."""
    def run(layer: Any, params: Any, cache: Any, x: Any, state: Any,
            call: Call) -> tuple[Any, Any]:
        p = params_of(params)
        try:
            return call(child, p, cache, x, state)
        except ERRORS as e:
            raise relabelled(name, e) from e

    return _both(run)


def repeated(child: Any, where: Sequence[str], series: bool) -> Stepper:
    """One child with one set of params applied ``len(where)`` times: in series (Repeat,
    as ``sequential``) or on each entry of a tuple (Shared, as ``parallel``); a cache per
    application. Its state, ``(the child's,)``, is each application's (inference)."""
    n, stateful = len(where), is_stateful(child)
    inner = (_in_series if series else _side_by_side)([child] * n, where)

    def run(layer: Any, params: Any, cache: Any, x: Any, state: Any,
            call: Call) -> tuple[Any, Any]:
        return inner(layer, (params,) * n, cache, x, (state[0],) * n if stateful else (),
                     call)

    return _both(run)
