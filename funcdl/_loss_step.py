"""The loss's part of a ``value_and_grad`` step: its vjp called at the model's output, and
what it returns checked (the value a real scalar, the pullback a function of the cotangent,
dpred an array of pred's shape), each error naming the loss and what came instead."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from funcdl._args import array_arg


def label(f: Any) -> str:
    """A model or loss as errors name it: its ``name``, else the value itself."""
    return str(getattr(f, "name", f))


def _unpack(where: str, loss: Any, got: Any) -> tuple[Any, Any]:
    """A loss vjp's ``(value, pullback)``, or a TypeError saying what came instead."""
    if isinstance(got, (tuple, list)) and len(got) == 2:
        return got[0], got[1]
    hint = (" (value, pullback, aux): pass has_aux=True" if isinstance(got, tuple)
            and len(got) == 3 else "")
    raise TypeError(f"{where}: the vjp of the loss {label(loss)} must return "
                    f"(value, pullback), got {_what(got)}{hint}")


def _what(got: Any) -> str:
    return (f"a {type(got).__name__} of length {len(got)}" if isinstance(got, (tuple, list))
            else f"a {type(got).__name__}")


def _split_aux(where: str, loss: Any, got: Any, pred: Any, target: Any,
               call: Any) -> tuple[Any, Any, Any]:
    """``(value, aux, pullback)`` of a loss with aux. Its vjp returns ``((value, aux),
    pullback)``, as a ``Loss`` built for it; or ``(value, pullback, aux)``, as
    ``jax.vjp(..., has_aux=True)``; or ``(value, pullback)``, the aux then coming from
    calling the loss as given (``call``: a partial of it, not the ``Loss`` bound from it,
    whose call gives the vjp's value alone), which returns ``(value, aux)``."""
    if isinstance(got, tuple) and len(got) == 3:
        return got[0], got[2], got[1]
    out, pullback = _unpack(where, loss, got)
    if isinstance(out, (tuple, list)) and len(out) == 2:  # a list too, as JAX takes it
        return out[0], out[1], pullback
    if not isinstance(out, (tuple, list)) and np.ndim(out) == 0 and callable(call):
        called = call(pred, target)
        if isinstance(called, (tuple, list)) and len(called) == 2:
            return out, called[1], pullback
        out = called
    raise TypeError(f"{where}(has_aux=True): the loss {label(loss)} must return "
                    f"(value, aux), got {_what(out)}; return the pair from the loss (its "
                    f"vjp then returns ((value, aux), pullback) or (value, pullback)), or "
                    f"pass has_aux=False")


def _scalar_value(where: str, loss: Any, value: Any, has_aux: bool) -> None:
    """A TypeError unless the loss ``value`` is one real number (funcdl's losses give a
    Python float, which skips this)."""
    if isinstance(value, (tuple, list)):  # np.ndim fails on (value, array): say why
        hint = ("the value in (value, aux) must be a scalar" if has_aux
                else "for a loss returning (value, aux), pass has_aux=True")
        raise TypeError(f"{where}: the loss {label(loss)} returned a "
                        f"{type(value).__name__} of length {len(value)} where a scalar "
                        f"belongs; {hint}")
    if np.ndim(value) != 0:
        raise TypeError(f"{where}: the loss must be a scalar, got an array of "
                        f"shape {np.shape(value)} (reduction='none'?); use 'mean' or "
                        f"'sum', or reduce it in your own loss")
    if np.asarray(value).dtype.kind not in "iuf":
        raise TypeError(f"{where}: the loss {label(loss)} returned {value!r} "
                        f"({type(value).__name__}) where its value belongs; it must be a "
                        f"real number")


def _pullback_error(where: str, loss: Any, pullback: Any, has_aux: bool) -> None:
    """After a TypeError calling the loss's pullback: raise one naming the loss if the
    pullback is at fault (not a function, or not taking the cotangent); else return."""
    order = (" (with has_aux, the vjp returns ((value, aux), pullback) or (value, "
             "pullback, aux), in that order)" if has_aux else "")
    if not callable(pullback):
        raise TypeError(f"{where}: the vjp of the loss {label(loss)} returned a "
                        f"{type(pullback).__name__} where its pullback belongs, a function "
                        f"g -> dpred{order}") from None
    try:
        inspect.signature(pullback).bind(1.0)
    except TypeError:
        raise TypeError(f"{where}: the pullback of the loss {label(loss)} must take "
                        f"one argument, the cotangent g of the loss value (1.0), and return "
                        f"dpred; its signature is {inspect.signature(pullback)}") from None
    except ValueError:  # no signature to read (a builtin): the original error stands
        return


