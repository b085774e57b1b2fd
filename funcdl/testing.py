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

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl import random, tree

__all__ = ["check_layer", "check_loss", "check_vjp"]

Array = NDArray[Any]
_MAX_ENTRIES = 400  # per leaf, in tier 2; larger leaves are sampled


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


def _directions(key: random.Key, z: Any) -> Any:
    leaves, td = tree.flatten(z)
    keys = random.split(key, max(len(leaves), 1))
    return tree.unflatten(td, [
        random.normal(k, np.shape(x), np.float64) if _is_float(x) else np.zeros(np.shape(x))
        for k, x in zip(keys, leaves)])


def _axpy(a: float, v: Any, z: Any) -> Any:
    return tree.map(lambda vi, zi: zi + a * vi if _is_float(zi) else zi, v, z)


def _entries(size: int, key: random.Key) -> Iterator[int]:
    if size <= _MAX_ENTRIES:
        return iter(range(size))
    return iter(np.sort(random.permutation(key, size)[:_MAX_ENTRIES]).tolist())


def _fd_check(label: str, f: Callable[[Any], Array], z: Any, grad: Any, u: Array,
              key: random.Key, rtol: float, atol: float, eps: float, ndir: int,
              rename: Callable[[str], str]) -> None:
    """Compare ``grad`` (the vjp of ``f`` at ``z`` against cotangent ``u``) with central
    differences of ``<u, f(z)>``; ``z`` and ``grad`` are pytrees (named ``params``, ``x``)."""

    def objective(zz: Any) -> float:
        return float(np.vdot(u, np.asarray(f(zz), np.float64)))

    failure = None
    for k in random.split(key, ndir):
        v = _directions(k, z)
        fd = (objective(_axpy(eps, v, z)) - objective(_axpy(-eps, v, z))) / (2 * eps)
        an = _dot(grad, v)
        scale = _abs_dot(grad, v) + abs(fd)
        if not abs(fd - an) <= atol + rtol * scale:
            failure = (fd, an)
            break
    if failure is None:
        return
    # Tier 2: per entry, to name the wrong leaf and index.
    bad: list[str] = []
    for (path, zl), gl, ek in zip(tree.leaves_with_path(z), tree.leaves(grad),
                                  random.split(key, max(len(tree.leaves(z)), 1))):
        if not _is_float(zl):
            continue
        zl = np.asarray(zl, np.float64)
        g = np.asarray(gl, np.float64).reshape(-1)
        for flat in _entries(zl.size, ek):
            idx = np.unravel_index(flat, zl.shape)

            def moved(delta: float, path: str = path, idx: Any = idx) -> Any:
                def bump(p: str, leaf: Any) -> Any:
                    if p != path:
                        return leaf
                    out = np.array(leaf, np.float64, copy=True)
                    out[idx] += delta
                    return out
                pairs = tree.leaves_with_path(z)
                return tree.unflatten(tree.structure(z), [bump(p, lf) for p, lf in pairs])

            fd = (objective(moved(eps)) - objective(moved(-eps))) / (2 * eps)
            if not abs(fd - g[flat]) <= atol + rtol * (abs(fd) + abs(g[flat])):
                where = rename(path) + (f"[{', '.join(str(int(i)) for i in idx)}]"
                                        if zl.ndim else "")
                bad.append(f"{where}: finite difference {fd:.6g}, vjp {g[flat]:.6g}")
    detail = (f"first wrong entry {bad[0]}" + (f" ({len(bad) - 1} more)" if len(bad) > 1 else "")
              if bad else "no single entry differs beyond tolerance; the error is spread out")
    raise AssertionError(
        f"check_vjp({label}): the vjp disagrees with finite differences: projected "
        f"{failure[0]:.6g} (finite difference) vs {failure[1]:.6g} (vjp); {detail}")


