"""optax's backtracking (Armijo) line search, ``scale_by_backtracking_linesearch``, and the
helpers it shares with the zoom (strong Wolfe) one in ``_zoom`` and with ``_lbfgs``: trees
checked and raveled, the loss read as a scalar, the user's functions called and checked.

A line search's update takes, as optax's, ``value=`` (the loss at ``params``), ``grad=``
(the gradient there), ``value_fn=`` (``params -> loss``) and, funcdl's addition,
``value_and_grad_fn=`` (``params -> (loss, grads)``: funcdl has no autodiff of arbitrary
functions, so a search that needs gradients at trial points takes them from the user).
A batch is closed over: ``value_fn=lambda p: loss_fn(p, x, y)``. ``chain`` and
``named_chain`` forward the keywords (``_keywords``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg, int_arg, real_arg
from funcdl._blas import product
from funcdl.optim._base import GradientTransformation, check_state, transform
from funcdl.optim._checks import check_float_params, check_grads, float_dtypes, read_loss

__all__ = ["BacktrackingLinesearchInfo", "ScaleByBacktrackingLinesearchState",
           "scale_by_backtracking_linesearch"]

Tree = Any
HOW = ("e.g. value_fn=lambda p: loss(model.apply(p, x), y), or with "
       "vg = funcdl.value_and_grad(model, loss): value_and_grad_fn=lambda p: vg(p, x, y)")


class BacktrackingLinesearchInfo(NamedTuple):
    num_linesearch_steps: Any  # int64: the values computed in the last search
    decrease_error: Any  # its final sufficient-decrease error (0: success; inf: none finite)


class ScaleByBacktrackingLinesearchState(NamedTuple):
    """optax's fields. Floats in the params' widest float dtype."""

    learning_rate: Any  # the step size found at the last update (1 before any)
    value: Any  # the loss at the last trial point (the new params on success; inf at first)
    grad: Any  # the gradient there with store_grad=True (zeros at first), else None
    info: BacktrackingLinesearchInfo


# ---------------------------------------------------------------------------- helpers

def flat_grads(where: str, grads: Tree, params: Tree, what: str = "grads",
               dtype: Any = None, size: int | None = None
               ) -> tuple[Any, Any, Callable[[Any], Tree]]:
    """``(g, w, unravel)``: ``_checks.check_grads``, then ``grads`` and ``params`` raveled (in
    ``dtype``, default the params' promoted one) and the inverse, giving the params'
    structure and dtypes; params of another size than the state's (``size``) are a
    ValueError naming ``where``."""
    check_grads(where, grads, params, what)
    w, unravel = tree.ravel(params)
    dtype = w.dtype if dtype is None else dtype
    if size is not None and w.size != size:
        raise ValueError(f"{where}: the params have {w.size} entries but the state was made "
                         f"for {size}; pass the state made by this optimizer's init for "
                         f"these params")
    g = tree.ravel(grads)[0]
    with np.errstate(over="ignore"):  # past float32's range: inf, as a float32 param's
        return g.astype(dtype, copy=False), w.astype(dtype, copy=False), unravel


def scalar(where: str, what: str, value: Any, finite: bool = False) -> np.float64:
    """A loss as a float64 scalar (a 0-d or one-entry array, or a number), else a TypeError
    naming ``where``; ``finite=True``: a ValueError for inf and NaN."""
    out = np.float64(read_loss(where, f"{what} must be a real scalar (the loss)", value,
                               "return or pass the scalar loss, e.g. float(loss) or loss.sum()"))
    if finite and not np.isfinite(out):
        raise ValueError(f"{where}: {what} is {out}; the line search needs the finite loss "
                         f"at the current params (the params or the step before have "
                         f"diverged: lower the learning rate or restart from finite params)")
    return out


def vdot(a: Tree, b: Tree) -> np.float64:
    """``<a, b>`` summed over the leaves, as a float64."""
    total = np.float64(0.0)
    for x, y in zip(tree.leaves(a), tree.leaves(b), strict=True):
        total = total + np.float64(product(np.vdot, np.asarray(x).ravel(),
                                           np.asarray(y).ravel()))
    return total


def add_scale(params: Tree, eta: Any, updates: Tree) -> Tree:
    """``p + eta · u`` leaf-wise, each in its param's dtype (optax's ``tree.add_scale``)."""
    def one(p: Any, u: Any) -> Any:
        p = np.asarray(p)
        return np.asarray(p + np.asarray(eta, p.dtype) * u, p.dtype)
    return tree.map(one, params, updates)


def scaled(eta: Any, updates: Tree) -> Tree:
    """``eta · u`` leaf-wise, each in its own dtype."""
    return tree.map(lambda u: np.asarray(np.asarray(eta, np.asarray(u).dtype) * u,
                                         np.asarray(u).dtype), updates)


def value_dtype(params: Tree) -> Any:
    """The dtype of the scalars a search keeps: the params' widest float one."""
    return float_dtypes(params)[1]


