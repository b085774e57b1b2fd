"""Finite-difference checks of vjps, for funcdl's own layers and users' layers alike.

Two tiers, in float64 (autograd's and JAX's randomised check, then what they lack):

1. a random projection: for a random cotangent ``u`` and direction ``v``, compare the
   central difference ``(<u, f(z + εv)> - <u, f(z - εv)>) / 2ε`` with ``<pullback(u), v>``;
2. on failure only, entry by entry, so the message names the leaf path and index that is
   wrong, with the expected (finite difference) and the got (vjp) values. It follows the
   ``v`` that failed: each leaf's share of that projection says which leaves to search, and
   a large leaf is halved, keeping the half that carries the discrepancy, down to 8
   entries (a few dozen evaluations, not one per entry).

``check_vjp`` runs in float64 only; ``check_layer`` compares float32-only code paths with
float64, and defaults to train=False: pass ``train=True`` (with a ``key`` for Dropout) to
check the training path. No call may write into its arguments (x, params, state, the
cotangent); a stateful layer's vjp must return apply's new state.

Each check raises ``AssertionError``, so it drops into any test::

    from funcdl.testing import check_layer, check_vjp
    check_layer(MyLayer(), (None, 3))                   # shapes, dtypes, rows, vjp
    check_vjp(layer, params, x, key=k, train=True)      # one configuration
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import random, tree
from funcdl._args import array_arg, bool_arg, int_arg
from funcdl._check_io import (
    as_input,
    as_shape,
    gradient,
    loss_value,
    loss_vjp,
    nonempty_pred,
    random_input,
    returned,
    rows_independent,
    same_forward,
    shape_agrees,
    unread_as_zeros,
)
from funcdl._check_state import (
    Untouched,
    free_option,
    input_cotangent,
    none_as_zeros,
    nonempty,
    same_dtypes,
    settings,
)
from funcdl._finite_diff import (
    directions_like,
    fd_check,
    is_float,
    layout_error,
    precision_error,
    relaid,
    repeat_error,
    rows,
    snapshot,
    to64,
)
from funcdl.layers.base import layer_arg
from funcdl.losses import bound

__all__ = ["check_layer", "check_loss", "check_vjp"]

_NEW_STATE = ("state", "apply's new state", "vjp's new state")  # same_forward's labels


def _layer(where: str, layer: Any) -> str:
    """The layer's name, or a TypeError saying what came (``ReLU`` for ``ReLU()``)."""
    layer_arg(where, layer)
    return str(getattr(layer, "name", layer))


def check_vjp(layer: Any, params: Any, x: Any, *, key: Any = None, train: bool = False,
              state: Any = None, rtol: float = 1e-5, atol: float = 1e-8, eps: float = 1e-6,
              seed: int = 0, directions: int = 3) -> None:
    """Check ``layer.vjp`` against central finite differences in float64, for params and
    input, on random cotangents; also check that ``apply`` equals the vjp's forward (and,
    for a stateful layer, its new state), that the gradients keep the float64 dtype, that
    the pullback gives the same twice, and that no call writes into x, params, state or the
    cotangent.

    Runs in float64 only: float32-only code paths are compared by ``check_layer``.
    ``x`` and the output may be pytrees (tuples for Parallel, FanOut ...). Stateful layers
    need ``state``. Integer inputs (ids) are not perturbed; a None in dx reads as zeros.
    Raises AssertionError naming the leaf path and index of the first wrong entry. The
    random projections weigh a leaf as a whole: for a Dense(256) on 8 rows of 128 inputs,
    one entry of the weight's gradient 1% off passed 5 of 20 random draws at the default
    rtol=1e-5 and none at rtol=1e-7 (a one-off check, not kept; a reviewer's x @ W on 4
    rows passed 10 of 20). A finite
    difference across a kink or a tie (ReLU at 0, Hardtanh at ±1, MaxPool over equal
    entries) disagrees with any subgradient: check at inputs away from them, as
    check_layer's N(0, 1) draws are (x's exact zeros and rows of few values get a note)."""
    label = _layer("check_vjp", layer)
    where = f"check_vjp({label})"
    rtol, atol, eps = settings(where, rtol, atol, eps)
    directions = int_arg(directions, where, "directions", 1)
    seed = int_arg(seed, where, "seed")
    train = bool_arg(train, where, "train")
    stateful = bool(getattr(layer, "stateful", False))
    if stateful and state is None:
        raise ValueError(f"{where}: a stateful layer needs state=...")
    if not stateful and state is not None and not (isinstance(state, tuple) and not state):
        # () is a stateless child's entry in its combinator's state; anything else is not
        raise TypeError(f"{where}: state= given, but the layer is not stateful; drop it")
    x = as_input(where, x)
    nonempty(where, x)
    kw: dict[str, Any] = {"key": key, "train": train}
    if stateful:
        kw["state"] = to64(state)
    _vjp_check(where, layer, params, x, kw, (rtol, atol, eps), seed, directions)


