"""Fuzz of the error contract (DESIGN.md, Errors) for losses and autodiff; optimizers and
pytrees are in test_fuzz_api_optim.py, which shares this file's ``verdict``.

Each public object has a valid set-up; bad inputs are derived from it by a fixed product of
perturbations (no randomness). A bad call must either raise ValueError or TypeError whose
message names the object and none of NumPy's internals, or succeed and give exactly what
the equivalent valid call gives (``same``; ``ANY`` where any result is right, e.g. a NaN
step for a NaN gradient). Warnings are errors here, so a NumPy warning fails the case.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, tree

ANY = "any"  # the call may succeed with any result (no warning, no foreign exception)
NUMPY_PHRASES = (  # and Python's own words, which name no funcdl object
    "could not be broadcast", "operands could not", "matmul: Input operand", "out of bounds",
    "object arrays are not supported", "ufunc", "not enough values to unpack", "unhashable",
    "has no attribute", "object is not callable", "truth value of an array",
    "could not convert", "only 0-dimensional", "zero-size array", "iteration over a 0-d",
    "has no len()", "int() argument")
FOREIGN = (LookupError, AttributeError, ArithmeticError, RecursionError)


def verdict(call: Callable[[], Any], names: tuple[str, ...], same: Any = None,
            close: bool = False) -> None:
    """``call()`` raises a ValueError/TypeError naming one of ``names``, or (``same`` given)
    succeeds and equals ``same()`` (to rounding when ``close``)."""
    try:
        got = call()
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert not isinstance(e, FOREIGN), f"{type(e).__name__}: {msg}"
        assert not type(e).__module__.startswith("numpy"), f"{type(e).__name__}: {msg}"
        assert any(n in msg for n in names), f"names none of {names}: {msg}"
        bad = [p for p in NUMPY_PHRASES if p in msg]
        assert not bad, f"NumPy's words {bad} in: {msg}"
        return
    if same is None:
        pytest.fail(f"accepted silently, giving {got!r:.300}")
    if same is not ANY:
        want = same()
        tree.check_same(got, want, ("got", "want"), shapes=True)
        for g, w in zip(tree.leaves(got), tree.leaves(want), strict=True):
            if close:
                np.testing.assert_allclose(np.asarray(g, float), np.asarray(w, float),
                                           rtol=2e-3, atol=1e-6)
            else:
                np.testing.assert_array_equal(g, w, strict=not isinstance(w, float))


def params(cases: list[tuple[str, Any, Any, Any]]) -> Any:
    return pytest.mark.parametrize(("call", "names", "same"),
                                   [pytest.param(c, n, s, id=i) for i, c, n, s in cases])


# ---------------------------------------------------------------------------- losses

R = np.random.default_rng(0)
Z = R.normal(size=(4, 3)).astype(np.float32)
PROB = (1 / (1 + np.exp(-Z))).astype(np.float32)
T01 = (R.random((4, 3)) > 0.5).astype(np.float32)
LABELS = np.array([0, 2, 1, 2])
ONE_HOT = np.eye(3, dtype=np.float32)[LABELS]
SOFT = np.array([[0.2, 0.3, 0.5]] * 4, np.float32)
SCE = losses.softmax_cross_entropy
CTC_Z = np.random.default_rng(5).normal(size=(4, 5, 3)).astype(np.float32)  # (N, T, C)
CTC_LP = CTC_Z - np.log(np.exp(CTC_Z).sum(-1, keepdims=True))
CTC_LABELS = np.array([[1, 2], [2, 2], [1, 1], [2, 1]])  # (N, S), 0 the blank
MULTILABEL = np.array([[2, 0, -1], [1, -1, -1], [-1, 0, 0], [0, 1, 2]])  # -1: the padding
SETUPS = {  # id: (loss, pred, target, kwargs)
    "mse": (losses.mse, Z, T01, {}),
    "bce": (losses.bce, PROB, T01, {}),
    "bce_with_logits": (losses.bce_with_logits, Z, PROB, {}),
    "huber": (losses.huber, Z, 2 * T01, {"delta": 0.5}),
    "ctc": (losses.ctc, CTC_LP, CTC_LABELS, {}),
    "l1": (losses.l1, Z, 2 * T01, {}),
    "smooth_l1": (losses.smooth_l1, Z, 2 * T01, {"beta": 0.5}),
    "sce-labels": (SCE, Z, LABELS, {}),
    "sce-rank3-labels": (SCE, Z.reshape(2, 2, 3), LABELS.reshape(2, 2), {}),
    "sce-one-hot": (SCE, Z, ONE_HOT, {}),
    "sce-int-one-hot": (SCE, Z, ONE_HOT.astype(np.int64), {}),
    "sce-probabilities": (SCE, Z, SOFT, {}),
    "nll-labels": (losses.nll, Z - np.log(np.exp(Z).sum(-1, keepdims=True)), LABELS, {}),
    "kl_div": (losses.kl_div, Z - np.log(np.exp(Z).sum(-1, keepdims=True)), SOFT, {}),
    "kl_div-log-target": (losses.kl_div, Z - np.log(np.exp(Z).sum(-1, keepdims=True)),
                          np.log(SOFT), {"log_target": True}),
    "gaussian_nll": (losses.gaussian_nll, Z, T01, {"var": PROB}),
    "poisson_nll": (losses.poisson_nll, Z, 2 * T01, {}),
    "poisson_nll-rates": (losses.poisson_nll, PROB, 2 * T01, {"log_input": False, "full": True}),
    "sigmoid_focal": (losses.sigmoid_focal, Z, PROB, {}),
    "sigmoid_focal-options": (losses.sigmoid_focal, Z, T01, {"alpha": None, "gamma": 0.5}),
    "log_cosh": (losses.log_cosh, Z, T01, {}),
    "hinge_embedding": (losses.hinge_embedding, Z, 2 * T01 - 1, {"margin": 0.5}),
    "soft_margin": (losses.soft_margin, Z, 2 * T01 - 1, {}),
    "multi_margin": (losses.multi_margin, Z, LABELS, {}),
    "multi_margin-options": (losses.multi_margin, Z, LABELS,
                             {"p": 2, "margin": 0.5, "weight": np.array([1.0, 2.0, 0.5])}),
    "multilabel_soft_margin": (losses.multilabel_soft_margin, Z, T01,
                               {"weight": np.array([1.0, 2.0, 0.5])}),
    "multilabel_margin": (losses.multilabel_margin, Z, MULTILABEL, {}),
    "ntxent": (losses.ntxent, Z, np.array([0, 0, 1, 1]), {}),
    "ntxent-options": (losses.ntxent, Z, np.array([3, 5, 3, 5]), {"temperature": 0.5}),
    "cosine_similarity": (losses.cosine_similarity, Z, PROB, {}),
    "cosine_distance": (losses.cosine_distance, Z, PROB, {"epsilon": 0.5}),
    "poly_loss_cross_entropy": (losses.poly_loss_cross_entropy, Z, SOFT, {}),
    "poly_loss_cross_entropy-labels": (losses.poly_loss_cross_entropy, Z, LABELS,
                                       {"epsilon": -1.0}),
    "hinge": (losses.hinge, Z, 2 * T01 - 1, {}),
    "squared_hinge": (losses.squared_hinge, Z, 2 * T01 - 1, {}),
    "sparsemax": (losses.sparsemax, Z, T01, {}),
    "multiclass_sparsemax": (losses.multiclass_sparsemax, Z, LABELS, {}),
}
LABELLED = ("sce-labels", "sce-rank3-labels", "nll-labels", "ctc", "multi_margin",
            "multi_margin-options", "multilabel_margin", "ntxent", "ntxent-options",
            "poly_loss_cross_entropy-labels", "multiclass_sparsemax")


def _more_columns(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a, a[..., :1]], axis=-1)


# (id, bad array from the valid one, cast for the equivalent valid call or None: refused)
ARRAY_PERTURBATIONS: list[tuple[str, Callable[[Any], Any], Any]] = [
    ("rank+1", lambda a: a[..., None], None),
    ("rank-1", lambda a: a[..., 0], None),
    ("batch-1", lambda a: a[:-1], None),
    ("empty-batch", lambda a: a[:0], None),
    ("last-axis+1", _more_columns, None),
    ("complex64", lambda a: a.astype(np.complex64), None),
    ("object", lambda a: a.astype(object), None),
    ("str", lambda a: a.astype(str), None),
    ("scalar", lambda a: 0.5, None),
    ("none", lambda a: None, None),
    ("list", lambda a: a.tolist(), np.asarray),
    ("bool", lambda a: a > 0.5, "cast"),
    ("int64", lambda a: a.astype(np.int64), "cast"),
    ("uint8", lambda a: a.astype(np.uint8), "cast"),
    ("float16", lambda a: a.astype(np.float16), "cast"),
    ("float64", lambda a: a.astype(np.float64), "cast"),
]


def _loss_cases() -> list[Any]:
    out = []
    for sid, (loss, pred, target, kw) in SETUPS.items():
        names = (loss.name,)

        def run(p: Any, t: Any, loss: Any = loss, kw: dict[str, Any] = kw, **more: Any) -> Any:
            return loss(p, t, **kw, **more)

        for pid, bad, cast in ARRAY_PERTURBATIONS:
            # pred: floats only (float16 refused, as in funcdl's float32/float64 rule);
            # a list of Python floats is read as float32, as the layers read it
            p_bad = bad(pred)
            same_p = None if cast is None or pid in ("bool", "int64", "uint8", "float16") \
                else (lambda p=p_bad, t=target, r=run, d=np.float32 if pid == "list" else None:
                      r(np.asarray(p, d), t))
            if pid == "last-axis+1" and sid in LABELLED:
                same_p = ANY  # four classes, every label still in range: a valid problem
            out.append((f"{sid}-pred-{pid}", lambda p=p_bad, t=target, r=run: r(p, t), names,
                        same_p))
            t_bad = bad(target)
            out.append((f"{sid}-target-{pid}", lambda t=t_bad, r=run, p=pred: r(p, t), names,
                        _target_same(sid, run, pred, t_bad, cast)))
        # both sides empty: the mean is refused, the sum is 0
        p0, t0 = pred[:0], target[:0]
        out.append((f"{sid}-empty-both-mean", lambda p=p0, t=t0, r=run: r(p, t), names, None))
        out.append((f"{sid}-empty-both-sum", lambda p=p0, t=t0, r=run: r(p, t, reduction="sum"),
                    names, lambda: 0.0))
        for rid, red in [("avg", "avg"), ("upper", "MEAN"), ("none-object", None), ("int", 1),
                         ("bytes", b"mean"), ("array", np.array(["mean", "sum"])),
                         ("list", ["mean"])]:
            out.append((f"{sid}-reduction-{rid}",
                        lambda red=red, r=run, p=pred, t=target: r(p, t, reduction=red),
                        names, None))
        out.append((f"{sid}-unknown-keyword", lambda r=run, p=pred, t=target: r(p, t, foo=1),
                    names, None))
        out.append((f"{sid}-extra-positional",
                    lambda lo=loss, p=pred, t=target: lo(p, t, "mean", 1.0, 2.0), names, None))
        out += _pullback_cases(sid, loss, pred, target, kw)
    # classes: logits need at least one (NumPy: a maximum over an empty axis)
    out += [("sce-zero-classes-labels", lambda: SCE(Z[:, :0], LABELS * 0), (SCE.name,), None),
            ("sce-zero-classes-one-hot", lambda: SCE(Z[:, :0], ONE_HOT[:, :0]), (SCE.name,),
             None)]
    # a wider target beyond pred's range: cast to float32 it is inf, silently (PyTorch's
    # answer), or refused; finite inputs must not warn
    for name in ("mse", "huber", "l1", "smooth_l1"):
        loss = getattr(losses, name)
        out.append((f"{name}-target-beyond-float32",
                    lambda lo=loss: lo(Z, np.full(Z.shape, 1e300)), (name,), ANY))
    for name in ("huber",):
        for did, delta in [("negative", -1.0), ("str", "1"), ("none", None), ("nan", np.nan),
                           ("array", np.array([1.0, 2.0])), ("bool", True), ("complex", 1j)]:
            out.append((f"huber-delta-{did}", lambda d=delta: losses.huber(Z, T01, delta=d),
                        (name,), None))
        out.append(("huber-delta-0d-array", lambda: losses.huber(Z, T01, delta=np.array(0.5)),
                    (name,), lambda: losses.huber(Z, T01, delta=0.5)))
    return out


def _target_same(sid: str, run: Any, pred: Any, t: Any, cast: Any) -> Any:
    """What a loss given the bad target ``t`` may equal: the call with ``t`` cast (to int64
    labels, or to pred's dtype), or nothing (None: refused)."""
    ints = np.asarray(t).dtype.kind in "iu"
    if sid.startswith("sce") and ints and np.shape(t) == pred.shape[:-1]:
        return ANY  # integer labels, in range: a valid target too
    if sid == "ctc" and ints and np.ndim(t) == 2 and len(t) == len(pred):
        return ANY  # (N, S + 1) labels: a longer target, a valid problem too
    if cast is None or (sid in LABELLED and not ints):  # labels: integers only
        return None
    dtype = np.int64 if sid in LABELLED else pred.dtype
    return lambda: run(pred, np.asarray(t).astype(dtype))


def _pullback_cases(sid: str, loss: Any, pred: Any, target: Any, kw: dict[str, Any]) -> Any:
    names = (loss.name,)
    out = []
    for gid, g, same in [("none", None, 1.0), ("int", 2, 2.0), ("float32", np.float32(2), 2.0),
                         ("0d-array", np.array(2.0), 2.0), ("shape-1", np.array([2.0]), None),
                         ("list", [2.0], None), ("str", "2", None), ("bool", True, None),
                         ("complex", 2j, None), ("nan", np.nan, ANY)]:
        def call(g: Any = g) -> Any:
            return loss.vjp(pred, target, **kw)[1](g)
        want = same if same in (None, ANY) else \
            (lambda s=same: loss.vjp(pred, target, **kw)[1](s))
        out.append((f"{sid}-pullback-mean-{gid}", call, names, want))
    per = loss(pred, target, reduction="none", **kw)
    ok = np.full(per.shape, 2.0, per.dtype)
    for gid, g, same in [
            ("rank+1", ok[..., None], None), ("flat-1", ok.reshape(-1)[:-1], None),
            ("broadcastable", ok[:1], None), ("scalar", 2.0, None), ("list", ok.tolist(), ok),
            ("int", ok.astype(int), ok), ("float16", ok.astype(np.float16), ok),
            ("bool", ok > 0, None), ("complex", ok.astype(complex), None),
            ("str", ok.astype(str), None), ("object-none", np.full(ok.shape, None), None),
            ("none", None, np.ones_like(ok))]:
        def call(g: Any = g) -> Any:
            return loss.vjp(pred, target, reduction="none", **kw)[1](g)
        want = None if same is None else \
            (lambda s=same: loss.vjp(pred, target, reduction="none", **kw)[1](s))
        out.append((f"{sid}-pullback-none-{gid}", call, names, want))
    out.append((f"{sid}-pullback-two-arguments",
                lambda: loss.vjp(pred, target, **kw)[1](1.0, 2.0), names, None))
    out.append((f"{sid}-pullback-keyword-dy",
                lambda: loss.vjp(pred, target, **kw)[1](dy=1.0), names, None))
    return out


@params(_loss_cases())
def test_losses(call, names, same):
    verdict(call, names, same)


def test_accepted_inf_inputs_give_nan_as_torch_without_numpys_warning():
    # Accepted: inf - inf (or inf · 0) in a loss is NaN, as PyTorch gives it, and as
    # silently (the losses' errstate blocks were there already, for overflow). The contract
    # asks for no overflow warning and no NaN from *finite* inputs, which the cases above
    # test; a masked softmax row (-inf everywhere) is the likely way to get here.
    inf = np.full(Z.shape, np.inf, np.float32)
    for call in (lambda: losses.mse(inf, inf), lambda: losses.bce_with_logits(inf, T01),
                 lambda: SCE(inf, LABELS), lambda: SCE(-inf, LABELS),
                 lambda: losses.huber(inf, inf)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.isnan(call())
    # z = inf against t < 1 is an infinite loss, as the limit (PyTorch: also inf)
    assert losses.bce_with_logits(inf[:1, :1], np.zeros((1, 1), np.float32)) == np.inf


# ---------------------------------------------------------------------------- autodiff

KEY = random.key(0)
MLP = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(2))
P_MLP = MLP.init(KEY, (None, 3))[1]
BN = L.Sequential(L.Dense(4), L.BatchNorm(), L.Dense(2))
_, P_BN, S_BN = BN.init(KEY, (None, 3))
X = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
Y = np.linspace(0, 1, 10, dtype=np.float32).reshape(5, 2)
VG = ("value_and_grad",)


MSE: Any = object()  # in _custom: mse's own value or pullback


def _custom(value: Any = 1.0, pullback: Any = MSE) -> losses.Loss:
    """A user's loss whose vjp returns ``(value, pullback)``, each mse's when ``MSE``."""
    def vjp(p: Any, t: Any) -> Any:
        v, pb = losses.mse.vjp(p, t)
        return (v if value is MSE else value), (pb if pullback is MSE else pullback)
    return losses.Loss("custom", vjp)


def _returns(got: Any) -> losses.Loss:
    return losses.Loss("custom", lambda p, t: got)


def _vg(loss: Any = losses.mse, **kw: Any) -> Any:
    return fd.value_and_grad(MLP, loss, **kw)


def _grads(**kw: Any) -> Any:
    return lambda: _vg()(P_MLP, X, Y, **kw)


MSE_PB = losses.mse.vjp(np.zeros((5, 2), np.float32), Y)[1]
AUTODIFF_CASES = [
    # what a loss's vjp returns
    *[(f"loss-value-{i}", lambda v=v: _vg(_custom(v))(P_MLP, X, Y), (*VG, "custom"), None)
      for i, v in [("str", "abc"), ("none", None), ("complex", 1j), ("dict", {}),
                   ("list", [1.0]), ("shape-1", np.ones(1)), ("pair", (1.0, 2.0))]],
    *[(f"loss-value-{i}", lambda v=v: _vg(_custom(v))(P_MLP, X, Y)[0], VG, lambda: 1.0)
      for i, v in [("float32", np.float32(1)), ("0d-array", np.array(1.0)), ("int", 1)]],
    *[(f"loss-vjp-returns-{i}", lambda v=v: _vg(_returns(v))(P_MLP, X, Y), (*VG, "custom"),
       None) for i, v in [("float", 1.0), ("none", None), ("1-tuple", (1.0,)),
                          ("3-tuple", (1.0, MSE_PB, {}))]],
    *[(f"loss-pullback-{i}", lambda pb=pb: _vg(_custom(MSE, pb))(P_MLP, X, Y),
       (*VG, "custom", "Dense(2)"), None)
      for i, pb in [("none", None), ("int", 3), ("str", "x"), ("no-argument", lambda: Y),
                    ("returns-none", lambda g: None), ("shape-(5,)", lambda g: np.ones(5)),
                    ("broadcastable", lambda g: np.ones((1, 2))), ("scalar", lambda g: 1.0),
                    ("complex", lambda g: np.ones((5, 2), complex)),
                    ("str-array", lambda g: np.full((5, 2), "a")),
                    ("object", lambda g: np.full((5, 2), None))]],
    ("loss-pullback-list", lambda: _vg(_custom(MSE, lambda g: (Y * 0.1).tolist()))(
        P_MLP, X, Y), VG, lambda: _vg(_custom(MSE, lambda g: Y * 0.1))(P_MLP, X, Y)),
    ("loss-class-itself", lambda: _vg(losses.Loss)(P_MLP, X, Y), (*VG, "Loss"), None),
    ("loss-vjp-not-callable", lambda: _vg(losses.Loss("custom", 3))(P_MLP, X, Y),
     (*VG, "custom"), None),
    ("loss-name-string", lambda: _vg("mse"), VG, None),
    ("loss-name-not-str", lambda: losses.Loss(3, losses.mse.vjp), ("Loss",), None),
    ("model-and-loss-swapped", lambda: fd.value_and_grad(losses.mse, MLP), VG, None),
    # has_aux against what the loss returns
    ("aux-wrong-order", lambda: _vg(_returns((1.0, {"acc": 1}, MSE_PB)), has_aux=True)(
        P_MLP, X, Y), (*VG, "custom"), None),
    ("aux-triple", lambda: _vg(_returns(((1.0, 2.0, 3.0), MSE_PB)), has_aux=True)(
        P_MLP, X, Y), (*VG, "custom"), None),
    ("aux-array-value", lambda: _vg(_returns(((np.ones(2), 2.0), MSE_PB)), has_aux=True)(
        P_MLP, X, Y), VG, None),
    ("aux-without-has-aux", lambda: _vg(_returns(((1.0, 2.0), MSE_PB)))(P_MLP, X, Y), VG,
     None),
    ("has-aux-plain-loss", lambda: fd.grad(MLP, losses.mse, has_aux=True)(P_MLP, X, Y),
     (*VG, "mse"), None),
    # targets and inputs through value_and_grad
    *[(f"target-{i}", lambda t=t: _vg()(P_MLP, X, t), ("mse",), None)
      for i, t in [("none", None), ("str", "a"), ("rank-1", Y[:, 0]), ("rank+1", Y[..., None]),
                   ("batch-1", Y[:-1]), ("complex", Y.astype(complex))]],
    ("target-list", lambda: _vg()(P_MLP, X, Y.tolist()), VG, lambda: _vg()(P_MLP, X, Y)),
    ("target-int", lambda: _vg()(P_MLP, X, Y.astype(int)), VG,
     lambda: _vg()(P_MLP, X, Y.astype(int).astype(np.float32))),
    *[(f"sce-labels-{i}", lambda t=t: fd.value_and_grad(MLP, SCE)(P_MLP, X, t), (SCE.name,),
       None) for i, t in [("float", np.zeros(5)), ("out-of-range", np.arange(5)),
                          ("shape", np.zeros((5, 1), int)), ("bool", np.zeros(5, bool))]],
    # call keywords
    *[(f"train-{i}", _grads(train=t), VG, None) for i, t in [("str", "no"), ("int", 1),
                                                             ("none", None)]],
    ("train-numpy-bool", _grads(train=np.False_), VG, _grads(train=False)),
    ("key-int", _grads(key=3), ("Sequential",), None),
    ("unknown-keyword", _grads(foo=1), VG, None),
    ("state-for-stateless", _grads(state=()), VG, None),
    ("missing-target", lambda: _vg()(P_MLP, X), VG, None),
    ("extra-positional", lambda: _vg()(P_MLP, X, Y, 1), VG, None),
    ("flag-misspelled", lambda: fd.value_and_grad(MLP, losses.mse, hasaux=True), VG, None),
    # a stateful model
    ("stateful-without-state", lambda: fd.value_and_grad(BN, losses.mse)(P_BN, X, Y), VG,
     None),
    *[(f"stateful-state-{i}", lambda s=s: fd.value_and_grad(BN, losses.mse)(P_BN, X, Y, state=s),
       ("Sequential", "BatchNorm"), None)
      for i, s in [("none", None), ("dict", {}), ("child-state", S_BN[1]), ("params", P_BN)]],
    ("stateful-aux", lambda: fd.value_and_grad(BN, _returns(((1.0, 2.0), MSE_PB)),
                                               has_aux=True)(P_BN, X, Y, state=S_BN)[0][:2],
     VG, lambda: (1.0, 2.0)),
    # fd.vjp and its pullback
    ("vjp-of-none", lambda: fd.vjp(None, P_MLP, X), ("vjp",), None),
    ("vjp-state-for-stateless", lambda: fd.vjp(MLP, P_MLP, X, state=()), ("Sequential",), None),
    ("vjp-stateful-without-state", lambda: fd.vjp(BN, P_BN, X), ("Sequential",), None),
    *[(f"vjp-pullback-dy-{i}", lambda dy=dy: fd.vjp(MLP, P_MLP, X)[1](dy), ("Dense", "Sequential"),
       None) for i, dy in [("none", None), ("rank-1", Y[:, 0]), ("broadcastable", Y[:1]),
                           ("complex", Y.astype(complex)), ("str", Y.astype(str))]],
    ("vjp-pullback-dy-list", lambda: fd.vjp(MLP, P_MLP, X)[1](Y.tolist()), VG,
     lambda: fd.vjp(MLP, P_MLP, X)[1](Y.astype(np.float64))),
]


@params(AUTODIFF_CASES)
def test_autodiff(call, names, same):
    verdict(call, names, same, close=True)
