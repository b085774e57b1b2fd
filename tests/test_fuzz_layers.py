"""A systematic fuzz of the error contract over funcdl.layers: every layer and combinator
of its ``__all__`` (CASES), each with a valid call, and bad calls derived from it by a fixed
product of perturbations (no randomness). Each must either succeed with exactly what the
equivalent valid call gives (a list converted, ints cast), or raise ValueError/TypeError
naming the layer in funcdl's words, not NumPy's (``verdict``); warnings are errors here too.
This file: the input (``variants``); test_fuzz_layers_args.py: init's key and in_shape, the
params and state, the keywords, the cotangent, the constructors' arguments.

Kinds: REFUSE (must raise), CONVERT (equals the call on ``canon``), CLOSE (float64 for
float32: close to it), ANY (NaN: any result), INF and HUGE (inf, 3e38: any result, NumPy's
word on the NaN or overflow accepted where ``verdict`` says), FIT (another shape: legitimate
exactly when ``init`` at that shape gives params of the same shapes, and then the output has
init's declared shape).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random

KEY = random.key(0)
F32 = np.float32
REFUSE, CONVERT, CLOSE, ANY, FIT = "refuse", "convert", "close", "any", "fit"
INF, HUGE = "inf", "huge"  # ANY, and NumPy's word on the NaN or overflow accepted (verdict)
MOVERS = ("Identity", "Flatten", "Reshape", "Slice", "FanOut", "Dropout", "Select")
SILENT = (*MOVERS, "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softplus", "GELU", "SiLU", "ELU",
          "Softmax", "LogSoftmax", "MaxPool2D", "AvgPool2D", "GlobalAvgPool", "FanInSum",
          "FanInConcat", "MaxPool1D", "AvgPool1D", "Upsample", "Hardtanh", "Hardsigmoid",
          "Hardswish", "Mish", "SELU", "CELU", "Softsign", "LogSigmoid")
NO_STATE: Any = object()
NUMPY_WORDS = ("could not be broadcast", "operands could not", "matmul: Input operand",
               "index out of bounds", "object arrays are not supported", "ufunc",
               "Cannot cast ufunc", "is out of bounds for array", "not enough values to unpack",
               "unhashable", "has no attribute")


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
    *(case(a, f(2, 3)) for a in (L.ReLU6(), L.Hardtanh(), L.Hardtanh(-2.0, 0.5),
                                 L.Hardsigmoid(), L.Hardswish(), L.Mish(), L.SELU(), L.CELU(),
                                 L.CELU(0.5), L.Softsign(), L.LogSigmoid())),
    case(L.PReLU(), f(2, 3)), case(L.PReLU(3, init=0.1), f(2, 4, 3)),
    case(L.RMSNorm(), f(2, 3)), case(L.RMSNorm(eps=1e-3, elementwise_affine=False), f(2, 3, 2)),
    case(L.LogSoftmax(axis=1), f(2, 3, 2)), case(L.Flatten(), f(2, 3, 2)),
    case(L.Reshape((3, 2)), f(2, 6)), case(L.Reshape(-1), f(2, 3, 2)),
    case(L.Dropout(0.5), f(2, 3), **TRAIN), case(L.Dropout(0.5), f(2, 3)),
    case(L.Conv2D(2, 3), f(2, 5, 5, 3)), case(L.Conv2D(2, 2, dilation=2), f(2, 5, 5, 2)),
    case(L.Conv2D(2, (2, 3), stride=2, padding="VALID"), f(2, 5, 6, 2)),
    case(L.Conv2D(3, 2, padding=((1, 0), (0, 1)), use_bias=False), f(1, 3, 3, 5)),
    case(L.Conv1D(2, 3), f(2, 6, 3)), case(L.Conv1D(2, 2, stride=2, padding="VALID"), f(2, 5, 1)),
    case(L.ConvTranspose2D(2, 3), f(2, 3, 3, 3)),
    case(L.ConvTranspose2D(3, 4, stride=2, padding=1), f(2, 3, 2, 2)),
    case(L.ConvTranspose2D(2, (2, 3), stride=(2, 1), padding=(0, 1), output_padding=(1, 0),
                           dilation=(1, 2), use_bias=False), f(1, 2, 3, 1)),
    case(L.ConvTranspose2D(2, 3, stride=2, padding="SAME"), f(2, 3, 3, 2)),
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
    case(L.BatchNorm(), f(4, 3), **TRAIN), case(L.BatchNorm(axis=1), f(2, 3, 2, 2)),
    case(L.BatchNorm(axis=1), f(2, 3, 2, 2), **TRAIN), case(L.LayerNorm(), f(2, 3)),
    case(L.LayerNorm(axis=(1, 2)), f(2, 3, 2)), case(L.LayerNorm(axis=1), f(2, 3, 2)),
    case(L.GroupNorm(2), f(2, 3, 4)), case(L.GroupNorm(3, affine=False), f(2, 2, 3)),
    case(L.GroupNorm(1), f(2, 3)),
    case(L.BatchNorm(track_running_stats=False), f(4, 3)),
    case(L.BatchNorm(track_running_stats=False, affine=False, axis=1), f(2, 3, 2, 2)),
    case(L.Embedding(5, 3), ids(2, 4)),
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
]
# every public layer constructor of funcdl.layers has a case (Layer itself: the user's)
MADE = {c.layer.name.split("(")[0] for c in CASES} | {"Layer"}
assert set(L.__all__) - MADE <= {"LayerLike", "Pointwise", "Pullback", "Shape"}, \
    set(L.__all__) - MADE


# ---------------------------------------------------------------------------- judging

def same(a: Any, b: Any, close: bool = False) -> bool:
    """Equal trees: containers alike (a list equals a tuple), arrays of one shape, kind and
    size of dtype (byte order aside), equal values (NaN equal to NaN); callables skipped."""
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list))
                and len(a) == len(b) and all(same(u, v, close) for u, v in zip(a, b)))
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(same(a[k], b[k], close) for k in a))
    if a is None or b is None or callable(a):
        return a is b or callable(a)
    if type(a) is not type(b) and not close and (np.ndim(a) or np.ndim(b)):
        return False  # a masked array for an ndarray, say
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if close:
        return bool(np.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True))
    nan = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    return a.dtype.str[1:] == b.dtype.str[1:] and np.array_equal(a, b, equal_nan=nan)


def error_fault(e: BaseException, tag: str, own: bool = False) -> str | None:
    """None for an error that keeps the contract, else what is wrong with it."""
    if (not isinstance(e, (ValueError, TypeError))
            or isinstance(e, (IndexError, KeyError, AttributeError, ZeroDivisionError))):
        return f"{type(e).__name__}: {e}"
    msg = str(e)
    if tag not in msg:
        return f"{type(e).__name__} not naming {tag!r}: {msg}"
    words = [w for w in NUMPY_WORDS if w in msg]
    return None if own or not words else f"NumPy's words {words}: {msg}"


def attempt(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return call(), None
    except Exception as e:  # judged by the caller
        return None, e


def users(e: BaseException) -> bool:
    """Whether ``e`` came from the user's own layer (``_scale_layer``): its business."""
    tb = e.__traceback__
    while tb is not None:
        if "_scale_layer" in tb.tb_frame.f_code.co_qualname:
            return True
        tb = tb.tb_next
    return False


