"""A systematic fuzz of the error contract over funcdl.layers: every layer and combinator
of its ``__all__`` (CASES), each with a valid call, and bad calls derived from it by a fixed
product of perturbations (no randomness). Each must either succeed with exactly what the
equivalent valid call gives (a list converted, ints cast), or raise ValueError/TypeError
naming the layer in funcdl's words, not NumPy's (``verdict``); warnings are errors here too.
This file: the input (``variants``); test_fuzz_layers_args.py: init's key and in_shape, the
params and state, the keywords, the cotangent; test_fuzz_layers_ctor_args.py: the
constructors' arguments.

Kinds: REFUSE (must raise), CONVERT (equals the call on ``canon``), CLOSE (float64 for
float32: close to it), ANY (NaN: any result), INF and HUGE (inf, 3e38: any result, NumPy's
word on the NaN or overflow accepted where ``verdict`` says), FIT (another shape: legitimate
exactly when ``init`` at that shape gives params of the same shapes, and then the output has
init's declared shape).
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from _layer_cases import CASES, F32, KEY, Case, _scale_layer, f

_NP23 = np.lib.NumpyVersion(np.__version__) >= "2.3.0"

REFUSE, CONVERT, CLOSE, ANY, FIT = "refuse", "convert", "close", "any", "fit"
INF, HUGE = "inf", "huge"  # ANY, and NumPy's word on the NaN or overflow accepted (verdict)
MOVERS = ("Identity", "Flatten", "Reshape", "Slice", "FanOut", "Dropout", "DropPath", "Select",
          "StopGradient")
SILENT = (*MOVERS, "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softplus", "GELU", "SiLU", "ELU",
          "Softmax", "LogSoftmax", "MaxPool2D", "AvgPool2D", "GlobalAvgPool", "FanInSum",
          "FanInConcat", "MaxPool1D", "AvgPool1D", "Upsample", "Hardtanh", "Hardsigmoid",
          "Hardswish", "Mish", "SELU", "CELU", "Softsign", "LogSigmoid", "Sparsemax")
NO_STATE: Any = object()
NUMPY_WORDS = ("could not be broadcast", "operands could not", "matmul: Input operand",
               "index out of bounds", "object arrays are not supported", "ufunc",
               "Cannot cast ufunc", "is out of bounds for array", "not enough values to unpack",
               "unhashable", "has no attribute")


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
    if a.dtype.str[1:] != b.dtype.str[1:]:
        return False
    if a.tobytes() == b.tobytes():  # the usual verdict, at a tenth of array_equal's cost
        return True
    nan = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    return bool(np.array_equal(a, b, equal_nan=nan))


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


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            yield from _codes(c)


# _scale_layer's code and its closures' (init, vjp, the lambdas): co_qualname is 3.11's
_USERS = frozenset(_codes(_scale_layer.__code__))


def users(e: BaseException) -> bool:
    """Whether ``e`` came from the user's own layer (``_scale_layer``): its business; a
    combinator placing the error (``Sequential[0] Scale: ...``) raises it from the user's."""
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in _USERS:
            return True
        tb = tb.tb_next
    return e.__cause__ is not None and users(e.__cause__)


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
            loose = kind == CLOSE or c.own or c.id.startswith((*MOVERS, "Carry"))
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
        # NumPy before 2.3 multiplies a non-contiguous operand without BLAS: other rounding
        yield "strided", np.repeat(a, 2, axis=-1)[..., ::2], CONVERT if _NP23 else CLOSE, a
        yield "reversed", a[::-1].copy()[::-1], CONVERT if _NP23 else CLOSE, a
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
