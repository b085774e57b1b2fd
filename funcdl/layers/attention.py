"""MultiHeadAttention: PyTorch's ``nn.MultiheadAttention(batch_first=True)``, Flax's
``MultiHeadDotProductAttention``, on sequences (N, T, E), embedding last.

The input takes the forms of funcdl's tuple-taking layers (FanInSum, Parallel): one array
``x`` (self-attention, q = k = v = x), a tuple ``(q, kv)`` (cross-attention, k = v = kv) or
``(q, k, v)``; a list of arrays reads as the tuple, and dx comes back in the input's form.
From torch: ``w_q = in_proj_weight[:E].T`` (w_k, w_v the next rows), ``w_o =
out_proj.weight.T``. From Flax: ``w_q = query.kernel.reshape(E, E)`` (its (E, H, D)),
``w_o = out.kernel.reshape(E, E)`` (its (H, D, E)); Flax's dropout shares one mask across
the batch and heads by default (``broadcast_dropout``), torch's and this one draw each
weight's alone.

All heads run together: each step is one ``np.matmul`` over the whole batch (N·H gemm calls
inside NumPy, no Python loop), on (N, H, T, D) views of the projections (strides, no
copies), and the products of the heads write straight into (N, T, H, D) buffers through
``out=``, so that concatenating the heads costs nothing
((32, 4, 64, 64) @ (.., 64, 32) float32: 0.32 ms into such a view against 0.95 ms for the
product and a transposed copy; a one-off timing, not kept). An entry that plays several
roles (x, or kv) is projected by one product with its roles' weights side by side, and its
gradients come back through one product too. The scale 1/sqrt(D) is folded into w_q and
b_q, an (E, E) product rather than one over every score.

``normalizer='sparsemax'`` (sparse attention: Martins & Astudillo 2016, Correia et al.
2019) replaces each row's softmax by its Euclidean projection onto the simplex, whose low
scores get weight exactly 0. The two normalisers and their score vjps are separate
functions picked at construction: the softmax path runs the same operations as before.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import initializers, random
from funcdl._args import bool_arg, call_name, int_arg, real_arg, train_arg
from funcdl.layers import _per_example as per_example
from funcdl.layers._attention import (
    NORMALIZERS,
    agree,
    checked_params,
    fitting,
    in_shapes,
    inputs,
    later,
    mask_arg,
    mask_shape,
    returned_weights,
    several,
    split_cotangent,
    split_mask,
    weights_arg,
    weights_shape,
)
from funcdl.layers._attention_step import attention_stepper
from funcdl.layers._params import drawn, in_param_dtypes, initializer_arg, weak_dtype
from funcdl.layers._sums import chan, dot, product, rows_sum
from funcdl.layers.base import (
    Array,
    Layer,
    check_cotangent,
    check_in_shape,
    in_input_dtype,
    like,
)

__all__ = ["MultiHeadAttention"]

matmul = np.matmul
_W, _B = ("w_q", "w_k", "w_v"), ("b_q", "b_k", "b_v")
# the roles (0 q, 1 k, 2 v) each entry of an input form plays, by the form's entry count
_PLAYS = {1: ((0, 1, 2),), 2: ((0,), (1, 2)), 3: ((0,), (1,), (2,))}


class _Kept(NamedTuple):
    """What the pullback reads, the arrays in the computation dtype."""

    entries: list[Array]     # each input entry as rows (N·T, its features: E, kdim or vdim)
    w_in: list[Array]        # each entry's projection: its roles' weights side by side
    heads: list[Array]       # the scaled queries, the keys, the values: (N, H, T, D) views
    weights: Array           # P: q kᵀ / sqrt(D) normalised, (N, H, Tq, Tk), 0 at masked keys
    dropped: Array           # weights · keep, or weights itself without dropout
    keep: Array | None       # the dropout mask, scaled by 1/(1 - rate)
    context: Array           # dropped @ v with the heads side by side, (N·Tq, E)
    w_o: Array
    in_dtypes: list[Any]     # dx's: each input entry's dtype as given, ints not yet cast


def MultiHeadAttention(num_heads: int, *, causal: bool = False, dropout: float = 0.0,
                       use_bias: bool = True, masked: bool = False,
                       w_init: initializers.Initializer | None = None,
                       b_init: initializers.Initializer | None = None,
                       normalizer: str = "softmax", hidden_rows: str = "nan",
                       kdim: int | None = None, vdim: int | None = None,
                       return_weights: bool | str = False) -> Layer:
    """Multi-head scaled dot-product attention, ``(N, Tq, E)`` out; inputs ``x``,
    ``(q, kv)`` or ``(q, k, v)`` of shapes (N, Tq, E), (N, Tk, E), (N, Tk, E).

    params: ``{'w_q', 'w_k', 'w_v', 'w_o': (E, E), 'b_q', 'b_k', 'b_v', 'b_o': (E,)}`` (no
    biases when ``use_bias=False``); torch's ``in_proj_weight`` is ``[w_q | w_k | w_v]ᵀ``,
    ``out_proj.weight`` is ``w_oᵀ``. Default init as torch's: w_q, w_k, w_v ~ U(±sqrt(6/4E))
    (xavier_uniform over the stacked (3E, E)), w_o ~ U(±1/sqrt(E)) (nn.Linear's), biases 0;
    ``w_init``/``b_init`` replace them for all four weights / biases, each (E, E) block drawn
    on its own (``xavier_uniform()`` there is ``U(±sqrt(6/2E))``, not torch's stacked one).
    forward, per head h of D = E/H: ``Q = q w_q + b_q`` (K, V alike), ``S = Q_h K_hᵀ/sqrt(D)``
    (``S_ij = -inf`` for j > i when ``causal``), ``P = softmax_j(S)``, ``C_h = (P ⊙ M) V_h``
    with ``M`` the dropout mask (``train=True`` and ``dropout > 0`` only; ``rate`` dropped,
    the rest scaled by 1/(1 - rate), as torch's), ``y = [C_1 … C_H] w_o + b_o``;
    vjp: ``dw_o = Cᵀ dy``, ``dC = dy w_oᵀ``, ``dV_h = (P⊙M)ᵀ dC_h``,
    ``dP = M ⊙ dC_h V_hᵀ``, ``dS = P ⊙ (dP - Σ_j P⊙dP)``, ``dQ_h = dS K_h/sqrt(D)``,
    ``dK_h = dSᵀ Q_h/sqrt(D)``, ``dw_q = qᵀ dQ``, ``dq = dQ w_qᵀ`` (k, v alike; an entry in
    several roles sums its cotangents).
    ``masked=True``: the input carries a boolean mask as its last entry, ``(x, mask)``,
    ``(q, kv, mask)`` or ``(q, k, v, mask)``; by rank, a ``key_padding_mask`` (N, Tk), True
    at padded keys (torch's), or an attention mask (N, Tq, Tk) or (1, Tq, Tk), True where
    query i may not see key j (torch's bool ``attn_mask``; pass a (Tq, Tk) one as
    ``mask[None]``: a 2-D mask is always key padding). ``S_ij = -inf`` where hidden, with
    ``causal`` too (both apply, as torch's); hidden keys get weight 0 and no gradient. A
    query whose keys are all hidden gives NaN (0/0) by default (``hidden_rows='nan'``), as
    torch's math path and nn.MultiheadAttention's need_weights=True: its row of y, and every
    gradient it reaches, is NaN (but b_k's, always 0: it shifts a query's scores alike, which
    softmax ignores; torch's sums the NaN rows). The mask's cotangent is None.
    ``hidden_rows='zero'``: such a query's weights are 0 instead (its row of y is b_o, no
    gradient through it: dS = 0 there), as torch's need_weights=False training path.
    ``normalizer='sparsemax'``: ``P = sparsemax_j(S)``, each row projected onto the
    simplex, ``P = max(S - τ, 0)`` with ``Σ_j P = 1`` (exact zeros; hidden keys 0, a row of
    hidden keys as above); vjp ``dS = m ⊙ (dP - Σ_j m⊙dP / Σ_j m)``, ``m = P > 0``.
    ``kdim``/``vdim`` (PyTorch's; None: E): k (N, Tk, kdim), v (N, Tk, vdim), w_k (kdim, E),
    w_v (vdim, E), torch's q/k/v_proj_weightᵀ; unless both are E, w_q, w_k, w_v ~
    U(±sqrt(6/(fan_in + fan_out))) each on its own, as torch's; x alone needs kdim = vdim = E.
    ``return_weights`` (torch's need_weights; False: y alone): the output is ``(y, A)``, A
    the weights as torch returns them, ``P ⊙ M`` (after dropout, when it drops; P in eval),
    ``'heads'``: (N, H, Tq, Tk), ``'mean'``: ``(1/H) Σ_h P_h⊙M_h``, (N, Tq, Tk) (torch's
    average_attn_weights=True); init's out_shape is the pair's. The pullback takes
    ``(dy, dA)``, dA None (no cotangent from A: nothing more computed) or of A's shape,
    added to ``d(P⊙M)`` (dA/H on each head for 'mean') before the normaliser's vjp.
    """
    where = "MultiHeadAttention"
    heads = int_arg(num_heads, where, "num_heads", 1)
    causal = bool_arg(causal, where, "causal")
    rate = real_arg(dropout, where, "dropout (the fraction of attention weights dropped)",
                    low=0.0, high=1.0)
    use_bias = bool_arg(use_bias, where, "use_bias")
    masked = bool_arg(masked, where, "masked")
    if kdim is not None:
        kdim = int_arg(kdim, where, "kdim (the keys' feature size)", 1)
    if vdim is not None:
        vdim = int_arg(vdim, where, "vdim (the values' feature size)", 1)
    name = call_name(where, (heads,), kdim=(kdim, None), vdim=(vdim, None),
                     causal=(causal, False), dropout=(rate, 0.0),
                     use_bias=(use_bias, True), masked=(masked, False),
                     normalizer=(normalizer, "softmax"), hidden_rows=(hidden_rows, "nan"),
                     return_weights=(return_weights, False))
    mode = weights_arg(name, return_weights)
    if not (isinstance(hidden_rows, str) and hidden_rows in ("nan", "zero")):
        raise (ValueError if isinstance(hidden_rows, str) else TypeError)(
            f"{name}: hidden_rows must be 'nan' (a query whose keys are all hidden gives NaN, "
            f"torch's default) or 'zero' (its weights 0, its context 0), got {hidden_rows!r}")
    zero_rows = hidden_rows == "zero"
    choices = " or ".join(map(repr, NORMALIZERS))
    if not isinstance(normalizer, str):
        raise TypeError(f"{name}: normalizer must be a str, {choices}, got {normalizer!r} "
                        f"({type(normalizer).__name__})")
    if normalizer not in NORMALIZERS:
        hint = (f"; names are lower case: normalizer={normalizer.lower()!r}"
                if normalizer.lower() in NORMALIZERS else "")
        raise ValueError(f"{name}: normalizer must be {choices}, got {normalizer!r}{hint}")
    normalise, d_scores, d_scores_any = NORMALIZERS[normalizer]
    w_init = initializer_arg(name, "w_init", w_init)
    b_init = initializer_arg(name, "b_init", b_init)
    keys = ("w_q", "w_k", "w_v", "w_o") + (("b_q", "b_k", "b_v", "b_o") if use_bias else ())

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any]:
        if masked:
            if not (isinstance(in_shape, (tuple, list)) and all(
                    isinstance(s, (tuple, list)) for s in in_shape)):
                raise ValueError(f"{name}: masked=True takes in_shape as a tuple of shapes "
                                 f"ending with the mask's, e.g. ((N, T, E), (N, T)) for "
                                 f"(x, key_padding_mask), got {in_shape!r}")
            form, m_shape = split_mask(name, in_shape)
            shapes = in_shapes(name, form)
            out = agree(name, shapes, heads, causal, kdim, vdim, masked=True)
            mask_shape(name, check_in_shape(name, m_shape, min_rank=0), out,
                       shapes[min(1, len(shapes) - 1)][1])
        else:
            shapes = in_shapes(name, in_shape)
            out = agree(name, shapes, heads, causal, kdim, vdim)
        e = out[2]
        draws = random.split_for(key, 8, name)
        rows = (e, e if kdim is None else kdim, e if vdim is None else vdim)
        if rows == (e, e, e):
            bound = math.sqrt(6.0 / (e + 3 * e))  # fan_in E, fan_out 3E: the stacked in_proj
            bounds: tuple[float, ...] = (bound,) * 3
        else:  # torch's q/k/v_proj_weight (E, c), xavier_uniform each: fan_in c, fan_out E
            bounds = tuple(math.sqrt(6.0 / (c + e)) for c in rows)
        params = {k: drawn(name, "w_init", w_init or initializers.uniform(b, low=-b),
                           draws[i], (c, e)) for i, (k, b, c) in enumerate(zip(_W, bounds, rows))}
        params["w_o"] = drawn(name, "w_init", w_init or initializers.torch_default(),
                              draws[3], (e, e))
        if use_bias:
            b = b_init or initializers.zeros()
            for i, k in enumerate((*_B, "b_o")):
                params[k] = drawn(name, "b_init", b, draws[4 + i], (e,))
        if mode is not None:
            return (out, weights_shape(out, heads, shapes[min(1, len(shapes) - 1)][1],
                                       mode)), params
        return out, params

    def dropping(key: Any, train: Any) -> bool:
        """Whether this call drops weights; a call in training that would needs a key."""
        train = train_arg(train, name)
        if not (train and rate > 0.0):
            return False
        if key is None:
            raise ValueError(
                f"{name}: train=True with dropout={rate} needs a random key: pass key= to "
                f"the call that runs it, apply(params, x, train=True, "
                f"key=funcdl.random.key(seed)), vjp, or the function from value_and_grad, "
                f"f(params, x, target, key=...); a new key per step, e.g. from "
                f"funcdl.random.split")
        random.check_key(key, name)
        return True

    def forward(params: Any, xs: Any, key: Any, train: Any) -> tuple[Array, _Kept]:
        p = checked_params(name, params, keys, heads, kdim, vdim)
        mask = None
        if masked:
            xs, mask = split_mask(name, xs)
        e = p["w_q"].shape[0]
        given = inputs(name, xs, weak_dtype(p, "w_q", name))
        fitting(name, given, e, heads, causal, kdim, vdim, masked)
        n, tq = given[0].shape[:2]
        in_dtypes = [getattr(x, "dtype", None) for x in (xs if several(xs) else [xs])]
        drop = dropping(key, train)
        dt = np.result_type(*(x.dtype for x in given), *(a.dtype for a in p.values()))
        d, scale = e // heads, 1.0 / math.sqrt(e // heads)
        w_roles = [p["w_q"].astype(dt, copy=False) * scale, p["w_k"].astype(dt, copy=False),
                   p["w_v"].astype(dt, copy=False)]
        b_roles = [p["b_q"].astype(dt, copy=False) * scale, p["b_k"].astype(dt, copy=False),
                   p["b_v"].astype(dt, copy=False)] if use_bias else []
        entries, w_in, views = [], [], [np.empty(0)] * 3
        for x, roles in zip(given, _PLAYS[len(given)]):
            rows = x.astype(dt, copy=False).reshape(-1, x.shape[2])
            w = w_roles[roles[0]] if len(roles) == 1 else np.concatenate(
                [w_roles[r] for r in roles], axis=1)
            h = product(dot, rows, w)
            if use_bias:
                chan(np.add, h, b_roles[roles[0]] if len(roles) == 1 else np.concatenate(
                    [b_roles[r] for r in roles]), out=h)
            h5 = h.reshape(x.shape[0], x.shape[1], len(roles), heads, d)
            for i, r in enumerate(roles):
                views[r] = h5[:, :, i].transpose(0, 2, 1, 3)
            entries.append(rows)
            w_in.append(w)
        qh, kh, vh = views
        scores = product(matmul, qh, kh.swapaxes(-1, -2))       # (N, H, Tq, Tk)
        if masked:  # (a None mask is refused by mask_arg, not read as no mask)
            # one boolean where over the scores: padding, attention mask and causality
            hidden = mask_arg(name, mask, (n, tq, e), scores.shape[-1])
            if causal:
                hidden = hidden | later(tq)
            np.copyto(scores, -np.inf, where=hidden)
        elif causal:  # the diagonal stays visible: no row is all hidden
            np.copyto(scores, -np.inf, where=later(tq))
        if scores.shape[-1]:  # no keys: nothing to normalise, and the context is 0
            scores = normalise(scores)
            if masked and zero_rows:
                # the queries whose keys are all hidden, on the mask's broadcast shape (no
                # head axis): their NaN rows become weights 0, so dS = P ⊙ (...) = 0 there
                empty = np.logical_and.reduce(hidden, axis=-1, keepdims=True)
                if empty.any():
                    np.copyto(scores, 0, where=empty)
        keep = None
        if drop:
            # float32 draws whatever the dtype, as Dropout's: a float64 rerun drops the same
            keep = (np.zeros(scores.shape, dt) if rate == 1.0 else
                    (random.uniform(key, scores.shape, dtype=np.float32) >= np.float32(rate))
                    * np.asarray(1.0 / (1.0 - rate), dt))
        dropped = scores if keep is None else scores * keep
        context = np.empty((n, tq, heads, d), dt)
        product(matmul, dropped, vh, out=context.transpose(0, 2, 1, 3))
        c2 = context.reshape(-1, e)
        w_o = p["w_o"].astype(dt, copy=False)
        y = product(dot, c2, w_o)
        if use_bias:
            chan(np.add, y, p["b_o"].astype(dt, copy=False), out=y)
        return y.reshape(n, tq, e), _Kept(entries, w_in, [qh, kh, vh], scores, dropped, keep,
                                          c2, w_o, in_dtypes)

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        y, kept = forward(params, x, key, train)
        return y if mode is None else (y, returned_weights(kept.dropped, mode, False))

    def vjp(params: Any, xs: Any, *, key: Any = None, train: bool = False) -> Any:
        y, kept = forward(params, xs, key, train)
        n, tq, e = y.shape
        d, scale = e // heads, 1.0 / math.sqrt(e // heads)
        a = None if mode is None else returned_weights(kept.dropped, mode, True)
        each = per_example.ON.get()  # the params' grads per example (_per_example)

        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Any]:
            da = None
            if a is not None:
                dy, da = split_cotangent(name, dy, y_shape, a, heads, str(mode))
            dy2 = check_cotangent(name, dy, y_shape, y_dtype).reshape(-1, e)
            dt = y_dtype
            if each:
                dy3 = dy2.reshape(n, tq, e)
                grads = {"w_o": per_example.outer(kept.context.reshape(n, tq, e), dy3)}
                if use_bias:
                    grads["b_o"] = per_example.sums(dy3)
            else:
                grads = {"w_o": product(matmul, kept.context.T, dy2)}
                if use_bias:
                    grads["b_o"] = rows_sum(dy2)
            dc2 = product(dot, dy2, kept.w_o.T)              # dC, (N·Tq, E)
            dc = dc2.reshape(n, tq, heads, d).transpose(0, 2, 1, 3)
            qh, kh, vh = kept.heads
            ds = product(matmul, dc, vh.swapaxes(-1, -2))     # d(P⊙M)
            if da is not None:  # A is P⊙M, torch's: its cotangent joins d(P⊙M)'s
                ds += da
            if kept.keep is not None:
                ds *= kept.keep                               # dP
            # dS, over the scaled scores
            ds = d_scores(ds, kept, dc2, d) if da is None else d_scores_any(ds, kept, dc2, d)
            products = (lambda out: product(matmul, ds, kh, out=out),
                        lambda out: product(matmul, ds.swapaxes(-1, -2), qh, out=out),
                        lambda out: product(matmul, kept.dropped.swapaxes(-1, -2), dc,
                                            out=out))
            dxs = []
            for rows, w_in, roles in zip(kept.entries, kept.w_in, _PLAYS[len(kept.entries)]):
                t = kept.heads[roles[0]].shape[2]
                g = np.empty((n, t, len(roles), heads, d), dt)
                for i, r in enumerate(roles):
                    products[r](g[:, :, i].transpose(0, 2, 1, 3))
                g2 = g.reshape(-1, len(roles) * e)
                if each:  # (N, in, roles·E) and (N, roles·E)
                    g3 = g2.reshape(n, t, len(roles) * e)
                    gw = per_example.outer(rows.reshape(n, t, rows.shape[-1]), g3)
                    gb = per_example.sums(g3) if use_bias else None
                else:
                    gw = product(matmul, rows.T, g2)
                    gb = rows_sum(g2) if use_bias else None
                for i, r in enumerate(roles):
                    # the product ran on w_q·scale: d(w_q) = scale · d(w_q·scale)
                    cols = slice(i * e, (i + 1) * e)
                    grads[_W[r]] = gw[..., cols] * scale if r == 0 else gw[..., cols].copy()
                    if gb is not None:  # b_k's is 0: it shifts a query's scores alike,
                        # which softmax and sparsemax ignore (Σ_j dS_ij = 0); its sum would
                        # be rounding noise, which adaptive optimizers blow up to steps
                        grads[_B[r]] = (gb[..., cols] * scale if r == 0 else
                                        np.zeros_like(gb[..., cols]) if r == 1 else
                                        gb[..., cols].copy())
                if need_dx:
                    dxs.append(product(dot, g2, w_in.T).reshape(n, t, rows.shape[1]))
            grads = in_param_dtypes({k: grads[k] for k in keys}, params)
            if not need_dx:
                return grads, None
            dx = [in_input_dtype(g, t) for g, t in zip(dxs, kept.in_dtypes)]
            if masked:  # a boolean mask has no cotangent
                return grads, like(xs, [*dx, None])
            return grads, (like(xs, dx) if several(xs) else dx[0])

        return (y if a is None else (y, a)), pullback

    return Layer(init, apply, vjp, name=name, dx_optional=True,
                 step=attention_stepper(name, heads, causal, use_bias, masked, mode, normalise,
                                        keys, kdim, vdim, zero_rows))
