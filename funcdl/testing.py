"""Finite-difference checks of vjps, for funcdl's own layers and users' layers alike.

Two tiers, in float64 (autograd's and JAX's randomised check, then what they lack):

1. a random projection: for a random cotangent ``u`` and direction ``v``, compare the
   central difference ``(<u, f(z + εv)> - <u, f(z - εv)>) / 2ε`` with ``<pullback(u), v>``;
2. on failure only, entry by entry, so the message names the leaf path and index that is
   wrong, with the expected (finite difference) and the got (vjp) values. It follows the
   ``v`` that failed: each leaf's share of that projection says which leaves to search, and
   a large leaf is halved, keeping the half that carries the discrepancy, down to 8
   entries (a few dozen evaluations, not one per entry).

Each check raises ``AssertionError``, so it drops into any test::

    from funcdl.testing import check_layer, check_vjp
    check_layer(MyLayer(), (None, 3))                   # shapes, dtypes, rows, vjp
    check_vjp(layer, params, x, key=k, train=True)      # one configuration
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl import debug, random, tree
from funcdl._args import array_arg, bool_arg, int_arg, real_arg
from funcdl._check_io import (
    as_input,
    as_shape,
    random_input,
    returned,
    same_forward,
    shape_agrees,
)
from funcdl._finite_diff import (
    directions_like,
    fd_check,
    is_float,
    layout_error,
    precision_error,
    relaid,
    to64,
)
from funcdl.layers.base import layer_arg
from funcdl.losses import bound
from funcdl.losses._base import vjp_form

__all__ = ["check_layer", "check_loss", "check_vjp"]

Array = NDArray[Any]


def _settings(where: str, rtol: Any, atol: Any, eps: Any = 1.0) -> tuple[float, float, float]:
    """The tolerances and step as floats, or a TypeError / ValueError naming ``where``: a
    negative or nan tolerance would fail every entry, a zero step divide by zero."""
    return (real_arg(rtol, where, "rtol", low=0.0), real_arg(atol, where, "atol", low=0.0),
            real_arg(eps, where, "eps", low=0.0, open_low=True))


def _layer(where: str, layer: Any) -> str:
    """The layer's name, or a TypeError saying what came (``ReLU`` for ``ReLU()``)."""
    layer_arg(where, layer)
    return str(getattr(layer, "name", layer))


def _nonfinite(**trees: Any) -> str:
    """Where the first NaN or inf entry of the named trees is (``'x[0, 3] is -inf'``), or
    ''. A check may hold there (a mask of -inf before a Softmax, NaN read as missing), so it
    is not refused; but a failure there is more likely the finite differences' than the
    vjp's, and its message says so."""
    for what, t in trees.items():
        found = debug.first_nonfinite(t)
        if found is not None:
            path, a = found
            i = tuple(int(v) for v in np.argwhere(~np.isfinite(a))[0])
            return f"{what}{path}{list(i) if i else ''} is {a[i]}"
    return ""


def _fd_check(where: str, *args: Any, **inputs: Any) -> None:
    """``fd_check(where, *args)``; on failure, a hint if an input holds NaN or inf."""
    try:
        fd_check(where, *args)
    except AssertionError as e:
        odd = _nonfinite(**inputs)
        if not odd:
            raise
        raise AssertionError(f"{e}\n(note: {odd}; finite differences through a non-finite "
                             f"value are NaN: check at a finite point)") from None


def _input_cotangent(label: str, x: Any, dx: Any) -> Any:
    """dx with zeros standing in where x is not floating (integer ids have no cotangent)."""
    if dx is None:
        return tree.map(lambda xi: np.zeros(np.shape(xi)), x)
    dx = _none_as_zeros(x, dx)  # a tuple input's integer parts: None (Parallel(Embedding..))
    try:
        tree.check_same(x, dx, ("x", "dx"), shapes=True)
    except ValueError as e:
        raise AssertionError(f"check_vjp({label}): dx does not match x: {e}") from None
    return tree.map(lambda xi, di: di if is_float(xi) else np.zeros(np.shape(xi)), x, dx)


