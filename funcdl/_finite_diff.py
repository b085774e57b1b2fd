"""The central-difference check behind ``funcdl.testing``, in float64: a random projection
(tier 1), then, on failure, the search for the wrong entry (tier 2): each leaf's share of
the failing projection says which leaves to search, and a large leaf is halved, keeping the
half that carries the discrepancy, down to a few entries checked one by one. A failure
notes an input holding NaN or inf, or sitting at a kink or a tie, where the differences
rather than the vjp may be wrong.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl import debug, random, tree

Array = NDArray[Any]
_MAX_ENTRIES = 400  # per leaf, in tier 2; a larger leaf is searched by halving
_BLOCK = 8  # halving stops at this many entries, then checks each


def is_float(x: Any) -> bool:
    return bool(np.asarray(x).dtype.kind == "f")


def to64(t: Any) -> Any:
    return tree.astype(t, np.float64)


def relaid(t: Any) -> Any:
    """``t`` with each array of rank >= 2 copied into the other memory layout (Fortran order
    for a C-ordered one, else C): the same numbers, which must give the same gradients."""
    return tree.map(lambda a: a if not isinstance(a, np.ndarray) or a.ndim < 2 else
                    np.asfortranarray(a) if a.flags.c_contiguous else np.ascontiguousarray(a), t)


def _first_difference(given: Any, other: Any) -> tuple[str, tuple[int, ...], Any, Any] | None:
    """``(path, index, given's entry, other's)`` at the first floating leaf where ``other``
    differs from ``given`` beyond the rounding of another summation order (1e-4 of the
    leaf's largest entry in float32, 1e-10 in float64); else None."""
    for (path, a), b in zip(tree.leaves_with_path(given), tree.leaves(other)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype.kind != "f" or not a.size:
            continue
        r = 1e-4 if a.dtype.itemsize <= 4 else 1e-10
        with np.errstate(all="ignore"):  # inf - inf: NaN, which allclose and argmax take
            scale = float(np.nanmax(np.abs(np.where(np.isinf(a), np.nan, a)), initial=0.0))
            if not np.allclose(a, b, rtol=r, atol=r * scale, equal_nan=True):
                at = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(a - b)), a.shape))
                return path, at, a[at], b[at]
    return None


def _difference_error(where: str, finding: str, what: str, given: Any, other: Any,
                      values: str) -> AssertionError | None:
    """``where: finding: what[path] at (i, j) is <values>`` at the first entry where
    ``other`` differs from ``given`` (``values`` formats their two entries); else None."""
    found = _first_difference(given, other)
    if found is None:
        return None
    path, at, a, b = found
    return AssertionError(f"{where}: {finding}: {what}{path} at {at} is "
                          f"{values.format(a, b)}")


def layout_error(where: str, what: str, given: Any, other: Any) -> AssertionError | None:
    """An AssertionError naming the first entry where ``other`` (the gradient ``what`` of
    the ``relaid`` input) differs from ``given``'s (see ``_first_difference``); else None.
    Run it after ``repeat_error``: a pullback that differs from call to call differs here
    too, for another reason."""
    return _difference_error(
        where, "the gradient depends on the input's memory layout", what, given, other,
        ("{} for the input as given, {} for a copy in the other order (C or Fortran; a "
         "reshape that copies, then a write into the copy?)"))


def rows(x: Any, index: slice) -> Any:
    """The rows ``index`` of an input: of each array with a batch axis, and of a tuple or
    list of numbers inside ``x`` (per-row values, as lengths given as ``(4, 3)``), as an
    array; anything 0-d as it is."""
    return _rows_of(x, index, False)


def _rows_of(a: Any, index: slice, nested: bool) -> Any:
    """rows' walk (a module function, not a nested one calling itself: a reference cycle)."""
    if type(a) in (tuple, list):
        if nested and a and all(type(v) in (int, float) for v in a):
            return np.asarray(a)[index]
        return type(a)(_rows_of(v, index, True) for v in a)
    if isinstance(a, dict) or (isinstance(a, tuple) and hasattr(a, "_fields")):
        return tree.map(lambda v: _rows_of(v, index, True), a)
    return np.asarray(a)[index] if np.ndim(a) else a


