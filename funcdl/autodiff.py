"""Gradients by chaining hand-written vjps: the model's, then the loss's.

Example::

    f = fd.value_and_grad(model, fd.losses.mse)
    loss, grads = f(params, x, y)                 # grads has the structure of params
    updates, opt_state = opt.update(opt_state, grads, params)

Reverse mode only: every layer has a vjp and none a jvp, so there is no forward mode, no
Hessian and no gradient of a gradient (``jax.jvp``, ``jax.hessian``, torch's
``create_graph=True``). A Hessian-vector product is a central difference of two gradients,
``H v ≈ (∇L(p + εv) - ∇L(p - εv)) / 2ε`` on ``tree.ravel``'s vector (README's "Second
order"); a derivative in the input inside a loss (a PINN's residual) likewise, by
differences of forward passes whose vjps chain.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import _examples as examples
from funcdl import _per_example_mode as per_example_mode
from funcdl import debug, tree
from funcdl._args import bool_arg, train_arg
from funcdl._loss_step import label, loss_step

__all__ = ["grad", "per_example_active", "per_example_grad", "per_example_value_and_grad",
           "value_and_grad", "vjp"]


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
            debug.verify(label(model), "forward output", y)
            if stateful:
                debug.verify(label(model), "new state", new_state)
        if each is None:
            value, aux, dy = loss_step(where, loss, y, target, has_aux, given)
        else:  # the loss is not the model: a layer it runs itself sums over the batch
            off = per_example_mode.ON.set(False)
            try:
                value, aux, dy = loss_step(where, loss, y, target, has_aux, given)
            finally:
                per_example_mode.ON.reset(off)
        if each == "mean":
            dy = tree.map(lambda d: d * d.dtype.type(n), dy)
        if checking:
            debug.verify(f"{label(loss)}", "loss value", value)
            debug.verify(f"{label(loss)}", "backward pass: dpred", dy)
        if not skip_dx:
            dparams, dx = pullback(dy)
        else:  # nobody reads dx: let the first layer skip it
            dparams, dx = pullback(dy, need_dx=False)
        if checking:
            debug.verify(label(model), "backward pass: dparams", dparams)
            if dx is not None:  # None: nothing flows back to integer ids, or dx skipped
                debug.verify(label(model), "backward pass: dx", dx)
        grads = (dparams, dx) if wrt_input else dparams
        if stateful:
            return ((value, aux, new_state) if has_aux else (value, new_state)), grads
        return ((value, aux) if has_aux else value), grads

    f.wrt_input = wrt_input  # type: ignore[attr-defined]  # read by parallel.data_parallel
    return f


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

    Rules exist for Dense, Conv1D, Conv2D, Conv3D, Embedding, Unembed, PositionalEmbedding,
    LayerNorm, RMSNorm, GroupNorm, InstanceNorm, BatchNorm at inference (``train=False``; in
    training its statistics mix the examples), PReLU, Bilinear, ConvTranspose1D, ConvTranspose2D,
    MultiHeadAttention, SimpleRNN, LSTM and GRU, WeightNorm and SpectralNorm of those, and
    every combinator that routes its children's gradients (the Transformer blocks and
    Bidirectional are built of those); BatchThreads and BatchNorm in training refuse, and
    another layer with params is a ValueError naming its params.
    A layer of your own with params joins in by reading ``per_example_active()``.
    A funcdl loss whose ``reduction`` (bound by ``functools.partial``, else its default
    ``'mean'``; a ``losses.combine``'s, each term's) disagrees with ``loss_reduction`` is a
    ValueError: the entries would be N times (or 1/N of) each example's gradient.
    The grads feed ``optim.dpsgd`` and the per-example clipping transforms."""
    where = "per_example_value_and_grad"
    if loss_reduction not in ("mean", "sum"):
        raise ValueError(f"{where}: loss_reduction must be 'mean' or 'sum', how the loss "
                         f"reduces over the batch, got {loss_reduction!r}")
    _same_reduction(where, loss, loss_reduction)
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


