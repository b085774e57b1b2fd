"""The catalogue of bad inputs: every way of calling funcdl wrongly that we know of, each
with the exception type it must raise and what its message must name (the layer and its
place in a Sequential, the function, the expected and the actual shape or value).

Cases are tables of ``(call, exception, parts)``: ``parts`` must all appear in the message,
in any order (see ``has``). A case marked ``xfail(strict=True)`` is a known defect: the
test states the behaviour we want, and its reason says what happens now. Fixing the library
turns it into an XPASS, which fails the run until the mark is removed. Each layer on its own
here (shapes, dtypes, constructor arguments, flags, initializers and params); combinators
(FanIn*, Parallel, Residual, Shared, Sequential) in test_bad_inputs_combinators.py; losses
and value_and_grad in test_bad_inputs_losses.py; optimizers, pytrees, data and the rest in
test_bad_inputs_api.py; saving and loading in test_bad_inputs_io.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from _catalogue import F32, KEY, case, init, ones
from _layers_util import BN, P_BN, P_SEQ, S_BN, SEQ, pullback

import funcdl as fd
from funcdl import layers as L

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
LN = L.LayerNorm()
P_LN = init(LN, (None, 4))
EMB = L.Embedding(10, 3)
P_EMB = init(EMB, (None, 5))


# ---------------------------------------------------------------------------- layers

LAYER_CASES = [
    # params in the wrong place: a parameterless layer given arrays, direct or fused
    case("relu-given-params", lambda: L.ReLU().apply({"w": ones(2)}, ones(2, 2)), ValueError,
         "ReLU()", "no parameters", "dict"),
    case("pool-given-params", lambda: L.MaxPool2D(2).apply(ones(2), ones(1, 4, 4, 1)),
         ValueError, "MaxPool2D", "no parameters", "ndarray"),
    case("fused-activation-given-params",
         lambda: SEQ.vjp((P_SEQ[0], P_SEQ[2], P_SEQ[2], ()), ones(2, 3)), ValueError,
         "Sequential[1] ReLU()", "no parameters", "in the order of its layers"),
    case("dense-extra-param-key",
         lambda: DENSE.apply({**P_DENSE, "extra": ones(1)}, ones(2, 3)), ValueError,
         "Dense(25)", "unexpected keys ['extra']", "['w', 'b']"),
    case("dense-list-param", lambda: DENSE.apply({"w": ones(3, 25).tolist(), "b": P_DENSE["b"]},
                                                 ones(2, 3)),
         TypeError, "Dense(25)", "params['w'] must be a NumPy array", "list"),
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
    case("dense-ctor-out-0", lambda: L.Dense(0), ValueError, "Dense", "out must be >= 1", "0"),
    case("dense-ctor-out-float", lambda: L.Dense(2.5), TypeError, "Dense", "out must be an int",
         "2.5"),
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
    case("conv2d-ctor-groups-0", lambda: L.Conv2D(4, 3, groups=0), ValueError,
         "Conv2D(4, 3, groups=0)", "groups", ">= 1"),
    case("conv2d-ctor-groups-float", lambda: L.Conv2D(4, 3, groups=2.0), TypeError,
         "Conv2D(4, 3, groups=2.0)", "groups must be an int"),
    case("conv2d-ctor-out-not-divisible", lambda: L.Conv2D(6, 3, groups=4), ValueError,
         "Conv2D(6, 3, groups=4)", "out (6)", "groups (4)"),
    case("conv2d-init-channels-not-divisible",
         lambda: L.Conv2D(4, 3, groups=2).init(KEY, (None, 5, 5, 3)), ValueError,
         "Conv2D(4, 3, groups=2)", "3 channels", "groups=2", "(None, 5, 5, 3)"),
    case("conv2d-apply-channels-not-divisible",
         lambda: L.Conv2D(4, 3, groups=2).apply(init(L.Conv2D(4, 3, groups=2), (None, 5, 5, 4)),
                                                 ones(2, 5, 5, 3)), ValueError,
         "Conv2D(4, 3, groups=2)", "(N, H, W, 4)", "(2, 5, 5, 3)", "not divisible by groups=2"),
    case("conv2d-params-ungrouped-kernel",
         lambda: L.Conv2D(8, 3, groups=2).apply(init(L.Conv2D(8, 3), (None, 5, 5, 4)),
                                                 ones(2, 5, 5, 4)), ValueError,
         "Conv2D(8, 3, groups=2)", "(3, 3, 4, 8)", "C // groups", "(3, 3, 2, 8)"),
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
    case("conv1d-ctor-kernel-pair", lambda: L.Conv1D(4, (3, 3)), TypeError,
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

    case("batchnorm-eval-negative-running-var",  # sqrt(var + eps) was NaN, with a warning
         lambda: BN.apply(P_BN, ones(2, 4), state={**S_BN, "var": np.array([1, -2, 1, 1],
                                                                            np.float32)}),
         ValueError, "BatchNorm()", "negative or NaN", "-2"),
    case("batchnorm-eval-running-var-at-minus-eps",  # var + eps = 0: a divide by zero, inf
         lambda: BN.apply(P_BN, ones(2, 4), state={**S_BN, "var": np.array([1, -1e-5, 1, 1],
                                                                            np.float32)}),
         ValueError, "BatchNorm()", "negative or NaN"),
    case("batchnorm-eval-running-var-nan",
         lambda: BN.apply(P_BN, ones(2, 4), state={**S_BN, "var": np.array([1, np.nan, 1, 1],
                                                                            np.float32)}),
         ValueError, "BatchNorm()", "negative or NaN"),

    case("batchnorm-count-negative", lambda: L.BatchNorm(momentum=None).apply(
        init(BN, (None, 3))[0], ones(4, 3), train=True, state={
            "mean": ones(3), "var": ones(3), "count": np.int64(-1)}),
         ValueError, "BatchNorm(momentum=None)", "state['count']", "-1"),
    # GroupNorm
    case("groupnorm-init-c-not-divisible", lambda: L.GroupNorm(4).init(KEY, (None, 5, 6)),
         ValueError, "GroupNorm(4)", "C = 6", "num_groups = 4"),
    case("groupnorm-apply-c-not-divisible", lambda: L.GroupNorm(4, affine=False).apply(
        (), ones(2, 6)), ValueError, "GroupNorm(4, affine=False)", "C = 6", "num_groups = 4"),
    case("groupnorm-apply-channels", lambda: L.GroupNorm(2).apply(
        init(L.GroupNorm(2), (None, 4)), ones(2, 6)), ValueError, "GroupNorm(2)",
         "4 channels", "(2, 6)"),
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
    case("embedding-ragged-ids", lambda: EMB.vjp(P_EMB, [[0, 1], [2]]), ValueError,
         "Embedding(10, 3)", "the input is not a rectangular array"),
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

    # flags: a truthy string ('no') must not count as True
    case("dense-use-bias-string", lambda: L.Dense(2, use_bias="no"), TypeError,
         "Dense(2)", "use_bias must be True or False", "'no'"),
    case("conv-use-bias-string", lambda: L.Conv2D(2, 3, use_bias="False"), TypeError,
         "Conv2D", "use_bias must be True or False"),
    case("avgpool-count-include-pad-string", lambda: L.AvgPool2D(2, count_include_pad="no"),
         TypeError, "AvgPool2D", "count_include_pad must be True or False"),
    case("dropout-train-string",
         lambda: L.Dropout(0.5).apply((), ones(2, 3), key=KEY, train="no"), TypeError,
         "Dropout(0.5)", "train must be True or False", "'no'"),
    case("batchnorm-train-string",
         lambda: L.BatchNorm().apply(*init(L.BatchNorm(), (None, 3))[:1], ones(2, 3),
                                     state=init(L.BatchNorm(), (None, 3))[1], train="yes"),
         TypeError, "BatchNorm()", "train must be True or False"),
    # initializers: a number, a string, an uncalled factory, a wrong shape or dtype
    case("dense-b-init-number", lambda: L.Dense(2, b_init=0.0), TypeError,
         "Dense(2)", "b_init must be an init function", "initializers.zeros()", "0.0"),
    case("dense-w-init-uncalled-factory",
         lambda: L.Dense(2, w_init=fd.initializers.glorot_uniform), TypeError,
         "Dense(2)", "is the factory; call it: w_init=initializers.glorot_uniform()"),
    case("conv-w-init-string", lambda: L.Conv2D(2, 3, w_init="glorot"), TypeError,
         "Conv2D(2, 3)", "w_init must be an init function"),
    case("embedding-w-init-uncalled-factory",
         lambda: L.Embedding(3, 2, w_init=fd.initializers.normal), TypeError,
         "Embedding(3, 2)", "w_init=initializers.normal()"),
    case("dense-w-init-wrong-shape",
         lambda: L.Dense(2, w_init=lambda k, s, d: np.zeros((3, 3), d)).init(KEY, (None, 4)),
         ValueError, "Dense(2)", "w_init gave an array of shape (3, 3)", "(4, 2) float32"),
    case("dense-w-init-float64",
         lambda: L.Dense(2, w_init=lambda k, s, d: np.zeros(s)).init(KEY, (None, 4)),
         ValueError, "Dense(2)", "dtype float64", "(4, 2) float32"),
    # argument types that int() would quietly truncate or misread
    case("reshape-float-size", lambda: L.Reshape((3.7, 4)), TypeError,
         "Reshape", "must be an int", "3.7"),
    case("reshape-string", lambda: L.Reshape("34"), TypeError,
         "Reshape: shape must be a tuple of ints", "'34'"),
    case("softmax-float-axis", lambda: L.Softmax(1.5), TypeError,
         "Softmax: axis must be an int", "1.5"),
    case("log-softmax-bool-axis", lambda: L.LogSoftmax(True), TypeError,
         "LogSoftmax: axis must be an int", "True"),
    # integer params would take integer gradients: 0.4 truncated to 0
    case("dense-int-w", lambda: DENSE.vjp({"w": P_DENSE["w"].astype(int), "b": P_DENSE["b"]},
                                          ones(2, 3)),
         TypeError, "Dense(25)", "params['w'] has dtype int64", "astype(np.float32)"),
    case("dense-int-b", lambda: DENSE.apply({"w": P_DENSE["w"], "b": np.ones(25, int)},
                                            ones(2, 3)),
         TypeError, "Dense(25)", "params['b'] has dtype int64"),
    case("dense-float16-w", lambda: DENSE.apply({"w": P_DENSE["w"].astype(np.float16),
                                                 "b": P_DENSE["b"]}, ones(2, 3)),
         TypeError, "Dense(25)", "params['w'] has dtype float16"),
    case("conv-int-w", lambda: CONV.apply({**P_CONV, "w": P_CONV["w"].astype(np.int32)},
                                          ones(1, 8, 8, 3)),
         TypeError, CONV_NAME, "params['w'] has dtype int32"),
    case("layernorm-int-scale", lambda: LN.apply({**P_LN, "scale": np.ones(4, int)}, ones(2, 4)),
         TypeError, "LayerNorm()", "params['scale'] has dtype int64"),
    case("batchnorm-bool-bias", lambda: BN.apply({**P_BN, "bias": np.ones(4, bool)}, ones(2, 4),
                                                 state=S_BN),
         TypeError, "BatchNorm()", "params['bias'] has dtype bool"),
    case("embedding-int-table", lambda: EMB.apply({"table": np.ones((10, 3), int)},
                                                  np.array([[1, 2]])),
         TypeError, "Embedding(10, 3)", "params['table'] has dtype int64"),
    # scale and bias disagree: the one the input disagrees with is named
    case("layernorm-odd-scale", lambda: LN.apply({"scale": np.ones(5, F32), "bias": P_LN["bias"]},
                                                 ones(2, 4)),
         ValueError, "LayerNorm()", "params['scale'] has shape (5,), expected (4,)"),
    case("layernorm-odd-bias", lambda: LN.apply({"scale": P_LN["scale"], "bias": np.ones(5, F32)},
                                                ones(2, 4)),
         ValueError, "LayerNorm()", "params['bias'] has shape (5,), expected (4,)"),
    case("batchnorm-odd-scale", lambda: BN.apply({"scale": np.ones(3, F32), "bias": P_BN["bias"]},
                                                 ones(2, 4), state=S_BN, train=True),
         ValueError, "BatchNorm()", "params['scale'] has shape (3,), expected (4,)"),
    # found by a fuzzer (2026-12-07): an array as an in_shape entry reached a bare "truth
    # value of an array is ambiguous"; a size past NumPy's largest axis a bare "Maximum
    # allowed dimension exceeded" (the norms), OverflowError (Slice)
    case("in-shape-entry-array", lambda: L.Dense(3).init(KEY, (None, np.array([4, 5]))),
         ValueError, "Dense(3)", "in_shape entries must be ints >= 0 or None"),
    case("in-shape-past-intp", lambda: L.LayerNorm().init(KEY, (None, 2**63)),
         ValueError, "LayerNorm()", "(None, 9223372036854775808)",
         "NumPy's largest axis is 9223372036854775807"),
    case("in-shape-past-intp-slice", lambda: L.Slice(np.s_[:, 0]).init(KEY, (None, 2**63, 3)),
         ValueError, "Slice(", "NumPy's largest axis"),
    # a dilated pool checked every one of its windows at init, an arange as long as the
    # output axis: 2**40 of them a bare MemoryError (only those at the ends can miss)
    case("dilated-pool-huge-axis-refused-by-name",
         lambda: L.MaxPool2D(2, 1, 1, dilation=2).init(KEY, (None, 2**40, 1, 2)),
         ValueError, "MaxPool2D(", "reads padding only"),
    # the hint of a count that must divide the channels counted up to the channels: 2**40
    # of them hung for minutes
    case("groupnorm-huge-channels-hint", lambda: L.GroupNorm(3).init(KEY, (None, 2, 2**40)),
         ValueError, "GroupNorm(3)", "num_groups = 3"),
    case("mha-huge-embedding-hint",
         lambda: L.MultiHeadAttention(3).init(KEY, (None, 5, 2**40 + 1)),
         ValueError, "MultiHeadAttention(3)", "num_heads=1 or 257 would"),
    case("encoder-huge-d-model-hint", lambda: L.TransformerEncoderLayer(2**40 + 1, 3),
         ValueError, "TransformerEncoderLayer(1099511627777, 3)", "use nhead 1 or 257"),
    # a ragged list for the second cotangent of a two-output layer: NumPy's "setting an
    # array element with a sequence", naming nothing
    case("mha-ragged-dp", lambda: _second_cotangent(
        L.MultiHeadAttention(2, return_weights="mean"), (None, 3, 4), ones(2, 3, 4)),
         ValueError, "MultiHeadAttention(2, return_weights='mean')",
         "dP is not a rectangular array"),
    case("gru-ragged-dh", lambda: _second_cotangent(
        L.GRU(3, return_state=True), (None, 4, 2), ones(2, 4, 2)),
         ValueError, "GRU(3, return_state=True)", "dh_n is not a rectangular array"),
]


def _second_cotangent(layer: L.Layer, in_shape: tuple[int | None, ...], x: np.ndarray) -> None:
    """The pullback of a layer with two outputs, given a ragged list as the second's
    cotangent."""
    (y, _), pb = layer.vjp(init(layer, in_shape), x)
    pb((np.ones_like(y), [[1.0, 2.0, 3.0], [1.0, 2.0]]))


def test_reshape_takes_an_int_for_a_one_axis_shape():
    assert L.Reshape(12).init(KEY, (None, 3, 4))[0] == (None, 12)
    assert L.Softmax(np.int64(0)).name == "Softmax(axis=0)"


@pytest.mark.parametrize(("call", "exc", "match"), LAYER_CASES)
def test_layers(call, exc, match):
    with pytest.raises(exc, match=match):
        call()

