"""What ``funcdl.testing``'s checks feed a layer and read back: inputs drawn for an
``in_shape`` or given, the shapes a layer declares, the tuples its functions return, and
apply's forward against the vjp's, and whether its rows are independent at inference; what
a loss returns: its value and gradient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import random, tree
from funcdl._args import array_arg
from funcdl._finite_diff import rows, to64
from funcdl.losses._base import vjp_form


def same_forward(where: str, y: Any, y_vjp: Any, rtol: float, atol: float,
                 what: str = "output", ours: str = "apply", got: str = "vjp(...)[0]") -> None:
    """Raise AssertionError unless apply's output ``y`` and the vjp's forward ``y_vjp`` have
    the same structure, shapes and dtypes (training runs on the vjp: a float64 forward
    there would upcast silently) and agree in value, naming the first entry that differs.
    For a stateful layer, ``what="state"``: apply's new state against the vjp's (training
    keeps the vjp's; a different update there, as another momentum, changes the model)."""
    try:
        tree.check_same(y, y_vjp, (ours, got), shapes=True)
    except ValueError as e:
        raise AssertionError(f"{where}: {ours} and {got} disagree: {e}") from None
    for (path, a), b in zip(tree.leaves_with_path(y), tree.leaves(y_vjp)):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype != b.dtype:
            raise AssertionError(f"{where}: {ours} gave {what}{path} of dtype {a.dtype}, "
                                 f"{got} of dtype {b.dtype}")
        off = (~np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
               if a.dtype.kind in "fc" else a != b)
        if off.any():
            i = tuple(int(v) for v in np.argwhere(off)[0])
            raise AssertionError(f"{where}: {ours} and {got} disagree in "
                                 f"{int(off.sum())} of {a.size} entries, first at "
                                 f"{what}{path}{list(i)}: {ours.split('(')[0]} {a[i]!r}, "
                                 f"{got.split('(')[0]} {b[i]!r}")


def as_input(where: str, x: Any) -> Any:
    """``x`` as a layer reads it: a nested list of numbers as an array; a list of arrays
    stays a list (a pytree, whose dx a layer returns as a list too)."""
    if isinstance(x, list) and all(isinstance(v, (int, float, np.generic))
                                   for v in tree.leaves(x) or [x]):
        return array_arg(x, where, "x")
    return type(x)(as_input(where, v) for v in x) if type(x) in (list, tuple) else x


def as_shape(s: Any) -> Any:
    """``in_shape`` with its lists as tuples, as the layers read it: ``[None, 4]``; inside
    dicts and NamedTuples too, which stay what they are."""
    if isinstance(s, dict):
        return {k: as_shape(v) for k, v in s.items()}
    if isinstance(s, tuple) and hasattr(s, "_fields"):
        return type(s)(*(as_shape(d) for d in s))
    return tuple(as_shape(d) for d in s) if isinstance(s, (list, tuple)) else s


def is_shape(s: Any) -> bool:
    return isinstance(s, tuple) and all(d is None or isinstance(d, (int, np.integer))
                                        for d in s)


def shapes_only(s: Any) -> bool:
    """Whether ``s`` is a shape (ints and None; a list too) or a tree of them (tuples,
    lists, dicts): what init returns first, not the params."""
    if isinstance(s, dict):
        return all(shapes_only(v) for v in s.values())
    return isinstance(s, (tuple, list)) and all(
        d is None or isinstance(d, (int, np.integer)) or shapes_only(d) for d in s)


def random_input(key: random.Key, in_shape: Any, batch: int, ids: int | None = None,
                 frozen: int | None = None) -> Any:
    """float32 normals of ``in_shape`` (a shape, or a tree of them: tuples, NamedTuples,
    dicts; ``as_shape``'s, lists made tuples), None -> batch; or, for a layer reading ids
    in ``[0, ids)``, int64 ids drawn uniformly, from those but ``frozen`` when it is one
    of several (a padding id, whose row gets no gradient)."""
    if is_shape(in_shape):
        shape = tuple(batch if d is None else d for d in in_shape)
        if ids is not None:
            skip = frozen is not None and 0 <= frozen < ids and ids > 1
            n = ids - 1 if skip else ids
            u = np.minimum(random.uniform(key, shape, 0.0, float(n), np.float64)
                           .astype(np.int64), n - 1)
            return u + (u >= frozen) if skip else u
        return random.normal(key, shape)
    if isinstance(in_shape, dict):
        names = list(in_shape)
        keys = random.split(key, len(names)) if names else ()
        return {n: random_input(k, in_shape[n], batch) for n, k in zip(names, keys)}
    if not isinstance(in_shape, tuple):  # a str would recurse on its characters
        raise TypeError(f"check_layer: in_shape must be a shape, e.g. (None, 3), or a tree "
                        f"(tuple, dict) of shapes, got {type(in_shape).__name__} "
                        f"{in_shape!r}")
    keys = random.split(key, len(in_shape)) if len(in_shape) else ()
    parts = [random_input(k, s, batch) for k, s in zip(keys, in_shape)]
    return type(in_shape)(*parts) if hasattr(in_shape, "_fields") else tuple(parts)


def shape_agrees(declared: Any, y: Any, batch: int) -> bool:
    if is_shape(declared):
        return (isinstance(y, np.ndarray) and len(declared) == y.ndim and all(
            d == s if d is not None else (i > 0 or s == batch)
            for i, (d, s) in enumerate(zip(declared, y.shape))))
    if isinstance(declared, dict):
        return (isinstance(y, dict) and sorted(y) == sorted(declared)
                and all(shape_agrees(declared[k], y[k], batch) for k in declared))
    return (isinstance(declared, (tuple, list)) and isinstance(y, (tuple, list))
            and len(declared) == len(y)
            and all(shape_agrees(d, yi, batch) for d, yi in zip(declared, y)))


def returned(where: str, what: str, got: Any, n: int) -> Any:
    """``got`` as the n-tuple a layer's ``what`` returns (a list too, but from init, as the
    combinators take them), else an AssertionError; init's out_shape must come first, a
    shape or a tree of them (not ``(params, out_shape)``)."""
    form = {("init", 2): "(out_shape, params)", ("init", 3): "(out_shape, params, state)",
            ("vjp", 2): "(y, pullback)", ("vjp", 3): "(y, pullback, new_state)",
            ("apply", 2): "(y, new_state)"}.get((what, n), "(dparams, dx)")
    if isinstance(got, tuple if what == "init" else (tuple, list)) and len(got) == n:
        if what == "init" and not shapes_only(got[0]):
            raise AssertionError(f"{where}: init must return {form}, out_shape first (a tuple "
                                 f"such as (None, 3)), got {type(got[0]).__name__} first")
        return tuple(got)
    raise AssertionError(f"{where}: {what} must return {form}, got {type(got).__name__}"
                         + (f" of length {len(got)}" if isinstance(got, tuple) else ""))


def gradient(where: str, pred: Any, dpred: Any) -> Any:
    """``dpred`` if it is shaped and typed as ``pred`` (a tuple for a tuple), a 0-d
    gradient as NumPy's scalar arithmetic gives it read as an array; else an
    AssertionError."""
    if type(pred) is tuple:
        if not (isinstance(dpred, tuple) and len(dpred) == len(pred)):
            raise AssertionError(f"{where}: the gradient of a pred of {len(pred)} arrays must "
                                 f"be a tuple of {len(pred)}, got {type(dpred).__name__}")
        return tuple(gradient(where, p, d) for p, d in zip(pred, dpred))
    if isinstance(dpred, np.generic):
        dpred = np.asarray(dpred)
    if not isinstance(dpred, np.ndarray) or dpred.shape != pred.shape \
            or dpred.dtype != pred.dtype:
        got = (f"shape {dpred.shape} and dtype {dpred.dtype}" if isinstance(dpred, np.ndarray)
               else f"a {type(dpred).__name__}")
        raise AssertionError(f"{where}: the gradient has {got}; pred has {pred.shape}, "
                             f"{pred.dtype}")
    return dpred


def unread_as_zeros(pred: Any, pullback: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``pullback`` with a None entry of a tuple pred's gradient read as zeros of that
    entry (an entry the loss does not read, as a ``losses.combine``'s): the finite
    differences then check that it is one."""
    if type(pred) is not tuple:
        return pullback

    def filled(g: Any) -> Any:
        d = pullback(g)
        if not (isinstance(d, tuple) and len(d) == len(pred)):
            return d  # gradient() names what is wrong
        return tuple(np.zeros_like(p) if di is None else di for p, di in zip(pred, d))

    return filled


def nonempty_pred(where: str, pred: Any) -> None:
    """A ValueError if ``pred`` (an array, or a tuple of them) holds no entry, or its
    (first) array an empty batch axis: the checks would compare nothing and pass, and a
    reduction='sum' loss of an empty batch is 0 whatever its code."""
    shapes = [a.shape for a in (pred if type(pred) is tuple else (pred,))]
    if shapes and (sum(int(np.prod(s)) for s in shapes) == 0 or (shapes[0] and
                                                                  shapes[0][0] == 0)):
        shown = shapes[0] if len(shapes) == 1 else shapes
        raise ValueError(f"{where}: pred is empty (shape {shown}): there is nothing to "
                         f"check; pass a non-empty batch")


def loss_value(where: str, what: str, value: Any) -> Any:
    """A loss's value, the first entry of ``(value, aux)``; an AssertionError unless it is
    a real number or array."""
    if isinstance(value, tuple) and value:
        value = value[0]
    if not (isinstance(value, (int, float, np.ndarray, np.generic))
            and np.asarray(value).dtype.kind in "biuf"):
        raise AssertionError(f"{where}: {what} must give a real number (or an array of them, "
                             f"or (value, aux)), got {value!r:.80}")
    return value


def loss_vjp(where: str, got: Any) -> tuple[Any, Any]:
    """``(value, pullback)`` of what loss.vjp returned, in either of ``Loss``'s forms with
    aux, ``((value, aux), pullback)`` and ``(value, pullback, aux)``."""
    bad = vjp_form(got)
    if bad is not None:
        raise AssertionError(f"{where}: loss.vjp must return (value, pullback), with pullback "
                             f"a function of the cotangent, got {bad}")
    return loss_value(where, "loss.vjp", got[0]), got[1]


def rows_independent(where: str, infer: Callable[[Any, Any], Any], params: Any, x: Any,
                     alone: bool) -> None:
    """check_layer's rows: at inference (``infer(params, x)``), the first row alone and the
    others alone (when ``alone``) and the rows reversed give the same rows as the whole
    batch. Both parts alone: a row scaled by the batch's max passes the first alone when the
    max is there. ``alone`` False for a layer mixing rows by design. A float32 disagreement
    is judged again on the params and x in float64: BLAS rounds a product of 1 row
    otherwise than one of 3 (another kernel), and an ill-conditioned layer (a Fourier
    feature sin(2π·x·B) at |B| ~ 10) lifts that past the tolerance, where a row that reads
    its neighbours differs in float64 too."""
    bad = _rows_disagree(where, lambda xx: infer(params, xx), x, alone)
    if bad is not None:  # in float64 already, the second run gives the same verdict
        try:
            p64 = to64(params)
            bad64 = _rows_disagree(where, lambda xx: infer(p64, to64(xx)), x, alone)
        except Exception:  # no float64 run: the float32 verdict stands
            bad64 = bad
        bad = None if bad64 is None else bad
    if bad is not None:
        raise AssertionError(bad)


def _rows_disagree(where: str, infer: Callable[[Any], Any], x: Any, alone: bool
                   ) -> str | None:
    """``rows_independent``'s comparison through ``infer``: its message, or None."""
    full = infer(x)
    flipped = infer(rows(x, slice(None, None, -1)))
    one_row: Any = None
    others: Any = None
    if alone:
        try:
            one_row = infer(rows(x, slice(1)))
            others = infer(rows(x, slice(1, None)))
        except ValueError as e:
            shape = np.shape(tree.leaves(x)[0])
            if len(shape) < 2:  # no axis beside the batch: most likely in_shape without it
                raise ValueError(
                    f"{where}: at inference the layer refused a part of the batch ({e}); x "
                    f"of shape {shape} has no axis beside the batch axis 0: in_shape needs "
                    f"the batch axis first, e.g. (None, {shape[0]}) for {shape[0]} "
                    f"features") from None
            raise ValueError(
                f"{where}: at inference the layer refused a part of the batch ({e}); "
                f"for a layer whose inference mixes the batch's rows by design, pass "
                f"independent_rows=False; one that reads them in a fixed order (a graph "
                f"layer over the batch's nodes) fails the row checks: check it with "
                f"check_vjp(layer, params, x)") from None
    skip = [None] * len(tree.leaves(full))
    first = skip if one_row is None else tree.leaves(one_row)
    rest = skip if others is None else tree.leaves(others)
    for a, r, b, c in zip(first, rest, tree.leaves(full), tree.leaves(flipped)):
        if a is not None and not (
                np.allclose(a, b[:1], rtol=1e-5, atol=1e-6, equal_nan=True)
                and np.allclose(r, b[1:], rtol=1e-5, atol=1e-6, equal_nan=True)):
            return (f"{where}: at inference, a row of the output depends on the other rows "
                    f"of the batch (pass independent_rows=False if it does by design)")
        if not np.allclose(c, b[::-1], rtol=1e-5, atol=1e-6, equal_nan=True):
            return (f"{where}: at inference, a row of the output depends on the other rows "
                    f"of the batch or on their order: reversing the rows did not reverse the "
                    f"output's (a layer reading the rows in a fixed order, as a graph layer "
                    f"over the batch's nodes, or drawing per-row noise from its key at "
                    f"inference does too, which no flag here allows: check it with "
                    f"check_vjp(layer, params, x), at one key)")
    return None
