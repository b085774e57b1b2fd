"""Fuzz of the error contract (DESIGN.md, Errors) for funcdl.random and funcdl.initializers;
funcdl.data is in test_fuzz_data_random_batches.py, which shares this file's rule.

Every public object has a valid call; bad calls are derived from it by a fixed product of
perturbations of each argument (no randomness). A bad call must raise ValueError or
TypeError (Python's own, not a NumPy subclass) whose message names the object and none of
NumPy's or Python's internals, or succeed and give, bit for bit, what the equivalent valid
call gives ("Same key, same numbers"). Warnings are errors here.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from test_fuzz_api import params

from funcdl import initializers as I
from funcdl import random

K = random.key(7)
INTERNALS = (  # NumPy's and Python's words, which name no funcdl object
    "could not be broadcast", "operands could not", "matmul: Input operand",
    "out of bounds for array", "index out of bounds", "object arrays are not supported", "ufunc",
    "not enough values to unpack", "unhashable", "has no attribute", "array is too big",
    "Maximum allowed", "maximum supported dimension", "not understood", "<locals>",
    "cannot be interpreted as an integer", "int() argument", "could not convert",
    "only integer scalar arrays", "iteration over a 0-d")
# shapes no array can have: the message must blame the shape (not low and high, which
# "must broadcast" to it, nor NumPy's nameless "array is too big")
HUGE = ("huge", "huge-1d", "zero-by-huge", "past-int64", "rank-65")
Case = tuple[str, Callable[[], Any], tuple[str, ...], Any]  # id, call, names, same


def _arrays(out: Any) -> list[np.ndarray]:
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _arrays(o)]
    return [out]


class Like:
    """An accepted call whose numbers are not pinned: an array of this shape and dtype."""

    def __init__(self, shape: tuple[int, ...], dtype: Any = np.float32) -> None:
        self.shape, self.dtype = shape, np.dtype(dtype)


def verdict(call: Callable[[], Any], names: tuple[str, ...], same: Any) -> None:
    try:
        got = call()
    except (ValueError, TypeError) as e:
        msg = f"{type(e).__module__}.{type(e).__name__}: {e}"
        assert type(e).__module__ == "builtins", msg  # not numpy's AxisError or a subclass
        assert any(n in str(e) for n in names), f"names none of {names}: {msg}"
        assert not [p for p in INTERNALS if p in str(e)], f"internal words in {msg}"
        return
    assert same is not None, f"accepted silently, giving {got!r:.300}"
    if isinstance(same, Like):
        assert isinstance(got, np.ndarray) and (got.shape, got.dtype) == (same.shape, same.dtype)
        assert np.isfinite(got).all() if got.dtype.kind in "fc" else True
        return
    g, w = _arrays(got), _arrays(same())
    assert len(g) == len(w), (len(g), len(w))
    for a, b in zip(g, w):
        assert type(a) is np.ndarray or np.isscalar(a), type(a)
        np.testing.assert_array_equal(a, b, strict=True)


# ------------------------------------------------------------------- perturbation tables

def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


BAD_KEYS: dict[str, Any] = {
    "none": None, "int-seed": 7, "float": 0.5, "bool": True, "str": "key", "list": K.tolist(),
    "tuple": tuple(K.tolist()), "int64": K.astype(np.int64), "float64": K.astype(np.float64),
    "jax-raw-uint32": np.array([0, 7], np.uint32), "len-3": np.append(K, K[:1]),
    "row-1x2": K[None], "0-d": K[0], "0-d-array": np.array(K[0]), "object": K.astype(object),
    "split-stacked": np.stack(random.split(K)), "numpy-generator": np.random.default_rng(7),
    "big-endian": K.astype(">u8"), "empty": np.zeros(0, np.uint64), "complex": K.astype(complex)}
SAME_KEYS = {"strided": np.repeat(K, 2)[::2], "readonly": _readonly(K), "masked": np.ma.array(K),
             "fortran": np.asfortranarray(K)}

BAD_SHAPES: dict[str, Any] = {
    "negative": -1, "negative-axis": (2, -1), "float": 2.0, "float-size": (2.0, 3), "bool": True,
    "bool-size": (True, 3), "none": None, "none-size": (2, None), "str": "23", "complex": 2j,
    "dict": {2: 0, 3: 0}, "set": {3}, "dict-keys": {2: 0, 3: 0}.keys(), "float-array":
    np.array([2.0, 3.0]), "2d-array": np.array([[2, 3]]), "0d-float": np.array(3.0),
    "huge": (2**40, 2**40), "huge-1d": (10**20,), "zero-by-huge": (0, 2**70),
    "past-int64": 2**63, "rank-65": (1,) * 65, "nested": ((2, 3),)}
SAME_SHAPES = {"list": [2, 3], "int-array": np.array([2, 3]),
               "numpy-ints": (np.int64(2), np.uint8(3)),
               "uint64-array": np.array([2, 3], np.uint64),
               "object-array": np.array([2, 3], object)}  # of Python ints, as NumPy reads it
SAME_INT_SHAPES = {"int": 6, "numpy-int": np.int32(6), "0d-array": np.array(6)}

FLOAT = (np.float32, np.float64)
BAD_DTYPES: dict[str, Any] = {
    "int32": np.int32, "int64": "i8", "uint8": np.uint8, "bool": bool, "float16": np.float16,
    "complex64": np.complex64, "complex128": complex, "object": object, "str": str,
    "unknown": "foo", "longdouble": np.longdouble, "big-endian": ">f4", "void": "V8",
    "datetime": "M8[s]", "number": 1.5, "list": [], "array": np.zeros(2, np.float32)}
SAME_DTYPES = {"none": (None, np.float32), "name": ("float32", np.float32),
               "dtype": (np.dtype("f4"), np.float32), "python-float": (float, np.float64),
               "code": ("f8", np.float64)}
NUMBERS_BAD: dict[str, Any] = {
    "nan": float("nan"), "inf": float("inf"), "-inf": -float("inf"), "none": None, "bool": True,
    "numpy-bool": np.True_, "str": "0.5", "complex": 0.5j, "array-2": np.array([0.5, 0.5]),
    "object": np.array(0.5, object), "list": [0.5], "huge-int": 10**400}


def _named(where: str) -> tuple[str, ...]:
    return (where, where.split(".")[-1] + "()")  # "random.normal", or Python's "normal()"


def _perturb(where: str, make: Callable[[Any], Any], valid: Any, bad: dict[str, Any],
             same: dict[str, Any], tag: str) -> list[Case]:
    """Cases calling ``make`` with each bad value (refused) and each value equivalent to
    ``valid`` (the same result as ``make(valid)``)."""
    names = _named(where)
    out: list[Case] = [(f"{where}-{tag}-{i}", lambda v=v: make(v), names, None)
                       for i, v in bad.items()]
    out += [(f"{where}-{tag}-{i}-same", lambda v=v: make(v), names, lambda: make(valid))
            for i, v in same.items()]
    return out


# ---------------------------------------------------------------------------- samplers

SAMPLERS: dict[str, Callable[..., Any]] = {  # where: f(key, shape, dtype), all args valid
    "random.normal": lambda k, s=(2, 3), d=np.float32: random.normal(k, s, d),
    "random.uniform": lambda k, s=(2, 3), d=np.float32: random.uniform(k, s, -1.5, 2.0, d),
    "random.bernoulli": lambda k, s=(2, 3), d=None: random.bernoulli(k, 0.25, s),
    "random.gumbel": lambda k, s=(2, 3), d=np.float32: random.gumbel(k, s, d),
    "random.exponential": lambda k, s=(2, 3), d=np.float32: random.exponential(k, s, d),
    "random.truncated_normal":
        lambda k, s=(2, 3), d=np.float32: random.truncated_normal(k, -1.0, 2.0, s, d),
    "random.gamma": lambda k, s=(2, 3), d=np.float32: random.gamma(k, 2.0, s, d),
    "random.loggamma": lambda k, s=(2, 3), d=np.float32: random.loggamma(k, 0.5, s, d),
    "random.beta": lambda k, s=(2, 3), d=np.float32: random.beta(k, 2.0, 3.0, s, d),
    "random.dirichlet":
        lambda k, s=(2, 3), d=np.float32: random.dirichlet(k, np.ones(3), s, d)[..., 0],
    "random.chisquare": lambda k, s=(2, 3), d=np.float32: random.chisquare(k, 3.0, s, d),
    "random.t": lambda k, s=(2, 3), d=np.float32: random.t(k, 3.0, s, d),
    "random.binomial": lambda k, s=(2, 3), d=np.float32: random.binomial(k, 10, 0.5, s, d),
    "random.laplace": lambda k, s=(2, 3), d=np.float32: random.laplace(k, s, d),
    "random.logistic": lambda k, s=(2, 3), d=np.float32: random.logistic(k, s, d),
    "random.cauchy": lambda k, s=(2, 3), d=np.float32: random.cauchy(k, s, d),
    "random.rayleigh": lambda k, s=(2, 3), d=np.float32: random.rayleigh(k, 1.5, s, d),
    "random.weibull_min":
        lambda k, s=(2, 3), d=np.float32: random.weibull_min(k, 1.5, 2.0, s, d),
    "random.pareto": lambda k, s=(2, 3), d=np.float32: random.pareto(k, 3.0, s, d),
    "random.lognormal": lambda k, s=(2, 3), d=np.float32: random.lognormal(k, 0.5, s, d),
    "random.multivariate_normal": lambda k, s=(2, 3), d=np.float32:
        random.multivariate_normal(k, np.zeros(2), np.eye(2), s, d)[..., 0],
    "initializers.truncated_normal":
        lambda k, s=(2, 3), d=np.float32: I.truncated_normal(0.5, -1.0, 3.0)(k, s, d),
    "initializers.zeros": lambda k, s=(2, 3), d=np.float32: I.zeros()(k, s, d),
    "initializers.ones": lambda k, s=(2, 3), d=np.float32: I.ones()(k, s, d),
    "initializers.normal": lambda k, s=(2, 3), d=np.float32: I.normal(0.5, 1.0)(k, s, d),
    "initializers.uniform": lambda k, s=(2, 3), d=np.float32: I.uniform(0.5, -1.0)(k, s, d),
    "initializers.variance_scaling":
        lambda k, s=(2, 3), d=np.float32: I.variance_scaling(2.0, "fan_out", "normal")(k, s, d),
    "initializers.orthogonal": lambda k, s=(2, 3), d=np.float32: I.orthogonal(2.0)(k, s, d),
    **{f"initializers.{n}": (lambda k, s=(2, 3), d=np.float32, n=n: getattr(I, n)()(k, s, d))
       for n in ("glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal",
                 "lecun_uniform", "torch_default", "xavier_normal", "xavier_uniform")}}

# shape=None: the parameters' broadcast shape, as in JAX
SHAPE_NONE_OK = ("random.bernoulli", "random.truncated_normal", "random.gamma",
                 "random.loggamma", "random.beta", "random.dirichlet", "random.chisquare",
                 "random.t", "random.binomial", "random.rayleigh", "random.pareto",
                 "random.lognormal", "random.multivariate_normal", "random.weibull_min")
KEYLESS = ("initializers.zeros", "initializers.ones")  # the key is not read: None is fine,
# as in JAX's zeros(key, shape, dtype); any other non-key is refused (a swapped call)
ANY_DTYPE = KEYLESS  # zeros and ones take every number and bool dtype


def _sampler_cases() -> list[Case]:
    out: list[Case] = []
    for where, f in SAMPLERS.items():
        bad_keys = {i: k for i, k in BAD_KEYS.items() if not (where in KEYLESS and k is None)}
        out += _perturb(where, f, K, bad_keys, SAME_KEYS, "key")
        shapes = {i: s for i, s in BAD_SHAPES.items()
                  if not (where in SHAPE_NONE_OK and s is None)}  # the parameters' shape
        out += [(i, c, (f"{where}: shape",) if i.split("-shape-")[-1] in HUGE else n, s)
                for i, c, n, s in _perturb(where, lambda s, f=f: f(K, s), (2, 3), shapes,
                                           SAME_SHAPES, "shape")]
        if where not in ("initializers.orthogonal", "initializers.torch_default"):  # rank >= 2
            out += _perturb(where, lambda s, f=f: f(K, s), (6,), {}, SAME_INT_SHAPES, "int")
        for dims in [(0, 3), (3, 0), (2, 0, 3), (0,), (), (1,), (1, 1), (4, 1, 1, 2)]:
            refused = where in ("initializers.orthogonal", "initializers.torch_default") \
                and len(dims) < 2
            dt = bool if where == "random.bernoulli" else np.float32
            out.append((f"{where}-edge-shape-{dims}", lambda f=f, s=dims: f(K, s), _named(where),
                        None if refused else Like(dims, dt)))
        if where == "random.bernoulli":
            continue
        out += [(f"{where}-swapped-key-shape", lambda f=f: f((2, 3), K), _named(where), None),
                (f"{where}-float64", lambda f=f: f(K, (2, 3), np.float64), _named(where),
                 Like((2, 3), np.float64))]
        out += [(f"{where}-dtype-{i}-same", lambda f=f, d=d: f(K, (2, 3), d), _named(where),
                 lambda f=f, w=w: f(K, (2, 3), w)) for i, (d, w) in SAME_DTYPES.items()]
        for i, d in BAD_DTYPES.items():
            ok = where in ANY_DTYPE and i in ("int32", "int64", "uint8", "bool", "float16",
                                              "complex64", "complex128", "longdouble", "big-endian")
            out.append((f"{where}-dtype-{i}", lambda f=f, d=d: f(K, (2, 3), d), _named(where),
                        Like((2, 3), d) if ok else None))
    return out


@params(_sampler_cases())
def test_samplers_and_initializers(call, names, same):
    verdict(call, names, same)


# ------------------------------------------------------------------------ initializers

FACTORIES = [n for n in I.__all__ if n not in ("Initializer", "fans")]
SETTINGS = {  # factory: valid settings, in order (whole numbers: each has an int twin)
    "normal": (2.0, 1.0), "uniform": (2.0, -1.0), "variance_scaling": (2.0, "fan_in", "uniform"),
    "orthogonal": (2.0,), "truncated_normal": (2.0, -1.0, 3.0), "constant": (2.0,),
    "delta_orthogonal": (2.0,)}
SAME_NUMBERS = {"int": int, "numpy-float32": np.float32, "0d-array": np.array,
                "fraction": lambda v: Fraction(int(v))}


def _initializer_cases() -> list[Case]:
    out: list[Case] = []
    for name in FACTORIES:
        where, fac = f"initializers.{name}", getattr(I, name)
        names = (where, f"{name}()")
        valid = SETTINGS.get(name, ())
        for pos, v in enumerate(valid):
            def make(x: Any, pos: int = pos, fac: Any = fac, valid: Any = valid) -> Any:
                return fac(*valid[:pos], x, *valid[pos + 1:])(K, (3, 4), np.float64)
            if isinstance(v, str):
                bad = {"upper": v.upper(), "none": None, "bytes": v.encode(), "list": [v],
                       "typo": v + "s", "array": np.array(v), "keras-name": "untruncated_normal"}
                out += _perturb(where, make, v, bad, {"numpy-str": np.str_(v)}, f"arg{pos}")
                continue
            signed = ("orthogonal", "constant", "delta_orthogonal")  # a sign flip, a value
            bad = {**NUMBERS_BAD, **({"negative": -2.0} if pos == 0 and name not in signed
                                     else {}),  # a mean, a low or a sign flip may be negative
                   **({"zero": 0.0} if name == "variance_scaling" else {})}
            if name == "uniform" and pos == 1:  # low above scale; None is the default 0
                bad["above-scale"] = 3.0
                del bad["none"]
            out += _perturb(where, make, v, bad, {i: c(v) for i, c in SAME_NUMBERS.items()},
                            f"arg{pos}")
        out += [  # called wrongly: settings where none are taken, uncalled, init misused
            (f"{where}-extra-setting", lambda fac=fac, v=valid: fac(*v, 1.0), names, None),
            (f"{where}-unknown-setting", lambda fac=fac, v=valid: fac(*v, gain=1.0), names, None),
            (f"{where}-uncalled", lambda fac=fac: fac(K, (3, 4), np.float32), names, None),
            (f"{where}-init-no-shape", lambda fac=fac, v=valid: fac(*v)(K), names, None),
            (f"{where}-init-extra-arg",
             lambda fac=fac, v=valid: fac(*v)(K, (3, 4), np.float32, 1), names, None),
            (f"{where}-init-unknown-keyword",
             lambda fac=fac, v=valid: fac(*v)(K, (3, 4), seed=1), names, None),
            (f"{where}-init-keywords", lambda fac=fac, v=valid: fac(*v)(
                key=K, shape=(3, 4), dtype=np.float32), names,
             lambda fac=fac, v=valid: fac(*v)(K, (3, 4), np.float32))]
    return out


def _overflowing() -> list[Case]:
    """Settings that fit float64 but put samples beyond float32's range."""
    return [(f"initializers.{n}-float32-overflow", c, (f"initializers.{n}",), None) for n, c in [
        ("normal", lambda: I.normal(1e38)(K, (3,))), ("normal", lambda: I.normal(1.0, 1e39)(K, 3)),
        ("uniform", lambda: I.uniform(1e39)(K, (3,))),
        ("variance_scaling", lambda: I.variance_scaling(1e300, "fan_in", "normal")(K, (2, 2))),
        ("orthogonal", lambda: I.orthogonal(-1e39)(K, (2, 2)))]]


