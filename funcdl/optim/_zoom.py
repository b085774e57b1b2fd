"""optax's zoom line search (strong Wolfe: Nocedal & Wright Alg. 3.5 and 3.6, with Hager
and Zhang's approximate decrease), ``scale_by_zoom_linesearch``. Keywords and helpers:
``_linesearch``."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg, int_arg, real_arg
from funcdl.optim._base import GradientTransformation, check_state, transform
from funcdl.optim._checks import check_float_params, check_grads
from funcdl.optim._linesearch import (
    add_scale,
    call_value_and_grad,
    function,
    need,
    scalar,
    scaled,
    slope_grad,
    value_dtype,
    vdot,
)

__all__ = ["ScaleByZoomLinesearchState", "ZoomLinesearchInfo", "scale_by_zoom_linesearch"]

Tree = Any
F = np.float64
INF = F(np.inf)


class ZoomLinesearchInfo(NamedTuple):
    num_linesearch_steps: Any  # int64: the values and gradients computed in the last search
    decrease_error: Any  # its final sufficient-decrease error (0: met)
    curvature_error: Any  # its final curvature error (0: met)


class ScaleByZoomLinesearchState(NamedTuple):
    """optax's fields. Floats in the params' widest float dtype."""

    learning_rate: Any  # the step size found at the last update (1 before any)
    value: Any  # the loss at the new params (inf before any update)
    grad: Any  # the gradient there (zeros before any): reuse them as the next value=, grad=
    info: ZoomLinesearchInfo


def scale_by_zoom_linesearch(
        max_linesearch_steps: int, max_learning_rate: float | None = None, tol: float = 0.0,
        increase_factor: float = 2.0, slope_rtol: float = 1e-4, curv_rtol: float = 0.9,
        approx_dec_rtol: float | None = 1e-6, stepsize_precision: float = 1e-5,
        initial_guess_strategy: str = "keep", verbose: bool = False) -> GradientTransformation:
    """optax's: ``u_out = eta · u``, ``eta`` meeting the sufficient decrease
    ``f(w + eta u) <= f(w) + slope_rtol · eta · <u, g> + tol`` (or, once ``f(w + eta u) <=
    f(w) + approx_dec_rtol · |f(w)|``, Hager-Zhang's ``<g(w + eta u), u> <= (2 slope_rtol -
    1) <g, u>``) and the curvature ``|<g(w + eta u), u>| <= curv_rtol · |<g, u>| + tol``.

    It brackets (``eta`` from the guess, times ``increase_factor``, at most
    ``max_learning_rate``), then zooms (cubic, else quadratic, else bisection), in at most
    ``max_linesearch_steps`` value-and-gradient evaluations; failing, it takes the best
    step with sufficient decrease, else the last tried (0 if no finite loss). Guess: 1
    (``'one'``, for quasi-Newton steps) or the last ``eta`` (``'keep'``). No vjp.

    ``update(state, updates, params, value=f(w), grad=g(w), value_and_grad_fn=vg)``, ``vg
    (params) -> (loss, grads)``: the gradients at trial points come from it (funcdl has no
    autodiff of arbitrary functions); ``value_fn=`` is accepted (optax's keyword) but not
    enough alone. ``state.value`` and ``state.grad`` are those at the new params.
    ``verbose`` is accepted for optax's signature and prints nothing.
    """
    name = "scale_by_zoom_linesearch"
    steps = int_arg(max_linesearch_steps, name, "max_linesearch_steps", minimum=0)
    top = (None if max_learning_rate is None else
           F(real_arg(max_learning_rate, name, "max_learning_rate", low=0.0, open_low=True)))
    tol_ = F(real_arg(tol, name, "tol", low=0.0))
    up = F(real_arg(increase_factor, name, "increase_factor", low=1.0, open_low=True))
    c1 = F(real_arg(slope_rtol, name, "slope_rtol", low=0.0, high=1.0, open_high=True))
    c2 = F(real_arg(curv_rtol, name, "curv_rtol", low=0.0, high=1.0))
    c3 = (None if approx_dec_rtol is None else
          F(real_arg(approx_dec_rtol, name, "approx_dec_rtol", low=0.0)))
    threshold = F(real_arg(stepsize_precision, name, "stepsize_precision", low=0.0))
    if not isinstance(initial_guess_strategy, str) or initial_guess_strategy not in ("one",
                                                                                 "keep"):
        raise ValueError(f"{name}: initial_guess_strategy must be 'one' (a guess of 1, for "
                         f"L-BFGS) or 'keep' (the last step size, for SGD), got "
                         f"{initial_guess_strategy!r}")
    bool_arg(verbose, name, "verbose")
    settings = (steps, top, tol_, up, c1, c2, c3, threshold)

    def init(params: Tree) -> ScaleByZoomLinesearchState:
        check_float_params(f"{name}.init", params)
        d = value_dtype(params)
        return ScaleByZoomLinesearchState(d.type(1.0), d.type(np.inf), tree.zeros_like(params),
                                          ZoomLinesearchInfo(np.int64(0), d.type(np.inf),
                                                             d.type(np.inf)))

    def update(state: Any, grads: Tree, params: Tree = None, *, value: Any = None,
               grad: Any = None, value_fn: Any = None, value_and_grad_fn: Any = None
               ) -> tuple[Tree, ScaleByZoomLinesearchState]:
        where = f"{name}.update"
        check_state(name, state, ScaleByZoomLinesearchState)
        check_grads(where, grads, params, "updates")
        need(where, "value=, the loss at params", value,
             "value=loss, grad=grads, value_and_grad_fn=lambda p: vg(p, x, y)")
        f0 = scalar(where, "value", value, finite=True)
        if value_and_grad_fn is None and value_fn is not None:
            raise TypeError(f"{where}: needs value_and_grad_fn=, params -> (loss, grads): the "
                            f"zoom search reads gradients at trial points, which value_fn= "
                            f"cannot give; with vg = funcdl.value_and_grad(model, loss) pass "
                            f"value_and_grad_fn=lambda p: vg(p, x, y), or use "
                            f"scale_by_backtracking_linesearch, which needs value_fn= only")
        need(where, "value_and_grad_fn=, params -> (loss, grads)", value_and_grad_fn,
             "value=loss, grad=grads, value_and_grad_fn=lambda p: vg(p, x, y)")
        function(where, "value_and_grad_fn", value_and_grad_fn)
        if value_fn is not None:
            function(where, "value_fn", value_fn)
        s0 = slope_grad(where, grad, grads, params)
        guess = (F(1.0) if initial_guess_strategy == "one" else
                 scalar(where, "the state's learning_rate", state.learning_rate))

        def at(eta: Any) -> tuple[Any, Tree, Any]:
            v, g = call_value_and_grad(where, value_and_grad_fn, add_scale(params, eta, grads))
            return v, g, vdot(g, grads)

        with np.errstate(all="ignore"):  # inf and NaN losses are part of the search
            eta, v, g, n, dec, curv = zoom(at, f0, grad, s0, guess, settings)
            d = value_dtype(params)  # a float32 state may overflow to inf
            new = ScaleByZoomLinesearchState(d.type(eta), d.type(v), g,
                                             ZoomLinesearchInfo(np.int64(n), d.type(dec),
                                                                d.type(curv)))
            return scaled(eta, grads), new

    return transform(name, init, update)


def zoom(at: Any, f0: Any, g0: Tree, s0: Any, guess: Any, settings: tuple[Any, ...]
         ) -> tuple[Any, Any, Tree, int, Any, Any]:
    """The search: ``at(eta) -> (loss, grads, slope)`` on the line; returns ``(eta, loss,
    grads, evaluations, decrease error, curvature error)``. Each trial is one ``at`` call,
    so the loop is over evaluations, not data."""
    steps, top, tol, up, c1, c2, c3, threshold = settings

    def decrease_error(eta: Any, v: Any, s: Any) -> Any:
        e = v - f0 - c1 * eta * s0
        if c3 is not None:  # Hager-Zhang: near f0, where f's differences are rounding
            approx = np.maximum(s - (2 * c1 - 1.0) * s0, v - f0 - c3 * np.abs(f0))
            e = np.minimum(approx, e)
        e = np.maximum(e, 0.0)
        return INF if np.isnan(e) else e

    def curvature_error(s: Any) -> Any:
        e = np.maximum(np.abs(s) - c2 * np.abs(s0), 0.0)
        return INF if np.isnan(e) else e

    count, eta, v, g, s = 0, F(0.0), f0, g0, s0
    dec = curv = INF
    found = done = failed = False
    low, v_low, s_low, high, v_high = F(0.0), f0, s0, F(0.0), f0
    ref, v_ref = F(0.0), f0  # the third point of the cubic
    safe, v_safe, g_safe = F(0.0), f0, g0  # the best step with sufficient decrease
    while not (done or failed):
        if not found:  # bracketing (Alg. 3.5)
            new = guess if count == 0 else up * eta
            reached = top is not None and new >= top
            if top is not None:
                new = np.minimum(new, top)
            nv, ng, ns = at(new)
            dec, curv = decrease_error(new, nv, ns), curvature_error(ns)
            err = np.maximum(dec, curv)
            if dec <= tol:
                safe, v_safe, g_safe = new, nv, ng
            to_high = dec > 0.0 or (nv >= v and count > 0)
            to_low = ns >= 0.0 and not to_high
            if to_low:
                low, v_low, s_low, high, v_high = new, nv, ns, eta, v
            else:
                low, v_low, s_low, high, v_high = eta, v, s, new, nv
            found = to_high or to_low or err <= tol
            done = bool(err <= tol) or (reached and not found)
            failed = bool(count + 1 >= steps) and not done
            ref, v_ref = low, v_low
            eta, v, g, s = new, nv, ng, ns
        else:  # zooming (Alg. 3.6)
            delta = np.abs(high - low)
            left, right = np.minimum(high, low), np.maximum(high, low)
            small = delta <= threshold
            cubic = _cubicmin(low, v_low, s_low, high, v_high, ref, v_ref)
            quad = _quadmin(low, v_low, s_low, high, v_high)
            if left + 0.2 * delta < cubic < right - 0.2 * delta:
                mid = cubic
            elif left + 0.1 * delta < quad < right - 0.1 * delta:
                mid = quad
            else:
                mid = (low + high) / 2.0
            mv, mg, ms = at(mid)
            dec, curv = decrease_error(mid, mv, ms), curvature_error(ms)
            err = np.maximum(dec, curv)
            if dec <= tol and mv < v_safe:
                safe, v_safe, g_safe = mid, mv, mg
            done = bool(err <= tol)
            mid_high = dec > 0.0 or mv >= v_low
            low_high = ms * (high - low) >= 0.0 and not mid_high
            ref, v_ref = (high, v_high) if mid_high or low_high else (low, v_low)
            if mid_high:
                high, v_high = mid, mv
            elif low_high:
                high, v_high = low, v_low
            if not mid_high:
                low, v_low, s_low = mid, mv, ms
            failed = bool(count + 1 >= steps or (small and safe > 0.0)) and not done
            eta, v, g, s = mid, mv, mg, ms
        count += 1
        if failed and (safe > 0.0 or np.isinf(dec)):  # the best safe step (0 if none)
            eta, v, g = safe, v_safe, g_safe
    return eta, v, g, count, dec, curv


def _cubicmin(a: Any, fa: Any, fpa: Any, b: Any, fb: Any, c: Any, fc: Any) -> Any:
    """The critical point of the cubic through (a, fa), (b, fb), (c, fc) with slope fpa at
    a (NaN when there is none: then it is not taken)."""
    db, dc = b - a, c - a
    denom = (db * dc) ** 2 * (db - dc)
    r1, r2 = fb - fa - fpa * db, fc - fa - fpa * dc
    A = (dc ** 2 * r1 + -(db ** 2) * r2) / denom
    B = (-(dc ** 3) * r1 + db ** 3 * r2) / denom
    return a + (-B + np.sqrt(B * B - 3.0 * A * fpa)) / (3.0 * A)


def _quadmin(a: Any, fa: Any, fpa: Any, b: Any, fb: Any) -> Any:
    """The critical point of the parabola through (a, fa), (b, fb) with slope fpa at a."""
    db = b - a
    B = (fb - fa - fpa * db) / (db ** 2)
    return a - fpa / (2.0 * B)