def _none_as_zeros(x: Any, dx: Any) -> Any:
    """``dx`` with each None entry of a tuple or list replaced by zeros of ``x``'s entry."""
    if isinstance(dx, (tuple, list)) and isinstance(x, (tuple, list)) and len(x) == len(dx):
        parts = [tree.map(lambda xi: np.zeros(np.shape(xi)), xi) if di is None
                 else _none_as_zeros(xi, di) for xi, di in zip(x, dx)]
        return type(dx)(parts) if type(dx) in (tuple, list) else dx
    return dx


def check_vjp(layer: Any, params: Any, x: Any, *, key: Any = None, train: bool = False,
              state: Any = None, rtol: float = 1e-5, atol: float = 1e-8, eps: float = 1e-6,
              seed: int = 0, directions: int = 3) -> None:
    """Check ``layer.vjp`` against central finite differences in float64, for params and
    input, on random cotangents; also check that ``apply`` equals the vjp's forward.

    ``x`` and the output may be pytrees (tuples for Parallel, FanOut ...). Stateful layers
    need ``state``. Integer inputs (ids) are not perturbed.
    Raises AssertionError naming the leaf path and index of the first wrong entry.
    """
    label = _layer("check_vjp", layer)
    where = f"check_vjp({label})"
    rtol, atol, eps = _settings(where, rtol, atol, eps)
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
    p64, x64 = to64(params), to64(x)
    kw: dict[str, Any] = {"key": key, "train": train}
    if stateful:
        kw["state"] = to64(state)

    def f(z: Any) -> Any:
        out = layer.apply(z[0], z[1], **kw)
        return out[0] if stateful else out

    y = f((p64, x64))
    for path, yi in tree.leaves_with_path(y):  # else the differences carry float32 rounding
        if is_float(yi) and np.asarray(yi).dtype != np.float64:
            raise AssertionError(f"{where}: float64 params and input gave "
                                 f"output{path} of dtype {np.asarray(yi).dtype}; a layer "
                                 f"must compute in its input's dtype")
    res = layer.vjp(p64, x64, **kw)
    y_vjp, pullback = res[0], res[1]
    same_forward(where, y, y_vjp, 1e-12, 1e-12)
    u = directions_like(random.key(seed), y)
    grads = pullback(u)
    if not (isinstance(grads, tuple) and len(grads) == 2):
        raise AssertionError(f"{where}: the pullback must return (dparams, dx), "
                             f"got {type(grads).__name__}"
                             + (f" of length {len(grads)}" if isinstance(grads, tuple) else ""))
    dparams, dx = grads
    if isinstance(x64, list) and isinstance(dx, np.ndarray):  # a list of rows, which the
        x64 = np.asarray(x64)  # layer read as one array: its dx is the array's
    try:
        tree.check_same(p64, dparams, ("params", "dparams"), shapes=True)
    except ValueError as e:
        raise AssertionError(f"{where}: {e}") from None
    if getattr(layer, "dx_optional", False):
        dparams2, dx2 = pullback(u, need_dx=False)
        if dx2 is not None or not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(
                tree.leaves(dparams), tree.leaves(dparams2))):
            raise AssertionError(f"{where}: pullback(dy, need_dx=False) must give "
                                 f"the same dparams and None for dx")
    z, grad = (p64, x64), (dparams, _input_cotangent(label, x64, dx))
    _fd_check(where, f, z, grad, u, random.key(seed + 1), rtol, atol, eps,
              directions, lambda p: ("params" if p.startswith("[0]") else "x") + p[3:],
              params=params, x=x)


