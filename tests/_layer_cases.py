"""The catalogue of test_fuzz_layers.py and test_fuzz_layers_args.py: one valid call of every
layer and combinator of funcdl.layers' ``__all__`` (CASES, checked complete on import), and
the small inputs they are built from."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from funcdl import initializers, random
from funcdl import layers as L

KEY = random.key(0)
F32 = np.float32


def f(*shape: int) -> np.ndarray:
    """Small integers as float32 (-2..2): every cast below (int, float16, float64) is exact."""
    return (np.arange(int(np.prod(shape))) * 7 % 5 - 2).reshape(shape).astype(F32)


def ids(*shape: int) -> np.ndarray:
    return (np.arange(int(np.prod(shape))) * 3 % 5).reshape(shape)


class Case(NamedTuple):
    id: str
    layer: Any
    x: Any                     # the valid input: an array, or a tuple of them
    kw: dict[str, Any]         # the valid call's keywords
    tag: str                   # what every error message must contain
    own: bool = False          # a user's layer: its own NumPy errors are its business

    @property
    def takes_ids(self) -> bool:
        return isinstance(self.x, np.ndarray) and self.x.dtype.kind == "i"


def case(layer: Any, x: Any, tag: str | None = None, **kw: Any) -> Case:
    return Case(f"{layer.name}{'-train' if kw.get('train') else ''}", layer, x, kw,
                tag or layer.name)


def _scale_layer() -> L.Layer:
    """A user's own layer, written as a user would, with no checks of its own."""
    def init(key: Any, in_shape: Any) -> Any:
        return in_shape, {"a": random.normal(key, in_shape[-1:], np.float32)}

    def vjp(params: Any, x: Any) -> Any:
        return x * params["a"], lambda dy: ({"a": (dy * x).sum(0)}, dy * params["a"])

    return L.Layer(init, lambda p, x: vjp(p, x)[0], vjp, name="Scale")