def loss_step(where: str, loss: Any, y: Any, target: Any, has_aux: bool,
              given: Any) -> tuple[Any, Any, Any]:
    """``(value, aux, dpred)`` of the loss at the model's output (aux None without
    ``has_aux``), with errors naming what the loss returned that it should not. ``given``:
    the loss as passed, for the aux its call gives."""
    aux = None
    if has_aux:
        value, aux, loss_pullback = _split_aux(where, loss, loss.vjp(y, target), y, target,
                                               given)
    else:
        got = loss.vjp(y, target)
        value, loss_pullback = got if type(got) is tuple and len(got) == 2 else \
            _unpack(where, loss, got)
    if type(value) is not float:  # funcdl's losses give floats
        _scalar_value(where, loss, value, has_aux)
    try:
        dy = loss_pullback(1.0)
    except TypeError:
        _pullback_error(where, loss, loss_pullback, has_aux)
        raise
    if type(dy) is tuple and type(y) is np.ndarray:  # the model would stack or refuse it
        raise TypeError(f"{where}: the pullback of the loss {label(loss)} returned a "
                        f"tuple of {len(dy)}; it must return dpred alone, an array of pred's "
                        f"shape {y.shape} (targets get no gradient)")
    if dy is None:  # the model's pullback would read None as "nothing flows back"
        raise TypeError(f"{where}: the pullback of the loss {label(loss)} returned "
                        f"None; it must return dpred, an array of pred's shape (a missing "
                        f"return?)")
    if type(y) is np.ndarray:
        if not (type(dy) is np.ndarray and dy.shape == y.shape and dy.dtype == y.dtype):
            dy = _dpred(where, loss, y, dy)
    # a FanOut's outputs; a list checked as the tuple, which the model's pullback takes too
    elif type(y) is tuple and type(dy) in (tuple, list) and len(dy) == len(y):
        dy = tuple(_dpred(where, loss, yi, di, f"[{i}]")
                   if type(yi) is np.ndarray and di is not None else di
                   for i, (yi, di) in enumerate(zip(y, dy)))
    elif type(y) is tuple and (type(dy) is np.ndarray or type(dy) in (tuple, list)):
        # else the model's last combinator would be blamed for the loss's pullback
        got = (f"an array of shape {dy.shape}" if type(dy) is np.ndarray
               else f"a {type(dy).__name__} of {len(dy)}")
        raise ValueError(f"{where}: the pullback of the loss {label(loss)} returned {got}; "
                         f"pred is a tuple of {len(y)}, so it must return a tuple of "
                         f"{len(y)}, one dpred per entry (None for an entry it does not read)")
    return value, aux, dy


def _dpred(where: str, loss: Any, y: Any, dy: Any, at: str = "") -> Any:
    """A user loss's dpred (entry ``at`` of a tuple) as pred's dtype (as torch's engine casts
    a gradient), or an error naming the loss when it is not an array of pred's shape: the
    model's first pullback to read it would otherwise be blamed, or broadcast it."""
    if type(dy) is np.ndarray and dy.shape == y.shape and dy.dtype == y.dtype:
        return dy
    got = array_arg(dy, where, f"the dpred{at} of the loss {label(loss)}")
    if got.shape != y.shape:
        raise ValueError(f"{where}: the pullback of the loss {label(loss)} returned "
                         f"dpred{at} of shape {got.shape}; it must have pred{at}'s shape "
                         f"{y.shape}")
    if got.dtype.kind != y.dtype.kind or got.dtype.kind not in "fc":
        raise TypeError(f"{where}: the pullback of the loss {label(loss)} returned "
                        f"dpred{at} of dtype {got.dtype}; it must be of pred{at}'s kind "
                        f"({y.dtype})")
    with np.errstate(over="ignore"):  # beyond float32: inf, as the layers' casts give
        return got.astype(y.dtype, copy=False)
