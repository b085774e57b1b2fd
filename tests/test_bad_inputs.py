"""The catalogue of bad inputs: every way of calling funcdl wrongly that we know of, each
with the exception type it must raise and what its message must name (the layer and its
place in a Sequential, the function, the expected and the actual shape or value).

Cases are tables of ``(call, exception, parts)``: ``parts`` must all appear in the message,
in any order (see ``has``). A case marked ``xfail(strict=True)`` is a known defect: the
test states the behaviour we want, and its reason says what happens now. Fixing the library
turns it into an XPASS, which fails the run until the mark is removed.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import data, io, losses, optim, random, tree
from funcdl import layers as L

KEY = random.key(0)
F32 = np.float32


def has(*parts: str) -> str:
    """A regex matching a message that contains every one of ``parts`` literally, in any
    order: ``has("Dense(25)", "(50, 3)")``."""
    return "(?s)" + "".join(f"(?=.*{re.escape(p)})" for p in parts)


def case(id: str, call: Callable[..., Any], exc: Any, *parts: str,
         xfail: str | None = None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(call, exc, has(*parts), id=id, marks=marks)


def ones(*shape: int, dtype: Any = F32) -> np.ndarray:
    return np.ones(shape, dtype)


def init(layer: L.Layer, in_shape: Any) -> Any:
    """The params (and state, for a stateful layer) of ``layer`` at ``in_shape``."""
    out = layer.init(KEY, in_shape)
    return out[1:] if layer.stateful else out[1]


# ---------------------------------------------------------------------------- fixtures
# Built once at import; every case below only reads them.

DENSE = L.Dense(25)
P_DENSE = init(DENSE, (None, 3))
CONV = L.Conv2D(4, 3, padding="VALID")
CONV_NAME = "Conv2D(4, 3, padding='VALID')"
P_CONV = init(CONV, (None, 8, 8, 3))
CONV_SAME = L.Conv2D(4, 3)
P_CONV_SAME = init(CONV_SAME, (None, 8, 8, 3))
CONV1 = L.Conv1D(4, 5, padding="VALID")
CONV1_NAME = "Conv1D(4, 5, padding='VALID')"
P_CONV1 = init(CONV1, (None, 8, 3))
BN = L.BatchNorm()
P_BN, S_BN = init(BN, (None, 4))
LN = L.LayerNorm()
P_LN = init(LN, (None, 4))
EMB = L.Embedding(10, 3)
P_EMB = init(EMB, (None, 5))
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
SEQ = L.Sequential(L.Dense(50), L.ReLU(), L.Dense(25), L.Tanh())
P_SEQ = init(SEQ, (None, 3))
SEQ_FLAT = L.Sequential(L.Flatten(), L.ReLU(), L.Dense(25))
P_SEQ_FLAT = init(SEQ_FLAT, (None, 4))
NESTED = L.Sequential(L.Dense(8), L.Sequential(L.Dense(6), L.ReLU(), L.Dense(4)), L.Dense(2))
P_NESTED = init(NESTED, (None, 3))
SEQ_BN = L.Sequential(L.Dense(4), L.BatchNorm(), L.ReLU())
P_SEQ_BN, S_SEQ_BN = init(SEQ_BN, (None, 3))
SEQ_BN_NAME = "Sequential(Dense(4), BatchNorm(), ReLU())"


def pullback(layer: L.Layer, params: Any, x: Any) -> Callable[..., Any]:
    return layer.vjp(params, x)[1]


# ---------------------------------------------------------------------------- layers

LAYER_CASES = [
    # Dense
    case("dense-init-rank-0", lambda: L.Dense(3).init(KEY, ()), ValueError,
         "Dense(3)", "rank", "()"),
    case("dense-init-int-shape", lambda: L.Dense(3).init(KEY, 3), TypeError,
         "Dense(3)", "in_shape must be a tuple", "got 3"),
    case("dense-init-negative-size", lambda: L.Dense(3).init(KEY, (None, -2)), ValueError,
         "Dense(3)", "(None, -2)"),
    case("dense-init-unknown-features", lambda: L.Dense(3).init(KEY, (None, None)),
         ValueError, "Dense(3)", "(None, None)"),
    case("dense-init-bad-key", lambda: L.Dense(3).init(0, (None, 3)), TypeError,
         "Dense(3)", "key"),
    case("dense-ctor-out-0", lambda: L.Dense(0), ValueError, "Dense", "positive int", "0"),
    case("dense-apply-feature-count", lambda: DENSE.apply(P_DENSE, ones(5, 4)), ValueError,
         "Dense(25)", "(..., 3)", "(5, 4)"),
    case("dense-apply-rank-0", lambda: DENSE.apply(P_DENSE, F32(1)), ValueError,
         "Dense(25)", "(..., 3)", "shape ()"),
    case("dense-apply-string-array", lambda: DENSE.apply(P_DENSE, np.array([["a", "b", "c"]])),
         TypeError, "Dense(25)", "<U1"),
    case("dense-apply-float16", lambda: DENSE.apply(P_DENSE, ones(2, 3, dtype=np.float16)),
         TypeError, "Dense(25)", "float16"),
    case("dense-apply-complex", lambda: DENSE.apply(P_DENSE, ones(2, 3, dtype=np.complex64)),
         TypeError, "Dense(25)", "complex64"),
    case("dense-apply-ragged-list", lambda: DENSE.apply(P_DENSE, [[1, 2, 3], [1, 2]]),
         (TypeError, ValueError), "Dense(25)"),
    case("dense-pullback-dy-shape",
         lambda: pullback(DENSE, P_DENSE, ones(2, 3))(ones(2, 24)), ValueError,
         "Dense(25)", "(2, 25)", "(2, 24)"),
    case("dense-params-missing-w", lambda: DENSE.apply({"b": P_DENSE["b"]}, ones(2, 3)),
         ValueError, "Dense(25)", "'w'"),
    case("dense-params-bias-shape",
         lambda: DENSE.apply({"w": P_DENSE["w"], "b": ones(3)}, ones(2, 3)), ValueError,
         "Dense(25)", "(3,)", "(25,)"),
    case("dense-params-not-a-dict", lambda: DENSE.apply((), ones(2, 3)), (TypeError, ValueError),
         "Dense(25)", "params"),
    case("dense-params-of-another-width",
         lambda: DENSE.apply(init(L.Dense(24), (None, 3)), ones(2, 3)), ValueError,
         "Dense(25)", "(3, 24)"),
    # Conv2D
    case("conv2d-init-rank-3", lambda: CONV.init(KEY, (None, 8, 3)), ValueError,
         CONV_NAME, "rank 4", "(None, 8, 3)"),
    case("conv2d-init-kernel-larger-than-valid-input", lambda: CONV.init(KEY, (None, 2, 2, 3)),
         ValueError, CONV_NAME, ">=3", "(None, 2, 2, 3)"),
    case("conv2d-init-unknown-channels", lambda: CONV.init(KEY, (None, 8, 8, None)), ValueError,
         CONV_NAME, "(None, 8, 8, None)"),
    case("conv2d-apply-channel-count", lambda: CONV.apply(P_CONV, ones(1, 8, 8, 2)), ValueError,
         CONV_NAME, "(N, H, W, 3)", "(1, 8, 8, 2)"),
    case("conv2d-apply-rank-3", lambda: CONV.apply(P_CONV, ones(8, 8, 3)), ValueError,
         CONV_NAME, "(8, 8, 3)"),
    case("conv2d-apply-kernel-larger-than-valid-input",
         lambda: CONV.apply(P_CONV, ones(1, 2, 2, 3)), ValueError,
         CONV_NAME, ">=3", "(1, 2, 2, 3)"),
    case("conv2d-apply-float16", lambda: CONV.apply(P_CONV, ones(1, 8, 8, 3, dtype=np.float16)),
         TypeError, CONV_NAME, "float16"),
    case("conv2d-apply-string-array", lambda: CONV.apply(P_CONV, np.full((1, 8, 8, 3), "x")),
         TypeError, CONV_NAME, "<U1"),
    case("conv2d-ctor-padding", lambda: L.Conv2D(4, 3, padding="FULL"), ValueError,
         "Conv2D", "padding", "'FULL'"),
    case("conv2d-ctor-stride-0", lambda: L.Conv2D(4, 3, stride=0), ValueError,
         "Conv2D(4, 3, stride=0)", "stride"),
    case("conv2d-params-kernel-rank",
         lambda: CONV_SAME.apply({"w": ones(3, 3, 3), "b": P_CONV_SAME["b"]}, ones(1, 8, 8, 3)),
         ValueError, "Conv2D(4, 3)", "(3, 3, 3)"),
    case("conv2d-params-bias-shape",
         lambda: CONV_SAME.apply({"w": P_CONV_SAME["w"], "b": ones(5)}, ones(1, 8, 8, 3)),
         ValueError, "Conv2D(4, 3)", "(5,)", "(4,)"),
    case("conv2d-params-missing-b",
         lambda: CONV_SAME.apply({"w": P_CONV_SAME["w"]}, ones(1, 8, 8, 3)),
         ValueError, "Conv2D(4, 3)", "'b'"),
    case("conv2d-pullback-dy-shape",
         lambda: pullback(CONV_SAME, P_CONV_SAME, ones(1, 8, 8, 3))(ones(1, 8, 8, 3)),
         ValueError, "Conv2D(4, 3)", "(1, 8, 8, 4)", "(1, 8, 8, 3)"),
    # Conv1D
    case("conv1d-init-rank-4", lambda: CONV1.init(KEY, (None, 8, 8, 3)), ValueError,
         CONV1_NAME, "rank 3", "(None, 8, 8, 3)"),
    case("conv1d-init-kernel-larger-than-valid-input", lambda: CONV1.init(KEY, (None, 3, 3)),
         ValueError, CONV1_NAME, ">=5", "(None, 3, 3)"),
    case("conv1d-apply-channel-count", lambda: CONV1.apply(P_CONV1, ones(2, 8, 2)), ValueError,
         CONV1_NAME, "(N, L, 3)", "(2, 8, 2)"),
    case("conv1d-apply-kernel-larger-than-valid-input",
         lambda: CONV1.apply(P_CONV1, ones(2, 3, 3)), ValueError, CONV1_NAME, "(2, 3, 3)"),
    case("conv1d-ctor-kernel-pair", lambda: L.Conv1D(4, (3, 3)), ValueError,
         "Conv1D", "kernel", "(3, 3)"),
    # pools
    case("maxpool-init-window-larger-than-image", lambda: L.MaxPool2D(4).init(KEY, (None, 3, 3, 1)),
         ValueError, "MaxPool2D(4)", ">=4", "(None, 3, 3, 1)"),
    case("maxpool-apply-window-larger-than-image",
         lambda: L.MaxPool2D(4).apply((), ones(1, 3, 3, 1)), ValueError,
         "MaxPool2D(4)", "(1, 3, 3, 1)"),
    case("maxpool-apply-rank-3", lambda: L.MaxPool2D(2).apply((), ones(3, 8, 8)), ValueError,
         "MaxPool2D(2)", "rank 4", "(3, 8, 8)"),
    case("maxpool-apply-string-array",
         lambda: L.MaxPool2D(2).apply((), np.full((1, 4, 4, 1), "a")), TypeError,
         "MaxPool2D(2)", "<U1"),
    case("avgpool-init-window-wider-than-image",
         lambda: L.AvgPool2D((2, 5)).init(KEY, (None, 4, 4, 1)), ValueError,
         "AvgPool2D((2, 5))", ">=5", "(None, 4, 4, 1)"),
    case("avgpool-apply-float16",
         lambda: L.AvgPool2D(2).apply((), ones(1, 4, 4, 1, dtype=np.float16)), TypeError,
         "AvgPool2D(2)", "float16"),
    case("avgpool-ctor-window-0", lambda: L.AvgPool2D(0), ValueError, "AvgPool2D(0)", "window"),
    case("avgpool-ctor-padding-as-wide-as-window", lambda: L.AvgPool2D(2, padding=2), ValueError,
         "AvgPool2D(2, padding=2)", "(2, 2)"),
    case("globalavgpool-init-rank-2", lambda: L.GlobalAvgPool().init(KEY, (None, 3)), ValueError,
         "GlobalAvgPool()", "(None, 3)"),
    case("globalavgpool-apply-rank-2", lambda: L.GlobalAvgPool().apply((), ones(2, 3)),
         ValueError, "GlobalAvgPool()", "(2, 3)"),
    # BatchNorm
    case("batchnorm-init-rank-1", lambda: BN.init(KEY, (4,)), ValueError, "BatchNorm()", "(4,)"),
    case("batchnorm-ctor-momentum", lambda: L.BatchNorm(momentum=2), ValueError,
         "BatchNorm", "momentum", "2"),
    case("batchnorm-apply-without-state", lambda: BN.apply(P_BN, ones(3, 4)), TypeError,
         "BatchNorm()", "state="),
    case("batchnorm-state-missing-key",
         lambda: BN.apply(P_BN, ones(3, 4), state={"mean": S_BN["mean"]}), ValueError,
         "BatchNorm()", "['mean', 'var']", "got ['mean']"),
    case("batchnorm-state-as-tuple",
         lambda: BN.apply(P_BN, ones(3, 4), state=(S_BN["mean"], S_BN["var"])), ValueError,
         "BatchNorm()", "state", "tuple"),
    case("batchnorm-state-leaf-shape",
         lambda: BN.apply(P_BN, ones(3, 4), state={"mean": np.zeros(3), "var": np.ones(3)}),
         ValueError, "BatchNorm()", "state['mean']", "(3,)", "(4,)"),
    case("batchnorm-state-integer-dtype",
         lambda: BN.apply(P_BN, ones(3, 4), train=True,
                          state={"mean": np.zeros(4, np.int64), "var": np.ones(4, np.int64)}),
         TypeError, "BatchNorm()", "int64"),
    case("batchnorm-apply-channel-count", lambda: BN.apply(P_BN, ones(3, 5), state=S_BN),
         ValueError, "BatchNorm()", "4 channels", "(3, 5)"),
    case("batchnorm-train-one-value-per-channel",
         lambda: BN.apply(P_BN, ones(1, 4), state=S_BN, train=True), ValueError,
         "BatchNorm()", "(1, 4)"),
    case("batchnorm-apply-float16",
         lambda: BN.apply(P_BN, ones(3, 4, dtype=np.float16), state=S_BN), TypeError,
         "BatchNorm()", "float16"),
    # LayerNorm
    case("layernorm-init-axis-0", lambda: L.LayerNorm(axis=0).init(KEY, (None, 4)), ValueError,
         "LayerNorm(axis=0)", "batch axis", "(None, 4)"),
    case("layernorm-ctor-eps-0", lambda: L.LayerNorm(eps=0), ValueError, "LayerNorm", "eps"),
    case("layernorm-apply-feature-count", lambda: LN.apply(P_LN, ones(2, 5)), ValueError,
         "LayerNorm()", "(4,)", "(2, 5)"),
    case("layernorm-apply-rank-1", lambda: LN.apply(P_LN, ones(4)), ValueError,
         "LayerNorm()", "(4,)"),
    case("layernorm-params-missing-bias", lambda: LN.apply({"scale": ones(4)}, ones(2, 4)),
         ValueError, "LayerNorm()", "['scale', 'bias']", "got ['scale']"),
    # Embedding
    case("embedding-ctor-vocab-0", lambda: L.Embedding(0, 3), ValueError, "Embedding", "vocab"),
    case("embedding-float-ids", lambda: EMB.apply(P_EMB, ones(2, 5)), TypeError,
         "Embedding(10, 3)", "float32"),
    case("embedding-bool-ids", lambda: EMB.apply(P_EMB, np.array([[True]])), TypeError,
         "Embedding(10, 3)", "bool"),
    case("embedding-id-equal-to-vocab", lambda: EMB.apply(P_EMB, np.array([[10]])), ValueError,
         "Embedding(10, 3)", "[0, 10)", "[10, 10]"),
    case("embedding-negative-id", lambda: EMB.apply(P_EMB, np.array([[-1, 3]])), ValueError,
         "Embedding(10, 3)", "[0, 10)", "[-1, 3]"),
    case("embedding-table-shape", lambda: EMB.apply({"table": ones(9, 3)}, np.array([[1]])),
         ValueError, "Embedding(10, 3)", "(9, 3)", "(10, 3)"),
    # Dropout
    case("dropout-ctor-rate-above-1", lambda: L.Dropout(1.5), ValueError, "Dropout", "1.5"),
    case("dropout-ctor-rate-string", lambda: L.Dropout("a"), TypeError, "Dropout", "'a'"),
    case("dropout-train-without-key", lambda: L.Dropout(0.5).apply((), ones(3), train=True),
         ValueError, "Dropout(0.5)", "key="),
    case("dropout-train-key-not-a-key",
         lambda: L.Dropout(0.5).apply((), ones(3), train=True, key=0), TypeError,
         "Dropout(0.5)", "key"),
    # Softmax
    case("softmax-apply-axis-out-of-range", lambda: L.Softmax(axis=2).apply((), ones(2, 3)),
         ValueError, "Softmax(axis=2)", "(2, 3)"),
    case("softmax-init-axis-out-of-range", lambda: L.Softmax(axis=2).init(KEY, (None, 3)),
         ValueError, "Softmax(axis=2)", "(None, 3)"),
    case("softmax-apply-string-array", lambda: L.Softmax().apply((), np.array([["a"]])),
         TypeError, "Softmax(axis=-1)", "<U1"),
    case("softmax-pullback-dy-shape",
         lambda: pullback(L.Softmax(), (), ones(2, 3))(ones(2, 4)), ValueError,
         "Softmax(axis=-1)", "(2, 3)", "(2, 4)"),
    # Reshape, Flatten
    case("reshape-init-size", lambda: L.Reshape((4, 4)).init(KEY, (None, 15)), ValueError,
         "Reshape((4, 4))", "(None, 15)"),
    case("reshape-apply-size", lambda: L.Reshape((4, 4)).apply((), ones(2, 15)), ValueError,
         "Reshape((4, 4))", "(2, 15)"),
    case("reshape-ctor-two-minus-ones", lambda: L.Reshape((-1, -1)), ValueError,
         "Reshape((-1, -1))", "-1"),
    case("flatten-apply-rank-0", lambda: L.Flatten().apply((), F32(1)), ValueError,
         "Flatten()", "shape ()"),
    case("flatten-apply-float16", lambda: L.Flatten().apply((), ones(2, 3, dtype=np.float16)),
         TypeError, "Flatten()", "float16"),
    # Slice
    case("slice-init-index-out-of-range", lambda: L.Slice(5).init(KEY, (None, 3)), ValueError,
         "Slice(5)", "(None, 3)"),
    case("slice-apply-index-out-of-range", lambda: L.Slice(5).apply((), ones(2, 3)), ValueError,
         "Slice(5)", "(2, 3)"),
    case("slice-ctor-index-type", lambda: L.Slice("a"), TypeError, "Slice", "'a'"),
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
    case("faninconcat-apply-ranks-differ",
         lambda: L.FanInConcat().apply((), (ones(2, 3), ones(2, 3, 1))), ValueError,
         "FanInConcat(axis=-1)", "(2, 3)", "(2, 3, 1)"),
    # Parallel
    case("parallel-init-shape-count", lambda: PAR.init(KEY, ((None, 2),)), ValueError,
         "Parallel(Dense(2), Dense(3))", "(2)", "length 1"),
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
    case("shared-stateful-child", lambda: L.Shared(L.BatchNorm()), TypeError,
         "Shared", "BatchNorm()"),
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
         ValueError, "Sequential[1] Sequential(Dense(6), ReLU(), Dense(4))",
         "Sequential[2] Dense(4)", "(..., 5)", "(2, 6)"),
    case("sequential-nested-init",
         lambda: L.Sequential(L.Dense(8), L.Sequential(L.Dense(6), L.Conv2D(3, 3)))
         .init(KEY, (None, 3)), ValueError,
         "Sequential[1] Sequential(Dense(6), Conv2D(3, 3))", "Sequential[1] Conv2D(3, 3)",
         "(None, 6)"),
    case("sequential-stateful-without-state", lambda: SEQ_BN.apply(P_SEQ_BN, ones(3, 3)),
         TypeError, SEQ_BN_NAME, "state="),
    case("sequential-stateful-state-count",
         lambda: SEQ_BN.apply(P_SEQ_BN, ones(3, 3), state=S_SEQ_BN[:2]), ValueError,
         SEQ_BN_NAME, "state", "(3)", "length 2"),
    case("sequential-stateful-state-wrong-structure",
         lambda: SEQ_BN.apply(P_SEQ_BN, ones(3, 3), state=(S_SEQ_BN[1], (), ())), ValueError,
         "Sequential[1] BatchNorm()", "['mean', 'var']", "tuple"),
]


@pytest.mark.parametrize(("call", "exc", "match"), LAYER_CASES)
def test_layers(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------- losses

Z43 = np.zeros((4, 3))

LOSS_CASES = [
    case("mse-shape-mismatch", lambda: losses.mse(np.zeros((50, 1)), np.zeros(50)), ValueError,
         "mse", "(50, 1)", "(50,)"),
    case("mse-trailing-size-mismatch", lambda: losses.mse(np.zeros((50, 3)), np.zeros((50, 2))),
         ValueError, "mse", "(50, 3)", "(50, 2)"),
    case("mse-integer-pred", lambda: losses.mse(np.zeros(5, np.int64), np.zeros(5)), TypeError,
         "mse", "int64"),
    case("mse-string-target", lambda: losses.mse(np.zeros(5), np.array(["a"] * 5)), TypeError,
         "mse", "<U1"),
    case("mse-bad-reduction", lambda: losses.mse(np.zeros(5), np.zeros(5), reduction="avg"),
         ValueError, "mse", "'avg'"),
    case("mse-none-reduction-cotangent-shape",
         lambda: losses.mse.vjp(np.zeros(5), np.zeros(5), reduction="none")[1](np.ones(4)),
         ValueError, "mse", "(5,)", "(4,)"),
    case("mse-float16-pred",
         lambda: losses.mse(np.zeros(5, np.float16), np.zeros(5, np.float16)), TypeError,
         "mse", "float16"),
    case("huber-delta-0", lambda: losses.huber(np.zeros(5), np.zeros(5), delta=0), ValueError,
         "huber", "delta"),
    case("huber-delta-nan",
         lambda: losses.huber(np.zeros(5), np.zeros(5), delta=float("nan")), ValueError,
         "huber", "delta", "nan"),
    case("bce-probability-above-1", lambda: losses.bce(np.array([0.5, 1.5]), np.array([0., 1.])),
         ValueError, "bce", "[0, 1]", "1.5"),
    case("bce-probability-below-0", lambda: losses.bce(np.array([-0.1, 0.5]), np.array([0., 1.])),
         ValueError, "bce", "[0, 1]", "-0.1"),
    case("bce-probability-nan", lambda: losses.bce(np.array([np.nan, 0.5]), np.array([0., 1.])),
         ValueError, "bce", "nan"),
    case("bce-target-outside-0-1", lambda: losses.bce(np.array([0.5, 0.5]), np.array([0., 2.])),
         ValueError, "bce", "target", "2.0"),
    case("bce-with-logits-target-outside-0-1",
         lambda: losses.bce_with_logits(np.array([0.5, 0.5]), np.array([0., 2.])), ValueError,
         "bce_with_logits", "target", "2.0"),
    case("bce-with-logits-shape-mismatch",
         lambda: losses.bce_with_logits(np.zeros((4, 1)), np.zeros(4)), ValueError,
         "bce_with_logits", "(4, 1)", "(4,)"),
    case("cross-entropy-label-equal-to-classes",
         lambda: losses.softmax_cross_entropy(Z43, np.array([0, 1, 2, 3])), ValueError,
         "softmax_cross_entropy", "[0, 3)", "3]"),
    case("cross-entropy-negative-label",
         lambda: losses.softmax_cross_entropy(Z43, np.array([0, 1, 2, -1])), ValueError,
         "softmax_cross_entropy", "[0, 3)", "[-1, 2]"),
    case("cross-entropy-label-shape",
         lambda: losses.softmax_cross_entropy(Z43, np.array([[0], [1], [2], [1]])), ValueError,
         "softmax_cross_entropy", "(4,)", "(4, 1)"),
    case("cross-entropy-float-labels-as-ids",
         lambda: losses.softmax_cross_entropy(Z43, np.array([0.0, 1.0, 2.0, 1.0])), ValueError,
         "softmax_cross_entropy", "(4, 3)", "(4,)"),
    case("cross-entropy-string-labels",
         lambda: losses.softmax_cross_entropy(Z43, np.array(["a"] * 4)), TypeError,
         "softmax_cross_entropy", "<U1"),
    case("cross-entropy-one-hot-class-count",
         lambda: losses.softmax_cross_entropy(Z43, np.zeros((4, 2))), ValueError,
         "softmax_cross_entropy", "(4, 3)", "(4, 2)"),
    case("cross-entropy-logits-rank-0",
         lambda: losses.softmax_cross_entropy(np.float64(1.0), np.array(0)), ValueError,
         "softmax_cross_entropy", "class axis", "()"),
]


@pytest.mark.parametrize(("call", "exc", "match"), LOSS_CASES)
def test_losses(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------- value_and_grad

MLP = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(1))
P_MLP = init(MLP, (None, 3))
BN_MODEL = L.Sequential(L.Dense(4), L.BatchNorm(), L.Dense(1))
P_BN_MODEL, S_BN_MODEL = init(BN_MODEL, (None, 3))
X53, Y51 = ones(5, 3), ones(5, 1)

GRAD_CASES = [
    case("stateful-model-without-state",
         lambda: fd.value_and_grad(BN_MODEL, losses.mse)(P_BN_MODEL, X53, Y51), TypeError,
         "value_and_grad", "stateful", "state="),
    case("stateful-model-state-none",
         lambda: fd.value_and_grad(BN_MODEL, losses.mse)(P_BN_MODEL, X53, Y51, state=None),
         TypeError, "Sequential(Dense(4), BatchNorm(), Dense(1))", "state="),
    case("loss-without-vjp", lambda: fd.value_and_grad(MLP, lambda p, t: 0.0), TypeError,
         "value_and_grad", ".vjp"),
    case("model-without-vjp",
         lambda: fd.value_and_grad(lambda p, x: x, losses.mse)(P_MLP, X53, Y51), TypeError,
         "value_and_grad", "vjp"),
    case("state-for-a-stateless-model",
         lambda: fd.value_and_grad(MLP, losses.mse)(P_MLP, X53, Y51, state=()), TypeError,
         "value_and_grad", "['state']"),
    case("target-shape", lambda: fd.value_and_grad(MLP, losses.mse)(P_MLP, X53, np.ones(5)),
         ValueError, "mse", "(5, 1)", "(5,)"),
    case("input-feature-count",
         lambda: fd.value_and_grad(MLP, losses.mse)(P_MLP, ones(5, 4), Y51), ValueError,
         "Sequential[0] Dense(4)", "(..., 3)", "(5, 4)"),
    case("has-aux-loss-returns-scalar",
         lambda: fd.value_and_grad(MLP, losses.mse, has_aux=True)(P_MLP, X53, Y51), TypeError,
         "has_aux", "(value, aux)"),
]


@pytest.mark.parametrize(("call", "exc", "match"), GRAD_CASES)
def test_value_and_grad(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------- optimizers

PARAMS = {"w": ones(3, 2), "b": np.zeros(2, F32)}
GRADS = {"w": ones(3, 2), "b": ones(2)}

OPTIMIZERS = {
    "sgd": lambda: optim.sgd(0.1),
    "sgd-momentum": lambda: optim.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: optim.adam(),
    "adamw": lambda: optim.adamw(),
    "rmsprop": lambda: optim.rmsprop(centered=True),
    "adagrad": lambda: optim.adagrad(),
    "chain": lambda: optim.chain(optim.clip_by_global_norm(1.0), optim.adam()),
}


def _update(name: str, state: Any = None, grads: Any = GRADS, params: Any = PARAMS) -> Any:
    opt = OPTIMIZERS[name]()
    return opt.update(opt.init(PARAMS) if state is None else state, grads, params)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_swapped_update_arguments(name):
    opt = OPTIMIZERS[name]()
    state = opt.init(PARAMS)
    label = name.split("-")[0]
    with pytest.raises(TypeError, match=has(f"{label}.update", "update(state, grads, params)",
                                            "got dict")):
        opt.update(GRADS, state, PARAMS)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize(("grads", "parts"), [
    pytest.param({"w": GRADS["w"]}, ("update", "grads", "keys ['w']", "['b', 'w']"),
                 id="missing-leaf"),
    pytest.param({**GRADS, "c": GRADS["b"]}, ("update", "grads", "['b', 'c', 'w']"),
                 id="extra-leaf"),
    pytest.param({"w": ones(2, 3), "b": GRADS["b"]}, ("update", "['w']", "(2, 3)", "(3, 2)"),
                 id="leaf-shape"),
    pytest.param([GRADS["b"], GRADS["w"]], ("update", "grads", "list of length 2"),
                 id="list-for-dict"),
])
def test_optimizer_grads_differ_from_params(name, grads, parts):
    with pytest.raises(ValueError, match=has(*parts)):
        _update(name, grads=grads)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_params_differ_from_grads(name):
    # the lr stage (or weight decay) compares grads with params, leaf by leaf
    bad = {"w": ones(2, 3), "b": PARAMS["b"]}
    with pytest.raises(ValueError, match=has("update", "['w']", "(3, 2)", "(2, 3)")):
        _update(name, params=bad)


OPTIM_CASES = [
    case("state-of-another-optimizer",
         lambda: _update("adam", state=optim.sgd(0.1).init(PARAMS)), ValueError,
         "adam.update", "['lr']", "['adam', 'lr']"),
    case("named-chain-state-to-chain",
         lambda: _update("chain", state=optim.adam().init(PARAMS)), TypeError,
         "chain.update", "NamedChainState"),
    case("adamw-without-params", lambda: _update("adamw", params=None), ValueError,
         "add_decayed_weights.update", "params=None"),
    case("adam-lr-negative", lambda: optim.adam(-1.0), ValueError, "adam", "lr", "-1.0"),
    case("adam-lr-nan", lambda: optim.adam(float("nan")), ValueError, "adam", "lr", "nan"),
    case("adam-lr-string", lambda: optim.adam("0.1"), TypeError, "adam", "lr", "'0.1'"),
    case("sgd-lr-none", lambda: optim.sgd(None), TypeError, "sgd", "lr", "None"),
    case("adam-b1-1", lambda: optim.adam(b1=1.0), ValueError, "adam", "b1", "1.0"),
    case("adam-b2-negative", lambda: optim.adam(b2=-0.1), ValueError, "adam", "b2", "-0.1"),
    case("adam-eps-negative", lambda: optim.adam(eps=-1.0), ValueError, "adam", "eps", "-1.0"),
    case("sgd-momentum-negative", lambda: optim.sgd(0.1, momentum=-0.5), ValueError,
         "sgd", "momentum", "-0.5"),
    case("sgd-nesterov-without-momentum", lambda: optim.sgd(0.1, nesterov=True), ValueError,
         "sgd", "nesterov", "momentum"),
    case("clip-max-norm-negative", lambda: optim.clip_by_global_norm(-1.0), ValueError,
         "clip_by_global_norm", "max_norm", "-1.0"),
    case("chain-uncalled-transform", lambda: optim.chain(optim.adam(), optim.scale_by_adam),
         TypeError, "chain", "argument 1", "scale_by_adam()"),
    case("schedule-returns-string",
         lambda: optim.adam(lambda c: "fast").update(optim.adam(lambda c: "fast").init(PARAMS),
                                                     GRADS, PARAMS),
         TypeError, "schedule", "'fast'"),
    case("schedule-returns-none",
         lambda: optim.sgd(lambda c: None).update(optim.sgd(lambda c: None).init(PARAMS),
                                                  GRADS, PARAMS),
         TypeError, "schedule", "None"),
    case("schedule-returns-nan",
         lambda: optim.sgd(lambda c: float("nan")).update(
             optim.sgd(lambda c: float("nan")).init(PARAMS), GRADS, PARAMS),
         ValueError, "schedule", "nan"),
    case("schedule-returns-negative-lr",
         lambda: optim.sgd(lambda c: c - 0.5).update(
             optim.sgd(lambda c: c - 0.5).init(PARAMS), GRADS, PARAMS),
         ValueError, "schedule", "-0.5", "count 0", ">= 0.0"),
    case("adam-integer-grads",
         lambda: optim.adam().update(optim.adam().init(PARAMS),
                                     tree.map(lambda g: np.ones(g.shape, np.int64), GRADS),
                                     PARAMS),
         TypeError, "grads", "int64", "floating-point"),
    case("schedule-returns-array",
         lambda: optim.sgd(lambda c: np.array([0.1, 0.2])).update(
             optim.sgd(lambda c: np.array([0.1, 0.2])).init(PARAMS), GRADS, PARAMS),
         TypeError, "schedule", "(2,)"),
    case("apply-updates-structure", lambda: optim.apply_updates(PARAMS, {"w": GRADS["w"]}),
         ValueError, "apply_updates", "['b', 'w']", "['w']"),
    case("apply-updates-leaf-shape",
         lambda: optim.apply_updates(PARAMS, {"w": F32(1), "b": GRADS["b"]}), ValueError,
         "apply_updates", "['w']", "(3, 2)", "()"),
    case("piecewise-schedule-negative-scale",
         lambda: optim.piecewise_constant_schedule(1.0, {10: -1.0}), ValueError,
         "piecewise_constant_schedule", "-1.0"),
    case("warmup-cosine-decay-shorter-than-warmup",
         lambda: optim.warmup_cosine_decay_schedule(0.0, 1.0, 10, 5), ValueError,
         "warmup_cosine_decay_schedule", "warmup_steps=10", "decay_steps=5"),
    case("linear-schedule-fractional-steps", lambda: optim.linear_schedule(0.0, 1.0, 2.5),
         ValueError, "transition_steps", "2.5"),
]


@pytest.mark.parametrize(("call", "exc", "match"), OPTIM_CASES)
def test_optimizers(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------- tree


def _unravel() -> Callable[[Any], Any]:
    return tree.ravel({"a": np.ones(3), "b": np.ones((2, 2))})[1]


TREE_CASES = [
    case("map-list-lengths", lambda: tree.map(np.add, {"a": 1, "b": [1, 2]}, {"a": 1, "b": [1]}),
         ValueError, "['b']", "list of length 2", "list of length 1"),
    case("map-dict-keys", lambda: tree.map(np.add, {"a": 1, "b": 2}, {"a": 1, "c": 2}),
         ValueError, "the root", "['a', 'b']", "['a', 'c']"),
    case("map-list-vs-tuple", lambda: tree.map(np.add, [1, 2], (1, 2)), ValueError,
         "list of length 2", "tuple of length 2"),
    case("map-leaf-vs-container",
         lambda: tree.map(np.add, {"a": np.ones(2)}, {"a": [np.ones(2)]}), ValueError,
         "['a']", "shape (2,)", "list of length 1"),
    case("unflatten-too-few-leaves",
         lambda: tree.unflatten(tree.structure({"a": 1, "b": (2, 3)}), [1, 2]), ValueError,
         "unflatten", "3 leaves", "got 2"),
    case("unflatten-too-many-leaves", lambda: tree.unflatten(tree.structure({"a": 1}), [1, 2]),
         ValueError, "unflatten", "1 leaves", "got 2"),
    case("unflatten-not-a-treedef", lambda: tree.unflatten({"a": 1}, [1]), TypeError,
         "unflatten", "TreeDef"),
    case("unravel-wrong-size", lambda: _unravel()(np.ones(6)), ValueError,
         "unravel", "(7,)", "(6,)"),
    case("unravel-2d-vector", lambda: _unravel()(np.ones((7, 1))), ValueError,
         "unravel", "(7,)", "(7, 1)"),
    case("check-same-shapes",
         lambda: tree.check_same({"a": np.ones(3)}, {"a": np.ones(4)}, shapes=True), ValueError,
         "['a']", "(3,)", "(4,)"),
]


@pytest.mark.parametrize(("call", "exc", "match"), TREE_CASES)
def test_tree(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------- io

CKPT = {"w": ones(3, 2), "b": np.zeros(2, F32), "l": [np.int32(3), None, (1.5, True)]}


def _saved(tmp: Path) -> Path:
    path = tmp / "ckpt.npz"
    io.save(path, CKPT)
    return path


def _truncated(tmp: Path) -> Any:
    raw = _saved(tmp).read_bytes()
    (tmp / "cut.npz").write_bytes(raw[: len(raw) // 2])
    return io.load(tmp / "cut.npz")


def _corrupted(tmp: Path) -> Any:
    raw = bytearray(_saved(tmp).read_bytes())
    for i in range(100, len(raw) - 100, 7):
        raw[i] ^= 0xFF
    (tmp / "bad.npz").write_bytes(bytes(raw))
    return io.load(tmp / "bad.npz")


def _empty(tmp: Path) -> Any:
    (tmp / "empty.npz").write_bytes(b"")
    return io.load(tmp / "empty.npz")


def _pickled(tmp: Path) -> Any:
    (tmp / "pickled.npz").write_bytes(pickle.dumps(CKPT))
    return io.load(tmp / "pickled.npz")


def _object_leaf(tmp: Path) -> Any:
    """A well-formed funcdl archive whose leaf is a pickled object array."""
    io.save(tmp / "ok.npz", {"a": np.ones(2)})
    with np.load(tmp / "ok.npz") as z:
        header = z["__funcdl_treedef__"]
    np.savez(tmp / "object.npz", __funcdl_treedef__=header,
             leaf_0=np.array([{"a": 1}, None], dtype=object))
    return io.load(tmp / "object.npz")


def _plain_npz(tmp: Path) -> Any:
    np.savez(tmp / "plain.npz", a=np.ones(3))
    return io.load(tmp / "plain.npz")


def _npy(tmp: Path) -> Any:
    np.save(tmp / "single.npy", np.ones(3))
    return io.load(tmp / "single.npy")


IO_CASES = [
    case("load-truncated", _truncated, ValueError, "io.load", "cut.npz", "truncated"),
    case("load-corrupted", _corrupted, ValueError, "io.load", "bad.npz", "corrupted"),
    case("load-empty-file", _empty, ValueError, "io.load", "empty.npz", "not an .npz"),
    case("load-pickle-file", _pickled, ValueError, "io.load", "pickled.npz", "not an .npz"),
    case("load-object-array", _object_leaf, ValueError, "io.load", "object.npz", "leaf_0",
         "object"),
    case("load-npz-not-from-save", _plain_npz, ValueError, "io.load", "plain.npz",
         "__funcdl_treedef__"),
    case("load-single-npy", _npy, ValueError, "io.load", "single.npy", ".npy"),
    case("load-missing-file", lambda tmp: io.load(tmp / "nope.npz"), FileNotFoundError,
         "nope.npz"),
    case("load-like-structure",
         lambda tmp: io.load(_saved(tmp), like={"w": CKPT["w"], "b": CKPT["b"]}), ValueError,
         "io.load", "ckpt.npz", "the root", "['b', 'l', 'w']", "['b', 'w']"),
    case("load-like-list-vs-tuple",
         lambda tmp: io.load(_saved(tmp), like={**CKPT, "l": [np.int32(3), None, [1.5, True]]}),
         ValueError, "io.load", "['l'][2]", "tuple of length 2", "list of length 2"),
    case("load-like-shape",
         lambda tmp: io.load(_saved(tmp), like={**CKPT, "w": ones(2, 3)}), ValueError,
         "io.load", "['w']", "(3, 2)", "(2, 3)"),
    case("load-like-dtype",
         lambda tmp: io.load(_saved(tmp), like={**CKPT, "w": ones(3, 2, dtype=np.float64)}),
         ValueError, "io.load", "['w']", "float32", "float64"),
    case("save-object-array",
         lambda tmp: io.save(tmp / "x.npz", {"a": np.array([None], dtype=object)}), TypeError,
         "io.save", "['a']", "object"),
    case("save-string-leaf", lambda tmp: io.save(tmp / "x.npz", {"a": "hello"}), TypeError,
         "io.save", "['a']", "str"),
    case("save-tuple-dict-key", lambda tmp: io.save(tmp / "x.npz", {(1, 2): np.ones(2)}),
         TypeError, "io.save", "(1, 2)"),
]


@pytest.mark.parametrize(("call", "exc", "match"), IO_CASES)
def test_io(call, exc, match, tmp_path):
    with pytest.raises(exc, match=match):
        call(tmp_path)


def test_failed_save_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        io.save(tmp_path / "x.npz", {"a": "hello"})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- data

X10 = np.ones((10, 2))

DATA_CASES = [
    case("batches-first-dims-differ", lambda: data.batches(KEY, X10, np.ones((9, 1)), batch_size=4),
         ValueError, "data.batches", "(10, 2)", "(9, 1)"),
    case("batches-batch-size-0", lambda: data.batches(KEY, X10, batch_size=0), ValueError,
         "data.batches", "batch_size", "0"),
    case("batches-batch-size-negative", lambda: data.batches(KEY, X10, batch_size=-1),
         ValueError, "data.batches", "batch_size", "-1"),
    case("batches-batch-size-float", lambda: data.batches(KEY, X10, batch_size=2.0), TypeError,
         "data.batches", "batch_size", "float"),
    case("batches-shuffle-without-key", lambda: data.batches(None, X10, batch_size=4),
         ValueError, "data.batches", "shuffle=True", "key"),
    case("batches-key-not-a-key", lambda: data.batches(5, X10, batch_size=4), TypeError,
         "data.batches", "key"),
    case("batches-rank-0-array", lambda: data.batches(KEY, F32(1), batch_size=4), ValueError,
         "data.batches", "first dimension", "()"),
    case("batches-no-arrays", lambda: data.batches(KEY, batch_size=4), ValueError,
         "data.batches", "at least one array"),
    case("disk-negative-n", lambda: data.disk(KEY, -1), ValueError, "data.disk", "n", "-1"),
    case("disk-integer-dtype", lambda: data.disk(KEY, 5, dtype=np.int32), TypeError,
         "data.disk", "int32"),
]


@pytest.mark.parametrize(("call", "exc", "match"), DATA_CASES)
def test_data(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------- random

RANDOM_CASES = [
    case("normal-int-key", lambda: random.normal(0, (2,)), TypeError, "random.normal", "int"),
    case("normal-int64-array-key", lambda: random.normal(np.array([1, 2]), (2,)), TypeError,
         "random.normal", "(2,)", "int64"),
    case("normal-key-shape-3", lambda: random.normal(np.zeros(3, np.uint64), (2,)), TypeError,
         "random.normal", "(3,)", "uint64"),
    case("normal-integer-dtype", lambda: random.normal(KEY, (2,), np.int32), TypeError,
         "random.normal", "int32"),
    case("normal-float16-dtype", lambda: random.normal(KEY, (2,), np.float16), TypeError,
         "random.normal", "float16"),
    case("normal-negative-shape", lambda: random.normal(KEY, (-1,)), ValueError,
         "random.normal", "-1"),
    case("uniform-integer-dtype", lambda: random.uniform(KEY, (2,), dtype=np.int32), TypeError,
         "random.uniform", "int32"),
    case("uniform-low-above-high", lambda: random.uniform(KEY, (3,), 1.0, 0.0), ValueError,
         "random.uniform", "1.0", "0.0"),
    case("key-negative-seed", lambda: random.key(-1), ValueError, "random.key", "-1"),
    case("key-float-seed", lambda: random.key(1.5), TypeError, "random.key", "float"),
    case("split-not-a-key", lambda: random.split(3), TypeError, "random.split", "int"),
    case("split-negative-num", lambda: random.split(KEY, -1), ValueError, "random.split", "-1"),
    case("split-fractional-num", lambda: random.split(KEY, 2.5), TypeError,
         "random.split", "2.5"),
    case("fold-in-not-a-key", lambda: random.fold_in([1, 2], 3), TypeError,
         "random.fold_in", "list"),
    case("fold-in-string-data", lambda: random.fold_in(KEY, "a"), TypeError,
         "random.fold_in", "'a'"),
    case("bernoulli-p-above-1", lambda: random.bernoulli(KEY, 1.5), ValueError,
         "random.bernoulli", "1.5"),
    case("permutation-negative-n", lambda: random.permutation(KEY, -1), ValueError,
         "random.permutation", "-1"),
    case("permutation-fractional-n", lambda: random.permutation(KEY, 2.5), TypeError,
         "random.permutation", "2.5"),
]


@pytest.mark.parametrize(("call", "exc", "match"), RANDOM_CASES)
def test_random(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
