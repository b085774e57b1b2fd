"""The floor: each training step written out by hand in NumPy, float32, no framework.

What a careful user would write: matrix products on contiguous operands, activations kept
for the backward pass, no input gradient for the first layer, SGD applied in place
(``w -= lr * dw``). The same math as funcdl's layers (the loss of each step is checked
against funcdl's), none of its generality: no validation, no pytrees, no closures per layer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .workloads import LR, Pairs, Workload

__all__ = ["make_step", "mlp_parts", "mse", "softmax_ce"]

Array = np.ndarray


def mse(p: Array, y: Array) -> tuple[float, Array]:
    d = p - y
    return float((d * d).mean()), d * (2 / d.size)


def softmax_ce(z: Array, labels: Array) -> tuple[float, Array]:
    n = len(z)
    s = z - z.max(axis=1, keepdims=True)
    e = np.exp(s)
    tot = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.log(tot[:, 0]).sum() - s[rows, labels].sum()) / n
    dz = e / tot
    dz[rows, labels] -= 1
    dz *= 1 / n
    return loss, dz


def mlp_parts(params: Pairs, x: Array, sigmoid: bool
              ) -> tuple[Callable[[], list[Array]], Callable[[list[Array], Array], Pairs],
                         Callable[[Pairs], None]]:
    """Dense-ReLU-...-Dense(-Sigmoid) as three parts, ``forward() -> activations`` (the last
    one the output), ``backward(acts, doutput) -> grads`` and ``update(grads)`` (in place), so
    that ``benchmarks.profile_step`` can time each against funcdl's."""
    last = len(params) - 1

    def forward() -> list[Array]:
        acts = [x]
        for i, (w, b) in enumerate(params):
            h = acts[-1] @ w
            h += b
            acts.append(np.maximum(h, 0) if i < last else h)
        if sigmoid:
            acts[-1] = 1 / (1 + np.exp(-acts[-1]))
        return acts

    def backward(acts: list[Array], d: Array) -> Pairs:
        if sigmoid:
            p = acts[-1]
            d = d * (p * (1 - p))
        grads = []
        for i in range(last, -1, -1):
            a = acts[i]
            grads.append((a.T @ d, d.sum(axis=0)))
            if i:  # no input gradient for the first layer
                d = d @ params[i][0].T
                d *= a > 0
        return grads[::-1]

    def update(grads: Pairs) -> None:
        for (w, b), (dw, db) in zip(params, grads):
            w -= LR * dw
            b -= LR * db

    return forward, backward, update


def _mlp(params: Pairs, x: Array, y: Array, sigmoid: bool,
         head: Callable[[Array, Array], tuple[float, Array]]) -> Callable[[], float]:
    """Dense-ReLU-...-Dense(-Sigmoid), then ``head`` (MSE or softmax CE)."""
    forward, backward, update = mlp_parts(params, x, sigmoid)

    def step() -> float:
        acts = forward()
        loss, d = head(acts[-1], y)
        update(backward(acts, d))
        return loss

    return step


def _resmlp(params: Pairs, x: Array, labels: Array) -> Callable[[], float]:
    """Dense, 4 x (a + Dense(ReLU(Dense(a)))), Dense, softmax CE."""
    (w0, b0), *mid, (wl, bl) = params
    blocks = [(mid[i], mid[i + 1]) for i in range(0, len(mid), 2)]

    def step() -> float:
        a = x @ w0
        a += b0
        saved = []
        for (w1, b1), (w2, b2) in blocks:
            h = a @ w1
            h += b1
            r = np.maximum(h, 0)
            o = r @ w2
            o += b2
            saved.append((a, r))
            a = a + o
        z = a @ wl
        z += bl
        loss, dz = softmax_ce(z, labels)
        grads = [(a.T @ dz, dz.sum(axis=0))]
        da = dz @ wl.T
        for ((w1, _), (w2, _)), (a_in, r) in zip(reversed(blocks), reversed(saved)):
            dr = da @ w2.T
            grads.append((r.T @ da, da.sum(axis=0)))
            dr *= r > 0
            grads.append((a_in.T @ dr, dr.sum(axis=0)))
            da = da + dr @ w1.T
        grads.append((x.T @ da, da.sum(axis=0)))
        for (w, b), (dw, db) in zip(params, reversed(grads)):
            w -= LR * dw
            b -= LR * db
        return loss

    return step