def snapshot(t: Any) -> Any:
    """``t`` with its arrays copied: a pullback's first result, before the second call,
    which may write into the buffer it returned (its own kept one)."""
    return tree.map(lambda a: np.array(a, copy=True) if isinstance(a, np.ndarray) else a, t)


def repeat_error(where: str, what: str, first: Any, second: Any) -> AssertionError | None:
    """An AssertionError naming the first entry where ``second`` (the pullback's result
    for the same cotangent, called again) differs from ``first``; else None."""
    return _difference_error(
        where, "the pullback gives a different result on a second call with the same "
        "cotangent", what, first, second,
        ("{}, then {} (does it write into a buffer it keeps, or draw random numbers? a "
         "pullback must be a pure function of its cotangent)"))


def precision_error(where: str, what: str, got32: Any, want64: Any, cotangent: Any,
                    forward: tuple[Any, Any] | None = None) -> AssertionError | None:
    """An AssertionError naming the first float32 leaf of ``got32`` (a gradient computed in
    float32) farther from ``want64`` (the same, in float64 from the same numbers) than
    float32's rounding explains: 1e-4 of the leaf's norm, 1e-6 of the whole gradient's and
    1e-4 of the ``cotangent``'s (a gradient that is 0 but for rounding, as a BatchNorm's
    over equal rows, is noise in both); else None. The finite differences run in float64
    only: a float32-only path (a float32 special function, a fast branch) with a wrong
    factor would pass them. ``forward``: the outputs ``(y32, y64)`` of the two runs; when
    they differ too, the message says so: a layer drawing its noise in its input's dtype
    (``random.normal(key, s, float64)`` are other numbers than float32's) differs there."""
    pairs = [(path, np.asarray(a), np.asarray(b, np.float64))
             for (path, a), b in zip(tree.leaves_with_path(got32), tree.leaves(want64))]
    pairs = [(path, a, b) for path, a, b in pairs if a.dtype == np.float32
             and a.shape == b.shape and a.size and np.isfinite(a).all()
             and np.isfinite(b).all()]
    total = math.sqrt(sum(float(np.vdot(b, b)) for _, _, b in pairs))
    floor = 1e-6 * total + 1e-4 * math.sqrt(_abs_dot(cotangent, cotangent))
    for path, a, b in pairs:
        gap = float(np.linalg.norm((a - b).ravel()))
        if gap > 1e-4 * float(np.linalg.norm(b.ravel())) + floor:
            at = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(a - b)), a.shape))
            return AssertionError(
                f"{where}: the float32 gradient {what}{path} is off the float64 one (the same "
                f"numbers, computed in float64) by {gap:.3g} in norm, of "
                f"{np.linalg.norm(b.ravel()):.3g}; at {at}: {a[at]} in float32, {b[at]} in "
                f"float64 ({_cause(forward)})")
    return None


def _cause(forward: tuple[Any, Any] | None) -> str:
    """The likely cause of a float32 gradient off the float64 one: a forward already off
    (a float32-only forward, or noise drawn in the dtype), or a float32 path's wrong factor."""
    if forward is not None:
        y32, y64 = (np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in tree.leaves(y)
                                    if is_float(a)] or [np.zeros(0)]) for y in forward)
        with np.errstate(all="ignore"):
            gap = float(np.linalg.norm(y32 - y64)) if y32.shape == y64.shape else math.inf
        if not gap <= 1e-4 * float(np.linalg.norm(y64)) + 1e-30:
            return (f"the forward differs too, by {gap:.3g} in norm: a float32-only path in "
                    "the forward, or random numbers drawn in the input's dtype? funcdl.random's "
                    "float64 draws are other numbers than its float32 ones, as JAX's: draw in "
                    "float32 and cast, as Dropout does")
    return "a float32-only code path with a wrong factor?"


