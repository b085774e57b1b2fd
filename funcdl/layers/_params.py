"""What a layer with params checks of them: its initializer arguments and their draws, the
params it is given (arrays, of its keys, float32 or float64), the dtypes its gradients and
Python-float inputs take from them."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import initializers
from funcdl._args import refuse_masked
from funcdl.layers.base import _F32, Array, ours

# the factories of funcdl.initializers that need no settings (variance_scaling does)
_NO_SETTINGS = frozenset(n for n in initializers.__all__ if n != "variance_scaling")


def initializer_arg(name: str, what: str, init: Any) -> Any:
    """A layer's ``w_init``/``b_init`` argument: None (the layer's default) or an init
    function ``init(key, shape, dtype)``; a TypeError for a number, a string, or a factory
    of ``funcdl.initializers`` left uncalled (``glorot_uniform`` for ``glorot_uniform()``)."""
    if init is None:
        return None
    factory = getattr(init, "__name__", "")
    if getattr(initializers, factory, None) is init and factory != "fans":
        how = ": " if factory in _NO_SETTINGS else " with its settings, e.g. "
        args = "" if factory in _NO_SETTINGS else "1.0, 'fan_in', 'normal'"
        raise TypeError(f"{name}: {what}=initializers.{factory} is the factory; call it"
                        f"{how}{what}=initializers.{factory}({args})")
    if not callable(init):
        raise TypeError(f"{name}: {what} must be an init function (key, shape, dtype) -> "
                        f"array, such as funcdl.initializers.zeros(), got {init!r}")
    return init


def drawn(name: str, what: str, init: Any, key: Any, shape: tuple[int, ...],
          dtype: Any = np.float32) -> Array:
    """``init(key, shape, dtype)``, checked: an array of that shape and dtype, else a
    ValueError naming the layer (a user's init returning the wrong shape or float64); an
    init that fails (a stax-style ``init(key, shape)``, JAX's initializers, which read
    funcdl's keys as bad PRNG keys) is named too."""
    try:
        a = init(key, shape, dtype)
    except (TypeError, ValueError) as err:
        # NumPy's UFuncTypeError family takes (ufunc, dtypes), not a message: the builtin
        cls = type(err) if type(err) in (TypeError, ValueError) else (  # class beneath
            TypeError if isinstance(err, TypeError) else ValueError)
        if ours(init):  # funcdl's own initializer, called rightly: its refusal says why
            raise cls(f"{name}: {what}: {err}") from err
        raise cls(f"{name}: {what}(key, shape, dtype) failed: {type(err).__name__}: "
                  f"{err}; it must take a funcdl.random key, the shape {shape} and the "
                  f"dtype {np.dtype(dtype)}, as funcdl.initializers' functions do") from err
    if not (isinstance(a, np.ndarray) and a.shape == shape and a.dtype == dtype):
        got = (f"an array of shape {a.shape} and dtype {a.dtype}" if isinstance(a, np.ndarray)
               else type(a).__name__)
        raise ValueError(f"{name}: {what} gave {got}; it must return an array of the shape "
                         f"and dtype asked for, {shape} {np.dtype(dtype)}")
    return a


def weak_dtype(params: Any, key: str, name: str, keys: tuple[str, ...] = ()) -> np.dtype[Any]:
    """The dtype Python-float inputs take in a layer whose ``params[key]`` sets it: that
    array's floating dtype, else float32 (bad entries are refused afterwards, by name).
    Params that are no dict are refused here, naming the layer (``keys``: its params'
    keys, ``(key,)`` by default), before the input is read: a swapped ``apply(x, params)``
    would otherwise be blamed on the input, a dict that is no numeric array."""
    if not isinstance(params, dict):
        param_arrays(name, params, keys or (key,))
    p = params.get(key)
    dtype = getattr(p, "dtype", None)
    return dtype if isinstance(dtype, np.dtype) and dtype.char in "fd" else _F32


def param_arrays(name: str, params: Any, keys: tuple[str, ...]) -> list[Array]:
    """``[params[k] for k in keys]`` as arrays, or an error naming the layer and the keys."""
    if not isinstance(params, dict):
        raise TypeError(f"{name}: params must be a dict with keys {list(keys)} (as init "
                        f"returns them), got {type(params).__name__}")
    missing = [k for k in keys if k not in params]
    extra = [k for k in params if k not in keys]
    if missing or extra:
        what = f"lack {missing}" if missing else f"have unexpected keys {sorted(extra)}"
        raise ValueError(f"{name}: params {what}; expected keys {list(keys)} (as init "
                         f"returns them), got {sorted(params)}")
    for k in keys:
        if not isinstance(params[k], np.ndarray):
            raise TypeError(f"{name}: params[{k!r}] must be a NumPy array (as init returns "
                            f"it), got {type(params[k]).__name__}")
        refuse_masked(params[k], name, f"params[{k!r}]")  # as inputs and grads are
        float_param(name, k, params[k])
    return [plain(params[k]) for k in keys]


def plain(a: Array) -> Array:
    """``a`` itself, or a subclass's (np.memmap) plain data, as np.asarray reads it and as
    inputs are read: its own operators would leak it into outputs or fail in NumPy's words
    (a masked array is refused before, by ``param_arrays``)."""
    return a if type(a) is np.ndarray else np.asarray(a)


def float_param(name: str, k: str, a: Array, what: str = "params") -> None:
    """Params (or a state's vectors, ``what``) are float32 or float64: an integer one would
    take integer gradients (0.4 truncated to 0) and promote the output."""
    if a.dtype.char not in "fd":
        noun = "params" if what == "params" else f"{what}'s entries"
        raise TypeError(f"{name}: {what}[{k!r}] has dtype {a.dtype}; {noun} are float32 or "
                        f"float64 arrays (as init returns them): cast with "
                        f".astype(np.float32)")


def in_param_dtypes(grads: dict[str, Array], params: Any) -> dict[str, Array]:
    """Each gradient in its param's dtype, as JAX gives them: a float64 input must not turn
    a float32 param's gradient into float64."""
    for k, g in grads.items():
        dtype = params[k].dtype
        # identity first: the common case costs no dtype comparison; equal dtypes that are
        # other objects need no copy either
        if g.dtype is not dtype and g.dtype != dtype:
            with np.errstate(over="ignore"):  # beyond float32: inf, as JAX's cast gives
                grads[k] = g.astype(dtype)
    return grads