# ---------------------------------------------------------------------------- CNN

def _im2col3(x: Array) -> tuple[Array, Array]:
    """3x3 SAME windows of NHWC ``x`` as rows ``(N·H·W, 9·C)`` in (kh, kw, C) order, and
    the padded input."""
    n, h, w, c = x.shape
    xp = np.zeros((n, h + 2, w + 2, c), x.dtype)
    xp[:, 1:-1, 1:-1] = x
    s0, s1, s2, s3 = xp.strides
    win = as_strided(xp, (n, h, w, 3, 3, c), (s0, s1, s2, s1, s2, s3), writeable=False)
    return win.reshape(n * h * w, 9 * c), xp


def _col2im3(dcols: Array, shape: tuple[int, ...]) -> Array:
    """The adjoint of ``_im2col3``: add each window's cotangent back, crop the padding."""
    n, h, w, c = shape
    d6 = dcols.reshape(n, h, w, 3, 3, c)
    dxp = np.zeros((n, h + 2, w + 2, c), dcols.dtype)
    for i in range(3):
        for j in range(3):
            dxp[:, i:i + h, j:j + w] += d6[:, :, :, i, j]
    return dxp[:, 1:-1, 1:-1]


def _pool2(a: Array) -> tuple[Array, Array]:
    """2x2 max pool (stride 2) and the arg-max mask, ``a`` viewed as (N, H/2, 2, W/2, 2, C)."""
    n, h, w, c = a.shape
    a6 = a.reshape(n, h // 2, 2, w // 2, 2, c)
    y = a6.max(axis=(2, 4))
    return y, a6 == y[:, :, None, :, None]


def _unpool2(dy: Array, mask: Array) -> Array:
    # Ties route dy to every maximum; here the pool input is a ReLU output, so a tie is a
    # tie of zeros, whose gradient the ReLU's backward zeroes anyway.
    n, h2, _, w2, _, c = mask.shape
    return (mask * dy[:, :, None, :, None]).reshape(n, 2 * h2, 2 * w2, c)


def _cnn(params: Pairs, x: Array, labels: Array) -> Callable[[], float]:
    (k1, c1), (k2, c2), (wd, bd) = params
    n, h, w = x.shape[:3]

    def step() -> float:
        cols1, _ = _im2col3(x)
        h1 = (cols1 @ k1.reshape(-1, k1.shape[-1])).reshape(n, h, w, -1)
        h1 += c1
        r1 = np.maximum(h1, 0)
        p1, m1 = _pool2(r1)
        cols2, _ = _im2col3(p1)
        h2 = (cols2 @ k2.reshape(-1, k2.shape[-1])).reshape(n, h // 2, w // 2, -1)
        h2 += c2
        r2 = np.maximum(h2, 0)
        p2, m2 = _pool2(r2)
        f = p2.reshape(n, -1)
        z = f @ wd
        z += bd
        loss, dz = softmax_ce(z, labels)
        dwd, dbd = f.T @ dz, dz.sum(axis=0)
        dr2 = _unpool2((dz @ wd.T).reshape(p2.shape), m2)
        dr2 *= r2 > 0
        d2 = dr2.reshape(-1, dr2.shape[-1])
        dk2, dc2 = (cols2.T @ d2).reshape(k2.shape), d2.sum(axis=0)
        dp1 = _col2im3(d2 @ k2.reshape(-1, k2.shape[-1]).T, p1.shape)
        dr1 = _unpool2(dp1, m1)
        dr1 *= r1 > 0
        d1 = dr1.reshape(-1, dr1.shape[-1])
        dk1, dc1 = (cols1.T @ d1).reshape(k1.shape), d1.sum(axis=0)
        for p, g in ((k1, dk1), (c1, dc1), (k2, dk2), (c2, dc2), (wd, dwd), (bd, dbd)):
            p -= LR * g
        return loss

    return step


def make_step(w: Workload, params: Pairs, x: Array, y: Array) -> Callable[[], float]:
    """``step()`` for workload ``w``; ``params`` are updated in place (pass a copy)."""
    if w.name == "disk":
        return _mlp(params, x, y, True, mse)
    if w.name == "mlp":
        return _mlp(params, x, y, False, softmax_ce)
    if w.name == "resmlp":
        return _resmlp(params, x, y)
    if w.name == "cnn":
        return _cnn(params, x, y)
    raise ValueError(f"unknown workload {w.name!r}")
