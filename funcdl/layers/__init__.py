"""Layers: immutable ``Layer(init, apply, vjp)`` values, and combinators built from them.

Modules by family: ``base`` (the Layer value and shared helpers), ``core`` (Dense, shape
layers, Dropout, DropPath), ``activations``, ``activations_extra`` (ReLU6, Hardtanh,
Hardsigmoid, Hardswish, Mish, SELU, CELU, Softsign, LogSigmoid, PReLU), ``gated`` (GELU,
SiLU), ``shrink`` (Softmin, Softshrink, Hardshrink, Tanhshrink, Threshold, GLU),
``sparsemax`` (Sparsemax), ``combinators`` (Sequential), ``branching`` (Parallel, Residual,
Shared, Repeat), ``tied`` (Tied), ``routing`` (FanOut, FanInSum, FanInConcat, Select,
Slice), ``remat`` (Remat), ``eval_mode`` (Eval: a part held in inference mode),
``batch_threads`` (BatchThreads: slices of the batch in threads; ``batch_sum``, for a layer
that mixes the examples of its batch, sums over those slices and over the ranks of
``data_parallel(..., sync_batch_stats=True)``), ``parametrize`` (WeightNorm, SpectralNorm),
``norm`` (BatchNorm), ``layernorm`` (LayerNorm), ``groupnorm`` (GroupNorm), ``instancenorm``
(InstanceNorm), ``rmsnorm`` (RMSNorm), ``lrn`` (LocalResponseNorm), ``summary`` (summary: a
model's parts as a table), ``alpha_dropout`` (AlphaDropout, FeatureAlphaDropout), ``embed``
(Embedding, Unembed: a tied or untied output head), ``bilinear`` (Bilinear), ``attention``
(MultiHeadAttention), ``recurrent`` (SimpleRNN, LSTM, GRU), ``stacked`` (StackedRNN: torch's
``num_layers``), ``blocks``
(TransformerEncoderLayer, TransformerDecoderLayer, Bidirectional), ``conv``,
``conv_transpose`` (ConvTranspose2D), ``conv_transpose1d`` (ConvTranspose1D), ``upsample``
(Upsample), ``pad`` (Pad1D, Pad2D), ``pixel_shuffle`` (PixelShuffle, PixelUnshuffle),
``conv3d`` (Conv3D), ``pool``, ``pool1d``, ``pool3d`` (MaxPool3D, AvgPool3D: separable, 2-D
then depth), ``adaptive_pool`` (the adaptive pools), ``sequence`` (Carry, MaskedMean: padded
batches of sequences), ``positional`` (PositionalEmbedding, SinusoidalPositionalEncoding),
``timestep`` (SinusoidalTimeEmbedding: a diffusion model's timesteps to sinusoids),
``decode`` (decode_init, decode_step: incremental decoding with a key/value cache),
``param`` (Param: a learned array independent of the input, one copy per example),
``segment`` (segment_sum, SegmentSum: sums of rows by segment, graph message passing),
``segment_reduce`` (segment_mean, segment_max, SegmentMean, SegmentMax), ``embed_bag``
(EmbeddingBag: a bag of ids per example reduced to one vector), ``stop_gradient``
(StopGradient: the identity with no gradient back, ``jax.lax.stop_gradient``).
"""

