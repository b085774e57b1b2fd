"""Gradients by chaining hand-written vjps: the model's, then the loss's.

Example::

    f = fd.value_and_grad(model, fd.losses.mse)
    loss, grads = f(params, x, y)                 # grads has the structure of params
    updates, opt_state = opt.update(opt_state, grads, params)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import _examples as examples
from funcdl import _per_example_mode as per_example_mode
from funcdl import debug, tree
from funcdl._args import array_arg, bool_arg, train_arg

__all__ = ["grad", "per_example_grad", "per_example_value_and_grad", "value_and_grad", "vjp"]


def _name(f: Any) -> str:
    return str(getattr(f, "name", f))


def _unpack(where: str, loss: Any, got: Any) -> tuple[Any, Any]:
    """A loss vjp's ``(value, pullback)``, or a TypeError saying what came instead."""
    if isinstance(got, (tuple, list)) and len(got) == 2:
        return got[0], got[1]
    hint = (" (value, pullback, aux): pass has_aux=True" if isinstance(got, tuple)
            and len(got) == 3 else "")
    raise TypeError(f"{where}: the vjp of the loss {_name(loss)} must return "
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
    raise TypeError(f"{where}(has_aux=True): the loss {_name(loss)} must return "
                    f"(value, aux), got {_what(out)}; return the pair from the loss (its "
                    f"vjp then returns ((value, aux), pullback) or (value, pullback)), or "
                    f"pass has_aux=False")


def _scalar_value(where: str, loss: Any, value: Any, has_aux: bool) -> None:
    """A TypeError unless the loss ``value`` is one real number (funcdl's losses give a
    Python float, which skips this)."""
    if isinstance(value, (tuple, list)):  # np.ndim fails on (value, array): say why
        hint = ("the value in (value, aux) must be a scalar" if has_aux
                else "for a loss returning (value, aux), pass has_aux=True")
        raise TypeError(f"{where}: the loss {_name(loss)} returned a "
                        f"{type(value).__name__} of length {len(value)} where a scalar "
                        f"belongs; {hint}")
    if np.ndim(value) != 0:
        raise TypeError(f"{where}: the loss must be a scalar, got an array of "
                        f"shape {np.shape(value)} (reduction='none'?); use 'mean' or "
                        f"'sum', or reduce it in your own loss")
    if np.asarray(value).dtype.kind not in "iuf":
        raise TypeError(f"{where}: the loss {_name(loss)} returned {value!r} "
                        f"({type(value).__name__}) where its value belongs; it must be a "
                        f"real number")


def _pullback_error(where: str, loss: Any, pullback: Any, has_aux: bool) -> None:
    """After a TypeError calling the loss's pullback: raise one naming the loss if the
    pullback is at fault (not a function, or not taking the cotangent); else return."""
    order = (" (with has_aux, the vjp returns ((value, aux), pullback) or (value, "
             "pullback, aux), in that order)" if has_aux else "")
    if not callable(pullback):
        raise TypeError(f"{where}: the vjp of the loss {_name(loss)} returned a "
                        f"{type(pullback).__name__} where its pullback belongs, a function "
                        f"g -> dpred{order}") from None
    try:
        inspect.signature(pullback).bind(1.0)
    except TypeError:
        raise TypeError(f"{where}: the pullback of the loss {_name(loss)} must take "
                        f"one argument, the cotangent g of the loss value (1.0), and return "
                        f"dpred; its signature is {inspect.signature(pullback)}") from None
    except ValueError:  # no signature to read (a builtin): the original error stands
        return


def _positional(where: str, call: str, more: tuple[Any, ...]) -> None:
    """The TypeError for arguments past ``call``'s positional ones (``f(p, x, t, key)``),
    which Python would report as a bare count."""
    raise TypeError(f"{where}: {call}) takes {len(more)} positional argument(s) too many; "
                    f"key=, train= and state= are keyword-only: {call}, key=..., "
                    f"train=..., state=...)")


def vjp(layer: Any, params: Any, x: Any, *more: Any, **kwargs: Any) -> Any:
    """``(y, pullback)`` of ``layer`` at ``(params, x)``; ``pullback(dy) -> (dparams, dx)``.
    A stateful layer needs ``state=`` and returns ``(y, pullback, new_state)``."""
    if more:
        _positional("vjp", "vjp(layer, params, x", more)
    from funcdl.layers._guard import guarded  # here: import funcdl loads no layers
    from funcdl.layers.base import layer_arg

    layer_arg("vjp", layer)
    if debug.enabled():  # the data's NaN, not the first layer's
        debug.verify_input("vjp", x)
    return guarded(layer).vjp(params, x, **kwargs)


def value_and_grad(model: Any, loss: Any, *, has_aux: bool = False,
                   wrt_input: bool = False) -> Callable[..., Any]:
    """Return ``f(params, x, target, *, key=None, train=True) -> (value, grads)``.

    - ``loss(pred, target)`` must have ``loss.vjp(pred, target) -> (value, pullback)``; with
      ``has_aux=True`` the loss returns ``(value, aux)`` and ``f`` returns
      ``((value, aux), grads)``, as ``jax.value_and_grad`` does. Its vjp then returns
      ``((value, aux), pullback)``, ``(value, pullback, aux)`` (``jax.vjp``'s order) or
      ``(value, pullback)``, the aux then taken from ``loss(pred, target)``.
    - ``wrt_input=True``: ``grads`` is ``(dparams, dx)``.
    - a stateful model (BatchNorm inside): ``f(params, x, target, *, state, ...)`` returns
      ``((value, new_state), grads)``, or ``((value, aux, new_state), grads)`` with aux.
    """
    return _value_and_grad(model, loss, has_aux, wrt_input, "value_and_grad")


def _value_and_grad(model: Any, loss: Any, has_aux: bool, wrt_input: bool,
                    where: str, each: str | None = None) -> Callable[..., Any]:
    """``value_and_grad``, its errors naming ``where`` (``grad`` when called through it).
    ``each``: per-example grads (``per_example_value_and_grad``), the loss's reduction
    over the batch: ``'mean'`` multiplies its dpred by the batch size (the scale on the
    small dpred rather than on every per-example gradient). Every call sets the
    per-example mode for its own duration, on or off."""
    stateful = bool(getattr(model, "stateful", False))
    has_aux = bool_arg(has_aux, where, "has_aux")  # 'no' would count as True
    wrt_input = bool_arg(wrt_input, where, "wrt_input")
    from funcdl.layers._guard import guarded  # here: import funcdl loads no layers
    from funcdl.layers.base import Layer, layer_arg
    from funcdl.losses import bound

    layer_arg(where, model, "the model must be a layer")
    model, loss, given = guarded(model), bound(loss), loss
    if isinstance(loss, Layer):  # it has a vjp too, and would fail on the target as params
        raise TypeError(f"{where}: the loss is a layer, {loss.name}; pass the model "
                        f"first and a loss second, a function of (pred, target) with a .vjp, "
                        f"as fd.losses.mse")
    if not callable(getattr(loss, "vjp", None)):  # the class Loss has a vjp, not callable
        raise TypeError(f"{where}: the loss needs a .vjp(pred, target) method, got "
                        f"{loss!r}; bind a funcdl loss's options with functools.partial "
                        f"(partial(fd.losses.huber, delta=0.5)), or build your own as "
                        f"funcdl.losses.Loss(name, vjp), vjp returning (value, pullback), or "
                        f"((value, aux), pullback) with has_aux=True, e.g. from a funcdl "
                        f"loss's own vjp")

    skip_dx = not wrt_input and bool(getattr(model, "dx_optional", False))

    def f(params: Any, x: Any, target: Any, *more: Any, key: Any = None, train: bool = True,
          **kwargs: Any) -> Any:
        if more:
            _positional(where, "f(params, x, target", more)
        train = train_arg(train, where)
        if debug.enabled():  # the one read the unchecked path pays
            debug.verify_input(where, x)  # the data's NaN, not the first layer's
            debug.verify_input(where, target, "target")  # nor the loss's
            with debug.quiet():  # NumPy's warnings must not pre-empt the check's error
                try:
                    return step(params, x, target, key, train, kwargs, True)
                except FloatingPointError as err:
                    debug.note_params(err, params)
                    raise
        return step(params, x, target, key, train, kwargs, False)

    def step(params: Any, x: Any, target: Any, key: Any, train: bool, kwargs: dict[str, Any],
             checking: bool) -> Any:
        if each is None and not per_example_mode.ON.get():  # plain, and not inside one
            return steps(params, x, target, key, train, kwargs, checking, 0)
        n = _batch_size(where, x) if each else 0
        tokens = per_example_mode.ON.set(each is not None), per_example_mode.SIZE.set(n)
        try:
            return steps(params, x, target, key, train, kwargs, checking, n)
        finally:
            per_example_mode.SIZE.reset(tokens[1])
            per_example_mode.ON.reset(tokens[0])

    def steps(params: Any, x: Any, target: Any, key: Any, train: bool, kwargs: dict[str, Any],
              checking: bool, n: int) -> Any:
        if stateful:
            if "state" not in kwargs:
                raise TypeError(f"{where}: the model {getattr(model, 'name', model)} "
                                f"is stateful; pass state=... (from init)")
            if len(kwargs) > 1:  # else the model's vjp names itself, not the loss's options
                raise TypeError(f"{where}: unexpected keyword arguments "
                                f"{sorted(set(kwargs) - {'state'})} for a stateful model: f "
                                f"takes key=, train= and state=; bind a loss's options to the "
                                f"loss, value_and_grad(model, functools.partial("
                                f"fd.losses.huber, delta=0.5))")
            y, pullback, new_state = model.vjp(params, x, key=key, train=train, **kwargs)
        else:
            if kwargs:
                raise TypeError(f"{where}: unexpected keyword arguments "
                                f"{sorted(kwargs)} for a stateless model: f takes key= and "
                                f"train= (and state= for a stateful one); bind a loss's "
                                f"options to the loss, value_and_grad(model, "
                                f"functools.partial(fd.losses.huber, delta=0.5))")
            y, pullback = model.vjp(params, x, key=key, train=train)
        if checking:
            debug.verify(_name(model), "forward output", y)
            if stateful:
                debug.verify(_name(model), "new state", new_state)
        if each is None:
            value, aux, dy = _loss_step(where, loss, y, target, has_aux, given)
        else:  # the loss is not the model: a layer it runs itself sums over the batch
            off = per_example_mode.ON.set(False)
            try:
                value, aux, dy = _loss_step(where, loss, y, target, has_aux, given)
            finally:
                per_example_mode.ON.reset(off)
        if each == "mean":
            dy = tree.map(lambda d: d * d.dtype.type(n), dy)
        if checking:
            debug.verify(f"{_name(loss)}", "loss value", value)
            debug.verify(f"{_name(loss)}", "backward pass: dpred", dy)
        if not skip_dx:
            dparams, dx = pullback(dy)
        else:  # nobody reads dx: let the first layer skip it
            dparams, dx = pullback(dy, need_dx=False)
        if checking:
            debug.verify(_name(model), "backward pass: dparams", dparams)
            if dx is not None:  # None: nothing flows back to integer ids, or dx skipped
                debug.verify(_name(model), "backward pass: dx", dx)
        grads = (dparams, dx) if wrt_input else dparams
        if stateful:
            return ((value, aux, new_state) if has_aux else (value, new_state)), grads
        return ((value, aux) if has_aux else value), grads

    f.wrt_input = wrt_input  # type: ignore[attr-defined]  # read by parallel.data_parallel
    return f


def _loss_step(where: str, loss: Any, y: Any, target: Any, has_aux: bool,
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
        raise TypeError(f"{where}: the pullback of the loss {_name(loss)} returned a "
                        f"tuple of {len(dy)}; it must return dpred alone, an array of pred's "
                        f"shape {y.shape} (targets get no gradient)")
    if dy is None:  # the model's pullback would read None as "nothing flows back"
        raise TypeError(f"{where}: the pullback of the loss {_name(loss)} returned "
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
    return value, aux, dy


def _dpred(where: str, loss: Any, y: Any, dy: Any, at: str = "") -> Any:
    """A user loss's dpred (entry ``at`` of a tuple) as pred's dtype (as torch's engine casts
    a gradient), or an error naming the loss when it is not an array of pred's shape: the
    model's first pullback to read it would otherwise be blamed, or broadcast it."""
    if type(dy) is np.ndarray and dy.shape == y.shape and dy.dtype == y.dtype:
        return dy
    got = array_arg(dy, where, f"the dpred{at} of the loss {_name(loss)}")
    if got.shape != y.shape:
        raise ValueError(f"{where}: the pullback of the loss {_name(loss)} returned "
                         f"dpred{at} of shape {got.shape}; it must have pred{at}'s shape "
                         f"{y.shape}")
    if got.dtype.kind != y.dtype.kind or got.dtype.kind not in "fc":
        raise TypeError(f"{where}: the pullback of the loss {_name(loss)} returned "
                        f"dpred{at} of dtype {got.dtype}; it must be of pred{at}'s kind "
                        f"({y.dtype})")
    with np.errstate(over="ignore"):  # beyond float32: inf, as the layers' casts give
        return got.astype(y.dtype, copy=False)


def grad(model: Any, loss: Any, *, has_aux: bool = False,
         wrt_input: bool = False) -> Callable[..., Any]:
    """As ``value_and_grad`` without the value: returns ``grads``; ``(grads, aux)`` with
    ``has_aux``; ``(grads, new_state)`` for a stateful model (``(grads, aux, new_state)``)."""
    vg = _value_and_grad(model, loss, has_aux, wrt_input, "grad")
    stateful, has_aux = bool(getattr(model, "stateful", False)), bool(has_aux)

    def g(params: Any, x: Any, target: Any, *more: Any, **kwargs: Any) -> Any:
        if more:
            _positional("grad", "g(params, x, target", more)
        out, grads = vg(params, x, target, **kwargs)
        if not (has_aux or stateful):
            return grads
        return (grads, *out[1:])

    return g


def per_example_value_and_grad(model: Any, loss: Any, *, has_aux: bool = False,
                               loss_reduction: str = "mean") -> Callable[..., Any]:
    """As ``value_and_grad``, but each leaf of ``grads`` has a leading axis of one entry per
    example (``jax.vmap(jax.grad(...))``; Opacus' ``grad_sample``). ``loss_reduction``
    (Opacus' name) says how the loss reduces over the batch: with ``'mean'`` (funcdl's
    default) entry n is N times example n's share of the batch's gradient, so their mean
    over the examples is ``value_and_grad``'s grads; with ``'sum'`` (a loss called with
    ``reduction='sum'``) entry n is that share itself, their sum the batch's. Either way,
    for a loss that treats the examples alike (mse, cross-entropy without class weights or
    ignored labels) entry n is the gradient of example n's own loss,
    ``grad(params, x[n:n + 1], target[n:n + 1])``. One pass over the batch: each layer with
    params keeps its gradient's sum over the examples apart (one batched BLAS product where
    the batch takes one). The value is the batch's, as ``value_and_grad``'s. Embedding's
    entries are whole tables, N·vocab·dim numbers (as Opacus' grad_sample).

    Rules exist for Dense, Conv1D, Conv2D, Embedding, PositionalEmbedding, LayerNorm,
    RMSNorm, GroupNorm, InstanceNorm, BatchNorm at inference (``train=False``; in training
    its statistics mix the examples), PReLU, Bilinear, ConvTranspose1D, ConvTranspose2D,
    MultiHeadAttention, SimpleRNN, LSTM and GRU, WeightNorm and SpectralNorm of those, and
    every combinator that routes its children's gradients (the Transformer blocks and
    Bidirectional are built of those); BatchThreads and BatchNorm in training refuse, and
    another layer with params is a ValueError naming its params.
    The grads feed ``optim.dpsgd`` and the per-example clipping transforms."""
    where = "per_example_value_and_grad"
    if loss_reduction not in ("mean", "sum"):
        raise ValueError(f"{where}: loss_reduction must be 'mean' or 'sum', how the loss "
                         f"reduces over the batch, got {loss_reduction!r}")
    vg = _value_and_grad(model, loss, has_aux, False, where, each=loss_reduction)

    def f(params: Any, x: Any, target: Any, *more: Any, **kwargs: Any) -> Any:
        if more:
            _positional(where, "f(params, x, target", more)
        out, grads = vg(params, x, target, **kwargs)
        return out, _per_example_shapes(where, params, grads, _batch_size(where, x))

    return f


def per_example_grad(model: Any, loss: Any, *, has_aux: bool = False,
                     loss_reduction: str = "mean") -> Callable[..., Any]:
    """As ``grad``, per example: see ``per_example_value_and_grad``."""
    vg = per_example_value_and_grad(model, loss, has_aux=has_aux,
                                    loss_reduction=loss_reduction)
    stateful, has_aux = bool(getattr(model, "stateful", False)), bool(has_aux)

    def g(params: Any, x: Any, target: Any, *more: Any, **kwargs: Any) -> Any:
        if more:
            _positional("per_example_grad", "g(params, x, target", more)
        out, grads = vg(params, x, target, **kwargs)
        return grads if not (has_aux or stateful) else (grads, *out[1:])

    return g


def _batch_size(where: str, x: Any) -> int:
    n = examples.count(x)
    if n is None:
        first = tree.leaves(x)[:1]
        raise ValueError(f"{where}: per-example gradients need a batch axis: x must hold "
                         f"the examples on axis 0 of its (first) array, got "
                         f"{'no array' if not first else f'shape {np.shape(first[0])}'}")
    return n


def _per_example_shapes(where: str, params: Any, grads: Any, n: int) -> Any:
    """``grads``, each leaf checked to be ``(n, *param.shape)``: a layer without a
    per-example rule returns its sum over the batch, the param's shape, named here."""
    from funcdl.layers._per_example import LAYERS

    for (path, g), p in zip(tree.leaves_with_path(grads), tree.leaves(params), strict=True):
        shape = np.shape(p)
        if np.shape(g) != (n, *shape):
            summed = np.shape(g) == shape
            raise ValueError(
                f"{where}: params{path} came back with gradient shape {np.shape(g)}, not "
                f"({n}, *{shape}) for {n} examples"
                + (": its layer has no per-example rule and summed over the batch; rules "
                   f"exist for {LAYERS}; for another layer loop over the rows, "
                   f"grad(params, x[i:i + 1], target[i:i + 1])" if summed else ""))
    return grads