# The checks' own arithmetic on what the layer returned: an inf or NaN there (an input
# holding one) must come out as a NaN in the comparison, and so as the AssertionError
# that names it, not as NumPy's RuntimeWarning (an error under -W error).
def _dot(a: Any, b: Any) -> float:
    with np.errstate(all="ignore"):
        return float(sum(np.vdot(np.asarray(x, np.float64), np.asarray(y, np.float64))
                         for x, y in zip(tree.leaves(a), tree.leaves(b))))


def _abs_dot(a: Any, b: Any) -> float:
    with np.errstate(all="ignore"):
        return float(sum(np.abs(np.asarray(x, np.float64) * np.asarray(y, np.float64)).sum()
                         for x, y in zip(tree.leaves(a), tree.leaves(b))))


def _norm_prod(a: Any, b: Any) -> float:
    """``‖a ∘ b‖₂`` over the leaves: the spread a projection's tolerance scales with."""
    with np.errstate(all="ignore"):
        return float(np.sqrt(sum(np.sum((np.asarray(x, np.float64)
                                         * np.asarray(y, np.float64)) ** 2)
                                 for x, y in zip(tree.leaves(a), tree.leaves(b)))))


def directions_like(key: random.Key, z: Any) -> Any:
    leaves, td = tree.flatten(z)
    keys = random.split(key, max(len(leaves), 1))
    return tree.unflatten(td, [
        random.normal(k, np.shape(x), np.float64) if is_float(x) else np.zeros(np.shape(x))
        for k, x in zip(keys, leaves)])


def _axpy(a: float, v: Any, z: Any) -> Any:
    return tree.map(lambda vi, zi: zi + a * vi if is_float(zi) else zi, v, z)


def nonfinite_note(**trees: Any) -> str:
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


def kink_note(x: Any) -> str:
    """Where the input ``x`` sits where a finite difference may straddle a kink or a tie:
    its first exact zero (ReLU's kink; a zero row of padding or a one-hot row), or a batch
    row of few distinct values (a 0/1 image: MaxPool's ties); else ''. Neither occurs in
    N(0, 1) draws, so the note never blames the kinks of a check at such a draw. Only read
    on failure: a layer without kinks is checked at zeros as well as anywhere."""
    for path, a in tree.leaves_with_path(x):
        a = np.asarray(a)
        if a.dtype.kind != "f" or not a.size:
            continue
        zeros = np.argwhere(a == 0)
        if zeros.size:
            i = tuple(int(v) for v in zeros[0])
            return f"x{path}{list(i) if i else ''} is exactly 0"
        rows = a.reshape(len(a), -1) if a.ndim >= 2 else a.reshape(1, -1)
        for r, row in enumerate(rows):
            distinct = len(np.unique(row))
            if row.size >= 4 and 2 * distinct <= row.size:
                return (f"x{path}{f'[{r}]' if a.ndim >= 2 else ''} holds {distinct} distinct "
                        f"values among {row.size} entries")
    return ""


_ROUND = 16 * float(np.finfo(np.float64).eps)  # rounding of a float64 sum, with margin


def _gap(fd: float, an: float) -> float:
    """``|fd - an|``, nan counting as the largest: tier 2 follows the larger gap."""
    d = abs(fd - an)
    return math.inf if math.isnan(d) else d


def fd_check(label: str, f: Callable[[Any], Any], z: Any, grad: Any, u: Any,
             key: random.Key, rtol: float, atol: float, eps: float, ndir: int,
             rename: Callable[[str], str], **inputs: Any) -> None:
    """``_fd_check``; on failure, a note if one of the named ``inputs`` (the caller's, as
    ``x=x``) holds NaN or inf (``nonfinite_note``), or if ``x`` sits at a kink or a tie
    (``kink_note``)."""
    try:
        _fd_check(label, f, z, grad, u, key, rtol, atol, eps, ndir, rename)
    except AssertionError as e:
        odd = nonfinite_note(**inputs)
        if odd:
            raise AssertionError(f"{e}\n(note: {odd}; finite differences through a "
                                 f"non-finite value are NaN: check at a finite point)") from None
        odd = kink_note(inputs.get("x"))
        if not odd:
            raise
        raise AssertionError(f"{e}\n(note: {odd}; at a kink (ReLU's 0) or a tie (MaxPool's "
                             f"equal entries) a finite difference straddles it and disagrees "
                             f"with any subgradient: check at inputs away from them, as "
                             f"check_layer's N(0, 1) draws are)") from None


