"""Prototype (not library code): other formulations of the stride-1, 'SAME' k x k depthwise
convolution (channel multiplier 1, NHWC, float32) against funcdl's own
``Conv2D(C, k, padding="SAME", groups=C)``, one BLAS thread.

Candidates, each checked against funcdl (max abs difference, and relative to max |y|):

- ``toeplitz/t``: per-channel banded (Toeplitz) matrices along W. The input is transposed
  once to channel-major rows ``(C, N·H, Wp)`` (zero columns at the sides; no padded rows).
  One batched matmul, ``(C, tiles, 1, N·H, t+k-1) @ (C, 1, k, t+k-1, t)``, gives every
  row's contribution to the outputs of all k vertical offsets (W cut into tiles of ``t``
  columns, read in place through a strided view, to cut the band's zeros); the k row-shifted
  blocks are then added (k-1 adds) and transposed back to NHWC with the bias. Backward: dx is
  the same product with the kernel flipped; dw per vertical offset one batched matmul
  ``(rows of x)ᵀ (rows of dy)`` per tile, minus the pairs that cross an example boundary,
  then summed along the band's diagonals. ``t = W`` is the untiled band.
- ``blocked``: funcdl's per-offset multiply-add, but the padding done per block into a
  preallocated ~1 MiB buffer that stays in L2, taps tiled along the row, ``out=`` throughout.

Times: per shape, the candidates alternate in rounds of ``--calls`` calls each; the median
per call over all rounds is printed (forward = funcdl ``apply``; fwd+bwd = funcdl ``vjp`` and
its pullback against the candidate's forward then backward giving dx, dw and db).

    /work/main/.venv/bin/python benchmarks/depthwise_toeplitz.py [--rounds 7] [--calls 5]
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import as_strided  # noqa: E402

from funcdl import layers as L  # noqa: E402
from funcdl import random  # noqa: E402

SHAPES = [(32, 28, 28, 32), (8, 112, 112, 32), (128, 56, 56, 16)]
_CHUNK = 8192  # values per transposing copy: whole-array transposes ran 3-4x slower
_BLOCK = 1 << 20  # bytes of padded input per block for ``blocked``


def _transpose_in(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst (C, R, W) = src (R, W, C)`` moved to channel-major, a few rows at a time."""
    r = max(1, _CHUNK // (src.shape[1] * src.shape[2]))
    for a in range(0, src.shape[0], r):
        np.copyto(dst[:, a:a + r], src[a:a + r].transpose(2, 0, 1))


def _band(w: np.ndarray, t: int) -> np.ndarray:
    """Kernel ``(kh, kw, 1, C)`` as ``(C, kh, t+kw-1, t)``: matrix i maps a tile's padded
    input row to its t outputs' share from vertical offset i."""
    kh, kw, _, c = w.shape
    band = np.zeros((c, t + kw - 1, kh, t), w.dtype)
    q = np.arange(t)
    for j in range(kw):
        band[:, q + j, :, q] = w[:, j, 0, :].T[None]
    return band.transpose(0, 2, 1, 3).copy()


def _tiles(a: np.ndarray, t: int, width: int, cols: int, transposed: bool = False) -> np.ndarray:
    """``a (C, R, Wp)`` as ``(C, tiles, R, width)`` (or its last two axes swapped): tile k
    the columns ``k·t ... k·t + width`` (a view; tiles overlap)."""
    s0, s1, s2 = a.strides
    if transposed:
        return as_strided(a, (a.shape[0], cols, width, a.shape[1]), (s0, t * s2, s2, s1))
    return as_strided(a, (a.shape[0], cols, a.shape[1], width), (s0, t * s2, s1, s2))


def _geometry(shape: tuple[int, ...], w: np.ndarray, t: int) -> tuple[int, ...]:
    n, h, wd, c = shape
    nt = -(-wd // t)
    return n, h, wd, c, nt, nt * t + w.shape[1] - 1


def toeplitz_core(xb: np.ndarray, w: np.ndarray, b: np.ndarray | None, t: int,
                  shape: tuple[int, ...]) -> np.ndarray:
    """NHWC output from the channel-major padded rows ``xb (C, N·H, Wp)``."""
    n, h, wd, c, nt, _ = _geometry(shape, w, t)
    kh, ph = w.shape[0], w.shape[0] // 2
    a = _tiles(xb, t, t + w.shape[1] - 1, nt)[:, :, None]
    z6 = np.matmul(a, _band(w, t)[:, None]).reshape(c, nt, kh, n, h, t)  # offset-major
    z6 = z6.transpose(0, 1, 3, 4, 2, 5)
    y = z6[:, :, :, :, ph]
    for i in range(kh):  # output row p reads input row p + d
        d = i - ph
        if 0 < -d < h:
            y[:, :, :, -d:] += z6[:, :, :, :h + d, i]
        elif 0 < d < h:
            y[:, :, :, :h - d] += z6[:, :, :, d:, i]
    out = np.empty(shape, xb.dtype)
    bias = np.zeros(c, xb.dtype) if b is None else b
    for k in range(nt):  # back to NHWC, the bias added on the way
        q0, q1 = k * t, min(wd, k * t + t)
        np.add(y[:, k, :, :, :q1 - q0].transpose(1, 2, 3, 0), bias, out=out[:, :, q0:q1])
    return out


def _rows(x: np.ndarray, w: np.ndarray, t: int) -> np.ndarray:
    n, h, wd, c, _, wp = _geometry(x.shape, w, t)
    xb = np.zeros((c, n * h, wp), x.dtype)
    pw = w.shape[1] // 2
    _transpose_in(xb[:, :, pw:pw + wd], x.reshape(n * h, wd, c))
    return xb


def toeplitz_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, t: int) -> np.ndarray:
    return toeplitz_core(_rows(x, w, t), w, b, t, x.shape)


def toeplitz_fwd_bwd(x: np.ndarray, w: np.ndarray, b: np.ndarray, dy: np.ndarray,
                     t: int) -> tuple[np.ndarray, ...]:
    """Forward, then ``(y, dx, dw, db)`` for cotangent ``dy``; the forward's rows are kept."""
    xb = _rows(x, w, t)
    y = toeplitz_core(xb, w, b, t, x.shape)
    n, h, wd, c, nt, _ = _geometry(x.shape, w, t)
    kh, kw = w.shape[:2]
    ph, pw = kh // 2, kw // 2
    db_ = _rows(dy, w, t)
    dx = toeplitz_core(db_, w[::-1, ::-1], None, t, x.shape)  # the adjoint: a flipped kernel
    d_rows = db_[:, :, pw:]  # dy's own columns, zeros past W
    xt = _tiles(xb, t, t + kw - 1, nt, transposed=True)
    dt = _tiles(d_rows, t, t, nt)
    rr = n * h
    dw = np.empty((kh, kw, 1, c), x.dtype)
    for i in range(kh):
        d = i - ph  # dw[i, j] = Σ x[row m + d, col q + j] dy[row m, col q], m + d in one example
        lo, hi = max(0, -d), rr - max(0, d)
        g = np.matmul(xt[..., lo + d:hi + d], dt[:, :, lo:hi])  # (C, tiles, t+kw-1, t)
        bad = np.array([m for m in range(lo, hi) if not 0 <= m % h + d < h], dtype=np.intp)
        if bad.size:
            g -= np.matmul(xt[..., bad + d], dt[:, :, bad])
        s = g.strides
        for j in range(kw):
            diag = as_strided(g[:, :, j:], (c, nt, t), (s[0], s[1], s[2] + s[3]))
            dw[i, j, 0] = diag.sum(axis=(1, 2))
    db = np.ones(n * h * wd, dy.dtype) @ dy.reshape(-1, c)
    return y, dx, dw, db


class Blocked:
    """Per-offset multiply-add over blocks of examples (or rows), each padded into one
    preallocated buffer of about ``_BLOCK`` bytes first."""

    def __init__(self, shape: tuple[int, ...], k: int) -> None:
        n, h, wd, c = shape
        self.p, per_row = k // 2, (wd + k - 1) * c * 4
        self.nb = _BLOCK // ((h + k - 1) * per_row)  # whole examples per block, if any fit
        if self.nb:
            rows, self.blocks = h, [(s, 0, h) for s in range(0, n, self.nb)]
        else:  # runs of one example's rows
            self.nb, rows = 1, max(1, _BLOCK // per_row - (k - 1))
            self.blocks = [(s, r, min(h, r + rows)) for s in range(n) for r in range(0, h, rows)]
        self.buf = np.zeros((self.nb, rows + k - 1, wd + k - 1, c), np.float32)
        self.tmp = np.empty((self.nb, rows, wd, c), np.float32)

    def __call__(self, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        n, h, wd, c = x.shape
        k, p = w.shape[0], self.p
        taps = np.ascontiguousarray(np.broadcast_to(w.reshape(k * k, 1, c), (k * k, wd, c)))
        y = np.empty_like(x)
        for s, r0, r1 in self.blocks:
            e = min(n, s + self.nb)
            buf, ys = self.buf, y[s:e, r0:r1]
            buf[:] = 0
            a0, a1 = max(0, r0 - p), min(h, r1 + p)
            buf[:e - s, a0 - r0 + p:a1 - r0 + p, p:p + wd] = x[s:e, a0:a1]
            tmp = self.tmp[:e - s, :r1 - r0]
            for o in range(k * k):
                i, j = divmod(o, k)
                src = buf[:e - s, i:i + r1 - r0, j:j + wd]
                np.multiply(src, taps[o], out=tmp if o else ys)
                if o:
                    np.add(ys, tmp, out=ys)
            np.add(ys, b, out=ys)
        return y


def _time(fns: dict[str, Callable[[], Any]], rounds: int, calls: int) -> dict[str, float]:
    """Median µs per call, the candidates alternating in rounds of ``calls`` calls."""
    got: dict[str, list[float]] = {name: [] for name in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for name, f in fns.items():
            for _ in range(calls):
                t0 = time.perf_counter()
                f()
                got[name].append((time.perf_counter() - t0) * 1e6)
    return {name: statistics.median(v) for name, v in got.items()}


def _diff(a: np.ndarray, ref: np.ndarray) -> str:
    d = float(np.max(np.abs(a - ref)))
    return f"{d:.1e} ({d / float(np.max(np.abs(ref))):.1e} rel)"


def run(shape: tuple[int, ...], k: int, rounds: int, calls: int) -> None:
    c, wd = shape[-1], shape[2]
    layer = L.Conv2D(c, k, padding="SAME", groups=c)
    _, params = layer.init(random.key(0), shape)
    x = random.normal(random.key(1), shape, np.float32)
    dy = random.normal(random.key(2), shape, np.float32)
    w, b = params["w"], params["b"]
    tile = -(-wd // -(-wd // 16))  # about 16 columns a tile
    blocked = Blocked(shape, k)
    fwd: dict[str, Callable[[], Any]] = {
        "funcdl": lambda: layer.apply(params, x),
        f"toeplitz/{tile}": lambda: toeplitz_forward(x, w, b, tile),
        f"toeplitz/{wd}": lambda: toeplitz_forward(x, w, b, wd),
        "blocked": lambda: blocked(x, w, b)}
    both: dict[str, Callable[[], Any]] = {
        "funcdl": lambda: layer.vjp(params, x)[1](dy),
        f"toeplitz/{tile}": lambda: toeplitz_fwd_bwd(x, w, b, dy, tile),
        f"toeplitz/{wd}": lambda: toeplitz_fwd_bwd(x, w, b, dy, wd)}
    ref = layer.apply(params, x)
    _, pull = layer.vjp(params, x)
    grads, dx_ref = pull(dy)
    print(f"\n## {shape} float32, k={k}, C={c}; check against funcdl: max |diff|")
    for name, f in fwd.items():
        if name != "funcdl":
            print(f"- {name} y: {_diff(f(), ref)}")
    for name in both:
        if name != "funcdl":
            _, dx, dw, db = both[name]()
            print(f"- {name} dx: {_diff(dx, dx_ref)}; dw: {_diff(dw, grads['w'])}; "
                  f"db: {_diff(db, grads['b'])}")
    tf, tb = _time(fwd, rounds, calls), _time(both, rounds, calls)
    print("\n| candidate | forward µs | vs funcdl | fwd+bwd µs | vs funcdl |")
    print("|---|--:|--:|--:|--:|")
    for name in fwd:
        bb = f"{tb[name]:,.0f} | {tb['funcdl'] / tb[name]:.2f}x" if name in tb else "– | –"
        print(f"| {name} | {tf[name]:,.0f} | {tf['funcdl'] / tf[name]:.2f}x | {bb} |",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--k", type=int, default=3)
    args = ap.parse_args()
    print(f"# NumPy {np.__version__}, OPENBLAS_NUM_THREADS=1; {args.rounds} rounds of "
          f"{args.calls} calls per candidate, alternating; median µs per call; "
          f"'vs funcdl': funcdl's median / the candidate's (above 1: faster than funcdl)")
    for shape in SHAPES:
        run(shape, args.k, args.rounds, args.calls)


if __name__ == "__main__":
    main()