def _vjp_check(where: str, layer: Any, params: Any, x: Any, kw: dict[str, Any],
               tols: tuple[float, float, float], seed: int, directions: int,
               full: bool = True) -> None:
    """check_vjp's checks, its arguments checked (``kw``: the layer's, state in float64);
    ``full=False``: finite differences alone (check_layer's second point)."""
    stateful = "state" in kw
    p64, x64 = to64(params), to64(x)
    guard = Untouched(where, x=x64, params=p64, state=kw.get("state"))

    def f(z: Any) -> Any:
        out = layer.apply(z[0], z[1], **kw)
        return out[0] if stateful else out

    if full:
        first = layer.apply(p64, x64, **kw)
        guard.check("apply")
        first = returned(where, "apply", first, 2) if stateful else (first,)
        for path, yi in tree.leaves_with_path(first[0]):  # else the differences would carry
            if is_float(yi) and np.asarray(yi).dtype != np.float64:  # float32 rounding
                raise AssertionError(f"{where}: float64 params and input gave "
                                     f"output{path} of dtype {np.asarray(yi).dtype}; a layer "
                                     f"must compute in its input's dtype")
    res = returned(where, "vjp", layer.vjp(p64, x64, **kw), 3 if stateful else 2)
    guard.check("vjp")
    y, pullback = res[0], res[1]
    if full:
        same_forward(where, first[0], y, 1e-12, 1e-12)
        if stateful:
            same_forward(where, first[1], res[2], 1e-12, 1e-12, *_NEW_STATE)
        y = first[0]
    u = directions_like(random.key(seed), y)
    guard.add(dy=u)
    grads = pullback(u)
    guard.check("the pullback")
    dparams, dx = returned(where, "the pullback", grads, 2)
    if full:  # the same cotangent again: the same gradients
        err = repeat_error(where, "(dparams, dx)", snapshot(grads), pullback(u))
        guard.check("the pullback")
        if err is not None:
            raise err
    if isinstance(x64, list) and isinstance(dx, np.ndarray):  # a list of rows, which the
        x64 = np.asarray(x64)  # layer read as one array: its dx is the array's
    try:
        tree.check_same(p64, dparams, ("params", "dparams"), shapes=True)
    except ValueError as e:
        raise AssertionError(f"{where}: {e}") from None
    same_dtypes(where, ("params", "dparams"), p64, dparams)
    if full and getattr(layer, "dx_optional", False):
        dparams2, dx2 = pullback(u, need_dx=False)
        guard.check("the pullback")
        if dx2 is not None or not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(
                tree.leaves(dparams), tree.leaves(dparams2))):
            raise AssertionError(f"{where}: pullback(dy, need_dx=False) must give "
                                 f"the same dparams and None for dx")
    z, grad = (p64, x64), (dparams, input_cotangent(where, x64, dx))
    same_dtypes(where, ("x", "dx"), x64, grad[1])
    fd_check(where, f, z, grad, u, random.key(seed + 1), *tols, directions,
             lambda p: ("params" if p.startswith("[0]") else "x") + p[3:], params=params, x=x)


