"""Finite-difference checks of vjps, for funcdl's own layers and users' layers alike.

Two tiers, in float64 (autograd's and JAX's randomised check, then what they lack):

1. a random projection: for a random cotangent ``u`` and direction ``v``, compare the
   central difference ``(<u, f(z + εv)> - <u, f(z - εv)>) / 2ε`` with ``<pullback(u), v>``;
2. on failure only, entry by entry, so the message names the leaf path and index that is
   wrong, with the expected (finite difference) and the got (vjp) values.

Each check raises ``AssertionError``, so it drops into any test::

    from funcdl.testing import check_layer, check_vjp
    check_layer(MyLayer(), (None, 3))                   # shapes, dtypes, rows, vjp
    check_vjp(layer, params, x, key=k, train=True)      # one configuration
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl import random, tree

__all__ = ["check_layer", "check_loss", "check_vjp"]

Array = NDArray[Any]
_MAX_ENTRIES = 400  # per leaf, in tier 2; a larger leaf is searched by halving


def _is_float(x: Any) -> bool:
    return np.asarray(x).dtype.kind == "f"


def _to64(t: Any) -> Any:
    return tree.astype(t, np.float64)


def _dot(a: Any, b: Any) -> float:
    return float(sum(np.vdot(np.asarray(x, np.float64), np.asarray(y, np.float64))
                     for x, y in zip(tree.leaves(a), tree.leaves(b))))


def _abs_dot(a: Any, b: Any) -> float:
    return float(sum(np.abs(np.asarray(x, np.float64) * np.asarray(y, np.float64)).sum()
                     for x, y in zip(tree.leaves(a), tree.leaves(b))))


def _norm_prod(a: Any, b: Any) -> float:
    """``‖a ∘ b‖₂`` over the leaves: the spread a projection's tolerance scales with."""
    return float(np.sqrt(sum(np.sum((np.asarray(x, np.float64) * np.asarray(y, np.float64))
                                    ** 2) for x, y in zip(tree.leaves(a), tree.leaves(b)))))


def _directions(key: random.Key, z: Any) -> Any:
    leaves, td = tree.flatten(z)
    keys = random.split(key, max(len(leaves), 1))
    return tree.unflatten(td, [
        random.normal(k, np.shape(x), np.float64) if _is_float(x) else np.zeros(np.shape(x))
        for k, x in zip(keys, leaves)])


def _axpy(a: float, v: Any, z: Any) -> Any:
    return tree.map(lambda vi, zi: zi + a * vi if _is_float(zi) else zi, v, z)


_ROUND = 16 * float(np.finfo(np.float64).eps)  # rounding of a float64 sum, with margin


