"""What MultiHeadAttention checks: its input forms (one array, ``(q, kv)``, ``(q, k, v)``)
and their shapes, at ``init`` (where sizes may be None) and at ``apply``, and its params.
Every error names the layer, the entries by role and their shapes. Also the attention
weights it may return (``return_weights``), their cotangent, and the causal mask; and the
normalisers of the scores' rows (softmax, sparsemax) with their vjps."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from funcdl._args import array_arg, frozen, nearest_divisors, refuse_masked
from funcdl._simplex import simplex_projection, simplex_projection_vjp
from funcdl.layers._params import param_arrays
from funcdl.layers._sums import ones, product
from funcdl.layers.base import Array, Shape, as_array, cast_ints, check_cotangent, check_in_shape

__all__ = ["NORMALIZERS", "ROLES", "agree", "checked_params", "features", "fitting", "in_shapes",
           "inputs", "later", "mask_arg", "mask_shape", "returned_weights", "several", "shown",
           "split_cotangent", "split_mask", "weights_arg", "weights_shape"]

# the entries of each input form, by count: self-, cross- and general attention
ROLES = {1: ("x",), 2: ("q", "kv"), 3: ("q", "k", "v")}
FORMS = ("one array x (N, T, E), or a tuple (q, kv) or (q, k, v) of (N, T, E) arrays (k, v "
         "of kdim, vdim features with those set)")


def several(xs: Any) -> bool:
    """Whether ``xs`` is a tuple of inputs: a tuple, or a list of arrays (as Parallel and
    FanInSum read a list); a nested list of numbers is one array, as NumPy reads it."""
    return isinstance(xs, tuple) or (isinstance(xs, list) and bool(xs) and all(
        isinstance(e, np.ndarray) for e in xs))


def shown(shapes: Sequence[Any]) -> str:
    """``q (2, 3, 4), kv (2, 5, 4)``: each entry's shape after its role."""
    return ", ".join(f"{r} {tuple(s)}" for r, s in zip(ROLES[len(shapes)], shapes))


def in_shapes(name: str, in_shape: Any) -> list[Shape]:
    """``init``'s in_shape as one shape per entry: a shape, or a tuple of 2 or 3 shapes."""
    if isinstance(in_shape, (tuple, list)) and any(isinstance(s, (tuple, list))
                                                   for s in in_shape):
        if len(in_shape) not in (2, 3):
            raise ValueError(f"{name}: in_shape must be one shape (N, T, E), or a tuple of two "
                             f"(q, kv) or three (q, k, v) shapes, got {len(in_shape)} entries: "
                             f"{tuple(in_shape)!r}")
        return [check_in_shape(name, s, min_rank=0) for s in in_shape]
    return [check_in_shape(name, in_shape, min_rank=0)]


def agree(name: str, shapes: Sequence[Shape], heads: int, causal: bool,
          kdim: int | None = None, vdim: int | None = None,
          masked: bool = False) -> tuple[int | None, int | None, int]:
    """The output shape ``(N, Tq, E)`` of inputs of ``shapes`` (None: unknown, at init),
    or a ValueError: each of rank 3; q's E known, > 0 and split by ``heads``; k's last axis
    ``kdim``, v's ``vdim`` (None: E); one batch size; k and v of one length; as many
    queries as keys when ``causal``."""
    roles = ROLES[len(shapes)]
    for r, s in zip(roles, shapes):
        if len(s) != 3:
            hint = (" (a tuple is read as (q, kv) or (q, k, v): a mask as its last entry "
                    "needs MultiHeadAttention(..., masked=True); a list of arrays: np.stack "
                    "rows into one array)" if len(shapes) > 1 and len(s) == 2 and not masked
                    else " (with masked=True the mask comes last: (x, mask), (q, kv, mask) or "
                    "(q, k, v, mask))" if masked and len(s) == 2
                    else " (attention over an image's pixels, (N, H, W, C): Reshape((H * W, "
                    "C)) before it and Reshape((H, W, C)) after)" if len(s) == 4 else "")
            raise ValueError(f"{name}: expected {r} of rank 3, (N, T, E) with the batch first "
                             f"and the embedding last, got shape {tuple(s)}{hint}")
    if kdim is None and vdim is None:
        sizes = {s[2] for s in shapes if s[2] is not None}
        if len(sizes) > 1:
            raise ValueError(f"{name}: the inputs must share one embedding size E (the last "
                             f"axis), got {shown(shapes)}; keys and values of other sizes "
                             f"take kdim= and vdim= (PyTorch's), e.g. "
                             f"MultiHeadAttention(..., kdim={shapes[1][2]}, "
                             f"vdim={shapes[-1][2]})")
    e = shapes[0][2]
    if e is None or e == 0:
        raise ValueError(f"{name}: the embedding size E (the last axis) must be a known size "
                         f"> 0, got {shown(shapes)}")
    divides(name, e, heads, f"the last axis of {shown(shapes)}")
    if kdim is not None or vdim is not None:
        features(name, shapes, e, kdim, vdim)
    batches = {s[0] for s in shapes if s[0] is not None}
    if len(batches) > 1:
        raise ValueError(f"{name}: the inputs must share one batch size (axis 0), got "
                         f"{shown(shapes)}")
    tq, tk = shapes[0][1], shapes[min(1, len(shapes) - 1)][1]
    if len(shapes) == 3 and None not in (tk, shapes[2][1]) and tk != shapes[2][1]:
        raise ValueError(f"{name}: k and v must have one length (axis 1), a value for each "
                         f"key, got {shown(shapes)}")
    if causal and None not in (tq, tk) and tq != tk:
        raise ValueError(f"{name}: causal=True needs as many queries as keys (query i sees "
                         f"keys j <= i), got Tq = {tq} and Tk = {tk}: "
                         f"{shown(shapes)}; cross-attention between sequences of other "
                         f"lengths takes causal=False")
    batch = next(iter(batches)) if batches else None
    return (batch, shapes[0][1], e)