def check_layer(layer: Any, in_shape: Any, *, key: Any = None, batch: int = 3,
                train: bool = False, rtol: float = 1e-5, atol: float = 1e-8,
                x: Any = None, independent_rows: bool = True) -> None:
    """Check a layer end to end on a random float32 input of ``in_shape`` (None -> batch;
    a tuple of shapes for layers taking a tuple; integer ids for a layer with ``ids``, as
    Embedding, or ``x=`` given): the declared output shape, apply == vjp
    forward, float32 kept in outputs and gradients, batch rows independent at inference
    (each row alone gives its row; ``independent_rows=False`` for a layer whose inference
    mixes the rows by design, as BatchNorm(track_running_stats=False): then only reversing
    the rows must reverse the output's), the same gradients for x in the other memory
    layout (C or Fortran order), the float32 gradients against float64's, and the vjp
    against finite differences."""
    label = _layer("check_layer", layer)
    where = f"check_layer({label})"
    rtol, atol, _ = _settings(where, rtol, atol)
    batch = int_arg(batch, where, "batch")
    train = bool_arg(train, where, "train")
    in_shape = as_shape(in_shape)
    k_init, k_x, k_call = random.split_for(random.key(0) if key is None else key, 3, where)
    stateful = bool(getattr(layer, "stateful", False))
    n_out = 3 if stateful else 2
    out = returned(label, "init", layer.init(k_init, in_shape), n_out)
    out_shape, params = out[0], out[1]
    kw: dict[str, Any] = {"key": k_call, "train": train}
    if stateful:
        kw["state"] = out[2]
    if x is None:
        x = random_input(k_x, in_shape, batch, getattr(layer, "ids", None))
    x = as_input(where, x)
    first = tree.leaves(x)[:1]
    if not first or np.ndim(first[0]) == 0:
        raise TypeError(f"{where}: x must hold the batch on axis 0 of its (first) array, got "
                        f"{type(x).__name__} of shape {np.shape(first[0]) if first else None}")
    n = np.shape(first[0])[0]

    def call(p: Any, xx: Any, **extra: Any) -> Any:
        res = layer.apply(p, xx, **{**kw, **extra})
        return res[0] if stateful else res

    y = call(params, x)
    if not shape_agrees(out_shape, y, n):
        raise AssertionError(f"check_layer({label}): init declared output shape {out_shape}, "
                             f"apply gave {tree.map(np.shape, y)}")
    res = returned(label, "vjp", layer.vjp(params, x, **kw), n_out)
    pullback = res[1]
    same_forward(f"check_layer({label})", y, res[0], 1e-6, 1e-7)
    x_dtypes = {np.asarray(xi).dtype for xi in tree.leaves(x) if is_float(xi)}
    for path, yi in tree.leaves_with_path(y):
        if x_dtypes and is_float(yi) and np.asarray(yi).dtype not in x_dtypes:  # a mask: data
            raise AssertionError(f"check_layer({label}): input dtype {sorted(map(str, x_dtypes))}"
                                 f" gave output{path} of dtype {np.asarray(yi).dtype}")
    for path, leaf in tree.leaves_with_path(params):
        if is_float(leaf) and np.asarray(leaf).dtype != np.float32:
            raise AssertionError(f"check_layer({label}): init gave params{path} of dtype "
                                 f"{np.asarray(leaf).dtype}, expected float32")
    dparams, dx = returned(label, "the pullback", pullback(tree.map(np.ones_like, y)), 2)
    for path, leaf in tree.leaves_with_path(dparams):
        if is_float(leaf) and np.asarray(leaf).dtype != np.float32:
            raise AssertionError(f"check_layer({label}): dparams{path} has dtype "
                                 f"{np.asarray(leaf).dtype} for float32 params and input")
    if dx is not None:
        for (path, xi), di in zip(tree.leaves_with_path(x), tree.leaves(dx)):
            if is_float(xi) and np.asarray(di).dtype != np.asarray(xi).dtype:
                raise AssertionError(f"check_layer({label}): dx{path} has dtype "
                                     f"{np.asarray(di).dtype}, x{path} has "
                                     f"{np.asarray(xi).dtype}")
    if n > 1:  # each row alone, and the rows reversed, give the same rows
        full = call(params, x, train=False)
        flipped = call(params, tree.map(lambda a: np.asarray(a)[::-1], x), train=False)
        one_row: Any = None  # one row alone: not compared for a layer mixing rows by design
        if bool_arg(independent_rows, where, "independent_rows"):
            try:
                one_row = call(params, tree.map(lambda a: np.asarray(a)[:1], x), train=False)
            except ValueError as e:
                if np.ndim(tree.leaves(x)[0]) < 2:  # no axis beside the batch: a misuse
                    raise
                raise ValueError(
                    f"{where}: at inference the layer refused one row of the batch ({e}); "
                    f"for a layer whose inference mixes the batch's rows by design, pass "
                    f"independent_rows=False") from None
        alone = [None] * len(tree.leaves(full)) if one_row is None else tree.leaves(one_row)
        for a, b, c in zip(alone, tree.leaves(full), tree.leaves(flipped)):
            if not ((a is None or np.allclose(a, b[:1], rtol=1e-5, atol=1e-6, equal_nan=True))
                    and np.allclose(c, b[::-1], rtol=1e-5, atol=1e-6, equal_nan=True)):
                raise AssertionError(f"{where}: at inference, a row of the output depends "
                                     f"on the other rows of the batch (pass "
                                     f"independent_rows=False if it does by design)")
    # the same numbers in the other memory layout: the same gradients (on a random dy: one
    # of ones can give a gradient of rounding noise alone, as LayerNorm's dx)
    dy = tree.map(lambda a: random.normal(k_call, np.shape(a), np.asarray(a).dtype)
                  if is_float(a) else np.ones_like(a), y)
    given = res[1](dy)
    again = returned(label, "vjp", layer.vjp(params, relaid(x), **kw), n_out)[1](dy)
    err = layout_error(where, "(dparams, dx)", given, again)
    kw64 = {**kw, "state": to64(kw["state"])} if stateful else kw
    in64 = returned(label, "vjp", layer.vjp(to64(params), to64(x), **kw64), n_out)[1](to64(dy))
    err = err or precision_error(where, "(dparams, dx)", given, in64, dy)
    if err is not None:
        raise err
    check_vjp(layer, params, x, key=k_call, train=train, state=kw.get("state"), rtol=rtol,
              atol=atol)