TRAIN = {"train": True, "key": KEY}
SEQ = "Sequential"
CASES = [
    case(L.Dense(3), f(2, 4)), case(L.Dense(1, use_bias=False), f(2, 4)),
    *(case(a, f(2, 3)) for a in (L.ReLU(), L.LeakyReLU(0.2), L.Tanh(), L.Sigmoid(),
                                 L.Softplus(), L.Softplus(beta=2), L.GELU(),
                                 L.GELU(approximate=True), L.SiLU(), L.ELU(), L.ELU(2.0),
                                 L.Softmax(), L.Identity())),
    case(L.StopGradient(), f(2, 3)),
    case(L.Sequential(L.FanOut(2), L.Parallel(L.Dense(3), L.StopGradient()), L.FanInSum()),
         f(2, 3), SEQ),
    *(case(a, f(2, 3)) for a in (L.ReLU6(), L.Hardtanh(), L.Hardtanh(-2.0, 0.5),
                                 L.Hardsigmoid(), L.Hardswish(), L.Mish(), L.SELU(), L.CELU(),
                                 L.CELU(0.5), L.Softsign(), L.LogSigmoid())),
    case(L.PReLU(), f(2, 3)), case(L.PReLU(3, init=0.1), f(2, 4, 3)),
    case(L.RMSNorm(), f(2, 3)), case(L.RMSNorm(eps=1e-3, elementwise_affine=False), f(2, 3, 2)),
    case(L.LogSoftmax(axis=1), f(2, 3, 2)), case(L.Flatten(), f(2, 3, 2)),
    case(L.Sparsemax(), f(2, 3)), case(L.Sparsemax(axis=1), f(2, 3, 2)),
    case(L.Reshape((3, 2)), f(2, 6)), case(L.Reshape(-1), f(2, 3, 2)),
    case(L.Dropout(0.5), f(2, 3), **TRAIN), case(L.Dropout(0.5), f(2, 3)),
    case(L.DropPath(0.5), f(4, 3, 2), **TRAIN), case(L.DropPath(0.5, mode="batch"), f(2, 3)),
    case(L.Conv2D(2, 3), f(2, 5, 5, 3)), case(L.Conv2D(2, 2, dilation=2), f(2, 5, 5, 2)),
    case(L.Conv2D(2, (2, 3), stride=2, padding="VALID"), f(2, 5, 6, 2)),
    case(L.Conv2D(3, 2, padding=((1, 0), (0, 1)), use_bias=False), f(1, 3, 3, 5)),
    case(L.Conv1D(2, 3), f(2, 6, 3)), case(L.Conv1D(2, 2, stride=2, padding="VALID"), f(2, 5, 1)),
    case(L.ConvTranspose2D(2, 3), f(2, 3, 3, 3)),
    case(L.ConvTranspose2D(3, 4, stride=2, padding=1), f(2, 3, 2, 2)),
    case(L.ConvTranspose2D(2, (2, 3), stride=(2, 1), padding=(0, 1), output_padding=(1, 0),
                           dilation=(1, 2), use_bias=False), f(1, 2, 3, 1)),
    case(L.ConvTranspose2D(2, 3, stride=2, padding="SAME"), f(2, 3, 3, 2)),
    case(L.ConvTranspose2D(4, 3, stride=2, padding=1, output_padding=1, groups=2),
         f(2, 3, 3, 4)),
    case(L.ConvTranspose2D(3, 3, stride=2, groups=3), f(2, 2, 3, 3)),
    case(L.Upsample(2), f(2, 2, 3, 2)), case(L.Upsample((1, 3), "bilinear"), f(2, 3, 2, 2)),
    case(L.Upsample(2, "bilinear", align_corners=True), f(2, 2, 2, 3)),
    case(L.MaxPool2D(), f(2, 4, 4, 2)), case(L.MaxPool2D(3, 2, "SAME"), f(2, 5, 5, 1)),
    case(L.AvgPool2D(), f(2, 4, 4, 2)), case(L.GlobalAvgPool(), f(2, 3, 3, 2)),
    case(L.AvgPool2D(2, padding=1, count_include_pad=False), f(2, 4, 4, 2)),
    case(L.MaxPool2D(3, 2, 1, dilation=2, ceil_mode=True), f(2, 6, 6, 2)),
    case(L.AvgPool2D(3, 2, 1, ceil_mode=True), f(2, 6, 6, 2)),
    case(L.MaxPool1D(), f(2, 6, 3)),
    case(L.MaxPool1D(3, 2, 1, dilation=2, ceil_mode=True), f(2, 7, 2)),
    case(L.AvgPool1D(), f(2, 6, 3)), case(L.AvgPool1D(3, 2, "SAME"), f(2, 7, 2)),
    case(L.Conv3D(2, 3), f(2, 3, 4, 4, 3)),
    case(L.Conv3D(4, (2, 3, 1), stride=(2, 1, 2), padding=1, dilation=(1, 2, 1), groups=2,
                  use_bias=False), f(1, 4, 5, 3, 2)),
    case(L.MaxPool3D(), f(2, 4, 4, 4, 2)),
    case(L.MaxPool3D(3, 2, 1, dilation=(2, 1, 1), ceil_mode=True), f(2, 6, 5, 5, 2)),
    case(L.AvgPool3D(), f(2, 4, 4, 4, 2)),
    case(L.AvgPool3D((2, 3, 3), 2, "SAME"), f(2, 5, 5, 3, 1)),
    case(L.BatchNorm(), f(4, 3), **TRAIN), case(L.BatchNorm(axis=1), f(2, 3, 2, 2)),
    case(L.BatchNorm(axis=1), f(2, 3, 2, 2), **TRAIN), case(L.LayerNorm(), f(2, 3)),
    case(L.LayerNorm(axis=(1, 2)), f(2, 3, 2)), case(L.LayerNorm(axis=1), f(2, 3, 2)),
    case(L.GroupNorm(2), f(2, 3, 4)), case(L.GroupNorm(3, affine=False), f(2, 2, 3)),
    case(L.GroupNorm(1), f(2, 3)),
    case(L.BatchNorm(track_running_stats=False), f(4, 3)),
    case(L.BatchNorm(track_running_stats=False, affine=False, axis=1), f(2, 3, 2, 2)),
    case(L.Embedding(5, 3), ids(2, 4)),
    case(L.Unembed(5), f(2, 3)), case(L.Unembed(4, use_bias=True), f(2, 3, 2)),
    case(L.Tied(L.Sequential(L.Embedding(5, 3), L.Dense(3), L.ReLU(), L.Unembed(5, True)),
                [(0, "table"), (3, "table")]), ids(2, 4), "Tied"),
    case(L.SimpleRNN(3), f(2, 4, 3)), case(L.SimpleRNN(2, "relu", reverse=True), f(2, 3, 2)),
    case(L.LSTM(3), f(2, 4, 3)),
    case(L.LSTM(2, return_sequences=False, use_bias=False), f(2, 3, 2)),
    case(L.LSTM(3, lengths=True), (f(2, 4, 3), np.array([4, 2]))),
    case(L.GRU(2, return_sequences=False, reverse=True, lengths=True),
         (f(2, 3, 2), np.array([1, 3]))),
    case(L.SimpleRNN(2, "relu", reverse=True, lengths=True), (f(3, 4, 2), np.array([0, 4, 2]))),
    case(L.Bidirectional(L.GRU(2, lengths=True)), (f(2, 3, 2), np.array([3, 1]))),
    case(L.GRU(3), f(2, 4, 3)), case(L.GRU(2, return_sequences=False, reverse=True), f(2, 3, 2)),
    case(L.Sequential(L.Embedding(5, 3), L.LSTM(4, return_sequences=False), L.Dense(2)),
         ids(2, 4), SEQ),
    case(L.MultiHeadAttention(2), f(2, 3, 4)),
    case(L.MultiHeadAttention(2, masked=True),
         (f(2, 3, 4), np.array([[False, False, True], [False, False, False]]))),
    case(L.MultiHeadAttention(2, causal=True, masked=True),
         (f(2, 3, 4), f(2, 3, 4), np.zeros((1, 3, 3), bool))),
    case(L.TransformerEncoderLayer(4, 2, 6, dropout=0.0, masked=True),
         (f(2, 3, 4), np.array([[False, False, True], [False, False, False]]))),
    case(L.TransformerDecoderLayer(4, 2, 6, dropout=0.0, masked=True),
         (f(2, 3, 4), f(2, 5, 4), np.array([[False] * 5, [False, False, True, True, True]]))),
    case(L.TransformerDecoderLayer(4, 2, 6, dropout=0.0, causal=False, masked=True,
                                   tgt_masked=True),
         (f(2, 3, 4), f(2, 5, 4), np.array([[False, False, True], [False] * 3]),
          np.array([[False] * 5, [False, False, True, True, True]]))),
    case(L.Select(1, 0), (f(2, 3), f(2, 2))),
    case(L.Carry(L.MultiHeadAttention(2, masked=True)),
         (f(2, 3, 4), np.array([[False, False, True], [False, False, False]])), "Carry"),
    case(L.Carry(L.LSTM(3, lengths=True)), (f(2, 4, 3), np.array([4, 2])), "Carry"),
    case(L.MaskedMean(), (f(2, 3, 4), np.array([[False, False, True], [True, True, True]]))),
    case(L.MaskedMean("lengths"), (f(2, 4, 3), np.array([4, 0]))),
    case(L.MultiHeadAttention(1, causal=True), f(2, 3, 2)),
    case(L.MultiHeadAttention(2), (f(2, 3, 4), f(2, 5, 4))),
    case(L.MultiHeadAttention(2, use_bias=False), (f(2, 3, 4), f(2, 5, 4), f(2, 5, 4))),
    case(L.MultiHeadAttention(2, causal=True), (f(2, 3, 4), f(2, 3, 4))),
    case(L.MultiHeadAttention(2, dropout=0.5), f(2, 3, 4), **TRAIN),
    case(L.MultiHeadAttention(2, dropout=0.5), (f(2, 3, 4), f(2, 5, 4)), **TRAIN),
    case(L.Sequential(L.Residual(L.MultiHeadAttention(2, causal=True)), L.LayerNorm(),
                      L.Dense(2)), f(2, 3, 4), SEQ),
    case(L.Sequential(L.Dense(3), L.ReLU(), L.Dense(2)), f(2, 4), SEQ),
    case(L.Sequential(L.Dense(4), L.GroupNorm(2), L.ReLU()), f(2, 3), SEQ),
    case(L.Sequential(L.Conv2D(2, 3), L.ReLU(), L.MaxPool2D(), L.Flatten(), L.Dense(2)),
         f(2, 4, 4, 1), SEQ),
    case(L.Sequential(L.Dense(3), L.BatchNorm(), L.Dropout(0.5)), f(4, 2), SEQ, **TRAIN),
    case(L.Sequential(L.Embedding(5, 3), L.Flatten(), L.Dense(2)), ids(2, 4), SEQ),
    case(L.Sequential(L.FanOut(2), L.Parallel(L.Dense(3), L.Identity()), L.FanInSum()),
         f(2, 3), SEQ),
    case(L.Sequential(_scale_layer(), L.ReLU()), f(2, 3), SEQ)._replace(own=True),
    case(L.Parallel(L.Dense(2), L.ReLU()), (f(2, 3), f(2, 2)), "Parallel"),
    case(L.Parallel(L.BatchNorm(), L.ReLU()), (f(4, 3), f(4, 2)), "Parallel", **TRAIN),
    case(L.FanOut(2), f(2, 3)), case(L.FanInSum(), (f(2, 3), f(2, 3))),
    case(L.FanInConcat(), (f(2, 3), f(2, 2))),
    case(L.Select(1), (f(2, 3), f(2, 2))), case(L.FanOut(2), (f(2, 3), f(2, 2))),
    case(L.Sequential(L.FanOut(2), L.Parallel(L.Select(0), L.MultiHeadAttention(2)),
                      L.FanInSum()), (f(2, 3, 4), f(2, 5, 4)), SEQ),
    case(L.MultiHeadAttention(2, normalizer="sparsemax"), f(2, 3, 4)),
    case(L.MultiHeadAttention(2, causal=True, masked=True, normalizer="sparsemax"),
         (f(2, 3, 4), np.array([[False, False, True], [False, False, False]]))),
    case(L.MultiHeadAttention(2, dropout=0.5, normalizer="sparsemax"), (f(2, 3, 4), f(2, 5, 4)),
         **TRAIN),
    case(L.FanInConcat(axis=1), (f(2, 2, 3), f(2, 1, 3))),
    case(L.Residual(L.Dense(3)), f(2, 3), "Residual"),
    case(L.Residual(L.Sequential(L.Dense(3), L.BatchNorm())), f(4, 3), "Residual", **TRAIN),
    case(L.Slice(np.s_[0:2]), f(2, 4)), case(L.Slice(np.s_[:, 1]), f(2, 3, 4)),
    case(L.Shared(L.Dense(2)), (f(2, 3), f(2, 3)), "Shared"),
    case(L.Shared(L.BatchNorm()), (f(4, 3), f(4, 3)), "Shared", **TRAIN),
    case(L.Repeat(L.Dense(3), 2), f(2, 3), "Repeat"),
    case(L.Tied(L.Sequential(L.Dense(3), L.Tanh(), L.Dense(3)), [0, 2]), f(2, 3), "Tied"),
    case(L.Tied(L.Sequential(L.Dense(3), L.BatchNorm(), L.Dense(3)), [(0, "w"), (2, "w")]),
         f(4, 3), "Tied", **TRAIN),
    case(L.Pad2D(1), f(2, 3, 3, 2)), case(L.Pad2D(((1, 0), (2, 1)), "reflect"), f(2, 3, 3, 2)),
    case(L.Pad2D((1, 2), "replicate"), f(2, 2, 3, 1)), case(L.Pad2D(1, "circular"), f(2, 2, 2, 3)),
    case(L.Pad2D(((-1, 1), (0, -1)), value=0.5), f(2, 3, 3, 2)),
    case(L.Pad1D((1, 2)), f(2, 3, 2)), case(L.Pad1D(2, "reflect"), f(2, 3, 2)),
    case(L.PixelShuffle(2), f(2, 2, 3, 8)), case(L.PixelUnshuffle(2), f(2, 4, 2, 3)),
    case(L.Remat(L.Sequential(L.Dense(3), L.ReLU(), L.Dense(2))), f(2, 4), "Remat"),
    case(L.Remat(L.Sequential(L.Dense(3), L.BatchNorm(), L.Dropout(0.5))), f(4, 2), "Remat",
         **TRAIN),
    case(L.Eval(L.Sequential(L.Dense(3), L.BatchNorm(), L.Dropout(0.5))), f(4, 2), "Eval",
         **TRAIN),
    case(L.Eval(L.Sequential(L.Dense(3), L.Tanh())), f(2, 4), "Eval"),
    # two rows a slice: BLAS's one-row products round differently with Fortran-ordered
    # params (a plain Dense on one example does too), and the fuzz compares bit for bit
    case(L.BatchThreads(L.Sequential(L.Dense(3), L.ReLU(), L.Dense(2)), 2), f(4, 4),
         "BatchThreads"),
    case(L.BatchThreads(L.Sequential(L.Dense(3), L.Dropout(0.5)), 3), f(6, 2), "BatchThreads",
         **TRAIN),
    case(L.BatchThreads(L.Sequential(L.Dense(3), L.BatchNorm()), 2), f(4, 2), "BatchThreads",
         **TRAIN),
    case(L.BatchThreads(L.BatchNorm(track_running_stats=False, axis=1), 2), f(4, 3, 2, 2),
         "BatchThreads"),
    case(L.AdaptiveAvgPool2D((2, 3)), f(2, 5, 4, 2)),
    case(L.AdaptiveMaxPool2D((3, None)), f(2, 5, 4, 2)),
    case(L.AdaptiveAvgPool1D(3), f(2, 7, 2)), case(L.AdaptiveMaxPool1D(2), f(2, 5, 3)),
    case(L.InstanceNorm(), f(2, 3, 4)), case(L.InstanceNorm(affine=True), f(2, 2, 3, 2)),
    case(L.TransformerEncoderLayer(4, 2, 6, dropout=0.0), f(2, 3, 4)),
    case(L.TransformerEncoderLayer(4, 2, 6, activation="gelu", norm_first=True, causal=True),
         f(2, 3, 4), **TRAIN),
    case(L.TransformerDecoderLayer(4, 2, 6, dropout=0.0), (f(2, 3, 4), f(2, 5, 4))),
    case(L.TransformerDecoderLayer(4, 2, 6, norm_first=True), (f(2, 3, 4), f(2, 5, 4)),
         **TRAIN),
    case(L.Bidirectional(L.LSTM(3)), f(2, 4, 3)),
    case(L.StackedRNN(L.LSTM(3), L.GRU(2, return_sequences=False)), f(2, 4, 3), "StackedRNN"),
    case(L.StackedRNN(*(L.GRU(2, lengths=True, initial_state=True, return_state=True),) * 2,
                      dropout=0.5),
         (f(2, 3, 2), np.array([3, 1]), f(2, 2, 2)), "StackedRNN", **TRAIN),
    case(L.StackedRNN(L.Bidirectional(L.GRU(2, lengths=True)),
                      L.LSTM(2, lengths=True, return_sequences=False)),
         (f(2, 3, 2), np.array([3, 1])), "StackedRNN"),
    case(L.Bidirectional(L.SimpleRNN(2), None), f(2, 3, 2)),
    case(L.Bidirectional(L.GRU(2, return_sequences=False), "sum",
                         backward_layer=L.GRU(2, return_sequences=False, reverse=True)),
         f(2, 3, 2)),
    case(L.WeightNorm(L.Dense(3)), f(2, 4), "WeightNorm"),
    case(L.WeightNorm(L.Conv2D(2, 3)), f(2, 4, 4, 3), "WeightNorm"),
    case(L.SpectralNorm(L.Dense(3)), f(2, 4), "SpectralNorm"),
    case(L.SpectralNorm(L.Dense(3)), f(2, 4), "SpectralNorm", **TRAIN),
    case(L.SpectralNorm(L.Conv2D(2, 3), n_power_iterations=2), f(2, 4, 4, 3), "SpectralNorm",
         **TRAIN),
    case(L.Sequential(L.WeightNorm(L.Dense(3)), L.ReLU(), L.SpectralNorm(L.Dense(2))), f(2, 4),
         SEQ, **TRAIN),
    case(L.ConvTranspose1D(2, 3), f(2, 4, 3)),
    case(L.ConvTranspose1D(3, 4, stride=2, padding=1, output_padding=1, dilation=2), f(2, 3, 2)),
    case(L.ConvTranspose1D(2, 3, stride=2, padding="SAME", use_bias=False), f(2, 3, 1)),
    case(L.ConvTranspose1D(4, 3, stride=2, padding=1, groups=2), f(2, 4, 6)),
    case(L.Bilinear(3), (f(2, 4), f(2, 5))),
    case(L.Bilinear(2, use_bias=False), (f(2, 3, 4), f(2, 3, 2))),
    case(L.AlphaDropout(0.5), f(2, 3), **TRAIN), case(L.AlphaDropout(0.5), f(2, 3)),
    case(L.FeatureAlphaDropout(0.5), f(2, 3, 4), **TRAIN),
    case(L.FeatureAlphaDropout(0.2), f(2, 3, 4)),
    case(L.Softmin(), f(2, 3)), case(L.Softmin(axis=1), f(2, 3, 2)),
    case(L.Softshrink(), f(2, 3)), case(L.Hardshrink(0.3), f(2, 3)), case(L.Tanhshrink(), f(2, 3)),
    case(L.Threshold(0.5, -1.0), f(2, 3)), case(L.GLU(), f(2, 4)), case(L.GLU(axis=1), f(2, 4, 3)),
    case(L.LocalResponseNorm(3), f(2, 3, 4)),
    case(L.LocalResponseNorm(2, alpha=0.5, beta=0.6, k=2.0), f(2, 2, 3, 5)),
    case(L.PositionalEmbedding(5), f(2, 3, 4)), case(L.PositionalEmbedding(3), f(2, 3, 2)),
    case(L.SinusoidalPositionalEncoding(), f(2, 3, 4)),
    case(L.SinusoidalPositionalEncoding(3, base=100.0), f(2, 3, 5)),
    case(L.SinusoidalTimeEmbedding(4), f(3)),
    case(L.SinusoidalTimeEmbedding(5, flip_sin_to_cos=True, downscale_freq_shift=0.0,
                                   scale=2.0, max_period=100.0), f(3)),
    case(L.FanInSum(broadcast=True), (f(2, 3, 4), f(2, 1, 4))),
    case(L.Param((3,)), f(2, 4)), case(L.Param((2, 3), init=initializers.normal(1.0)), f(2, 5, 4)),
    case(L.SegmentSum(3), (f(4, 2), np.array([2, 0, 2, 1]))),
    case(L.SegmentSum(2), (f(3, 2, 2), np.array([1, 1, 0]))),
    case(L.SegmentMean(3), (f(4, 2), np.array([2, 0, 2, 1]))),
    case(L.SegmentMean(2), (f(3, 2, 2), np.array([1, 1, 1]))),
    case(L.SegmentMax(3), (f(5, 2), np.array([2, 0, 2, 1, 2]))),
    case(L.SegmentMax(2), (f(3, 2, 2), np.array([1, 1, 0]))),
    case(L.EmbeddingBag(5, 3), ids(2, 4)),
    case(L.EmbeddingBag(5, 3, mode="sum", padding_idx=0), ids(3, 4)),
    case(L.EmbeddingBag(5, 3, mode="max", padding_idx=-1), ids(2, 4)),
    case(L.EmbeddingBag(5, 3, mode="sum", per_sample_weights=True), (ids(2, 4), f(2, 4))),
]
# every public layer constructor of funcdl.layers has a case (Layer itself: the user's;
# batch_sum, a function layers call: test_layers_batch_threads_norm.py; summary, a table
# of a model: test_layers_summary.py; decode_init, decode_step and their DecodeCache,
# incremental decoding of a model: test_decode.py; segment_sum, a function layers call:
# test_segment_sum.py; segment_mean and segment_max: test_segment_reductions.py)
MADE = {c.layer.name.split("(")[0] for c in CASES} | {"Layer"}
assert set(L.__all__) - MADE <= {"LayerLike", "Pointwise", "Pullback", "Shape", "batch_sum",
                                 "summary", "decode_init", "decode_step", "DecodeCache",
                                 "segment_sum", "segment_mean", "segment_max"}, \
    set(L.__all__) - MADE