def features(name: str, shapes: Sequence[Any], e: int, kdim: int | None,
             vdim: int | None) -> None:
    """A ValueError unless the entries' last axes fit ``e`` (q's), ``kdim`` and ``vdim``
    (None: E; an unknown size fits): x alone needs kdim = vdim = E, as torch's, and kv
    kdim = vdim."""
    kd, vd = e if kdim is None else kdim, e if vdim is None else vdim
    sizes = f"E = {e}, kdim = {kd}, vdim = {vd}"
    if len(shapes) == 1 and (kd != e or vd != e):
        alt = f" or (q, kv) with kv (N, Tk, {kd})" if kd == vd else ""
        raise ValueError(f"{name}: one array x is self-attention (q = k = v = x), which "
                         f"needs kdim = vdim = E, got {shown(shapes)} with {sizes}: pass "
                         f"(q, k, v) with q (N, Tq, {e}), k (N, Tk, {kd}), v (N, Tk, {vd})"
                         f"{alt}")
    if len(shapes) == 2 and kd != vd:
        raise ValueError(f"{name}: (q, kv) uses kv as both keys and values, which needs "
                         f"kdim = vdim, got {shown(shapes)} with {sizes}: pass (q, k, v) "
                         f"with k (N, Tk, {kd}), v (N, Tk, {vd})")
    for r, s, want in zip(ROLES[len(shapes)], shapes, (e, kd, vd)):
        if s[2] is not None and s[2] != want:
            which = {"q": "E", "kv": "kdim", "k": "kdim", "v": "vdim"}[r]
            raise ValueError(f"{name}: expected {r} of shape (N, T, {want}), its last axis "
                             f"{which} = {want}, got {shown(shapes)} ({sizes})")


def fitting(name: str, given: Sequence[Array], e: int, heads: int, causal: bool,
            kdim: int | None, vdim: int | None, masked: bool = False) -> None:
    """``agree`` on the input arrays ``given`` (apply's and a decode step's), after their
    last axes against the params' E, kdim and vdim: a ValueError naming the sizes."""
    shapes = [x.shape for x in given]
    if all(len(s) == 3 for s in shapes):
        if kdim is not None or vdim is not None:  # the sizes the params were checked for
            features(name, shapes, e, kdim, vdim)
        elif any(s[2] != e for s in shapes):
            raise ValueError(f"{name}: expected inputs (N, T, {e}), the embedding size "
                             f"the params were initialised for, got " + shown(shapes) + (
                                 "; keys and values of other sizes take kdim= and vdim="
                                 if shapes[0][2] == e else ""))
    agree(name, shapes, heads, causal, kdim, vdim, masked)


def divides(name: str, e: int, heads: int, where: str) -> None:
    """A ValueError unless ``heads`` divides ``e``, suggesting the head counts that would."""
    if e % heads:
        raise ValueError(f"{name}: the embedding size E = {e} ({where}) does not split into "
                         f"num_heads = {heads} heads of equal size; num_heads must divide E "
                         f"(num_heads={nearest_divisors(e, heads)} would)")