def check_loss(loss: Any, pred: Any, target: Any, *, rtol: float = 1e-5, atol: float = 1e-8,
               eps: float = 1e-6, seed: int = 0, **kwargs: Any) -> None:
    """Check a loss: ``loss(pred, target)`` equals ``loss.vjp(...)[0]``, the gradient keeps
    pred's dtype (``pred`` one array, or a tuple of arrays with a tuple of gradients) and
    does not change with pred's memory layout (C or Fortran order), and
    ``pullback(1.0)`` matches finite differences in float64 (tier 2 names
    the entry of ``pred`` that is wrong). ``kwargs`` go to the loss (e.g. ``delta=``). A loss
    with aux (``Loss``'s two forms) is checked on its value; a ``functools.partial`` of a
    loss with its options bound, as that loss with them."""
    loss = bound(loss)
    if isinstance(loss, type) or not (callable(loss) and hasattr(loss, "vjp")):
        got = f"the class {loss.__name__}" if isinstance(loss, type) else repr(loss)
        raise TypeError(f"check_loss: the loss must be callable and have a "
                        f".vjp(pred, target) method (see funcdl.losses.Loss), got {got}")
    label = str(getattr(loss, "name", loss))
    where = f"check_loss({label})"
    rtol, atol, eps = _settings(where, rtol, atol, eps)
    seed = int_arg(seed, where, "seed")
    # one array, or a tuple of them for a loss of several inputs (margin_ranking's (x1, x2),
    # gaussian_nll's (mean, var)): its gradient is then a tuple too
    pred = (tuple(array_arg(p, where, f"pred[{i}]") for i, p in enumerate(pred))
            if type(pred) is tuple else array_arg(pred, where, "pred"))
    value2, pullback = _loss_vjp(where, loss.vjp(pred, target, **kwargs))
    value = _loss_value(where, "loss()", loss(pred, target, **kwargs))
    if np.shape(value) != np.shape(value2) or not np.allclose(value, value2, rtol=1e-12, atol=0,
                                                              equal_nan=True):
        raise AssertionError(f"{where}: loss() gave {value}, vjp gave {value2}")
    if not np.all(np.isfinite(value)):
        raise AssertionError(f"{where}: non-finite value {value}")
    dpred = _gradient(where, pred, _at_ones(pullback, value))
    if any(np.ndim(p) >= 2 for p in tree.leaves(pred)):  # another memory layout: the same
        _, pb2 = _loss_vjp(where, loss.vjp(relaid(pred), target, **kwargs))
        err = layout_error(where, "dpred", dpred, _at_ones(pb2, value))
        if err is not None:
            raise err
    p64 = to64(pred)
    t64 = to64(target)
    v64, pb64 = _loss_vjp(where, loss.vjp(p64, t64, **kwargs))
    err = precision_error(where, "dpred", dpred, _at_ones(pb64, v64), np.ones(np.shape(v64)))
    if err is not None:
        raise err
    u = (np.ones(()) if np.ndim(v64) == 0
         else random.normal(random.key(seed), np.shape(v64), np.float64))
    g = pb64(float(u) if np.ndim(v64) == 0 else u)

    def moved(z: Any) -> Any:
        try:
            return np.asarray(_loss_value(where, "loss()", loss(z, t64, **kwargs)))
        except ValueError as e:  # it took pred itself: a step crossed the domain's edge
            raise ValueError(f"{where}: the finite-difference steps (up to eps={eps:g} along "
                             f"random directions) took pred out of the loss's domain: {e}; "
                             f"check at a pred a few eps inside it (bce: in [3 eps, "
                             f"1 - 3 eps]), or pass a smaller eps") from None

    _fd_check(where, moved, p64, g, np.asarray(u), random.key(seed + 1), rtol, atol, eps, 3,
              lambda p: "pred" + p, pred=pred, target=target)


