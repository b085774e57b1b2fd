"""Muon (Jordan et al. 2024), as ``optax.contrib.muon``: the Nesterov momentum of each
matrix leaf, orthogonalised by a quintic Newton–Schulz iteration; every other leaf through
AdamW.

Layout: optax treats a 2-D leaf as ``x @ W = y``, axis 0 the reduction axis (fan_in) and
axis 1 the output axis (fan_out). funcdl's ``Dense`` kernel is ``(in, out)`` and applied as
``x @ W``: the same layout, so ``muon`` gives a Dense kernel the same update as optax gives
a flax ``Dense`` kernel, with the same ``sqrt(max(1, fan_out / fan_in))`` factor. A 2-D
leaf that is not a kernel (an ``Embedding`` table, ``(vocab, dim)``) is a matrix too, as in
optax's default; a Conv2D kernel (4-D) goes to AdamW, as in optax's default.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg
from funcdl._blas import product
from funcdl.optim._adaptive import scale_by_adam
from funcdl.optim._base import (
    Count,
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    check_state,
    empty_init,
    leafwise,
    like,
    next_count,
    real_grad,
    state_count,
    transform,
    zero_count,
)
from funcdl.optim._chain import ChainState, make_chain
from funcdl.optim._checks import (
    check_betas,
    check_float,
    check_float_params,
    check_lr,
    moment_dtype_arg,
    zeros_in,
)
from funcdl.optim._layerwise import leaf_norm
from funcdl.optim._masked import check_mask_flags, mask_flags
from funcdl.optim._schedules import check_steps
from funcdl.optim._transforms import add_decayed_weights, scale_by_learning_rate

__all__ = ["MuonPartsState", "MuonState", "muon", "newton_schulz", "scale_by_muon"]

Tree = Any
DEFAULT_NS_COEFFS = (3.4445, -4.775, 2.0315)


class MuonState(NamedTuple):
    """``scale_by_muon``'s state: ``count``, the updates applied; ``mu``, the momentum."""

    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    mu: Tree


class MuonPartsState(NamedTuple):
    """``muon``'s state: ``muon`` the ``ChainState`` of the matrix leaves' chain (a list of
    them, in ``funcdl.tree.leaves`` order), ``adam`` that of the other leaves' AdamW."""

    muon: ChainState
    adam: ChainState


# optax.contrib's presets: Muon's quintic, and Dion's five steps (Ahn et al. 2025)
NS_COEFFS_PRESETS: dict[str, Any] = {
    "standard": DEFAULT_NS_COEFFS,
    "dion": ((4.0848, -6.8946, 2.927), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037),
             (2.8769, -3.1427, 1.2046), (2.8366, -3.0525, 1.2012))}

Coeffs = list[tuple[float, float, float]]  # one (a, b, c) per Newton–Schulz step