from funcdl.layers._slices import batch_sum
from funcdl.layers.activations import (
    ELU,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from funcdl.layers.activations_extra import (
    CELU,
    SELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LogSigmoid,
    Mish,
    PReLU,
    ReLU6,
    Softsign,
)
from funcdl.layers.adaptive_pool import (
    AdaptiveAvgPool1D,
    AdaptiveAvgPool2D,
    AdaptiveMaxPool1D,
    AdaptiveMaxPool2D,
)
from funcdl.layers.alpha_dropout import AlphaDropout, FeatureAlphaDropout
from funcdl.layers.attention import MultiHeadAttention
from funcdl.layers.base import Layer, LayerLike, Pointwise, Pullback, Shape
from funcdl.layers.batch_threads import BatchThreads
from funcdl.layers.bilinear import Bilinear
from funcdl.layers.blocks import Bidirectional, TransformerDecoderLayer, TransformerEncoderLayer
from funcdl.layers.branching import Parallel, Repeat, Residual, Shared
from funcdl.layers.combinators import Sequential
from funcdl.layers.conv import Conv1D, Conv2D
from funcdl.layers.conv3d import Conv3D
from funcdl.layers.conv_transpose import ConvTranspose2D
from funcdl.layers.conv_transpose1d import ConvTranspose1D
from funcdl.layers.core import Dense, Dropout, DropPath, Flatten, Identity, Reshape
from funcdl.layers.decode import DecodeCache, decode_init, decode_step
from funcdl.layers.embed import Embedding, Unembed
from funcdl.layers.embed_bag import EmbeddingBag
from funcdl.layers.eval_mode import Eval
from funcdl.layers.gated import GELU, SiLU
from funcdl.layers.groupnorm import GroupNorm
from funcdl.layers.instancenorm import InstanceNorm
from funcdl.layers.lrn import LocalResponseNorm
from funcdl.layers.norm import BatchNorm, LayerNorm
from funcdl.layers.pad import Pad1D, Pad2D
from funcdl.layers.param import Param
from funcdl.layers.parametrize import SpectralNorm, WeightNorm
from funcdl.layers.pixel_shuffle import PixelShuffle, PixelUnshuffle
from funcdl.layers.pool import AvgPool2D, GlobalAvgPool, MaxPool2D
from funcdl.layers.pool1d import AvgPool1D, MaxPool1D
from funcdl.layers.pool3d import AvgPool3D, MaxPool3D
from funcdl.layers.positional import PositionalEmbedding, SinusoidalPositionalEncoding
from funcdl.layers.recurrent import GRU, LSTM, SimpleRNN
from funcdl.layers.remat import Remat
from funcdl.layers.rmsnorm import RMSNorm
from funcdl.layers.routing import FanInConcat, FanInSum, FanOut, Select, Slice
from funcdl.layers.segment import SegmentSum, segment_sum
from funcdl.layers.segment_reduce import SegmentMax, SegmentMean, segment_max, segment_mean
from funcdl.layers.sequence import Carry, MaskedMean
from funcdl.layers.shrink import GLU, Hardshrink, Softmin, Softshrink, Tanhshrink, Threshold
from funcdl.layers.sparsemax import Sparsemax
from funcdl.layers.stacked import StackedRNN
from funcdl.layers.stop_gradient import StopGradient
from funcdl.layers.summary import summary
from funcdl.layers.tied import Tied
from funcdl.layers.timestep import SinusoidalTimeEmbedding
from funcdl.layers.upsample import Upsample

__all__ = [
    "CELU",
    "ELU",
    "GELU",
    "GLU",
    "GRU",
    "LSTM",
    "SELU",
    "AdaptiveAvgPool1D",
    "AdaptiveAvgPool2D",
    "AdaptiveMaxPool1D",
    "AdaptiveMaxPool2D",
    "AlphaDropout",
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    "BatchNorm",
    "BatchThreads",
    "Bidirectional",
    "Bilinear",
    "Carry",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "ConvTranspose1D",
    "ConvTranspose2D",
    "DecodeCache",
    "Dense",
    "DropPath",
    "Dropout",
    "Embedding",
    "EmbeddingBag",
    "Eval",
    "FanInConcat",
    "FanInSum",
    "FanOut",
    "FeatureAlphaDropout",
    "Flatten",
    "GlobalAvgPool",
    "GroupNorm",
    "Hardshrink",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "Identity",
    "InstanceNorm",
    "Layer",
    "LayerLike",
    "LayerNorm",
    "LeakyReLU",
    "LocalResponseNorm",
    "LogSigmoid",
    "LogSoftmax",
    "MaskedMean",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
    "Mish",
    "MultiHeadAttention",
    "PReLU",
    "Pad1D",
    "Pad2D",
    "Parallel",
    "Param",
    "PixelShuffle",
    "PixelUnshuffle",
    "Pointwise",
    "PositionalEmbedding",
    "Pullback",
    "RMSNorm",
    "ReLU",
    "ReLU6",
    "Remat",
    "Repeat",
    "Reshape",
    "Residual",
    "SegmentMax",
    "SegmentMean",
    "SegmentSum",
    "Select",
    "Sequential",
    "Shape",
    "Shared",
    "SiLU",
    "Sigmoid",
    "SimpleRNN",
    "SinusoidalPositionalEncoding",
    "SinusoidalTimeEmbedding",
    "Slice",
    "Softmax",
    "Softmin",
    "Softplus",
    "Softshrink",
    "Softsign",
    "Sparsemax",
    "SpectralNorm",
    "StackedRNN",
    "StopGradient",
    "Tanh",
    "Tanhshrink",
    "Threshold",
    "Tied",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "Unembed",
    "Upsample",
    "WeightNorm",
    "batch_sum",
    "decode_init",
    "decode_step",
    "segment_max",
    "segment_mean",
    "segment_sum",
    "summary",
]
