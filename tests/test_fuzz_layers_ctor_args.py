"""The constructors' arguments, for every layer constructor: each bad value is refused, at
construction or at the first init or apply that needs it, in an error naming the layer
(the verdicts are test_fuzz_layers.py's). Split from test_fuzz_layers_args.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _layer_cases import KEY, Case, f, ids
from test_fuzz_layers import CONVERT, attempt, error_fault, shape_of, verdict

from funcdl import initializers
from funcdl import layers as L

# (tag, constructor, valid arguments, an input, {argument: values to refuse}); an int
# argument given as np.int64 or a 0-d array must build the same layer.

NUM = (None, "1", [1], np.nan, np.inf, True)                   # not a real number
INT = (None, "3", 2.5, [3], True, np.float64(3.0))             # not an int
POS = (*INT, 0, -1)                                            # not a positive int
POS1 = tuple(v for v in POS if v != [3])                       # ([3] is a 1-D window)
FLAG = ("no", 1, None, np.array([True]))                       # not a bool
INIT = (3, "glorot", initializers.glorot_uniform)              # not an init function
WIN = (*POS, (2,), (2, 2, 2), (2, 0), (2, 2.5))                # not a 2-D window
PAD = ("FULL", -1, 1.5, None, (1, 2, 3), ((1,), (1,)), ((1, 1), (1, -1)))
CTORS = [
    ("Dense", L.Dense, {"out": 3}, f(2, 4),
     {"out": POS, "use_bias": FLAG, "w_init": INIT, "b_init": INIT}),
    ("LeakyReLU", L.LeakyReLU, {"alpha": 0.2}, f(2, 3), {"alpha": NUM}),
    ("Softplus", L.Softplus, {"beta": 2}, f(2, 3),
     {"beta": (*NUM, 0, -1),  # threshold=inf is JAX's softplus (no linear part)
      "threshold": tuple(v for v in NUM if not (isinstance(v, float) and v == np.inf))}),
    ("ELU", L.ELU, {"alpha": 1.0}, f(2, 3), {"alpha": NUM}),
    ("Hardtanh", L.Hardtanh, {"min_val": -1.0, "max_val": 1.0}, f(2, 3),
     {"min_val": (*(v for v in NUM if v is not np.inf), 2.0),  # ±inf: no bound, as torch
      "max_val": (*(v for v in NUM if v is not np.inf), -2.0)}),
    ("CELU", L.CELU, {"alpha": 1.0}, f(2, 3), {"alpha": (*NUM, 0)}),
    ("PReLU", L.PReLU, {"num_parameters": 3, "init": 0.25}, f(2, 3),
     {"num_parameters": (*POS, 2, 4), "init": NUM}),
    ("RMSNorm", L.RMSNorm, {"eps": 1e-5}, f(2, 3),
     {"eps": (*NUM[1:], 0, -1), "elementwise_affine": FLAG}),
    ("GELU", L.GELU, {"approximate": False}, f(2, 3), {"approximate": FLAG}),
    ("Softmax", L.Softmax, {"axis": 1}, f(2, 3), {"axis": (*INT, 2, -3)}),
    ("LogSoftmax", L.LogSoftmax, {"axis": -1}, f(2, 3), {"axis": INT}),
    ("Reshape", L.Reshape, {"shape": (3, 2)}, f(2, 6),
     {"shape": (*INT, 0, -2, (0, 6), (-1, -1), (2.5,), (4, 2))}),
    ("Dropout", L.Dropout, {"rate": 0.5}, f(2, 3), {"rate": (*NUM, -0.1, 1.5)}),
    ("Conv2D", L.Conv2D, {"out": 2, "kernel": 3, "padding": "VALID"}, f(2, 5, 5, 3),
     {"out": POS, "kernel": (*WIN, 6), "stride": WIN, "dilation": (*WIN, 3), "padding": PAD,
      "use_bias": FLAG, "w_init": INIT, "b_init": INIT, "groups": (*POS, 2, 3)}),
    ("Conv1D", L.Conv1D, {"out": 2, "kernel": 3, "padding": "VALID"}, f(2, 6, 3),
     {"out": POS, "kernel": (*POS1, (3, 3), 7), "stride": (*POS1, (1, 1)),
      "padding": (*PAD[:5], ((1, 1), (1, 1))), "dilation": (*POS1, 4), "groups": (*POS, 2, 3)}),
    ("ConvTranspose2D", L.ConvTranspose2D, {"out": 2, "kernel": 3, "stride": 2}, f(2, 3, 3, 3),
     {"out": POS, "kernel": WIN, "stride": WIN, "dilation": WIN,
      "padding": ("FULL", -1, 1.5, None, (1, 2, 3), ((1,), (1,)), ((1, 1), (1, 1)), 5),
      "output_padding": (*INT, -1, (1, -1), 2, (0, 2)), "use_bias": FLAG, "w_init": INIT,
      "b_init": INIT, "groups": (*POS, 2, 3)}),
    ("Upsample", L.Upsample, {"scale_factor": 2}, f(2, 2, 3, 2),
     {"scale_factor": (*POS, 2.0, 1.5, (2,), (2, 2, 2), (2, 0)),
      "mode": (None, 3, "bicubic", "Nearest", "area"), "align_corners": (*FLAG, True)}),
    ("MaxPool2D", L.MaxPool2D, {"window": 2}, f(2, 4, 4, 2),
     {"window": (*WIN, 5), "stride": WIN[1:], "padding": (*PAD, 2), "dilation": (*WIN, 5),
      "ceil_mode": FLAG}),
    ("AvgPool2D", L.AvgPool2D, {"window": 2}, f(2, 4, 4, 2),
     {"window": WIN, "stride": WIN[1:], "padding": (*PAD, 2), "ceil_mode": FLAG,
      "count_include_pad": tuple(v for v in FLAG if v is not None)}),  # None: by padding
    ("MaxPool1D", L.MaxPool1D, {"window": 2}, f(2, 6, 2),
     {"window": (*POS1, (2, 2), 7), "stride": (*POS1[1:], (1, 1)),
      "padding": (*PAD[:5], ((1, 1), (1, 1)), 2), "dilation": (*POS1, 6), "ceil_mode": FLAG}),
    ("AvgPool1D", L.AvgPool1D, {"window": 2}, f(2, 6, 2),
     {"window": (*POS1, (2, 2), 7), "stride": (*POS1[1:], (1, 1)),
      "padding": (*PAD[:5], ((1, 1), (1, 1)), 2), "ceil_mode": FLAG,
      "count_include_pad": tuple(v for v in FLAG if v is not None)}),
    ("BatchNorm", L.BatchNorm, {"axis": -1}, f(4, 3),
     {"momentum": (*NUM[1:], -0.1, 1.5), "eps": (*NUM, 0, -1), "axis": (*INT, 0, 2, -3),
      "affine": FLAG, "track_running_stats": FLAG}),
    ("GroupNorm", L.GroupNorm, {"num_groups": 2}, f(2, 3, 4),
     {"num_groups": (*POS, 3, 8), "eps": (*NUM, 0, -1), "affine": FLAG}),
    ("LayerNorm", L.LayerNorm, {"axis": -1}, f(2, 3),
     {"eps": (*NUM, 0), "axis": (*INT, (), (1, 1.5), 0, 2, (1, 1)), "bias": FLAG}),
    ("SimpleRNN", L.SimpleRNN, {"hidden": 3}, f(2, 4, 3),
     {"hidden": POS, "nonlinearity": (None, 1, "sigmoid", "TANH", True),
      "return_sequences": FLAG, "use_bias": FLAG, "reverse": FLAG, "lengths": FLAG, "w_init": INIT,
      "b_init": INIT}),
    ("LSTM", L.LSTM, {"hidden": 3}, f(2, 4, 3),
     {"hidden": POS, "return_sequences": FLAG, "use_bias": FLAG, "reverse": FLAG, "lengths": FLAG,
      "w_init": INIT, "b_init": INIT}),
    ("GRU", L.GRU, {"hidden": 3}, f(2, 4, 3),
     {"hidden": POS, "return_sequences": FLAG, "use_bias": FLAG, "reverse": FLAG, "lengths": FLAG,
      "w_init": INIT, "b_init": INIT}),
    ("Embedding", L.Embedding, {"vocab": 5, "dim": 3}, ids(2, 4),
     {"vocab": POS, "dim": POS, "w_init": INIT}),
    ("Unembed", L.Unembed, {"vocab": 5}, f(2, 3),
     {"vocab": POS, "use_bias": FLAG, "w_init": INIT, "b_init": INIT}),
    ("MultiHeadAttention", L.MultiHeadAttention, {"num_heads": 2}, f(2, 3, 4),
     {"num_heads": (*POS, 3), "causal": FLAG, "dropout": (*NUM, -0.1, 1.5), "use_bias": FLAG,
      "w_init": INIT, "b_init": INIT, "normalizer": (None, 3, "Softmax", "entmax")}),
    ("FanOut", L.FanOut, {"n": 2}, f(2, 3), {"n": POS}),
    ("Select", L.Select, {"index": 0}, (f(2, 3), f(2, 2)), {"index": (*INT, 2, -3)}),
    ("Select", lambda index: L.Select(index, 0), {"index": 1}, (f(2, 3), f(2, 2)),
     {"index": (*INT, 2, -3)}),
    ("Carry", lambda layer: L.Carry(layer), {"layer": L.MultiHeadAttention(2, masked=True)},
     (f(2, 3, 4), np.array([[False, False, True], [False, False, False]])),
     {"layer": (L.ReLU, None, 3, "relu")}),
    ("Carry", lambda keep: L.Carry(L.Select(0), keep), {"keep": -1},
     (f(2, 3), f(2, 2)), {"keep": (*INT, 2, -3, (), (0, 2))}),
    ("MaskedMean", L.MaskedMean, {"mask": "padding"},
     (f(2, 3, 4), np.array([[False, False, True], [True, True, True]])),
     {"mask": (None, 3, "pad", "Lengths", True)}),
    ("FanInConcat", L.FanInConcat, {"axis": -1}, (f(2, 3), f(2, 2)), {"axis": (*INT, 0, 2)}),
    ("Slice", L.Slice, {"index": np.s_[0:2]}, f(2, 4),
     {"index": (None, "a", 1.5, True, [0, 1], np.array([0, 1]), np.s_[0:1.5], np.s_[::0],
                np.s_[0, 0], 4, np.s_[0:2, 0])}),
    ("Shared", lambda n: L.Shared(L.Dense(2), n), {"n": 2}, (f(2, 3), f(2, 3)), {"n": POS}),
    ("Repeat", lambda n: L.Repeat(L.Dense(3), n), {"n": 2}, f(2, 3), {"n": POS}),
    ("Sequential", lambda a: L.Sequential(L.Dense(3), a), {"a": L.ReLU()}, f(2, 4),
     {"a": (L.ReLU, L.Dense, None, 3, "relu", (L.ReLU(),), print)}),
    ("Parallel", lambda a: L.Parallel(L.Dense(3), a), {"a": L.ReLU()}, (f(2, 4), f(2, 3)),
     {"a": (L.ReLU, None, 3, [L.ReLU()])}),
    ("Residual", L.Residual, {"layer": L.Dense(3)}, f(2, 3),
     {"layer": (L.ReLU, None, L.Dense(4), L.Sequential(L.Dense(3), L.FanOut(2)))}),
    ("AdaptiveAvgPool2D", L.AdaptiveAvgPool2D, {"output_size": 2}, f(2, 5, 4, 2),
     {"output_size": (*WIN, (None,), (None, 0), (None, 2.5))}),
    ("AdaptiveMaxPool2D", L.AdaptiveMaxPool2D, {"output_size": 3}, f(2, 5, 4, 2),
     {"output_size": (*WIN, (None,), (None, 0), (None, 2.5))}),
    ("AdaptiveAvgPool1D", L.AdaptiveAvgPool1D, {"output_size": 3}, f(2, 7, 2),
     {"output_size": (*POS1, (3, 3))}),
    ("AdaptiveMaxPool1D", L.AdaptiveMaxPool1D, {"output_size": 2}, f(2, 5, 3),
     {"output_size": (*POS1, (2, 2))}),
    ("InstanceNorm", L.InstanceNorm, {"eps": 1e-5}, f(2, 3, 4),
     {"eps": (*NUM, 0, -1), "affine": FLAG}),
    ("Pad2D", L.Pad2D, {"padding": 1}, f(2, 3, 3, 2),
     {"padding": (None, 1.5, "1", True, (1, 2, 3), ((1,), (1, 1)), (1, 2, 3, 4), -2),
      "mode": (None, 3, "edge", "Reflect", "symmetric"), "value": (None, "0", [1.0], True)}),
    ("Pad1D", L.Pad1D, {"padding": 1}, f(2, 3, 2),
     {"padding": (None, 1.5, "1", True, (1, 2, 3), ((1, 1),), -2),
      "mode": (None, 3, "edge"), "value": (None, "0", [1.0], True)}),
    ("PixelShuffle", L.PixelShuffle, {"upscale_factor": 2}, f(2, 2, 3, 8),
     {"upscale_factor": (*POS, 3)}),
    ("PixelUnshuffle", L.PixelUnshuffle, {"downscale_factor": 2}, f(2, 4, 2, 3),
     {"downscale_factor": (*POS, 3)}),
    ("Remat", L.Remat, {"layer": L.Dense(3)}, f(2, 3),
     {"layer": (L.ReLU, None, 3, "relu", (L.ReLU(),))}),
    ("BatchThreads", L.BatchThreads, {"layer": L.Dense(3), "threads": 2}, f(4, 3),
     {"layer": (L.ReLU, None, 3, "relu", (L.ReLU(),)), "threads": POS}),
    ("TransformerEncoderLayer", L.TransformerEncoderLayer,
     {"d_model": 4, "nhead": 2, "dim_feedforward": 6}, f(2, 3, 4),
     {"d_model": (*POS, 3, 8), "nhead": (*POS, 3), "dim_feedforward": POS,
      "dropout": (*NUM, -0.1, 1.5), "activation": (None, 3, "tanh", "RELU", L.ReLU),
      "layer_norm_eps": (*NUM, 0, -1), "norm_first": FLAG, "causal": FLAG,
      "bias": FLAG, "batch_first": (*FLAG, False),
      "normalizer": (None, 3, "Softmax", "entmax")}),
    ("TransformerDecoderLayer", L.TransformerDecoderLayer,
     {"d_model": 4, "nhead": 2, "dim_feedforward": 6}, (f(2, 3, 4), f(2, 5, 4)),
     {"d_model": (*POS, 3, 8), "nhead": (*POS, 3), "dim_feedforward": POS,
      "dropout": (*NUM, -0.1, 1.5), "activation": (None, 3, "tanh", L.ReLU),
      "layer_norm_eps": (*NUM, 0, -1), "norm_first": FLAG, "causal": FLAG,
      "bias": FLAG, "batch_first": (*FLAG, False),
      "normalizer": (None, 3, "Softmax", "entmax")}),
    ("Bidirectional", L.Bidirectional, {"layer": L.LSTM(3)}, f(2, 4, 3),
     {"layer": (L.LSTM, None, 3, "lstm", L.LSTM(3, reverse=True), L.BatchNorm()),
      "merge": (3, "mul", "Concat", True), "backward_layer": (L.LSTM, 3, "lstm")}),
    ("StackedRNN", lambda layer, dropout: L.StackedRNN(layer, L.GRU(2), dropout=dropout),
     {"layer": L.LSTM(3), "dropout": 0.0}, f(2, 4, 3),
     {"layer": (L.LSTM, None, 3, "lstm", L.Dense(3), L.BatchNorm(),
                L.LSTM(3, return_sequences=False), L.LSTM(3, lengths=True)),
      "dropout": (*NUM, -0.1, 1.5)}),
    ("WeightNorm", L.WeightNorm, {"layer": L.Dense(3)}, f(2, 3),
     {"layer": (L.ReLU, None, 3, "dense", L.ReLU()), "name": (None, 3, "b2", "kernel"),
      "dim": (*INT[1:], 2, -3)}),
    ("SpectralNorm", L.SpectralNorm, {"layer": L.Dense(3)}, f(2, 3),
     {"layer": (L.ReLU, None, 3, L.ReLU(), L.BatchNorm()), "name": (None, 3, "kernel"),
      "n_power_iterations": POS, "eps": (*NUM, 0, -1), "dim": (*INT[1:], 2, -3)}),
    ("ConvTranspose1D", L.ConvTranspose1D, {"out": 2, "kernel": 3, "stride": 2}, f(2, 3, 3),
     {"out": POS, "kernel": POS1, "stride": POS1, "dilation": POS1,
      "padding": ("FULL", -1, 1.5, None, (1, 2)), "output_padding": (*INT, -1, 2),
      "use_bias": FLAG, "w_init": INIT, "b_init": INIT, "groups": (*POS, 2, 3)}),
    ("Bilinear", L.Bilinear, {"out": 3}, (f(2, 4), f(2, 5)),
     {"out": POS, "use_bias": FLAG, "w_init": INIT, "b_init": INIT}),
    ("AlphaDropout", L.AlphaDropout, {"rate": 0.5}, f(2, 3), {"rate": (*NUM, -0.1, 1.5)}),
    ("FeatureAlphaDropout", L.FeatureAlphaDropout, {"rate": 0.5}, f(2, 3, 4),
     {"rate": (*NUM, -0.1, 1.5)}),
    ("Softmin", L.Softmin, {"axis": 1}, f(2, 3), {"axis": (*INT, 2, -3)}),
    ("Softshrink", L.Softshrink, {"lambd": 0.5}, f(2, 3), {"lambd": (*NUM, -0.5)}),
    ("Hardshrink", L.Hardshrink, {"lambd": 0.5}, f(2, 3), {"lambd": (*NUM, -0.5)}),
    ("Threshold", L.Threshold, {"threshold": 0.5, "value": -1.0}, f(2, 3),
     {"threshold": (None, "1", [1], np.nan, True), "value": (None, "1", [1], True)}),
    ("GLU", L.GLU, {"axis": -1}, f(2, 4), {"axis": (*INT, 2, -3)}),
    ("Sparsemax", L.Sparsemax, {"axis": 1}, f(2, 3), {"axis": (*INT, 2, -3)}),
    ("LocalResponseNorm", L.LocalResponseNorm, {"size": 3}, f(2, 3, 4),
     {"size": POS, "alpha": NUM, "beta": NUM, "k": NUM}),
    ("PositionalEmbedding", L.PositionalEmbedding, {"max_len": 4}, f(2, 3, 4),
     {"max_len": (*POS, 2), "w_init": INIT}),
    ("SinusoidalPositionalEncoding", L.SinusoidalPositionalEncoding, {"max_len": 4},
     f(2, 3, 4), {"max_len": (*POS[1:], 2), "base": (*NUM, 1.0, 0.5, 0, -1)}),
    ("SinusoidalTimeEmbedding", L.SinusoidalTimeEmbedding, {"dim": 4}, f(3),
     {"dim": (*INT, 0, 1), "flip_sin_to_cos": FLAG, "downscale_freq_shift": (*NUM, 2),
      "scale": NUM, "max_period": (*NUM, 0, -1.0)}),
    ("FanInSum", L.FanInSum, {"broadcast": True}, (f(2, 3, 4), f(2, 1, 4)),
     {"broadcast": FLAG}),
    ("Layer", lambda fn: L.Layer(fn, fn, fn), {"fn": lambda *a, **k: None}, f(2, 3),
     {"fn": (None, 3, "init")}),
]


def built(ctor: Callable[..., Any], kw: dict[str, Any], x: Any) -> Any:
    """``ctor(**kw)`` initialised and applied to ``x``: ``(out_shape, params, state?, y)``."""
    layer = ctor(**kw)
    made = layer.init(KEY, shape_of(x))
    state = {"state": made[2]} if layer.stateful else {}
    return (*made, layer.apply(made[1], x, **state))


@pytest.mark.parametrize(("tag", "ctor", "kw", "x", "bad"), CTORS, ids=[c[0] for c in CTORS])
def test_constructor_arguments(tag: str, ctor: Any, kw: dict[str, Any], x: Any,
                               bad: dict[str, Any]) -> None:
    """Each bad argument is refused (at construction, or at the first init or apply that
    needs it) in an error naming the layer; never built into a layer that runs."""
    if tag == "Layer":  # a user's functions: what they return is theirs
        want, canon = None, None
    else:
        want, canon = built(ctor, kw, x), (lambda: built(ctor, kw, x))
    faults = []
    probe = Case(tag, None, x, {}, tag)
    for arg, values in bad.items():
        for v in values:
            out, err = attempt(lambda v=v, arg=arg: (ctor(**{**kw, arg: v}) if want is None
                                            else built(ctor, {**kw, arg: v}, x)))
            why = (error_fault(err, tag) if err is not None
                   else f"accepted, gave {str(out)[:200]}")
            if why:
                faults.append(f"  {arg}={v!r}: {why}")
        good = kw.get(arg)
        if want is not None and type(good) is int:  # NumPy's forms of the int
            for v in (np.int64(good), np.array(good)):
                why = verdict(probe, lambda v=v, arg=arg: built(ctor, {**kw, arg: v}, x), CONVERT,
                              canon)
                if why:
                    faults.append(f"  {arg}={v!r}: {why}")
    assert not faults, f"{tag}, {len(faults)} faults:\n" + "\n".join(faults)
