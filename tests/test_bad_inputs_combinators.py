"""The catalogue of bad inputs, continued (see test_bad_inputs.py): the combinators
FanInSum, FanInConcat, Parallel, Residual, Shared and Sequential (nested, stateful), whose
messages name the child and its place as well as the shapes."""

from __future__ import annotations

import pytest
from _catalogue import KEY, case, init, ones
from _layers_util import P_BN, P_SEQ, SEQ, pullback

from funcdl import layers as L

# ---------------------------------------------------------------------------- fixtures
# Built once at import; every case below only reads them.

PAR = L.Parallel(L.Dense(2), L.Dense(3))
P_PAR = init(PAR, ((None, 2), (None, 4)))
PAR_BN = L.Parallel(L.BatchNorm(), L.Tanh())
P_PAR_BN, S_PAR_BN = init(PAR_BN, ((None, 3), (None, 3)))
RES = L.Residual(L.Sequential(L.Dense(4), L.ReLU()))
P_RES = init(RES, (None, 4))
RES_D = L.Residual(L.Dense(3))
P_RES_D = init(RES_D, (None, 3))
SHARED = L.Shared(L.Dense(3))
P_SHARED = init(SHARED, ((None, 2), (None, 2)))
SEQ_FLAT = L.Sequential(L.Flatten(), L.ReLU(), L.Dense(25))
P_SEQ_FLAT = init(SEQ_FLAT, (None, 4))
NESTED = L.Sequential(L.Dense(8), L.Sequential(L.Dense(6), L.ReLU(), L.Dense(4)), L.Dense(2))
P_NESTED = init(NESTED, (None, 3))
SEQ_BN = L.Sequential(L.Dense(4), L.BatchNorm(), L.ReLU())
P_SEQ_BN, S_SEQ_BN = init(SEQ_BN, (None, 3))
SEQ_BN_NAME = "Sequential(Dense(4), BatchNorm(), ReLU())"


# ---------------------------------------------------------------------------- combinators