def _coeffs(name: str, ns_coeffs: Any, ns_steps: int) -> Coeffs:
    """The quintic's ``(a, b, c)`` of each step, as optax's: one triple for all
    ``ns_steps`` steps, or ``(n, 3)`` triples, one per step (``n <= ns_steps``), or a
    preset's name."""
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in NS_COEFFS_PRESETS:
            raise ValueError(f"{name}: ns_coeffs {ns_coeffs!r} is no preset; the presets are "
                             f"{sorted(NS_COEFFS_PRESETS)}, or pass (a, b, c)")
        ns_coeffs = NS_COEFFS_PRESETS[ns_coeffs]
    try:
        a = np.asarray(ns_coeffs, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # a dict, ragged, an int past float64
        a = np.zeros(0)
    if a.ndim not in (1, 2) or a.shape[-1] != 3 or not a.size or not np.isfinite(a).all():
        raise ValueError(f"{name}: ns_coeffs must be three finite floats (a, b, c) of the "
                         f"quintic a·X + b·(XXᵀ)X + c·(XXᵀ)²X, (n, 3) of them (one per step) "
                         f"or a preset's name, got {ns_coeffs!r}; pass e.g. the default "
                         f"{DEFAULT_NS_COEFFS}")
    if a.ndim == 1:
        return [(float(a[0]), float(a[1]), float(a[2]))] * ns_steps
    if len(a) > ns_steps:
        raise ValueError(f"{name}: {len(a)} steps' coefficients but ns_steps={ns_steps}; "
                         f"optax requires ns_steps >= their number and runs one step per "
                         f"triple: pass ns_steps={len(a)}")
    return [(float(x), float(y), float(z)) for x, y, z in a]


def newton_schulz(x: Any, ns_coeffs: Any = DEFAULT_NS_COEFFS, ns_steps: int = 5,
                  eps: float = 1e-8) -> Any:
    """Approximately orthogonalise a matrix ``(m, n)``: ``X = G / (‖G‖_F + eps)`` (the wide
    way round: ``Gᵀ`` when ``m > n``), then ``ns_steps`` times ``A = X·Xᵀ``,
    ``X = a·X + (b·A + c·A·A)·X`` (``ns_coeffs`` (n, 3): step i with row i, n steps;
    ``"dion"``: Dion's five, optax's preset). The default quintic drives singular values not far
    below ``‖G‖_F/√rank`` towards 1 without reaching it (by design: faster, and as good
    for training); smaller ones stay below after 5 steps (a 128x128 Gaussian,
    ``np.random.default_rng(0).standard_normal((128, 128))``: singular values 0.085 to
    1.18 after; a 64x64 matrix of condition number 1e6: 2.9e-4 to 1.20; one-off). Same
    shape and dtype as ``x``. Not differentiated (an optimizer step)."""
    name = "newton_schulz"
    coeffs = _coeffs(name, ns_coeffs, check_steps(name, "ns_steps", ns_steps))
    g = np.asarray(x)
    if g.ndim != 2 or g.dtype.kind != "f":
        raise ValueError(f"{name}: x must be a real floating-point matrix (m, n), got "
                         f"{g.dtype} of shape {g.shape}; pass a 2-D array")
    return _orthogonalise(g, coeffs, eps)


def _orthogonalise(g: Any, coeffs: Coeffs, eps: float) -> Any:
    tall = g.shape[0] > g.shape[1]
    x = g.T if tall else g
    # ‖x‖_F in float64 should float32's sum of squares overflow (entries beyond ~1e19),
    # where optax would divide by inf and step 0
    norm = leaf_norm(x)
    # C order for the products below: a transposed (F-order) operand was slower in BLAS
    # (the review's one-off timing, 2048x512 float32, one thread: 197 vs 105 ms)
    x = np.ascontiguousarray(x / (norm + eps), dtype=g.dtype)
    for a, b, c in coeffs:  # three BLAS products each; a few (5) iterations
        gram = product(np.matmul, x, x.T)
        x = a * x + product(np.matmul, b * gram + c * product(np.matmul, gram, gram), x)
    return np.asarray(x.T if tall else x, dtype=g.dtype)


def scale_by_muon(ns_coeffs: Any = DEFAULT_NS_COEFFS, ns_steps: int = 5,
                  beta: float = 0.95, eps: float = 1e-8, mu_dtype: Any = None, *,
                  nesterov: bool = True, adaptive: bool = False) -> GradientTransformation:
    """optax.contrib's ``scale_by_muon`` (Frobenius preconditioning), for a tree of 2-D
    leaves: ``m = beta·m + (1-beta)·g``; with ``t`` this update's step (1 at the first),
    ``m̂ = beta·m / (1-beta^(t+1)) + (1-beta)·g / (1-beta^t)`` (``nesterov``) or
    ``m / (1-beta^t)``; ``u = newton_schulz(m̂)``; ``adaptive``: ``u ← <m̂, u>_F · u``.
    ``torch.optim.Muon`` and Jordan's reference blend ``(1-beta)·g + beta·m`` without the
    corrections; after Newton–Schulz only the blend's ratio counts, and g weighs
    ``(1-beta^(t+1)) / (1-beta^t)`` times torch's share here: 1.46x at t = 2 for beta 0.95,
    within 1% from t = 36. Without ``nesterov`` both take m's direction.
    ``mu_dtype`` stores ``m`` in that float dtype (None: the params'), ``m̂`` taken before.
    State ``MuonState(count, mu)``."""
    name = "scale_by_muon"
    coeffs = _coeffs(name, ns_coeffs, check_steps(name, "ns_steps", ns_steps, positive=True))
    mu_dt = moment_dtype_arg(name, "mu_dtype", mu_dtype)
    beta = check_float(name, "beta", beta, high=1.0, open_high=True)
    eps = check_float(name, "eps", eps)
    nest = bool_arg(nesterov, name, "nesterov")
    adapt = bool_arg(adaptive, name, "adaptive")

    def init(params: Tree) -> MuonState:
        check_float_params(f"{name}.init", params)
        for path, p in tree.leaves_with_path(params):
            if np.ndim(p) != 2:
                raise ValueError(f"{name}.init: every leaf must be a matrix (2-D), got "
                                 f"shape {np.shape(p)} at params{path}; use muon(...), "
                                 f"which sends the other leaves through AdamW")
        return MuonState(zero_count(), zeros_in(params, mu_dt))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, MuonState]:
        del params
        count = state_count(name, state, MuonState)
        t = count + 1
        ahead, now = beta / (1.0 - beta ** (t + 1)), (1.0 - beta) / (1.0 - beta**t)

        def leaf(g: Any, m: Any) -> tuple[Any, Any]:
            real_grad(g)
            # the step in the wider of g's and m's dtypes (float16 grads of float32 params
            # step in float32), m then stored in its own (mu_dtype)
            dt = np.result_type(g, m)
            m_step = np.asarray(beta * m + (1.0 - beta) * g, dt)
            m_hat = np.asarray(ahead * m_step + now * g if nest else m_step / (1.0 - beta**t),
                               dt)
            if m_hat.ndim != 2:
                raise ValueError("not a matrix")  # init refuses them; a hand-made state
            u = _orthogonalise(m_hat, coeffs, eps)
            if adapt:
                u = np.asarray(np.sum(m_hat * u) * u, dt)
            return u, like(m_step, m)

        with np.errstate(all="ignore"):  # inf and NaN momenta: NaN steps, silently
            out, mu = leafwise(f"{name}.update", leaf, (grads, state.mu),
                               ("grads", "state.mu"), n_out=2)
        return out, MuonState(next_count(count), mu)

    return transform(name, init, update)