def _too_big() -> list[Case]:
    """Shapes whose entries fit but whose bytes do not: zeros and ones take wide dtypes."""
    return [(f"initializers.{n}-{np.dtype(d)}-too-big", lambda n=n, s=s, d=d: getattr(I, n)()(
        K, s, d), (f"initializers.{n}: shape",), None)
        for n, s, d in [("zeros", (2**59,), np.complex128), ("ones", (2**58, 1), np.clongdouble),
                        ("zeros", (2**30, 2**29), np.longdouble)]]


@params(_initializer_cases() + _overflowing() + _too_big())
def test_initializer_settings_and_calls(call, names, same):
    verdict(call, names, same)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 5), (5,), (), (0, 4), (4, 0)])
def test_fans_take_every_shape_an_init_takes(shape):
    verdict(lambda: I.fans(shape), ("initializers.fans",), lambda: I.fans(list(shape)))
    for i, s in BAD_SHAPES.items():
        verdict(lambda s=s: I.fans(s), ("initializers.fans",),
                None if i not in HUGE else (lambda s=s: I.fans(s)))


# ---------------------------------------------------------------------------- random

INTS_BAD: dict[str, Any] = {
    "negative": -1, "bool": True, "numpy-bool": np.False_, "float": 2.0,
    "numpy-float": np.float64(2), "str": "2", "none": None, "array-1": np.array([2]),
    "0d-float": np.array(2.0), "complex": 2j, "fraction": Fraction(2), "list": [2],
    "huge": 10**20}