LAYER_CASES = [
    # FanInSum, FanInConcat
    case("faninsum-init-shapes-differ",
         lambda: L.FanInSum().init(KEY, ((None, 3), (None, 4))), ValueError,
         "FanInSum()", "(None, 3)", "(None, 4)"),
    case("faninsum-init-one-shape", lambda: L.FanInSum().init(KEY, (None, 3)), TypeError,
         "FanInSum()", "(None, 3)"),
    case("faninsum-apply-shapes-differ",
         lambda: L.FanInSum().apply((), (ones(2, 3), ones(2, 4))), ValueError,
         "FanInSum()", "(2, 3)", "(2, 4)"),
    case("faninsum-apply-not-a-tuple", lambda: L.FanInSum().apply((), ones(2, 3)), ValueError,
         "FanInSum()", "tuple", "ndarray"),
    case("faninconcat-init-axis-0",
         lambda: L.FanInConcat(axis=0).init(KEY, ((None, 3), (None, 4))), ValueError,
         "FanInConcat(axis=0)", "axis"),
    case("faninconcat-init-other-axes-differ",
         lambda: L.FanInConcat().init(KEY, ((None, 3, 2), (None, 4, 3))), ValueError,
         "FanInConcat(axis=-1)", "(None, 3, 2)", "(None, 4, 3)"),
    case("faninconcat-apply-batch-differs",
         lambda: L.FanInConcat().apply((), (ones(2, 3), ones(3, 4))), ValueError,
         "FanInConcat(axis=-1)", "(2, 3)", "(3, 4)"),
    case("faninconcat-apply-axis-past-rank",  # np.concatenate would wrap 2 onto the batch
         lambda: L.FanInConcat(axis=2).apply((), (ones(2, 3), ones(2, 3))), ValueError,
         "FanInConcat(axis=2)", "axis 2", "rank 2", "(2, 3)"),
    case("faninconcat-vjp-batch-axis",
         lambda: L.FanInConcat(axis=-2).vjp((), (ones(2, 3), ones(2, 3))), ValueError,
         "FanInConcat(axis=-2)", "axis -2", "rank 2"),
    case("faninconcat-apply-rank-1",
         lambda: L.FanInConcat().apply((), (ones(2), ones(2))), ValueError,
         "FanInConcat(axis=-1)", "rank 1", "(2,)"),
    case("faninconcat-apply-ranks-differ",
         lambda: L.FanInConcat().apply((), (ones(2, 3), ones(2, 3, 1))), ValueError,
         "FanInConcat(axis=-1)", "(2, 3)", "(2, 3, 1)"),
    # Parallel
    case("parallel-init-shape-count", lambda: PAR.init(KEY, ((None, 2),)), ValueError,
         "Parallel(Dense(2), Dense(3))", "(2)", "length 1"),

    case("parallel-apply-key-not-a-key",  # it named random.split, which nobody called
         lambda: PAR.apply(P_PAR, (ones(1, 2), ones(1, 2)), key=3), TypeError,
         "Parallel(Dense(2), Dense(3))", "funcdl.random.key(seed)", "int"),
    case("parallel-apply-not-a-tuple", lambda: PAR.apply(P_PAR, ones(1, 2)), ValueError,
         "Parallel(Dense(2), Dense(3))", "inputs", "ndarray"),
    case("parallel-apply-input-count", lambda: PAR.apply(P_PAR, (ones(1, 2),)), ValueError,
         "Parallel(Dense(2), Dense(3))", "inputs", "length 1"),
    case("parallel-apply-feature-count", lambda: PAR.apply(P_PAR, (ones(1, 2), ones(1, 5))),
         ValueError, "Parallel[1] Dense(3)", "(..., 4)", "(1, 5)"),
    case("parallel-pullback-cotangent-count",
         lambda: pullback(PAR, P_PAR, (ones(1, 2), ones(1, 4)))((ones(1, 2),)), ValueError,
         "Parallel(Dense(2), Dense(3))", "cotangents", "length 1"),
    case("parallel-pullback-branch-dy-shape",
         lambda: pullback(PAR, P_PAR, (ones(1, 2), ones(1, 4)))((ones(1, 2), ones(1, 4))),
         ValueError, "Parallel[1] Dense(3)", "(1, 3)", "(1, 4)"),
    case("parallel-stateful-short-state",
         lambda: PAR_BN.apply(P_PAR_BN, (ones(2, 3), ones(2, 3)), state=(S_PAR_BN[0],)),
         ValueError, "Parallel(BatchNorm(), Tanh())", "state", "length 1"),
    case("parallel-stateful-without-state",
         lambda: PAR_BN.apply(P_PAR_BN, (ones(2, 3), ones(2, 3))), TypeError,
         "Parallel(BatchNorm(), Tanh())", "state="),
    # Residual
    case("residual-init-branch-changes-shape", lambda: L.Residual(L.Dense(5)).init(KEY, (None, 4)),
         ValueError, "Residual(Dense(5))", "(None, 4)", "(None, 5)"),
    case("residual-apply-feature-count", lambda: RES.apply(P_RES, ones(2, 5)), ValueError,
         "Residual", "Sequential[0] Dense(4)", "(..., 4)", "(2, 5)"),
    case("residual-stateful-state-wrong-structure",
         lambda: L.Residual(L.BatchNorm()).apply(P_BN, ones(2, 4), state=()), ValueError,
         "Residual", "BatchNorm()", "tuple"),
    case("residual-pullback-dy-shape",
         lambda: pullback(RES_D, P_RES_D, ones(2, 3))(ones(2, 4)), ValueError,
         "Residual", "Dense(3)", "(2, 3)", "(2, 4)"),
    # Shared
    case("shared-init-shape-count", lambda: SHARED.init(KEY, ((None, 2),)), ValueError,
         "Shared(Dense(3), 2)", "length 1"),
    case("shared-init-shapes-differ", lambda: SHARED.init(KEY, ((None, 2), (None, 4))),
         ValueError, "Shared(Dense(3), 2)", "(None, 2)", "(None, 4)"),
    case("shared-apply-feature-count", lambda: SHARED.apply(P_SHARED, (ones(1, 2), ones(1, 4))),
         ValueError, "Shared[1] Dense(3)", "(..., 2)", "(1, 4)"),
    case("shared-pullback-branch-dy-shape",
         lambda: pullback(SHARED, P_SHARED, (ones(1, 2), ones(1, 2)))((ones(1, 3), ones(1, 4))),
         ValueError, "Shared[1] Dense(3)", "(1, 3)", "(1, 4)"),
    # Sequential and nesting
    case("sequential-uncalled-constructor", lambda: L.Sequential(L.Dense(2), L.ReLU), TypeError,
         "Sequential", "argument 1", "ReLU(), not ReLU"),
    case("sequential-params-count", lambda: SEQ.apply(P_SEQ[:2], ones(5, 3)), ValueError,
         "Sequential(Dense(50), ReLU(), Dense(25), Tanh())", "(4)", "length 2"),
    case("sequential-params-not-a-tuple", lambda: SEQ.apply({"w": ones(3, 50)}, ones(5, 3)),
         ValueError, "Sequential(Dense(50), ReLU(), Dense(25), Tanh())", "dict"),
    case("sequential-apply-feature-count-at-2", lambda: SEQ_FLAT.apply(P_SEQ_FLAT, ones(50, 3)),
         ValueError, "Sequential[2] Dense(25)", "(..., 4)", "(50, 3)"),
    case("sequential-pullback-dy-shape",
         lambda: pullback(SEQ, P_SEQ, ones(4, 3))(ones(4, 24)), ValueError,
         "Sequential[3] Tanh()", "(4, 25)", "(4, 24)"),
    case("sequential-nested-apply",
         lambda: NESTED.apply((P_NESTED[0], (P_NESTED[1][0], (),
                                             {"w": ones(5, 4), "b": P_NESTED[1][2]["b"]}),
                               P_NESTED[2]), ones(2, 3)),
         ValueError, "Sequential[1] > Sequential[2] Dense(4)", "(..., 5)", "(2, 6)"),
    case("sequential-nested-init",
         lambda: L.Sequential(L.Dense(8), L.Sequential(L.Dense(6), L.Conv2D(3, 3)))
         .init(KEY, (None, 3)), ValueError,
         "Sequential[1] > Sequential[1] Conv2D(3, 3)", "(None, 6)"),
    case("sequential-stateful-without-state", lambda: SEQ_BN.apply(P_SEQ_BN, ones(3, 3)),
         TypeError, SEQ_BN_NAME, "state="),
    case("sequential-stateful-state-count",
         lambda: SEQ_BN.apply(P_SEQ_BN, ones(3, 3), state=S_SEQ_BN[:2]), ValueError,
         SEQ_BN_NAME, "state", "(3)", "length 2"),
    case("sequential-stateful-state-wrong-structure",
         lambda: SEQ_BN.apply(P_SEQ_BN, ones(3, 3), state=((), (), ())), ValueError,
         "Sequential[1] BatchNorm()", "['mean', 'var']", "tuple"),
    # a stateless child's entry holding another's state: it came back in the new state
    case("sequential-stateless-child-given-a-state",
         lambda: SEQ_BN.apply(P_SEQ_BN, ones(3, 3), state=(S_SEQ_BN[1], S_SEQ_BN[1], ())),
         ValueError, "Sequential[0] Dense(4)", "expected () as the state entry",
         "a dict with keys ['mean', 'var']"),
    case("sequential-stateless-child-given-a-state-vjp",
         lambda: SEQ_BN.vjp(P_SEQ_BN, ones(3, 3), state=((), S_SEQ_BN[1], None)),
         ValueError, "Sequential[2] ReLU()", "expected () as the state entry", "got None"),
]


@pytest.mark.parametrize(("call", "exc", "match"), LAYER_CASES)
def test_layers(call, exc, match):
    with pytest.raises(exc, match=match):
        call()