def per_example_active() -> bool:
    """Whether the vjp or pullback running now is inside ``per_example_grad`` (or
    ``per_example_value_and_grad``). A layer of your own with params reads it and, when
    True, returns from its pullback each example's gradient, an axis of N in front, in
    place of their sum: for ``y = x w`` on (N, I), ``dw[n] = x[n]ᵀ dy[n]``, (N, I, O),
    where the sum is ``xᵀ dy``, (I, O). Without it such a layer's summed gradient is a
    ValueError naming its params. A plain ``grad`` called inside (a gradient penalty)
    reads False, as its gradients are sums."""
    return per_example_mode.ON.get()


# a loss's reduction over the batch -> the loss_reduction it needs
_REDUCTIONS = {"mean": "mean", "batchmean": "mean", "sum": "sum"}


def _same_reduction(where: str, loss: Any, loss_reduction: str) -> None:
    """A ValueError when a loss of ``funcdl.losses`` (or a ``Loss`` whose vjp has a
    ``reduction=`` option, or a ``losses.combine`` of such terms) reduces over the batch
    otherwise than ``loss_reduction`` says: ``partial(mse, reduction='sum')`` under the
    default ``'mean'`` gave every entry N times the example's gradient, silently (clipped
    wholesale by DP-SGD); a combine whose terms reduce both ways fits neither. Another
    loss's reduction cannot be read: ``loss_reduction`` is then taken at its word."""
    from funcdl.losses import bound

    found = [r for r in _reductions(loss) if r in _REDUCTIONS]  # 'none': the scalar check's
    wants = {_REDUCTIONS[r] for r in found}
    if len(wants) > 1:
        raise ValueError(f"{where}: the loss {bound(loss).name} has terms reducing over the "
                         f"batch by {' and by '.join(sorted(set(map(repr, found))))}: no "
                         f"loss_reduction gives each example's gradient; bind one reduction "
                         f"for every term (e.g. reduction='sum' in each, with "
                         f"loss_reduction='sum')")
    if not wants or wants == {loss_reduction}:
        return
    reduction, want = found[0], wants.pop()
    factor = "N times" if want == "sum" else "1/N of"
    raise ValueError(f"{where}: the loss {bound(loss).name} reduces over the batch by "
                     f"{reduction!r}, but loss_reduction={loss_reduction!r}: each entry "
                     f"would be {factor} its example's gradient; pass "
                     f"loss_reduction={want!r}")


def _reductions(loss: Any) -> list[Any]:
    """The ``reduction`` options of a funcdl loss: its bound or default one, a combine's
    terms' each; none for a loss whose option cannot be read."""
    from funcdl.losses import Loss
    from funcdl.losses._combine import _Combined

    func, kw = (loss.func, loss.keywords) if isinstance(loss, functools.partial) else (loss, {})
    if not isinstance(func, Loss):
        return []
    if isinstance(func.vjp, _Combined):  # each term reads its own entries, reduced its way
        return [r for term in func.vjp.terms for r in _reductions(term.loss)]
    if kw.get("reduction") is not None:
        return [kw["reduction"]]
    try:
        option = inspect.signature(func.vjp).parameters.get("reduction")
    except (TypeError, ValueError):  # a builtin's vjp: nothing to read
        return []
    if option is None or option.default is inspect.Parameter.empty:
        return []
    return [option.default]


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

    bad = per_example_mode.first_summed(params, grads, n)
    if bad is not None:
        path, got, shape = bad
        raise ValueError(
            f"{where}: params{path} came back with gradient shape {got}, not "
            f"({n}, *{shape}) for {n} examples"
            + (": its layer has no per-example rule and summed over the batch; rules "
               f"exist for {LAYERS}; a layer of your own returns them when "
               f"fd.autodiff.per_example_active() is True; for another layer loop over "
               f"the rows, grad(params, x[i:i + 1], target[i:i + 1])"
               if got == shape else ""))
    return grads