def _fd_check(label: str, f: Callable[[Any], Any], z: Any, grad: Any, u: Any,
              key: random.Key, rtol: float, atol: float, eps: float, ndir: int,
              rename: Callable[[str], str]) -> None:
    """Compare ``grad`` (the vjp of ``f`` at ``z`` against cotangent ``u``) with central
    differences of ``<u, f(z)>``; ``z``, ``grad``, ``u`` and ``f(z)`` are pytrees.

    A projection ``<grad, v>`` passes when within ``atol + rtol · scale`` of its finite
    difference, ``scale = ‖grad ∘ v‖₂ + |fd| + |vjp|`` (the 2-norm, so one wrong entry of
    many is not hidden by the others) plus the finite difference's rounding error."""

    def difference(move: Callable[[float], Any]) -> tuple[float, float]:
        """The central difference along ``move`` and its rounding error."""
        hi, lo = f(move(eps)), f(move(-eps))
        noise = _ROUND * (_abs_dot(u, hi) + _abs_dot(u, lo)) / (2 * eps)
        return (_dot(u, hi) - _dot(u, lo)) / (2 * eps), noise

    def wrong(fd: float, an: float, spread: float, noise: float) -> bool:
        return not abs(fd - an) <= atol + rtol * (spread + abs(fd) + abs(an)) + noise

    failure = None
    for k in random.split(key, ndir):
        v = _directions(k, z)
        fd, noise = difference(functools.partial(_axpy, v=v, z=z))
        an = _dot(grad, v)
        if wrong(fd, an, _norm_prod(grad, v), noise):
            failure = (fd, an)
            break
    if failure is None:
        return
    # Tier 2: name the wrong leaf and index: entry by entry in a small leaf; in a large one,
    # halving the set of entries a random direction moves while the projection still fails.
    pairs = tree.leaves_with_path(z)
    td = tree.structure(z)
    bad: list[str] = []
    for j, ((path, zl), gl, ek) in enumerate(zip(pairs, tree.leaves(grad),
                                                 random.split(key, max(len(pairs), 1)))):
        if not _is_float(zl):
            continue
        zl = np.asarray(zl, np.float64)
        g = np.asarray(gl, np.float64).reshape(-1)

        def moved(delta: float, step: Array, j: int = j) -> Any:
            leaves = [leaf for _, leaf in pairs]
            leaves[j] = np.asarray(leaves[j], np.float64) + delta * step
            return tree.unflatten(td, leaves)

        def entry(flat: int, zl: Array = zl, g: Array = g, path: str = path) -> str | None:
            step = np.zeros(zl.shape)
            step.flat[flat] = 1.0
            fd, noise = difference(lambda d: moved(d, step))
            if not wrong(fd, g[flat], 0.0, noise):
                return None
            idx = np.unravel_index(flat, zl.shape)
            where = rename(path) + (f"[{', '.join(str(int(i)) for i in idx)}]"
                                    if zl.ndim else "")
            return f"{where}: finite difference {fd:.6g}, vjp {g[flat]:.6g}"

        if zl.size <= _MAX_ENTRIES:
            bad += [m for m in map(entry, range(zl.size)) if m is not None]
            continue

        def fails(part: Array, k: random.Key, zl: Array = zl, g: Array = g) -> bool:
            """The projection on a random direction moving only the entries ``part``."""
            flat_step = np.zeros(zl.size)
            flat_step[part] = np.asarray(random.normal(k, (len(part),), np.float64))
            fd, noise = difference(functools.partial(moved, step=flat_step.reshape(zl.shape)))
            gp, step = g[part], flat_step[part]
            return wrong(fd, _dot(gp, step), _norm_prod(gp, step), noise)

        keys = random.split(ek, 65)
        candidates = np.arange(zl.size)
        if not fails(candidates, keys[0]):
            continue  # this leaf's gradient is right
        for k in keys[1:]:
            if len(candidates) == 1:
                break
            halves = np.split(candidates, [len(candidates) // 2])
            failing = next((part for part in halves if fails(part, k)), None)
            if failing is None:
                break  # spread over both halves
            candidates = failing
        bad += [m for m in map(entry, candidates[:_MAX_ENTRIES].tolist()) if m is not None]
    detail = (f"first wrong entry {bad[0]}" + (f" ({len(bad) - 1} more)" if len(bad) > 1 else "")
              if bad else "no single entry differs beyond tolerance; the error is spread out")
    raise AssertionError(
        f"{label}: the vjp disagrees with finite differences: projected "
        f"{failure[0]:.6g} (finite difference) vs {failure[1]:.6g} (vjp); {detail}")


def _input_cotangent(label: str, x: Any, dx: Any) -> Any:
    """dx with zeros standing in where x is not floating (integer ids have no cotangent)."""
    if dx is None:
        return tree.map(lambda xi: np.zeros(np.shape(xi)), x)
    try:
        tree.check_same(x, dx, ("x", "dx"), shapes=True)
    except ValueError as e:
        raise AssertionError(f"check_vjp({label}): dx does not match x: {e}") from None
    return tree.map(lambda xi, di: di if _is_float(xi) else np.zeros(np.shape(xi)), x, dx)


def check_vjp(layer: Any, params: Any, x: Any, *, key: Any = None, train: bool = False,
              state: Any = None, rtol: float = 1e-5, atol: float = 1e-8, eps: float = 1e-6,
              seed: int = 0, directions: int = 3) -> None:
    """Check ``layer.vjp`` against central finite differences in float64, for params and
    input, on random cotangents; also check that ``apply`` equals the vjp's forward.

    ``x`` and the output may be pytrees (tuples for Parallel, FanOut ...). Stateful layers
    need ``state``. Integer inputs (ids) are not perturbed.
    Raises AssertionError naming the leaf path and index of the first wrong entry.
    """
    label = str(getattr(layer, "name", layer))
    stateful = bool(getattr(layer, "stateful", False))
    if stateful and state is None:
        raise ValueError(f"check_vjp({label}): a stateful layer needs state=...")
    p64, x64 = _to64(params), _to64(x)
    kw: dict[str, Any] = {"key": key, "train": train}
    if stateful:
        kw["state"] = _to64(state)

    def f(z: Any) -> Any:
        out = layer.apply(z[0], z[1], **kw)
        return out[0] if stateful else out

    y = f((p64, x64))
    res = layer.vjp(p64, x64, **kw)
    y_vjp, pullback = res[0], res[1]
    try:
        tree.check_same(y, y_vjp, ("apply", "vjp"), shapes=True)
    except ValueError as e:
        raise AssertionError(f"check_vjp({label}): apply and vjp(...)[0] disagree: {e}") \
            from None
    for a, b in zip(tree.leaves(y), tree.leaves(y_vjp)):
        if not np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True):
            raise AssertionError(f"check_vjp({label}): apply and vjp(...)[0] disagree")
    u = _directions(random.key(seed), y)
    grads = pullback(u)
    if not (isinstance(grads, tuple) and len(grads) == 2):
        raise AssertionError(f"check_vjp({label}): the pullback must return (dparams, dx), "
                             f"got {type(grads).__name__}"
                             + (f" of length {len(grads)}" if isinstance(grads, tuple) else ""))
    dparams, dx = grads
    try:
        tree.check_same(p64, dparams, ("params", "dparams"), shapes=True)
    except ValueError as e:
        raise AssertionError(f"check_vjp({label}): {e}") from None
    if getattr(layer, "dx_optional", False):
        dparams2, dx2 = pullback(u, need_dx=False)
        if dx2 is not None or not all(np.array_equal(a, b) for a, b in zip(
                tree.leaves(dparams), tree.leaves(dparams2))):
            raise AssertionError(f"check_vjp({label}): pullback(dy, need_dx=False) must give "
                                 f"the same dparams and None for dx")
    z, grad = (p64, x64), (dparams, _input_cotangent(label, x64, dx))
    _fd_check(f"check_vjp({label})", f, z, grad, u, random.key(seed + 1), rtol, atol, eps,
              directions, lambda p: ("params" if p.startswith("[0]") else "x") + p[3:])


def _is_shape(s: Any) -> bool:
    return isinstance(s, tuple) and all(d is None or isinstance(d, (int, np.integer))
                                        for d in s)


def _random_input(key: random.Key, in_shape: Any, batch: int) -> Any:
    """float32 normals of ``in_shape`` (a shape, or a tuple of shapes), None -> batch."""
    if _is_shape(in_shape):
        return random.normal(key, tuple(batch if d is None else d for d in in_shape))
    return tuple(_random_input(k, s, batch)
                 for k, s in zip(random.split(key, len(in_shape)), in_shape))


def _shape_agrees(declared: Any, y: Any, batch: int) -> bool:
    if _is_shape(declared):
        return (isinstance(y, np.ndarray) and len(declared) == y.ndim and all(
            d == s if d is not None else (i > 0 or s == batch)
            for i, (d, s) in enumerate(zip(declared, y.shape))))
    return (isinstance(declared, tuple) and isinstance(y, tuple) and len(declared) == len(y)
            and all(_shape_agrees(d, yi, batch) for d, yi in zip(declared, y)))


def check_layer(layer: Any, in_shape: Any, *, key: Any = None, batch: int = 3,
                train: bool = False, rtol: float = 1e-5, atol: float = 1e-8,
                x: Any = None) -> None:
    """Check a layer end to end on a random float32 input of ``in_shape`` (None -> batch;
    a tuple of shapes for layers taking a tuple): the declared output shape, apply == vjp
    forward, float32 kept in outputs and gradients, batch rows independent at inference,
    and the vjp against finite differences."""
    label = str(getattr(layer, "name", layer))
    k_init, k_x, k_call = random.split(random.key(0) if key is None else key, 3)
    stateful = bool(getattr(layer, "stateful", False))
    out = layer.init(k_init, in_shape)
    out_shape, params = out[0], out[1]
    kw: dict[str, Any] = {"key": k_call, "train": train}
    if stateful:
        kw["state"] = out[2]
    if x is None:
        x = _random_input(k_x, in_shape, batch)
    n = np.shape(tree.leaves(x)[0])[0]

    def call(p: Any, xx: Any, **extra: Any) -> Any:
        res = layer.apply(p, xx, **{**kw, **extra})
        return res[0] if stateful else res

    y = call(params, x)
    if not _shape_agrees(out_shape, y, n):
        raise AssertionError(f"check_layer({label}): init declared output shape {out_shape}, "
                             f"apply gave {tree.map(np.shape, y)}")
    res = layer.vjp(params, x, **kw)
    pullback = res[1]
    for a, b in zip(tree.leaves(y), tree.leaves(res[0])):
        if not np.allclose(a, b, rtol=1e-6, atol=1e-7, equal_nan=True):
            raise AssertionError(f"check_layer({label}): apply and vjp(...)[0] disagree")
    x_dtypes = {np.asarray(xi).dtype for xi in tree.leaves(x) if _is_float(xi)}
    for path, yi in tree.leaves_with_path(y):
        if x_dtypes and np.asarray(yi).dtype not in x_dtypes:
            raise AssertionError(f"check_layer({label}): input dtype {sorted(map(str, x_dtypes))}"
                                 f" gave output{path} of dtype {np.asarray(yi).dtype}")
    for path, leaf in tree.leaves_with_path(params):
        if _is_float(leaf) and np.asarray(leaf).dtype != np.float32:
            raise AssertionError(f"check_layer({label}): init gave params{path} of dtype "
                                 f"{np.asarray(leaf).dtype}, expected float32")
    dparams, dx = pullback(tree.map(np.ones_like, y))
    for path, leaf in tree.leaves_with_path(dparams):
        if _is_float(leaf) and np.asarray(leaf).dtype != np.float32:
            raise AssertionError(f"check_layer({label}): dparams{path} has dtype "
                                 f"{np.asarray(leaf).dtype} for float32 params and input")
    if dx is not None:
        for (path, xi), di in zip(tree.leaves_with_path(x), tree.leaves(dx)):
            if _is_float(xi) and np.asarray(di).dtype != np.asarray(xi).dtype:
                raise AssertionError(f"check_layer({label}): dx{path} has dtype "
                                     f"{np.asarray(di).dtype}, x{path} has "
                                     f"{np.asarray(xi).dtype}")
    if n > 1:  # each row alone, and the rows reversed, give the same rows
        full = call(params, x, train=False)
        first = call(params, tree.map(lambda a: np.asarray(a)[:1], x), train=False)
        flipped = call(params, tree.map(lambda a: np.asarray(a)[::-1], x), train=False)
        for a, b, c in zip(tree.leaves(first), tree.leaves(full), tree.leaves(flipped)):
            if not (np.allclose(a, b[:1], rtol=1e-5, atol=1e-6)
                    and np.allclose(c, b[::-1], rtol=1e-5, atol=1e-6)):
                raise AssertionError(f"check_layer({label}): at inference, a row of the "
                                     f"output depends on the other rows of the batch")
    check_vjp(layer, params, x, key=k_call, train=train, state=kw.get("state"), rtol=rtol,
              atol=atol)


def check_loss(loss: Any, pred: Any, target: Any, *, rtol: float = 1e-5, atol: float = 1e-8,
               eps: float = 1e-6, seed: int = 0, **kwargs: Any) -> None:
    """Check a loss: ``loss(pred, target)`` equals ``loss.vjp(...)[0]``, the gradient keeps
    pred's dtype, and ``pullback(1.0)`` matches finite differences in float64 (tier 2 names
    the entry of ``pred`` that is wrong). ``kwargs`` go to the loss (e.g. ``delta=``)."""
    label = str(getattr(loss, "name", loss))
    pred = np.asarray(pred)
    value = loss(pred, target, **kwargs)
    value2, pullback = loss.vjp(pred, target, **kwargs)
    if not np.allclose(value, value2, rtol=1e-12, atol=0):
        raise AssertionError(f"check_loss({label}): loss() gave {value}, vjp gave {value2}")
    if not np.all(np.isfinite(value)):
        raise AssertionError(f"check_loss({label}): non-finite value {value}")
    dpred = pullback(1.0) if np.ndim(value) == 0 else pullback(np.ones(np.shape(value)))
    if np.shape(dpred) != pred.shape or np.asarray(dpred).dtype != pred.dtype:
        raise AssertionError(f"check_loss({label}): the gradient has shape {np.shape(dpred)} "
                             f"and dtype {np.asarray(dpred).dtype}; pred has {pred.shape}, "
                             f"{pred.dtype}")
    p64 = pred.astype(np.float64)
    t64 = _to64(target)
    v64, pb64 = loss.vjp(p64, t64, **kwargs)
    u = (np.ones(()) if np.ndim(v64) == 0
         else random.normal(random.key(seed), np.shape(v64), np.float64))
    g = pb64(float(u) if np.ndim(v64) == 0 else u)
    _fd_check(f"check_loss({label})", lambda z: np.asarray(loss(z, t64, **kwargs)), p64, g,
              np.asarray(u), random.key(seed + 1), rtol, atol, eps, 3, lambda p: "pred" + p)