def check_vjp(layer: Any, params: Any, x: Any, *, key: Any = None, train: bool = False,
              state: Any = None, rtol: float = 1e-5, atol: float = 1e-8, eps: float = 1e-6,
              seed: int = 0, directions: int = 3) -> None:
    """Check ``layer.vjp`` against central finite differences in float64, for params and
    input, on random cotangents; also check that ``apply`` equals the vjp's forward.

    Stateful layers need ``state``. Integer inputs (ids) are not perturbed.
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

    def f(z: Any) -> Array:
        out = layer.apply(z[0], z[1], **kw)
        return np.asarray(out[0] if stateful else out)

    y = f((p64, x64))
    res = layer.vjp(p64, x64, **kw)
    y_vjp, pullback = np.asarray(res[0]), res[1]
    if y_vjp.shape != y.shape or not np.allclose(y_vjp, y, rtol=1e-12, atol=1e-12,
                                                 equal_nan=True):
        raise AssertionError(f"check_vjp({label}): apply and vjp(...)[0] disagree "
                             f"(shapes {y.shape} and {y_vjp.shape})")
    u = random.normal(random.key(seed), y.shape, np.float64)
    dparams, dx = pullback(u)
    tree.check_same(p64, dparams, ("params", "dparams"), shapes=True)
    if _is_float(x64):
        if np.shape(dx) != np.shape(x64):
            raise AssertionError(f"check_vjp({label}): dx has shape {np.shape(dx)}, "
                                 f"x has {np.shape(x64)}")
        z, grad = (p64, x64), (dparams, dx)
    else:
        z, grad = (p64, x64), (dparams, np.zeros(np.shape(x64)))
    _fd_check(label, f, z, grad, u, random.key(seed + 1), rtol, atol, eps, directions,
              lambda p: ("params" if p.startswith("[0]") else "x") + p[3:])


def check_layer(layer: Any, in_shape: tuple[int | None, ...], *, key: Any = None,
                batch: int = 3, train: bool = False, rtol: float = 1e-5,
                atol: float = 1e-8, x: Any = None) -> None:
    """Check a layer end to end on a random float32 input of ``in_shape`` (None -> batch):
    the declared output shape, apply == vjp forward, float32 kept in outputs and gradients,
    batch rows independent at inference, and the vjp against finite differences."""
    label = str(getattr(layer, "name", layer))
    k_init, k_x, k_call = random.split(random.key(0) if key is None else key, 3)
    stateful = bool(getattr(layer, "stateful", False))
    out = layer.init(k_init, in_shape)
    out_shape, params = out[0], out[1]
    kw: dict[str, Any] = {"key": k_call, "train": train}
    if stateful:
        kw["state"] = out[2]
    if x is None:
        shape = tuple(batch if d is None else d for d in in_shape)
        x = random.normal(k_x, shape, np.float32)

    def call(p: Any, xx: Any, **extra: Any) -> Array:
        res = layer.apply(p, xx, **{**kw, **extra})
        return np.asarray(res[0] if stateful else res)

    y = call(params, x)
    declared = tuple(np.shape(x)[0] if (i == 0 and d is None) else d
                     for i, d in enumerate(out_shape))
    if len(declared) != y.ndim or any(d is not None and d != s for d, s in zip(declared, y.shape)):
        raise AssertionError(f"check_layer({label}): init declared output shape {out_shape}, "
                             f"apply gave {y.shape}")
    res = layer.vjp(params, x, **kw)
    y_vjp, pullback = np.asarray(res[0]), res[1]
    if not np.allclose(y_vjp, y, rtol=1e-6, atol=1e-7, equal_nan=True):
        raise AssertionError(f"check_layer({label}): apply and vjp(...)[0] disagree")
    x_float = _is_float(x)
    if x_float and y.dtype != np.asarray(x).dtype:
        raise AssertionError(f"check_layer({label}): input dtype {np.asarray(x).dtype} gave "
                             f"output dtype {y.dtype}")
    for path, leaf in tree.leaves_with_path(params):
        if _is_float(leaf) and np.asarray(leaf).dtype != np.float32:
            raise AssertionError(f"check_layer({label}): init gave params{path} of dtype "
                                 f"{np.asarray(leaf).dtype}, expected float32")
    dparams, dx = pullback(np.ones_like(y))
    for path, leaf in tree.leaves_with_path(dparams):
        if _is_float(leaf) and np.asarray(leaf).dtype != np.float32:
            raise AssertionError(f"check_layer({label}): dparams{path} has dtype "
                                 f"{np.asarray(leaf).dtype} for float32 params and input")
    if x_float and np.asarray(dx).dtype != np.asarray(x).dtype:
        raise AssertionError(f"check_layer({label}): dx has dtype {np.asarray(dx).dtype}, "
                             f"x has {np.asarray(x).dtype}")
    if np.shape(x)[0] > 1:
        full = call(params, x, train=False)
        first = call(params, np.asarray(x)[:1], train=False)
        if not np.allclose(first, full[:1], rtol=1e-5, atol=1e-6):
            raise AssertionError(f"check_layer({label}): at inference, row 0 of the output "
                                 f"depends on the other rows of the batch")
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
    _fd_check(label, lambda z: np.asarray(loss(z, t64, **kwargs)), p64, g, np.asarray(u),
              random.key(seed + 1), rtol, atol, eps, 3, lambda p: "pred" + p)