def inputs(name: str, xs: Any, dtype: np.dtype[Any]) -> list[Array]:
    """The input as its entries (1, 2 or 3), arrays with integers cast to ``dtype`` (the
    params'), which Python floats take too; shapes not checked yet."""
    if type(xs) is np.ndarray and xs.dtype.char in "fd" and xs.dtype.isnative:
        return [xs]  # the common case: one float array
    if not several(xs):
        return [cast_ints(as_array(name, xs, dtype), dtype)]
    if len(xs) not in (2, 3):
        raise ValueError(f"{name}: expected {FORMS}, got a {type(xs).__name__} of "
                         f"{len(xs)} entries")
    return [cast_ints(as_array(name, x, dtype), dtype) for x in xs]


def checked_params(name: str, params: Any, keys: tuple[str, ...], heads: int,
                   kdim: int | None = None, vdim: int | None = None) -> dict[str, Array]:
    """The params as a dict of float arrays: ``w_q``, ``w_o`` of shape (E, E), ``w_k``
    (kdim, E), ``w_v`` (vdim, E) (None: E) and ``b_*`` (E,), one E that ``heads`` splits;
    else an error naming the layer and what came."""
    if not (type(params) is dict and len(params) == len(keys) and all(
            type(params.get(k)) is np.ndarray and params[k].dtype.char in "fd" for k in keys)):
        params = dict(zip(keys, param_arrays(name, params, keys)))
    w = params["w_q"]
    e = w.shape[0] if w.ndim else 0
    if kdim is None and vdim is None:
        bad = e == 0 or any(params[k].shape != ((e, e) if k[0] == "w" else (e,)) for k in keys)
    else:
        rows = {"w_k": e if kdim is None else kdim, "w_v": e if vdim is None else vdim}
        bad = e == 0 or any(params[k].shape != ((rows.get(k, e), e) if k[0] == "w" else (e,))
                            for k in keys)
    if bad:
        got = ", ".join(f"{k} {params[k].shape}" for k in keys)
        want = ("w_q, w_k, w_v, w_o of shape (E, E)" if kdim is None and vdim is None else
                f"w_q, w_o of shape (E, E), w_k ({'E' if kdim is None else kdim}, E), "
                f"w_v ({'E' if vdim is None else vdim}, E)") + (
            " and b_q, b_k, b_v, b_o of shape (E,)" if len(keys) > 4 else "")
        raise ValueError(f"{name}: params must hold {want}, one E > 0 (as init returns "
                         f"them), got {got}")
    divides(name, e, heads, "the size of the params")
    return dict(params)


# ---------------------------------------------------------------------------- masks

MASKS = ("a boolean key_padding_mask (N, Tk), True at padding (torch's), or a boolean "
         "attention mask (N, Tq, Tk), True where query i may not see key j (torch's bool "
         "attn_mask; a (Tq, Tk) one goes as mask[None], (1, Tq, Tk))")


def split_mask(name: str, xs: Any) -> tuple[Any, Any]:
    """A masked layer's input as (the input form without the mask, the mask): the mask is
    the last entry of ``(x, mask)``, ``(q, kv, mask)`` or ``(q, k, v, mask)``."""
    if not (isinstance(xs, (tuple, list)) and 2 <= len(xs) <= 4):
        got = (f"a {type(xs).__name__} of {len(xs)} entries" if isinstance(xs, (tuple, list))
               else f"{type(xs).__name__}" + (f" of shape {xs.shape}"
                                              if isinstance(xs, np.ndarray) else ""))
        raise ValueError(f"{name}: masked=True takes the mask as the input's last entry, "
                         f"(x, mask), (q, kv, mask) or (q, k, v, mask), got {got}; without "
                         f"a mask, build the layer with masked=False")
    rest = tuple(xs[:-1])
    return (rest[0] if len(rest) == 1 else rest), xs[-1]


