"""Tests found by dtype and aliasing mutants of funcdl.optim, funcdl.losses and funcdl.tree
(a second mutation pass: casts that keep float32 float32 removed, in-place writes into
an argument or a residual, copies dropped). Each block below names the mutants it kills.

The standards under test: float32 params and grads give float32 updates and state; float32
pred gives a float32 dpred; nothing is written into what the caller passed; and no returned
array shares memory with what a later update or pullback reads (a user scribbling over the
updates, the grads buffer, the params or a dpred changes nothing that comes after)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from test_fuzz_api_optim import OPTS, P

from funcdl import losses, optim, tree

F32, F64 = np.float32, np.float64
_rng = np.random.default_rng(5)
GS = [tree.map(lambda x: _rng.standard_normal(x.shape).astype(F32), P) for _ in range(4)]
# Big enough (2**15 entries) that elementwise optimizers go leaf by leaf on the caller's own
# arrays, not on copies laid end to end (optim._base._fused): where an in-place write into
# the grads or the old state would show.
P_BIG = {"w": _rng.standard_normal((128, 256)).astype(F32), "b": np.zeros(256, F32)}
GS_BIG = [tree.map(lambda x: _rng.standard_normal(x.shape).astype(F32), P_BIG)
          for _ in range(3)]
SIZES = {"small": (P, GS), "big": (P_BIG, GS_BIG)}
# the catalogue binds these to the grad of its own small params (test_fuzz_api_optim's
# _searched); on big trees they are checked in test_optim_lbfgs*.py's way, not here
BOUND_TO_SMALL = {"lbfgs", "lbfgs-backtracking", "scale_by_backtracking_linesearch",
                  "scale_by_zoom_linesearch"}
# On the leaf-by-leaf path (2**15 entries or more) adan and the optimistic gradient kept the
# caller's grads array itself in their state (adan's g, previous_gradient), so a caller
# refilling a grads buffer in place changed the next step; small trees went through _fused,
# which copies. The big cases below are what caught it.


def _cases() -> list[Any]:
    out = []
    for oid in OPTS:
        for size in SIZES:
            marks: list[Any] = []
            if size == "big" and oid in BOUND_TO_SMALL:
                marks = [pytest.mark.skip(reason="bound to the catalogue's small grads")]
            out.append(pytest.param(oid, size, id=f"{oid}-{size}", marks=marks))
    return out


# the one float state leaf that is not the params' dtype: NAdam's running product of the
# momentum schedule, a float64 scalar (as torch's mu_product, which is not a param's dtype)
SCALAR_F64 = {"mu_product"}
# no state in the params' dtype: the update is the grads' dtype (apply_updates casts it)
PASS_GRAD_DTYPE = {
    "sgd", "sgd-schedule", "named_chain", "identity", "scale", "scale_by_schedule",
    "scale_by_learning_rate", "scale_by_learning_rate-schedule", "add_decayed_weights",
    "add_decayed_weights-schedule", "clip_by_global_norm", "sign_sgd", "scale_by_sign",
    "noisy_sgd", "centralize", "multi_transform", "freeze", "selective_transform",
    "conditionally_transform", "conditionally_mask", "stateless", "stateless_with_tree_map",
    "scale_by_trust_ratio", "reduce_on_plateau", "clip_by_block_rms",
    "scale_by_param_block_rms", "adaptive_grad_clip", "zero_nans", "keep_params_nonnegative",
    "add_noise", "scale_by_backtracking_linesearch", "scale_by_zoom_linesearch", "muon", "sam",
    "normalize", "sam-normalized", "flatten", "scale_by_param_block_norm",
    "normalize_by_update_norm", "fromage", "scale_by_polyak", "polyak_sgd"}


def _arrays(t: Any) -> list[np.ndarray]:
    return [np.asarray(x) for x in tree.leaves(t)]


def _same(a: Any, b: Any) -> bool:
    return tree.structure(a) == tree.structure(b) and all(
        x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)
        for x, y in zip(_arrays(a), _arrays(b), strict=True))


def _scribble(t: Any) -> None:
    """Write over every writable array of ``t``, as a user reusing a buffer would."""
    for x in tree.leaves(t):
        if type(x) is np.ndarray and x.flags.writeable and x.ndim:
            x[...] = 1e3


def _float_state_leaves(state: Any) -> list[tuple[str, np.ndarray]]:
    return [(path, np.asarray(x)) for path, x in tree.leaves_with_path(state)
            if np.asarray(x).dtype.kind == "f" and not any(f in path for f in SCALAR_F64)]


# ---------------------------------------------------------------------------- optimizers
# Kills: removed float32 casts (d02 trace, d03 nesterov, d06/d07 weight decay, d09 adam's
# scratch, d11 rms, d13 adamax, d14 nadam, d15 lion, d16 ema, d17/d18 amsgrad, d19
# ademamix, d21 muon_shape_scale, d23 adabelief, d24 yogi, d25 lookahead, d26 multi_steps,
# d27 adadelta, d28 zeros_like) and aliasing (o09 multi_steps' and o10 apply_every's
# accumulator sharing the caller's grads, o13-o15 a state array returned writable as the
# updates; on the 'big' trees, which skip the fused copies: o17 amsgrad's, o20/o26
# simplified_ademamix's, o22 adopt's moments written into the old state).

@pytest.mark.parametrize(("oid", "size"), _cases())
def test_float32_in_float32_out_and_nothing_passed_is_written(oid: str, size: str) -> None:
    p0, gs = SIZES[size]
    opt = OPTS[oid][0]()
    params = copy.deepcopy(p0)
    state = opt.init(params)
    for path, x in _float_state_leaves(state):
        assert x.dtype == F32, (oid, "init", path)
    for g in gs:
        g = copy.deepcopy(g)
        before = copy.deepcopy((params, g, state))
        updates, new_state = opt.update(state, g, params)
        assert _same((params, g, state), before), oid  # params, grads and old state untouched
        for x in _arrays(updates):
            assert x.dtype == F32, (oid, x.dtype)
        for path, x in _float_state_leaves(new_state):
            assert x.dtype == F32, (oid, path, x.dtype)
        state = new_state


@pytest.mark.parametrize(("oid", "size"), _cases())
def test_scribbling_over_updates_grads_and_params_changes_no_later_step(oid: str,
                                                                        size: str) -> None:
    """Two runs on the same grads; in the second, after each update, the user writes over
    the writable updates (read-only ones are the state's own), the grads buffer and the
    params: every later update and state must be bit for bit the first run's."""
    p0, gs = SIZES[size]

    def run(scribble: bool) -> list[Any]:
        opt = OPTS[oid][0]()
        state, seen = opt.init(copy.deepcopy(p0)), []
        for g in gs:
            g, params = copy.deepcopy(g), copy.deepcopy(p0)
            updates, state = opt.update(state, g, params)
            seen.append(copy.deepcopy((updates, state)))
            if scribble:
                _scribble(updates)
                _scribble(g)
                _scribble(params)
        return seen

    for step, (clean, scribbled) in enumerate(zip(run(False), run(True), strict=True)):
        assert _same(clean, scribbled), (oid, step)


@pytest.mark.parametrize("oid", list(OPTS))
def test_float64_grads_on_float32_params_keep_the_state_float32(oid: str) -> None:
    opt = OPTS[oid][0]()
    state = opt.init(P)
    for g in GS:
        updates, state = opt.update(state, tree.map(lambda x: x.astype(F64), g), P)
        for path, x in _float_state_leaves(state):
            assert x.dtype == F32, (oid, path, x.dtype)
        if oid not in PASS_GRAD_DTYPE:
            assert all(x.dtype == F32 for x in _arrays(updates)), oid


@pytest.mark.parametrize("make", [
    lambda: optim.scale_by_adam(mu_dtype=np.float16),
    lambda: optim.scale_by_amsgrad(mu_dtype=np.float16),
], ids=["scale_by_adam", "scale_by_amsgrad"])
def test_mu_dtype_is_the_stored_moments_dtype_and_the_step_is_the_params(make: Any) -> None:
    """Kills d10 (scale_by_adam's mu stored in the step's dtype, not mu_dtype)."""
    opt = make()
    state = opt.init(P)
    for g in GS:
        updates, state = opt.update(state, g, P)
        assert all(x.dtype == F32 for x in _arrays(updates))
        mus = [x for path, x in tree.leaves_with_path(state) if ".mu" in path]
        assert mus and all(np.asarray(m).dtype == np.float16 for m in mus)


def test_clip_by_global_norm_scales_in_the_grads_dtype_and_leaves_them_alone() -> None:
    """Kills d04 (the clip factor as a float64 scalar) and o18 (the scaling written into
    the caller's grads)."""
    opt = optim.clip_by_global_norm(0.5)
    g = {"w": np.full((3, 2), 2.0, F32)}
    kept = copy.deepcopy(g)
    u, _ = opt.update(opt.init(g), g, g)
    assert u["w"].dtype == F32 and np.array_equal(g["w"], kept["w"])
    np.testing.assert_allclose(np.linalg.norm(u["w"]), 0.5, rtol=1e-6)


def test_scale_by_adagrad_float64_grads_give_float32_steps() -> None:
    """Kills d12 (adagrad's g / root into a new array, of g's dtype)."""
    opt = optim.scale_by_adagrad()
    state = opt.init(P)
    u, _ = opt.update(state, tree.map(lambda x: x.astype(F64), GS[0]), P)
    assert all(x.dtype == F32 for x in _arrays(u))


def test_apply_updates_keeps_float32_params_whatever_the_updates() -> None:
    """Kills d08 (apply_updates' cast back to the param's dtype dropped)."""
    p = {"w": np.ones(3, F32), "s": np.float32(1.0), "z": np.asarray(1.0, F32)}
    u = {"w": np.full(3, 0.5), "s": np.float64(0.5), "z": np.asarray(0.5)}
    kept = copy.deepcopy((p, u))
    new = optim.apply_updates(p, u)
    assert all(np.asarray(x).dtype == F32 for x in tree.leaves(new))
    assert type(new["s"]) is np.float32 and isinstance(new["z"], np.ndarray)
    assert _same((p, u), kept)


# ---------------------------------------------------------------------------- losses
R = np.random.default_rng(3)
Z = R.normal(size=(4, 3)).astype(F32)
PROB = (1 / (1 + np.exp(-Z))).astype(F32)
T01 = (R.random((4, 3)) > 0.5).astype(F32)
SOFT = np.array([[0.2, 0.3, 0.5]] * 4, F32)
LABELS = np.array([0, 2, 1, 1])
PM1 = np.where(T01 > 0, 1.0, -1.0).astype(F32)
LOGP = (Z - np.log(np.exp(Z).sum(-1, keepdims=True))).astype(F32)

# (id, loss, pred, target, kwargs): float32 pred; a float target is float32 too
LOSSES = [
    ("mse", losses.mse, Z, SOFT, {}),
    ("l1", losses.l1, Z, SOFT, {}),
    ("huber", losses.huber, 3 * Z, SOFT, {"delta": 1.0}),
    ("smooth_l1", losses.smooth_l1, 3 * Z, SOFT, {"beta": 0.5}),
    ("bce", losses.bce, PROB, T01, {}),
    ("bce_with_logits", losses.bce_with_logits, Z, SOFT, {}),
    ("bce_with_logits-weights", losses.bce_with_logits, Z, SOFT,
     {"weight": np.array([1.0, 2.0, 0.5], F32), "pos_weight": np.array([2.0, 1.0, 3.0], F32)}),
    ("softmax_ce-labels", losses.softmax_cross_entropy, Z, LABELS, {}),
    ("softmax_ce-labels-smooth", losses.softmax_cross_entropy, Z, LABELS,
     {"label_smoothing": 0.2}),
    ("softmax_ce-probs", losses.softmax_cross_entropy, Z, SOFT, {}),
    ("softmax_ce-probs-smooth", losses.softmax_cross_entropy, Z, SOFT, {"label_smoothing": 0.2}),
    ("nll", losses.nll, LOGP, LABELS, {}),
    ("kl_div", losses.kl_div, LOGP, SOFT, {}),
    ("poisson_nll", losses.poisson_nll, Z, 3 * SOFT, {}),
    ("log_cosh", losses.log_cosh, Z, SOFT, {}),
    ("sigmoid_focal", losses.sigmoid_focal, Z, T01, {}),
    ("soft_margin", losses.soft_margin, Z, PM1, {}),
    ("hinge_embedding", losses.hinge_embedding, np.abs(Z), PM1, {}),
    ("multilabel_soft_margin", losses.multilabel_soft_margin, Z, T01, {}),
    ("multi_margin", losses.multi_margin, Z, LABELS, {}),
    ("poly_loss_cross_entropy", losses.poly_loss_cross_entropy, Z, SOFT, {}),
    ("cosine_similarity", losses.cosine_similarity, Z, SOFT, {}),
    ("hinge", losses.hinge, Z, PM1, {}),
    ("squared_hinge", losses.squared_hinge, Z, PM1, {}),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("loss", "pred", "target", "kw"), [c[1:] for c in LOSSES],
                         ids=[c[0] for c in LOSSES])
def test_loss_pullback_is_float32_repeatable_and_writes_nothing(
        loss: Any, pred: Any, target: Any, kw: Any, reduction: str) -> None:
    """Kills l03-l06 and l12/l15 (a pullback writing into the residual it reads: a second
    call differs), l10/l11/l13 (the loss writing into pred or target)."""
    pred, target = pred.copy(), target.copy()
    kept = (pred.copy(), target.copy())
    value, pullback = loss.vjp(pred, target, reduction=reduction, **kw)
    if reduction == "none":
        assert value.dtype == F32
    first = pullback()
    want = first.copy()
    assert first.dtype == F32 and first.shape == pred.shape
    first[...] = 7.0  # the user edits the returned dpred
    second = pullback()
    np.testing.assert_array_equal(second, want)
    assert np.shares_memory(second, first) is False
    np.testing.assert_array_equal(pred, kept[0])
    np.testing.assert_array_equal(target, kept[1])


FLOAT_TARGETS = [c for c in LOSSES if c[3].dtype == F32]


@pytest.mark.parametrize(("loss", "pred", "target", "kw"), [c[1:] for c in FLOAT_TARGETS],
                         ids=[c[0] for c in FLOAT_TARGETS])
def test_float64_target_and_cotangents_give_a_float32_dpred(loss: Any, pred: Any, target: Any,
                                                            kw: Any) -> None:
    """Kills l01 (the target's cast to pred's dtype dropped), l07 (smooth_l1's slope left
    float64), l08 (a float64 'none' cotangent left uncast) and l09 (the mean's 1/n scaling
    as a float64 scalar)."""
    _, pullback = loss.vjp(pred, target.astype(F64), **kw)
    assert pullback().dtype == F32
    assert pullback(np.float64(2.0)).dtype == F32
    assert pullback(np.asarray(2.0)).dtype == F32
    per, pullback = loss.vjp(pred, target, reduction="none", **kw)
    assert per.dtype == F32
    assert pullback(np.ones(per.shape, F64)).dtype == F32


@pytest.mark.parametrize(("loss", "target"), [(losses.mse, [[0.5, -1.0]]),
                                              (losses.l1, [[0.5, -1.0]])])
def test_python_float_pred_is_float32(loss: Any, target: Any) -> None:
    """Kills l02 (a nested list of Python floats read as float64 rather than float32)."""
    _, pullback = loss.vjp([[0.25, 1.5]], np.asarray(target, F32))
    assert pullback().dtype == F32


def test_nll_dpred_is_float32_with_a_float64_cotangent() -> None:
    _, pullback = losses.nll.vjp(LOGP, LABELS)
    assert pullback().dtype == F32 and pullback(np.float64(1.0)).dtype == F32
    _, pullback = losses.nll.vjp(LOGP, LABELS, reduction="none")
    assert pullback(np.ones(4, F32)).dtype == F32


# ---------------------------------------------------------------------------- tree

def test_ravel_keeps_float32_and_copies() -> None:
    """Kills t01 (the vector promoted to float64) and t02 (a one-leaf tree's vector a view
    of the leaf: editing the vector edited the params)."""
    for t in ({"w": np.arange(6, dtype=F32).reshape(2, 3)},
              {"w": np.ones((2, 3), F32), "b": np.zeros(3, F32)}):
        kept = copy.deepcopy(t)
        v, unravel = tree.ravel(t)
        assert v.dtype == F32
        v += 1.0
        assert _same(t, kept)
        assert all(x.dtype == F32 for x in _arrays(unravel(v)))


def test_unravel_gives_the_leaves_dtypes() -> None:
    """Kills t03 (a float64 vector unravelled into float64 leaves of a float32 tree) and
    t05 (a complex vector's real part kept float64 for float32 leaves)."""
    t = {"w": np.ones((2, 2), F32), "b": np.zeros(2, F32)}
    _, unravel = tree.ravel(t)
    assert all(x.dtype == F32 for x in _arrays(unravel(np.arange(6.0))))
    assert all(x.dtype == F32 for x in _arrays(unravel(np.arange(6.0) + 0j)))


def test_astype_to_the_same_dtype_copies() -> None:
    """Kills t04 (astype to the leaves' own dtype returning the same arrays)."""
    t = {"w": np.ones(3, F32)}
    out = tree.astype(t, F32)
    assert out["w"] is not t["w"] and not np.shares_memory(out["w"], t["w"])


def test_zeros_like_keeps_each_leafs_dtype() -> None:
    """Kills t06 / d28 (zeros_like made float64)."""
    t = {"a": np.ones(2, F32), "b": np.ones(2, np.float16), "c": np.ones(2, np.int32)}
    assert {k: v.dtype for k, v in tree.zeros_like(t).items()} == {
        k: v.dtype for k, v in t.items()}