def _scale_by_shape(consistent_rms: float | None) -> GradientTransformation:
    """optax.contrib's ``scale_by_shape``: for a matrix ``(m, n) = (fan_in, fan_out)``,
    ``u·sqrt(max(1, n / m))`` (width transfer), or ``u·sqrt(max(m, n))·consistent_rms``.
    State ``EmptyState``."""
    name = "muon_shape_scale"

    def factor(m: int, n: int) -> float:
        return (math.sqrt(max(1.0, n / m)) if consistent_rms is None else
                math.sqrt(max(m, n)) * consistent_rms)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmptyState]:
        del params
        if type(state) is not EmptyState:
            check_state(name, state, EmptyState)
        # an empty (0, n) leaf has nothing to scale (optax's divides by its 0 rows)
        out = tree.map(lambda u: like(u * factor(*u.shape), u) if u.shape[0] else u, grads)
        return out, state

    return transform(name, empty_init(), update)


def muon(learning_rate: ScalarOrSchedule, ns_coeffs: Any = DEFAULT_NS_COEFFS,
         ns_steps: int = 5, beta: float = 0.95, eps: float = 1e-8, weight_decay: float = 0.0,
         weight_decay_mask: Any = None, mu_dtype: Any = None, *, nesterov: bool = True,
         adaptive: bool = False, adam_b1: float = 0.9, adam_b2: float = 0.999,
         adam_eps_root: float = 0.0, adam_weight_decay: float = 0.0,
         adam_learning_rate: ScalarOrSchedule | None = None,
         consistent_rms: float | None = None) -> GradientTransformation:
    """optax.contrib's ``muon``: each 2-D leaf ``(fan_in, fan_out)`` steps
    ``-lr·(scale_by_muon(...)·sqrt(max(1, fan_out/fan_in)) + weight_decay·p)``; every other
    leaf (biases, norm scales, conv kernels) AdamW's ``-adam_lr·(m̂ / (sqrt(v̂ + eps_root) +
    eps) + adam_weight_decay·p)`` with ``adam_b1``, ``adam_b2``, the same ``eps`` and
    ``nesterov`` (NAdam's look-ahead by default, as optax's). ``adam_learning_rate`` None:
    ``learning_rate``. As optax's: ``weight_decay_mask`` (a tree of bools, a prefix of one,
    or a function of the params) decays only the matrices where True; ``mu_dtype`` stores
    both momenta in that float dtype; ``consistent_rms`` (a float, e.g. 0.2) scales a
    matrix's update by ``sqrt(max(fan_in, fan_out))·consistent_rms`` instead. Not offered:
    optax's ``preconditioning`` other than Frobenius and ``muon_weight_dimension_numbers``
    (2-D leaves are the matrices). State ``MuonPartsState(muon, adam)``."""
    name = "muon"
    lr = check_lr(name, learning_rate)
    adam_lr = lr if adam_learning_rate is None else check_lr(name, adam_learning_rate)
    nest = bool_arg(nesterov, name, "nesterov")
    _coeffs(name, ns_coeffs, check_steps(name, "ns_steps", ns_steps, positive=True))  # named muon
    moment_dtype_arg(name, "mu_dtype", mu_dtype)
    rms = None if consistent_rms is None else check_float(name, "consistent_rms",
                                                             consistent_rms)
    if weight_decay_mask is not None and not callable(weight_decay_mask):
        check_mask_flags(name, weight_decay_mask)
    check_float(name, "beta", beta, high=1.0, open_high=True)
    check_betas(name, adam_b1, adam_b2)
    check_float(name, "eps", eps)
    check_float(name, "adam_eps_root", adam_eps_root)
    matrices = make_chain(name, [scale_by_muon(ns_coeffs, ns_steps, beta, eps, mu_dtype,
                                               nesterov=nest, adaptive=adaptive),
                                 _scale_by_shape(rms),
                                 add_decayed_weights(check_float(name, "weight_decay",
                                                                 weight_decay)),
                                 scale_by_learning_rate(lr)])
    others = make_chain(name, [scale_by_adam(adam_b1, adam_b2, eps, adam_eps_root, mu_dtype,
                                             nesterov=nest),
                               add_decayed_weights(check_float(name, "adam_weight_decay",
                                                               adam_weight_decay)),
                               scale_by_learning_rate(adam_lr)])

    def split(leaves: list[Any]) -> tuple[list[Any], list[Any], list[bool]]:
        is_matrix = [np.ndim(x) == 2 for x in leaves]
        return ([x for x, m in zip(leaves, is_matrix, strict=True) if m],
                [x for x, m in zip(leaves, is_matrix, strict=True) if not m], is_matrix)

    def init(params: Tree) -> MuonPartsState:
        check_float_params(f"{name}.init", params)
        if weight_decay_mask is not None:  # its fit to the params, as masked's init checks
            mask_flags(f"{name}.init", weight_decay_mask, params, "params")
        mats, rest, _ = split(tree.leaves(params))
        return MuonPartsState(matrices.init(mats), others.init(rest))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, MuonPartsState]:
        check_state(name, state, MuonPartsState)
        leaves, treedef = tree.flatten(grads)  # the grads' structure decides
        g_mats, g_rest, is_matrix = split(leaves)
        p_mats = p_rest = None
        if params is not None:  # the params' structure must agree
            try:  # check_same, not same_trees: its map would be a second walk of the grads
                tree.check_same(grads, params, ("grads", "params"), shapes=True)
            except ValueError as detail:
                raise ValueError(f"{name}.update: {detail}") from None
            p_leaves = tree.leaves(params)
            if weight_decay_mask is not None:  # zeros decay by nothing: the masked-out ones
                keep = mask_flags(f"{name}.update", weight_decay_mask, grads, "grads")
                p_leaves = [p if k or np.ndim(p) != 2 else
                            np.broadcast_to(np.zeros((), np.asarray(p).dtype), np.shape(p))
                            for p, k in zip(p_leaves, keep, strict=True)]
            p_mats, p_rest = split(p_leaves)[:2]
        u_mats, muon_state = matrices.update(state.muon, g_mats, p_mats)
        u_rest, adam_state = others.update(state.adam, g_rest, p_rest)
        it_mats, it_rest = iter(u_mats), iter(u_rest)
        merged = [next(it_mats) if m else next(it_rest) for m in is_matrix]
        return tree.unflatten(treedef, merged), MuonPartsState(muon_state, adam_state)

    return transform(name, init, update)