def mask_shape(name: str, shape: Any, out: tuple[Any, Any, Any], tk: Any) -> None:
    """A ValueError unless ``shape`` (None: unknown) is a mask's for queries ``out`` =
    (N, Tq, E) and ``tk`` keys: (N, Tk), or (N or 1, Tq, Tk)."""
    n, tq = out[0], out[1]

    def fits(a: Any, b: Any) -> bool:
        return a is None or b is None or a == b

    shape = tuple(shape)
    if len(shape) == 2 and fits(shape[0], n) and fits(shape[1], tk):
        return
    if len(shape) == 3 and (shape[0] == 1 or fits(shape[0], n)) and fits(shape[1], tq) and \
            fits(shape[2], tk):
        return
    hint = ("; a 2-D mask is a key_padding_mask (N, Tk): pass a (Tq, Tk) attention mask as "
            "mask[None]" if len(shape) == 2 else "")
    raise ValueError(f"{name}: expected the mask as {MASKS}, with N = {n}, Tq = {tq}, "
                     f"Tk = {tk}, got shape {shape}{hint}")


def mask_arg(name: str, mask: Any, out: tuple[int, int, int], tk: int) -> Array:
    """The boolean mask as a view broadcasting to the scores (N, H, Tq, Tk), True where a
    score is hidden; a TypeError for a mask not boolean, a ValueError for a wrong shape."""
    if mask is None:
        raise TypeError(f"{name}: expected the mask as {MASKS}, got None; with masked=True "
                        f"every input carries one: np.zeros((N, S), bool) hides nothing")
    refuse_masked(mask, name, "the mask")
    if type(mask) is not np.ndarray:  # a list, np.matrix, another library's array
        try:
            mask = np.asarray(mask)
        except (ValueError, TypeError) as e:
            raise TypeError(f"{name}: expected the mask as {MASKS}, got {type(mask).__name__}"
                            f": {e}") from None
    if mask.dtype != np.bool_:
        raise TypeError(f"{name}: the mask must be boolean, {MASKS}; got dtype {mask.dtype}. "
                        f"torch's float masks are additive (-inf hides) and are not "
                        f"supported: pass np.isneginf(mask), or a 0/1 padding array "
                        f"as mask.astype(bool)")
    mask_shape(name, mask.shape, out, tk)
    hidden: Array = mask[:, None, None, :] if mask.ndim == 2 else mask[:, None]
    return hidden


@functools.lru_cache(maxsize=8)  # (T, T) each: 32 of T ~ 2000 held 124 MiB
def later(t: int) -> Array:
    """The (T, T) mask of the keys after each query, j > i, which causal attention hides;
    read-only, as it is cached."""
    return frozen(np.triu(np.ones((t, t), bool), 1))


# ---------------------------------------------------------------------------- weights

WEIGHTS = ("False (y alone), 'heads' ((y, P) with P (N, H, Tq, Tk), torch's "
           "average_attn_weights=False) or 'mean' ((y, P) with P averaged over the heads, "
           "(N, Tq, Tk), torch's need_weights=True default)")


def weights_arg(name: str, value: Any) -> str | None:
    """``return_weights`` as None (y alone), 'heads' or 'mean'; True is refused, as it
    would not say which (torch's need_weights=True averages by default)."""
    if isinstance(value, (bool, np.bool_)) and not value:
        return None
    if isinstance(value, str) and value in ("heads", "mean"):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: return_weights must be {WEIGHTS}, got True: pass 'mean' "
                         f"for torch's need_weights=True (average_attn_weights=True) or "
                         f"'heads' for its average_attn_weights=False")
    if isinstance(value, str):
        hint = (f"; names are lower case: return_weights={value.lower()!r}"
                if value.lower() in ("heads", "mean") else "")
        raise ValueError(f"{name}: return_weights must be {WEIGHTS}, got {value!r}{hint}")
    raise TypeError(f"{name}: return_weights must be {WEIGHTS}, got {value!r} "
                    f"({type(value).__name__})")


def weights_shape(out: tuple[Any, Any, Any], heads: int, tk: Any, mode: str) -> Shape:
    """The returned weights' shape for queries ``out`` = (N, Tq, E) and ``tk`` keys."""
    return (out[0], heads, out[1], tk) if mode == "heads" else (out[0], out[1], tk)


def returned_weights(dropped: Array, mode: str, copy: bool) -> Array:
    """The weights returned, from P⊙M (N, H, Tq, Tk): themselves ('heads'; a copy when
    ``copy``, as the pullback reads them) or ``(1/H) Σ_h`` ('mean')."""
    if mode == "heads":
        return dropped.copy() if copy else dropped
    mean: Array = np.add.reduce(dropped, axis=1) / dropped.shape[1]
    return mean