SAME_INTS = {"numpy-int8": np.int8(2), "numpy-uint64": np.uint64(2), "0d-array": np.array(2),
             "0d-uint8": np.array(2, np.uint8)}


def _random_cases() -> list[Case]:
    out: list[Case] = []
    calls: dict[str, Callable[[Any], Any]] = {
        "random.split": lambda k: random.split(k, 3),
        "random.fold_in": lambda k: random.fold_in(k, 5),
        "random.permutation": lambda k: random.permutation(k, 6),
        "random.permutation-array": lambda k: random.permutation(k, np.ones((2, 3)), 1),
        "random.check_key": lambda k: random.check_key(k, "random.check_key")}
    for where, f in calls.items():
        base, _, tag = where.partition("-")
        same = {} if base == "random.check_key" else SAME_KEYS  # which returns its argument
        out += _perturb(base, f, K, BAD_KEYS, same, f"key{'-' * bool(tag)}{tag}")
    ints: dict[str, Callable[[Any], Any]] = {
        "random.key": random.key, "random.split": lambda n: random.split(K, n),
        "random.fold_in": lambda d: random.fold_in(K, d),
        "random.permutation": lambda n: random.permutation(K, n)}
    for where, f in ints.items():
        bad = dict(INTS_BAD)
        if where == "random.key":  # -1 is 2**64 - 1 (as in JAX); 10**20 fits 128 bits
            del bad["negative"], bad["huge"]
            bad["past-128-bits"] = 2**128
        if where == "random.fold_in":
            bad["past-64-bits"] = 2**64
        if where == "random.permutation":
            bad.pop("array-1")  # an array of rank 1 is shuffled: its own case below
            bad.update({"tuple": (1, 2), "list-of-3": [1, 2, 3], "past-int64": 2**63})
        if where == "random.split":
            bad.update({"past-int64": 2**63, "too-many": 2**62})
        out += _perturb(where, f, 2, bad, SAME_INTS, "int")
    out += [  # permutation's axis and shuffled arrays, split's 0, key's negative seed
        *_perturb("random.permutation", lambda a: random.permutation(K, np.ones((2, 3)), a), 1,
                  {"2": 2, "-3": -3, "float": 1.0, "bool": True, "none": None, "str": "1",
                   "array": np.array([1])}, {"-1": -1, "0d": np.array(1), "numpy": np.int8(1)},
                  "axis"),
        *_perturb("random.permutation", lambda a: random.permutation(K, 5, a), 0,
                  {"1": 1, "-2": -2, "float": 0.0, "bool": False}, {"-1": -1}, "int-axis"),
        *_perturb("random.permutation", lambda x: random.permutation(K, x), np.arange(4),
                  {}, {"readonly": _readonly(np.arange(4))}, "array"),
        ("random.permutation-strings", lambda: random.permutation(K, np.array(list("abc"))),
         ("random.permutation",), lambda: np.array(list("abc"))[random.permutation(K, 3)]),
        ("random.split-0", lambda: random.split(K, 0), ("random.split",), lambda: ()),
        ("random.key-negative", lambda: random.key(-1), ("random.key",),
         lambda: random.key(2**64 - 1))]
    return out