def _at_ones(pullback: Any, value: Any) -> Any:
    """A loss's pullback at a cotangent of ones: 1.0 for a reduced value, else ones of its
    shape."""
    return pullback(1.0) if np.ndim(value) == 0 else pullback(np.ones(np.shape(value)))


def _gradient(where: str, pred: Any, dpred: Any) -> Any:
    """``dpred`` if it is shaped and typed as ``pred`` (a tuple for a tuple), a 0-d
    gradient as NumPy's scalar arithmetic gives it read as an array; else an
    AssertionError."""
    if type(pred) is tuple:
        if not (isinstance(dpred, tuple) and len(dpred) == len(pred)):
            raise AssertionError(f"{where}: the gradient of a pred of {len(pred)} arrays must "
                                 f"be a tuple of {len(pred)}, got {type(dpred).__name__}")
        return tuple(_gradient(where, p, d) for p, d in zip(pred, dpred))
    if isinstance(dpred, np.generic):
        dpred = np.asarray(dpred)
    if not isinstance(dpred, np.ndarray) or dpred.shape != pred.shape \
            or dpred.dtype != pred.dtype:
        got = (f"shape {dpred.shape} and dtype {dpred.dtype}" if isinstance(dpred, np.ndarray)
               else f"a {type(dpred).__name__}")
        raise AssertionError(f"{where}: the gradient has {got}; pred has {pred.shape}, "
                             f"{pred.dtype}")
    return dpred


def _loss_value(where: str, what: str, value: Any) -> Any:
    """A loss's value, the first entry of ``(value, aux)``; an AssertionError unless it is
    a real number or array."""
    if isinstance(value, tuple) and value:
        value = value[0]
    if not (isinstance(value, (int, float, np.ndarray, np.generic))
            and np.asarray(value).dtype.kind in "biuf"):
        raise AssertionError(f"{where}: {what} must give a real number (or an array of them, "
                             f"or (value, aux)), got {value!r:.80}")
    return value


def _loss_vjp(where: str, got: Any) -> tuple[Any, Any]:
    """``(value, pullback)`` of what loss.vjp returned, in either of ``Loss``'s forms with
    aux, ``((value, aux), pullback)`` and ``(value, pullback, aux)``."""
    bad = vjp_form(got)
    if bad is not None:
        raise AssertionError(f"{where}: loss.vjp must return (value, pullback), with pullback "
                             f"a function of the cotangent, got {bad}")
    return _loss_value(where, "loss.vjp", got[0]), got[1]