def verdict(c: Case, call: Callable[[], Any], kind: str, canon: Callable[[], Any] | None = None,
            fit: Callable[[Any], str | None] | None = None) -> str | None:
    """None when ``call`` keeps the contract for a perturbation of ``kind``."""
    out, err = attempt(call)
    if err is not None:
        # Accepted: inf·0 and inf - inf are NaN, as PyTorch returns them, and NumPy says so
        # (silencing it would cost an errstate around every product of the hot path).
        if kind == INF and isinstance(err, RuntimeWarning) and "invalid value" in str(err):
            return None
        # Accepted: a product or statistic of values near float32's maximum overflows (to
        # inf in PyTorch, silently), and NumPy says so: norm.py keeps its word on purpose
        # (a NaN from finite inputs is never silent). The elementwise and routing layers
        # promise no warning at any finite input (activations.py), and are held to it.
        if (kind == HUGE and isinstance(err, RuntimeWarning) and not c.id.startswith(SILENT)
                and ("overflow" in str(err) or "invalid value" in str(err))):
            return None
        if kind in (ANY, INF, HUGE) and isinstance(err, FloatingPointError) and c.tag in str(err):
            return None  # debug.check_finite's refusal, the point of it
        return None if c.own and users(err) else error_fault(err, c.tag, c.own)
    if kind in (ANY, INF, HUGE):
        return None
    if kind in (CONVERT, CLOSE) and canon is not None:
        want, canon_err = attempt(canon)
        if canon_err is None:
            # Accepted: the layers that only move values keep an integer input's dtype, as
            # jnp.reshape and torch.flatten do (ids pass a Flatten to an Embedding as ids);
            # a user's layer computes in the dtype it likes.
            loose = kind == CLOSE or c.own or c.id.startswith(MOVERS)
            return None if same(out, want, loose) else f"gave {out!r}, not {want!r}"
    if kind == FIT and fit is not None:
        return fit(out)
    return f"accepted silently, gave {str(out)[:300]}"