def need(where: str, what: str, value: Any, hint: str) -> None:
    """A TypeError when a keyword the search needs was not passed."""
    if value is None:
        raise TypeError(f"{where}: needs {what}: call update(state, grads, params, {hint}) "
                        f"(chain(...).update and lbfgs(...).update forward it)")


def function(where: str, what: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{where}: {what} must be a function of the params, got "
                        f"{type(fn).__name__}; {HOW}")


def call_value(where: str, fn: Callable[[Tree], Any], params: Tree) -> np.float64:
    return scalar(where, "value_fn(params)", fn(params))


def call_value_and_grad(where: str, fn: Callable[[Tree], Any], params: Tree
                        ) -> tuple[np.float64, Tree]:
    """``fn(params)`` checked: a (loss, grads) pair, grads shaped as the params."""
    out = fn(params)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"{where}: value_and_grad_fn(params) must return (loss, grads), got "
                        f"{type(out).__name__}; {HOW}")
    v, g = out
    check_grads(where, g, params, "value_and_grad_fn's grads")
    return scalar(where, "the loss value_and_grad_fn returned", v), g


def slope_grad(where: str, grad: Any, updates: Tree, params: Tree) -> np.float64:
    """``<u, grad>``, the slope of the loss along the updates, ``grad`` checked."""
    need(where, "grad=, the gradient at params", grad, "value=loss, grad=grads, ...")
    check_grads(where, grad, params, "grad")
    return vdot(updates, grad)


# ---------------------------------------------------------------------------- backtracking