def split_cotangent(name: str, dys: Any, y_shape: Shape, p: Array, heads: int,
                    mode: str) -> tuple[Any, Array | None]:
    """A pullback's ``(dy, dP)`` as dy and, unless dP is None (no cotangent from the
    weights), dP as a cotangent of P⊙M (N, H, Tq, Tk): ``dP / H`` on every head for
    'mean', whose P is ``(1/H) Σ_h P_h⊙M_h``; ``p`` is the returned weights."""
    if not (isinstance(dys, (tuple, list)) and len(dys) == 2):
        got = (f"a {type(dys).__name__} of {len(dys)} entries"
               if isinstance(dys, (tuple, list)) else type(dys).__name__ + (
                   f" of shape {dys.shape}" if isinstance(dys, np.ndarray) else ""))
        raise TypeError(f"{name}: with return_weights={mode!r} the output is (y, P) and the "
                        f"pullback takes (dy, dP), dy of shape {y_shape} and dP of shape "
                        f"{p.shape} or None (no cotangent from the weights), got {got}")
    dy, dp = dys
    if dp is None:
        return dy, None
    dp_shape = array_arg(dp, name, "dP").shape  # a ragged list: named
    if dp_shape != p.shape:  # checked here so that the error names dP, not dy
        raise ValueError(f"{name}: pullback expected dP of shape {p.shape} (the returned "
                         f"weights'), or None, got {dp_shape}")
    dp = check_cotangent(name, dp, p.shape, p.dtype)
    if mode == "heads":
        return dy, dp
    spread: Array = dp[:, None] / p.dtype.type(heads)  # broadcasts over the heads
    return dy, spread


def softmax_dscores(ds: Array, kept: Any, dc2: Array, d: int) -> Array:
    """``dS = P ⊙ (dP - Σ_j P⊙dP)`` in place over ``ds`` = dP, for any dP, P =
    ``kept.weights`` (the layer's shortcut for Σ_j P⊙dP through the context, from dc2,
    holds only for the dP that comes from y)."""
    ds -= product(np.matmul, ds * kept.weights, ones(ds.shape[-1], ds.dtype))[..., None]
    ds *= kept.weights
    return ds


def _softmax_rows(s: Array) -> Array:
    """Softmax along the last axis, in place (``s`` returned), shifted by each row's max (no
    overflow); a row holding +inf gives NaN, as PyTorch's, without NumPy's warning."""
    with np.errstate(over="ignore", invalid="ignore"):
        s -= np.maximum.reduce(s, axis=-1, keepdims=True)
    np.exp(s, out=s)
    # row sums as a product with ones: BLAS's matrix-vector product, where NumPy's
    # reduction over short rows pays a loop per row (see _sums.block_sum)
    s /= product(np.matmul, s, ones(s.shape[-1], s.dtype))[..., None]
    return s


def _softmax_dscores(ds: Array, kept: Any, dc2: Array, d: int) -> Array:
    """``dS = P ⊙ (dP - Σ_j P⊙dP)`` in place over ``ds`` = dP, (N, H, Tq, Tk)."""
    n, heads, tq = ds.shape[:3]
    # the softmax vjp's row term Σ_j P⊙dP = Σ_j (P⊙M)⊙d(P⊙M) = Σ_d dC⊙C, per
    # query and head: a sum over D on (N, Tq, E), not over Tk on the scores
    prod = dc2 * kept.context
    row = product(np.matmul, prod.reshape(n, tq, heads, d), ones(d, ds.dtype))
    ds -= row.transpose(0, 2, 1)[..., None]
    ds *= kept.weights
    return ds


def _sparsemax_dscores(ds: Array, kept: Any, dc2: Array, d: int) -> Array:
    """``dS = m ⊙ (dP - Σ_j m⊙dP / Σ_j m)``, ``m = P > 0``, in place over ``ds`` = dP
    (``_simplex``; the softmax's shortcut through C does not hold: its row term weighs dP
    by m, not P). A row whose keys are all hidden gives NaN, as the softmax's; one zeroed
    by ``hidden_rows='zero'`` has m = 0, so dS = 0 there (Σ_j m floored at 1: no 0/0)."""
    return simplex_projection_vjp(kept.weights, ds, overwrite=True)


# each normaliser along the rows of the scores, its vjp from the dP that comes from y to
# dS, and its vjp from any dP (with a cotangent from the returned weights too)
NORMALIZERS = {"softmax": (_softmax_rows, _softmax_dscores, softmax_dscores),
               "sparsemax": (simplex_projection, _sparsemax_dscores, _sparsemax_dscores)}