# ---------------------------------------------------------------------------- calls

def shape_of(x: Any) -> Any:
    if isinstance(x, (tuple, list)):
        return tuple(shape_of(e) for e in x)
    return np.shape(x) if isinstance(x, np.ndarray) else x


def setup(c: Case, in_shape: Any = None) -> tuple[Any, Any, Any]:
    """``(out_shape, params, state)`` of ``c`` at its input's shape (state NO_STATE)."""
    out = c.layer.init(KEY, shape_of(c.x) if in_shape is None else in_shape)
    return out[0], out[1], (out[2] if c.layer.stateful else NO_STATE)


def cotangent(y: Any) -> Any:
    if isinstance(y, tuple):
        return tuple(cotangent(e) for e in y)
    return f(*y.shape).astype(y.dtype if y.dtype.kind == "f" else F32)


def frozen(t: Any) -> Any:
    """A copy of a tree's arrays, to see that a call changed none of them."""
    if isinstance(t, dict):
        return {k: frozen(v) for k, v in t.items()}
    if isinstance(t, (tuple, list)):
        return type(t)(map(frozen, t))
    return t.copy() if isinstance(t, np.ndarray) else t


def untouched(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, which must change none of its arguments (the contract: no mutation
    of anything a caller passed in)."""
    before = frozen(args)
    out = call(*args)
    if not same(before, args):
        raise AssertionError(f"{call} changed its arguments")
    return out


def run(c: Case, params: Any, x: Any, state: Any, kw: dict[str, Any]) -> tuple[Any, ...]:
    """apply, and vjp with its pullback at a fixed cotangent; apply must give vjp's output."""
    st = {} if state is NO_STATE else {"state": state}
    a = untouched(lambda p, x, s: c.layer.apply(p, x, **st, **kw), params, x, state)
    v = untouched(lambda p, x, s: c.layer.vjp(p, x, **st, **kw), params, x, state)
    if not same(a, (v[0], v[2]) if c.layer.stateful else v[0]):
        raise AssertionError(f"apply gave {a!r}, vjp {v[:1] + v[2:]!r}")
    return (a, *v[2:], untouched(v[1], cotangent(v[0])))


def fits(c: Case, bad: Any) -> Callable[[Any], str | None]:
    """FIT's oracle for an input of ``bad``'s shapes: legitimate when init at those shapes
    gives params and state of the valid ones' shapes, and then shaped as init declares."""
    _, params, state = setup(c)
    made, err = attempt(lambda: setup(c, shape_of(bad)))
    if err is not None or not same(shapes(made[1:]), shapes((params, state))):
        return lambda out: "accepted an input its params do not fit"

    def declared(out: Any) -> str | None:
        y = out[0][0] if c.layer.stateful else out[0]
        return None if same(shapes(y), made[0]) else f"output {shapes(y)}, init said {made[0]}"
    return declared


def shapes(t: Any) -> Any:
    if isinstance(t, dict):
        return {k: shapes(v) for k, v in t.items()}
    return tuple(map(shapes, t)) if isinstance(t, (tuple, list)) else np.shape(t)


# ---------------------------------------------------------------------------- perturbations

def readonly(a: np.ndarray) -> np.ndarray:
    return np.lib.stride_tricks.as_strided(a.copy(), writeable=False)


def with_value(a: np.ndarray, v: float) -> np.ndarray:
    a = a.copy()
    if a.size:
        a.flat[0] = v
    return a


def reshaped(a: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """One axis fewer, one more, each axis one longer, each empty, a 0-d array; and for a
    cotangent's sake the forms that broadcast: (N,) for (N, 1), (1, ...) for (N, ...)."""
    yield "rank-1", a[..., 0]
    yield "rank+1", a[..., None]
    yield "rank0", np.asarray(a.flat[0] if a.size else 0, a.dtype)
    for ax in range(a.ndim):
        yield f"axis{ax}+1", np.concatenate([a, a.take([0], axis=ax)], axis=ax)
        yield f"axis{ax}=0", a.take([], axis=ax)
    if a.ndim > 1 and a.shape[-1] == 1:
        yield "squeezed", a[..., 0]
    if a.ndim and a.shape[0] > 1:
        yield "batch1", a[:1]


def variants(a: Any, leaf: str = "input") -> Iterator[tuple[str, Any, str, Any]]:
    """``(label, bad, kind, canon)`` for one array of role ``leaf``: "input", "ids",
    "param" (a params or state leaf, whose shape is fixed) or "dy" (likewise)."""
    fixed = leaf in ("param", "dy")
    for label, b in reshaped(a):
        yield label, b, REFUSE if fixed else FIT, None
    if leaf == "ids":
        for label, b, kind in (("int32", a.astype(np.int32), CONVERT),
                               ("uint8", a.astype(np.uint8), CONVERT),
                               ("list", a.tolist(), CONVERT), ("object", a.astype(object), CONVERT),
                               ("float", a.astype(F32), REFUSE), ("bool", a > 0, REFUSE),
                               ("vocab", a + 5, REFUSE), ("negative", a - 5, REFUSE)):
            yield label, b, kind, a
    else:
        ok = REFUSE if leaf == "param" else CONVERT  # params: float arrays only
        yield "float64", a.astype(np.float64), CLOSE, a
        yield "float16", a.astype(np.float16), ok, a
        yield "int32", a.astype(np.int32), ok, a
        yield "uint8", np.abs(a).astype(np.uint8), ok, np.abs(a)
        yield "bool", a != 0, ok, (a != 0).astype(a.dtype)
        yield "complex64", a.astype(np.complex64), REFUSE, None
        yield "object", a.astype(object), CONVERT, a
        yield "str", a.astype(str), REFUSE, None
        yield "list", a.tolist(), CONVERT, a
        yield "fortran", np.asfortranarray(a), CONVERT, a
        yield "strided", np.repeat(a, 2, axis=-1)[..., ::2], CONVERT, a
        yield "reversed", a[::-1].copy()[::-1], CONVERT, a
        yield "masked", np.ma.masked_array(a), CONVERT, a  # a subclass, nothing masked
        yield "big-endian", a.astype(a.dtype.newbyteorder(">")), CONVERT, a
        yield "readonly", readonly(a), CONVERT, a
        yield "nan", with_value(a, np.nan), ANY, None
        yield "inf", with_value(a, np.inf), INF, None
        yield "-inf", with_value(a, -np.inf), INF, None
        yield "huge", with_value(a, 3e38), HUGE, None
        yield "-huge", with_value(a, -3e38), HUGE, None
    yield "None", None, REFUSE, None
    yield "float", 1.0, REFUSE if fixed else CONVERT, np.asarray(1.0, F32)
    yield "dict", {}, REFUSE, None


def input_variants(x: Any, is_ids: bool) -> Iterator[tuple[str, Any, str, Any]]:
    """``variants`` of the input, entry by entry for a tuple, plus the tuple's own."""
    if not isinstance(x, tuple):
        yield from variants(x, "ids" if is_ids else "input")
        return
    yield "list", list(x), CONVERT, x
    yield "shorter", x[:-1], FIT, None
    yield "longer", (*x, x[-1]), FIT, None
    yield "bare", x[0], FIT, None
    yield "None", None, REFUSE, None
    for i, e in enumerate(x):
        for label, b, kind, canon in variants(e, "ids" if isinstance(e, np.ndarray)
                                              and e.dtype.kind == "i" else "input"):
            swap = (lambda v, i=i: (*x[:i], v, *x[i + 1:]))  # noqa: E731
            yield f"[{i}]{label}", swap(b), kind, canon if canon is None else swap(canon)


# ---------------------------------------------------------------------------- the input
# A family of checks yields (label, fault or None); the others are in test_fuzz_layers_args.

def input_checks(c: Case) -> Iterator[tuple[str, str | None]]:
    _, params, state = setup(c)
    for label, b, kind, canon in input_variants(c.x, c.takes_ids):
        yield f"x {label}", verdict(
            c, lambda b=b: run(c, params, b, state, c.kw), kind,
            lambda canon=canon: run(c, params, canon, state, c.kw),
            fits(c, b) if kind == FIT else None)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_input(c: Case) -> None:
    faults = [f"  {label}: {why}" for label, why in input_checks(c) if why]
    assert not faults, f"{c.id}, {len(faults)} faults:\n" + "\n".join(faults)