def _fd_check(label: str, f: Callable[[Any], Any], z: Any, grad: Any, u: Any,
              key: random.Key, rtol: float, atol: float, eps: float, ndir: int,
              rename: Callable[[str], str]) -> None:
    """Compare ``grad`` (the vjp of ``f`` at ``z`` against cotangent ``u``) with central
    differences of ``<u, f(z)>``; ``z``, ``grad``, ``u`` and ``f(z)`` are pytrees.

    A projection ``<grad, v>`` passes when within ``atol + rtol · scale`` of its finite
    difference, ``scale = ‖grad ∘ v‖₂ + |fd| + |vjp|`` (the 2-norm, not the 1-norm, so that
    the others hide one wrong entry less) plus the finite difference's rounding error. The
    scale grows as the root of a leaf's size: one entry 1% off among 10,000 can pass at
    rtol=1e-5 (it shows as 1e-2·|v_i| against ~2e-3); a smaller rtol finds it. A leaf whose
    own ``‖grad_j ∘ v_j‖₂`` is under ``sqrt(rtol)`` of the scale is projected again alone,
    against its own scale."""

    def central(move: Callable[[float], Any], h: float) -> tuple[float, float]:
        """The central difference along ``move`` with step h, and its rounding error."""
        hi, lo = f(move(h)), f(move(-h))
        noise = _ROUND * (_abs_dot(u, hi) + _abs_dot(u, lo)) / (2 * h)
        return (_dot(u, hi) - _dot(u, lo)) / (2 * h), noise

    def difference(move: Callable[[float], Any],
                   first: tuple[float, float] | None = None) -> tuple[float, float]:
        """Richardson's extrapolation of central differences at eps and eps/2: the h² term
        of their truncation error cancels (bce's 1/(1 - p) at p = 1 - 4e-5 is off by 3e-4
        at eps = 1e-6 otherwise). Twice the calls: tier 1 asks for it only to confirm a
        failure (passing the difference at eps it has, ``first``), tier 2 always."""
        d1, n1 = first or central(move, eps)
        d2, n2 = central(move, eps / 2)
        return (4 * d2 - d1) / 3, (4 * n2 + n1) / 3

    def wrong(fd: float, an: float, spread: float, noise: float) -> bool:
        return not abs(fd - an) <= atol + rtol * (spread + abs(fd) + abs(an)) + noise

    def fails(move: Callable[[float], Any], an: float, spread: float) -> tuple[bool, float]:
        """Whether the projection ``an`` disagrees with the difference along ``move``, and
        that difference; a failure only if the finer difference agrees."""
        fd, noise = central(move, eps)
        if wrong(fd, an, spread, noise):
            fd, noise = difference(move, (fd, noise))
        return wrong(fd, an, spread, noise), fd

    leaves_z, td_z = tree.flatten(z)
    for k in random.split(key, ndir):
        v = directions_like(k, z)
        an, spread = _dot(grad, v), _norm_prod(grad, v)
        bad_total, fd = fails(functools.partial(_axpy, v=v, z=z), an, spread)
        if bad_total:
            break
        # A leaf whose share of the projection is under sqrt(rtol) is checked on its own:
        # else its gradient could be wholly wrong within the total's tolerance (a bias
        # beside the weights of an input at 1e5). sqrt(rtol): every leaf is then held to
        # a relative error of sqrt(rtol) at least, and a balanced model pays nothing.
        for j, (gj, vj) in enumerate(zip(tree.leaves(grad), tree.leaves(v))):
            share = _norm_prod(gj, vj)
            if not is_float(leaves_z[j]) or share >= math.sqrt(rtol) * spread:
                continue
            alone = [np.zeros(np.shape(leaf)) for leaf in leaves_z]
            alone[j] = vj
            an = _dot(gj, vj)
            bad_leaf, fd = fails(functools.partial(_axpy, v=tree.unflatten(td_z, alone), z=z),
                                 an, share)
            if bad_leaf:
                break
        else:
            continue
        break
    else:
        return
    # Tier 2 re-uses the direction v that failed: a fresh one may miss an entry that v
    # moved far (one wrong entry of 20,000 shows only where v is large there).
    pairs = tree.leaves_with_path(z)
    td = tree.structure(z)
    flat = [(np.asarray(gl, np.float64).reshape(-1), np.asarray(vl).reshape(-1))
            for gl, vl in zip(tree.leaves(grad), tree.leaves(v))]

    def moving(j: int, part: slice, values: Any) -> tuple[float, float]:
        """The central difference moving only ``part`` of leaf j (flat), by ``values``."""
        step = np.zeros(flat[j][1].size)
        step[part] = values

        def move(delta: float) -> Any:
            leaves = [leaf for _, leaf in pairs]
            leaves[j] = np.asarray(leaves[j], np.float64) + delta * step.reshape(
                np.shape(leaves[j]))
            return tree.unflatten(td, leaves)

        return difference(move)

    def along(j: int, lo: int, hi: int) -> tuple[float, float, float, float]:
        """``(fd, vjp, spread, noise)`` of the projection on entries ``lo:hi`` of leaf j."""
        g, vj = flat[j][0][lo:hi], flat[j][1][lo:hi]
        fd, noise = moving(j, slice(lo, hi), vj)
        with np.errstate(all="ignore"):
            return fd, float(g @ vj), float(np.linalg.norm(g * vj)), noise

    def entry(j: int, i: int) -> str | None:
        """The message for entry i of leaf j (flat index), None if it is right."""
        fd, noise = moving(j, slice(i, i + 1), 1.0)
        got, shape = flat[j][0][i], np.shape(pairs[j][1])
        if not wrong(fd, got, 0.0, noise):
            return None
        idx = f"[{', '.join(str(int(a)) for a in np.unravel_index(i, shape))}]" if shape else ""
        return (f"{rename(pairs[j][0])}{idx}: expected {fd:.6g} (finite difference), got "
                f"{got:.6g} (vjp)")

    # Each leaf's share of the failing projection: the leaves where it fails are searched
    # (all of them, largest discrepancy first, if the error only shows in the total).
    shares = []
    for j, (_, zl) in enumerate(pairs):
        if is_float(zl) and flat[j][1].size:
            fdj, anj, spread, noise = along(j, 0, flat[j][1].size)
            shares.append((j, wrong(fdj, anj, spread, noise), _gap(fdj, anj)))
    failing = [j for j, bad_leaf, _ in shares if bad_leaf]
    search = failing or [j for j, _, _ in sorted(shares, key=lambda s: -s[2])]
    bad: list[str] = []
    for j in search:
        size = flat[j][1].size
        if size <= _MAX_ENTRIES:
            candidates = range(size)
        else:  # halve, keeping the half that carries more of the discrepancy; one wrong
            lo, hi = 0, size  # entry keeps its share at every level while the rest's
            while hi - lo > _BLOCK:  # shrinks to finite-difference noise
                mid = (lo + hi) // 2
                d_lo, d_hi = (_gap(a, b) for a, b, _, _ in (along(j, lo, mid),
                                                            along(j, mid, hi)))
                lo, hi = (lo, mid) if d_lo >= d_hi else (mid, hi)
            candidates = range(lo, hi)
        bad += [m for m in (entry(j, i) for i in candidates) if m is not None]
    if bad:
        detail = f"first wrong entry {bad[0]}" + (f" ({len(bad) - 1} more)" if len(bad) > 1
                                                  else "")
    else:
        where = ", ".join(rename(pairs[j][0]) for j in failing)
        detail = ("no single entry differs beyond tolerance; the error is spread out"
                  + (f" (over {where})" if where else ""))
    raise AssertionError(
        f"{label}: the vjp disagrees with finite differences: projected on a random "
        f"cotangent, expected {fd:.6g} (finite difference), got {an:.6g} (vjp); {detail}")