def scale_by_backtracking_linesearch(
        max_backtracking_steps: int, slope_rtol: float = 1e-4, decrease_factor: float = 0.8,
        increase_factor: float = 1.5, max_learning_rate: float = 1.0, atol: float = 0.0,
        rtol: float = 0.0, store_grad: bool = False, verbose: bool = False
        ) -> GradientTransformation:
    """optax's: ``u_out = eta · u``, ``eta`` the first of ``eta_0 = min(increase_factor ·
    eta_prev, max_learning_rate)``, ``eta_0 · decrease_factor^i`` (``i <= max_backtracking_
    steps``) with ``f(w + eta u) <= (1 + rtol) f(w) + eta · slope_rtol · <u, grad> + atol``
    (Armijo); else the last tried, or 0 if its loss is inf / NaN. No vjp (a transform).

    ``update(state, updates, params, value=f(w), grad=grad f(w), value_fn=f)``; the updates
    must be a descent direction (``<u, grad> < 0``: put it after ``scale(-lr)``, as optax).
    ``store_grad=True`` keeps the gradient at the new params in the state (for reuse as
    the next ``grad=``): then pass ``value_and_grad_fn=`` (``params -> (loss, grads)``),
    called once per trial (``value_fn`` is then not called and may be left out).
    ``verbose`` is optax's flag, checked; nothing is printed (as the zoom search). Arguments
    in optax's order. State ``ScaleByBacktrackingLinesearchState``.
    """
    name = "scale_by_backtracking_linesearch"
    steps = int_arg(max_backtracking_steps, name, "max_backtracking_steps", minimum=0)
    c1 = real_arg(slope_rtol, name, "slope_rtol", low=0.0, high=1.0, open_high=True)
    down = real_arg(decrease_factor, name, "decrease_factor", low=0.0, high=1.0,
                    open_low=True, open_high=True)
    up = real_arg(increase_factor, name, "increase_factor", low=1.0)
    top = real_arg(max_learning_rate, name, "max_learning_rate", low=0.0, open_low=True)
    atol = real_arg(atol, name, "atol", low=0.0)
    rtol = real_arg(rtol, name, "rtol", low=0.0)
    keep_grad = bool_arg(store_grad, name, "store_grad")
    bool_arg(verbose, name, "verbose")

    def init(params: Tree) -> ScaleByBacktrackingLinesearchState:
        check_float_params(f"{name}.init", params)
        d = value_dtype(params)
        grad = tree.zeros_like(params) if keep_grad else None
        return ScaleByBacktrackingLinesearchState(
            d.type(1.0), d.type(np.inf), grad,
            BacktrackingLinesearchInfo(np.int64(0), d.type(np.inf)))

    def update(state: Any, grads: Tree, params: Tree = None, *, value: Any = None,
               grad: Any = None, value_fn: Any = None, value_and_grad_fn: Any = None
               ) -> tuple[Tree, ScaleByBacktrackingLinesearchState]:
        where = f"{name}.update"
        check_state(name, state, ScaleByBacktrackingLinesearchState)
        check_grads(where, grads, params, "updates")
        need(where, "value=, the loss at params", value, "value=loss, grad=grads, "
             "value_fn=lambda p: ...")
        f0 = scalar(where, "value", value, finite=True)
        if keep_grad:
            need(where, "value_and_grad_fn= (store_grad=True keeps the gradient at the new "
                 "params)", value_and_grad_fn, "..., value_and_grad_fn=lambda p: vg(p, x, y)")
            function(where, "value_and_grad_fn", value_and_grad_fn)
        elif value_fn is None and value_and_grad_fn is not None:
            function(where, "value_and_grad_fn", value_and_grad_fn)
        else:
            need(where, "value_fn=, the loss as a function of the params", value_fn,
                 "value=loss, grad=grads, value_fn=lambda p: loss_fn(p, x, y)")
        if value_fn is not None:
            function(where, "value_fn", value_fn)
            fn = value_fn
        else:
            fn = lambda p: value_and_grad_fn(p)[0]  # noqa: E731
        slope = slope_grad(where, grad, grads, params)
        d = value_dtype(params)
        prev = scalar(where, "the state's learning_rate", state.learning_rate)
        eta = np.minimum(np.float64(up) * prev, np.float64(top))
        it, err, new_value, new_grad = 0, np.float64(np.inf), f0, state.grad
        with np.errstate(all="ignore"):  # inf and NaN losses are part of the search
            while not err <= atol and it <= steps:
                if it > 0:
                    eta = np.float64(down) * eta
                trial = add_scale(params, eta, grads)
                if keep_grad:  # the last trial's grad is kept: the accepted one, or the last
                    new_value, new_grad = call_value_and_grad(where, value_and_grad_fn, trial)
                else:
                    new_value = call_value(where, fn, trial)
                err = new_value - (1.0 + rtol) * f0 - eta * c1 * slope
                err = np.float64(np.inf) if np.isnan(err) else np.maximum(err, 0.0)
                it += 1
            eta = np.float64(0.0) if np.isinf(err) else eta
            new = ScaleByBacktrackingLinesearchState(  # a float32 state may overflow to inf
                d.type(eta), d.type(new_value), new_grad if keep_grad else None,
                BacktrackingLinesearchInfo(np.int64(it), d.type(err)))
            return scaled(eta, grads), new

    return transform(name, init, update)