def _uniform_bernoulli_cases() -> list[Case]:
    out: list[Case] = []
    for pos in ("low", "high"):
        def make(v: Any, pos: str = pos, d: Any = np.float32) -> Any:
            kw = {"low": -1.5, "high": 2.0, pos: v}
            return random.uniform(K, (2, 3), kw["low"], kw["high"], d)
        bad = {**NUMBERS_BAD, "beyond-float32": 4e38 * (1 if pos == "high" else -1),
               "crossing": 3.0 if pos == "low" else -2.0, "ragged": [[0.5], [0.5, 0.5]],
               "shape-2": [0.0, 1.0], "shape-4x3": np.zeros((4, 3)),
               "shape-1x2x3": np.zeros((1, 2, 3)),
               "crossing-entry": np.array([-2.0, 0.0, 3.0]) * (1 if pos == "low" else -1)}
        bad.pop("list")  # broadcasting arrays are documented: below
        same = {"numpy-float32": np.float32(-1.5 if pos == "low" else 2.0),
                "0d-array": np.array(-1.5 if pos == "low" else 2.0),
                "list-row": [-1.5 if pos == "low" else 2.0] * 3}
        out += _perturb("random.uniform", make, -1.5 if pos == "low" else 2.0, bad, same, pos)
    out += [("random.uniform-empty-interval", lambda: random.uniform(K, (3,), 0.5, 0.5),
             ("random.uniform",), lambda: np.full(3, 0.5, np.float32)),
            ("random.uniform-beyond-float32-in-float64",
             lambda: random.uniform(K, (3,), -4e38, 4e38, np.float64), ("random.uniform",),
             Like((3,), np.float64))]
    bad_p = {**NUMBERS_BAD, "negative": -0.25, "above-one": 1.25, "ragged": [[0.25], [0.5, 0.5]],
             "shape-2": [0.25, 0.5], "shape-4x3": np.full((4, 3), 0.25),
             "nan-entry": [0.25, np.nan, 0.5]}
    bad_p.pop("list")
    out += _perturb("random.bernoulli", lambda p: random.bernoulli(K, p, (2, 3)), 0.25, bad_p,
                    {"numpy-float32": np.float32(0.25), "0d-array": np.array(0.25),
                     "list-row": [0.25] * 3, "fraction": Fraction(1, 4)}, "p")
    out += [("random.bernoulli-p-sets-shape", lambda: random.bernoulli(K, [0.25] * 3),
             ("random.bernoulli",), lambda: random.bernoulli(K, 0.25, (3,)))]
    return out


@params(_random_cases() + _uniform_bernoulli_cases())
def test_keys_and_sampler_arguments(call, names, same):
    verdict(call, names, same)