def check_layer(layer: Any, in_shape: Any, *, key: Any = None, batch: int = 3,
                train: bool = False, rtol: float = 1e-5, atol: float = 1e-8,
                x: Any = None, independent_rows: bool = True) -> None:
    """Check a layer end to end on a random float32 input of ``in_shape`` (None -> batch;
    a tuple of shapes for layers taking a tuple; integer ids for a layer with ``ids``, as
    Embedding, or ``x=`` given): the declared output shape, apply == vjp forward (and new
    state; at inference the state given, unchanged), float32 kept in outputs (the params'
    dtype for ids) and gradients, batch rows independent at inference (the first row alone
    and the others alone give their rows; ``independent_rows=False`` for a layer whose
    inference mixes the rows by design, as BatchNorm(track_running_stats=False): then only
    reversing the rows must reverse the output's), no call writing into x, params, state or
    dy, the same gradients from a second call of the pullback and for x in the other memory
    layout (C or Fortran order), the float32 gradients against float64's, and the vjp
    against finite differences (``check_vjp``), then again, in one direction, at a second
    point (params from init at another key; another input draw, or x's rows reversed) where
    a vjp reusing a value from an earlier call fails. ``train=False`` by default: pass
    ``train=True`` (and ``key`` for Dropout) to check the training path. An ``x`` given at
    a kink or a tie can fail a correct vjp (see ``check_vjp``)."""
    label = _layer("check_layer", layer)
    where = f"check_layer({label})"
    rtol, atol, _ = settings(where, rtol, atol)
    batch = int_arg(batch, where, "batch")
    train = bool_arg(train, where, "train")
    in_shape = as_shape(in_shape)
    k_init, k_x, k_call = random.split_for(random.key(0) if key is None else key, 3, where)
    stateful = bool(getattr(layer, "stateful", False))
    n_out = 3 if stateful else 2
    out = returned(where, "init", layer.init(k_init, in_shape), n_out)
    out_shape, params = out[0], out[1]
    kw: dict[str, Any] = {"key": k_call, "train": train}
    if stateful:
        kw["state"] = out[2]
    drawn = x is None
    if drawn:
        x = random_input(k_x, in_shape, batch, *_id_range(layer))
    x = as_input(where, x)
    first = tree.leaves(x)[:1]
    if not first or np.ndim(first[0]) == 0:
        raise TypeError(f"{where}: x must hold the batch on axis 0 of its (first) array, got "
                        f"{type(x).__name__} of shape {np.shape(first[0]) if first else None}")
    nonempty(where, x, f", from batch={batch}" if drawn else "")
    n = np.shape(first[0])[0]
    guard = Untouched(where, x=x, params=params, state=kw.get("state"))

    def call(p: Any, xx: Any, **extra: Any) -> Any:
        res = layer.apply(p, xx, **{**kw, **extra})
        if not stateful:
            return res
        res = returned(where, "apply", res, 2)
        if not {**kw, **extra}["train"]:
            kept_state(kw["state"], res[1])
        return res[0]

    def kept_state(state: Any, new: Any) -> None:
        # DESIGN's contract: inference returns the state unchanged (running statistics
        # moving at evaluation would change the model with every test batch)
        same_forward(where, state, new, 0.0, 0.0, "state", "the state given",
                     "apply(train=False)'s new state")

    applied: Any = layer.apply(params, x, **kw)
    guard.check("apply")
    applied = returned(where, "apply", applied, 2) if stateful else (applied,)
    if stateful and not train:
        kept_state(kw["state"], applied[1])
    y = applied[0]
    if not shape_agrees(out_shape, y, n):
        raise AssertionError(f"{where}: init declared output shape {out_shape}, "
                             f"apply gave {tree.map(np.shape, y)}")
    res = returned(where, "vjp", layer.vjp(params, x, **kw), n_out)
    guard.check("vjp")
    pullback = res[1]
    same_forward(where, y, res[0], 1e-6, 1e-7)
    if stateful:
        same_forward(where, applied[1], res[2], 1e-6, 1e-7, *_NEW_STATE)
    x_dtypes = {np.asarray(xi).dtype for xi in tree.leaves(x) if is_float(xi)}
    # integer ids in (Embedding): the output takes the params' float dtype
    y_dtypes = x_dtypes or {np.asarray(p).dtype for p in tree.leaves(params) if is_float(p)}
    for path, leaf in tree.leaves_with_path(params):  # first: the usual cause of the next
        if is_float(leaf) and np.asarray(leaf).dtype != np.float32:
            raise AssertionError(f"{where}: init gave params{path} of dtype "
                                 f"{np.asarray(leaf).dtype}, expected float32")
    for path, yi in tree.leaves_with_path(y):
        if y_dtypes and is_float(yi) and np.asarray(yi).dtype not in y_dtypes:  # a mask: data
            given = "input" if x_dtypes else "integer input and params of"
            raise AssertionError(f"{where}: {given} dtype {sorted(map(str, y_dtypes))}"
                                 f" gave output{path} of dtype {np.asarray(yi).dtype}")
    ones = tree.map(np.ones_like, y)
    guard.add(dy=ones)
    dparams, dx = returned(where, "the pullback", pullback(ones), 2)
    guard.check("the pullback")
    same_dtypes(where, ("params", "dparams"), params, dparams,
                f" and {'/'.join(sorted(map(str, x_dtypes))) or 'integer'} input")
    if dx is not None:
        same_dtypes(where, ("x", "dx"), x, none_as_zeros(x, dx))
    if n > 1:
        rows_independent(where, lambda p, xx: call(p, xx, train=False), params, x,
                         bool_arg(independent_rows, where, "independent_rows"))
        guard.check("apply")  # the rows given were views of x
    # the same numbers in the other memory layout: the same gradients (on a random dy: one
    # of ones can give a gradient of rounding noise alone, as LayerNorm's dx)
    dy = tree.map(lambda a: random.normal(k_call, np.shape(a), np.asarray(a).dtype)
                  if is_float(a) else np.ones_like(a), y)
    guard.add(dy=dy)
    given = res[1](dy)
    guard.check("the pullback")
    err = repeat_error(where, "(dparams, dx)", snapshot(given), res[1](dy))  # before the layout
    guard.check("the pullback")
    if err is not None:
        raise err
    pb_relaid = returned(where, "vjp", layer.vjp(params, relaid(x), **kw), n_out)[1]
    guard.check("vjp")  # relaid(x) keeps 1-d arrays: the caller's
    again = pb_relaid(dy)
    guard.check("the pullback")
    err = layout_error(where, "(dparams, dx)", given, again)
    kw64 = {**kw, "state": to64(kw["state"])} if stateful else kw
    y64, pb64 = returned(where, "vjp", layer.vjp(to64(params), to64(x), **kw64), n_out)[:2]
    err = err or precision_error(where, "(dparams, dx)", given, pb64(to64(dy)), dy, (y, y64))
    if err is not None:
        raise err
    check_vjp(layer, params, x, key=k_call, train=train, state=kw.get("state"), rtol=rtol,
              atol=atol)
    # a vjp keeping a value from its first call (a stale x or W) passes at one point alone
    k_init2, k_x2 = random.split(random.fold_in(k_init, 1), 2)
    out = returned(where, "init", layer.init(k_init2, in_shape), n_out)
    x2 = (random_input(k_x2, in_shape, batch, *_id_range(layer)) if drawn
          else rows(x, slice(None, None, -1)))  # the user's rows, reversed
    try:
        _vjp_check(f"{where} at a second point (params from init at another key, "
                   f"{'another input draw' if drawn else 'the rows of x reversed'})", layer,
                   out[1], x2, {**kw, "state": to64(out[2])} if stateful else kw,
                   (rtol, atol, 1e-6), 2, 1, full=False)
    except AssertionError as e:
        raise AssertionError(f"{e}\n(the vjp agreed with finite differences at the first "
                             f"point: does it reuse values from an earlier call, as a cached "
                             f"x or params?)") from None


def check_loss(loss: Any, pred: Any, target: Any, *, rtol: float = 1e-5, atol: float = 1e-8,
               eps: float | None = None, seed: int = 0, **kwargs: Any) -> None:
    """Check a loss: ``loss(pred, target)`` equals ``loss.vjp(...)[0]``, the gradient keeps
    pred's dtype (``pred`` one array, or a tuple of arrays with a tuple of gradients, None
    for an entry not read, as zeros the finite differences check) and does not change with
    pred's memory layout (C or Fortran order), no call writes into pred, target or the
    cotangent, and the pullback at a random cotangent ``g`` (for a reduced value a number
    in [-0.75, -0.25]: a pullback ignoring g, or taking its square or magnitude, fails)
    matches finite differences in float64 (tier 2 names the entry of
    ``pred`` that is wrong) and, for float32 pred, the float64 gradient. ``kwargs`` go to
    the loss (e.g. ``delta=``). A loss with aux (``Loss``'s two forms) is checked on its
    value; a ``functools.partial`` of a loss with its options bound, as that loss with
    them.

    ``eps`` (default 1e-6) is the finite-difference step, never the loss's: bind a loss's
    own (``poisson_nll``, ``gaussian_nll``, ``triplet_margin``), ``functools.partial(loss,
    eps=1e-4)``; ``eps=`` with such a loss's eps unbound is a TypeError (which is meant?)."""
    loss = bound(loss)
    if isinstance(loss, type) or not (callable(loss) and hasattr(loss, "vjp")):
        got = f"the class {loss.__name__}" if isinstance(loss, type) else repr(loss)
        raise TypeError(f"check_loss: the loss must be callable and have a "
                        f".vjp(pred, target) method (see funcdl.losses.Loss), got {got}")
    label = str(getattr(loss, "name", loss))
    where = f"check_loss({label})"
    if eps is not None and free_option(loss.vjp, "eps"):
        raise TypeError(f"{where}: eps={eps!r} is check_loss's finite-difference step, and "
                        f"the loss has an eps option of its own, which check_loss does not "
                        f"pass on; bind the loss's with functools.partial(loss, eps=...) (its "
                        f"default, to set the step alone), then pass check_loss's eps beside it")
    rtol, atol, eps = settings(where, rtol, atol, 1e-6 if eps is None else eps)
    seed = int_arg(seed, where, "seed")
    # one array, or a tuple of them for a loss of several inputs (margin_ranking's (x1, x2),
    # gaussian_nll's (mean, var)): its gradient is then a tuple too
    pred = (tuple(array_arg(p, where, f"pred[{i}]") for i, p in enumerate(pred))
            if type(pred) is tuple else array_arg(pred, where, "pred"))
    nonempty_pred(where, pred)
    guard = Untouched(where, pred=pred, target=target)
    value2, pullback = loss_vjp(where, loss.vjp(pred, target, **kwargs))
    pullback = unread_as_zeros(pred, pullback)
    guard.check("loss.vjp")
    value = loss_value(where, "loss()", loss(pred, target, **kwargs))
    guard.check("loss()")
    if np.shape(value) != np.shape(value2) or not np.allclose(value, value2, rtol=1e-12, atol=0,
                                                              equal_nan=True):
        raise AssertionError(f"{where}: loss() gave {value}, vjp gave {value2}")
    if not np.all(np.isfinite(value)):
        raise AssertionError(f"{where}: non-finite value {value}")
    # a random cotangent: at 1.0 a pullback that ignores g would pass; in the value's dtype,
    # as a caller's (float64 would upcast a per-example float32 loss's gradient)
    key, vd = random.key(seed), np.asarray(value).dtype
    u = (-random.uniform(key, (), 0.25, 0.75, np.float64) if np.ndim(value) == 0
         else random.normal(key, np.shape(value), vd if vd.char in "fd" else np.float64))
    g = float(u) if np.ndim(value) == 0 else u
    guard.add(g=g)
    dpred = gradient(where, pred, pullback(g))
    err = repeat_error(where, "dpred", snapshot(dpred), pullback(g))  # before the layout
    guard.check("the pullback")
    if err is not None:
        raise err
    if any(np.ndim(p) >= 2 for p in tree.leaves(pred)):  # another memory layout: the same
        _, pb2 = loss_vjp(where, loss.vjp(relaid(pred), target, **kwargs))
        err = layout_error(where, "dpred", dpred, unread_as_zeros(pred, pb2)(g))
        guard.check("loss.vjp or its pullback")  # relaid(pred) keeps 1-d arrays: the caller's
        if err is not None:
            raise err
    p64 = to64(pred)
    t64 = to64(target)
    pb64 = unread_as_zeros(p64, loss_vjp(where, loss.vjp(p64, t64, **kwargs))[1])
    g64 = pb64(g if np.ndim(value) == 0 else to64(u))
    err = precision_error(where, "dpred", dpred, g64, u)
    if err is not None:
        raise err

    def moved(z: Any) -> Any:
        try:
            return np.asarray(loss_value(where, "loss()", loss(z, t64, **kwargs)))
        except ValueError as e:  # it took pred itself: a step crossed the domain's edge
            raise ValueError(f"{where}: the finite-difference steps (up to eps={eps:g} along "
                             f"random directions) took pred out of the loss's domain: {e}; "
                             f"check at a pred a few eps inside it (bce: in [3 eps, "
                             f"1 - 3 eps]), or pass a smaller eps") from None

    fd_check(where, moved, p64, g64, np.asarray(u), random.key(seed + 1), rtol, atol, eps, 3,
             lambda p: "pred" + p, pred=pred, target=target)


def _id_range(layer: Any) -> tuple[int | None, int | None]:
    """``(ids, frozen_id)`` of a layer reading ids (see ``Layer``), else Nones."""
    return getattr(layer, "ids", None), getattr(layer, "frozen_id", None)
