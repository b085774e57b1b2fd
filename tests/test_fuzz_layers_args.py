"""The fuzz of test_fuzz_layers.py over every argument but the input: ``init``'s key and
in_shape, the params and state trees, the keywords of ``apply`` and ``vjp`` (unknown ones,
``train`` that is not a bool, bad keys, a missing key or state, swapped arguments), the
cotangent given to the pullback, and the constructors' arguments. The perturbation kinds,
the catalogue and the verdicts are test_fuzz_layers.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from _layer_cases import CASES, F32, KEY, Case, f, ids
from test_fuzz_layers import (
    ANY,
    CLOSE,
    CONVERT,
    FIT,
    NO_STATE,
    REFUSE,
    attempt,
    cotangent,
    error_fault,
    input_checks,
    run,
    same,
    setup,
    shape_of,
    shapes,
    untouched,
    variants,
    verdict,
)

from funcdl import debug, initializers
from funcdl import layers as L

# ---------------------------------------------------------------------------- init

def shape_variants(s: Any) -> Iterator[tuple[str, Any, str, Any]]:
    """Bad in_shapes derived from ``s``: not a shape, list and NumPy forms, bad entries,
    and FIT ones (another rank or size, an unknown batch), per branch for a tuple."""
    if s and isinstance(s[0], tuple):
        yield "list", list(s), CONVERT, s
        for label, b in (("shorter", s[:-1]), ("longer", (*s, s[-1])), ("bare", s[0])):
            yield label, b, FIT, None
        for i, e in enumerate(s):
            for label, b, kind, canon in shape_variants(e):
                swap = (lambda v, i=i: (*s[:i], v, *s[i + 1:]))  # noqa: E731
                yield f"[{i}]{label}", swap(b), kind, canon if canon is None else swap(canon)
        return
    for label, b in (("None", None), ("int", 3), ("str", "ab"), ("dict", {})):
        yield label, b, REFUSE, None
    yield "list", list(s), CONVERT, s
    yield "batch None", (None, *s[1:]), FIT, None
    for i in range(1, len(s)):
        for label, d, kind in (("-1", -1, REFUSE), ("2.5", 2.5, REFUSE), ("True", True, REFUSE),
                               ("'3'", "3", REFUSE), ("int64", np.int64(s[i]), CONVERT),
                               ("None", None, FIT), ("+1", s[i] + 1, FIT), ("0", 0, FIT)):
            yield f"axis{i}={label}", (*s[:i], d, *s[i + 1:]), kind, s
    for label, b in (("rank-1", s[:-1]), ("rank+1", (*s, 1)), ("rank0", ())):
        yield label, b, FIT, None


def concrete(shape: Any, is_ids: bool) -> Any:
    """An input of a declared shape, None as 2."""
    if shape and all(isinstance(e, (tuple, list)) for e in shape):
        return tuple(concrete(e, is_ids) for e in shape)
    dims = [2 if d is None else d for d in shape]
    return ids(*dims) if is_ids else f(*dims)


def matches(declared: Any, got: Any) -> bool:
    if isinstance(declared, (tuple, list)) and declared and isinstance(declared[0], (tuple, list)):
        return len(declared) == len(got) and all(map(matches, declared, got))
    return len(declared) == len(got) and all(d is None or d == g for d, g in zip(declared, got))


def usable(c: Case, made: Any) -> str | None:
    """FIT's oracle for init: what an init accepted, apply takes, in the declared shape."""
    out_shape, params, state = (made[0], made[1], made[2] if c.layer.stateful else NO_STATE)
    x = concrete(made[-1], c.takes_ids)  # init_checks appends the in_shape it gave
    got, err = attempt(lambda: run(c, params, x, state, c.kw))
    if err is not None:
        return error_fault(err, c.tag, c.own)
    y = got[0][0] if c.layer.stateful else got[0]
    return None if matches(out_shape, shapes(y)) else f"output {shapes(y)}, init said {out_shape}"


def init_checks(c: Case) -> Iterator[tuple[str, str | None]]:
    s = shape_of(c.x)
    for label, k in (("key None", None), ("key 0", 0), ("key str", "k"),
                     ("key float", np.zeros(2)), ("key int64", np.array([1, 2])),
                     ("key 2-D", KEY[None]), ("key list", [1, 2])):
        yield label, verdict(c, lambda k=k: c.layer.init(k, s), CONVERT,
                             lambda: c.layer.init(KEY, s))
    for label, b, kind, canon in shape_variants(s):
        yield f"in_shape {label}", verdict(
            c, lambda b=b: (*c.layer.init(KEY, b), b), kind,
            lambda canon=canon: (*c.layer.init(KEY, canon), canon),
            lambda made: usable(c, made))


# ---------------------------------------------------------------------------- the rest

def keyword_checks(c: Case) -> Iterator[tuple[str, str | None]]:
    _, params, state = setup(c)
    st = {} if state is NO_STATE else {"state": state}

    def call(kw: dict[str, Any], fn: str = "both") -> Callable[[], Any]:
        def go() -> Any:
            if fn == "both":
                return run(c, params, c.x, state, kw)
            return getattr(c.layer, fn)(params, c.x, **st, **kw)
        return go

    for fn in ("apply", "vjp"):
        yield f"{fn} foo=1", verdict(c, call({**c.kw, "foo": 1}, fn), REFUSE)
        yield f"{fn} swapped", verdict(c, lambda fn=fn: getattr(c.layer, fn)(
            c.x, params, **st, **c.kw), REFUSE)
        yield f"{fn} 3 positional", verdict(c, lambda fn=fn: getattr(c.layer, fn)(
            params, c.x, KEY, **st), REFUSE)
        if state is NO_STATE:
            yield f"{fn} state=()", verdict(c, lambda fn=fn: getattr(c.layer, fn)(
                params, c.x, state=(), **c.kw), REFUSE)
        else:
            yield f"{fn} no state", verdict(c, lambda fn=fn: getattr(c.layer, fn)(
                params, c.x, **c.kw), REFUSE)
            yield f"{fn} state=None", verdict(c, lambda fn=fn: getattr(c.layer, fn)(
                params, c.x, state=None, **c.kw), REFUSE)
    keyed = {**c.kw, "key": c.kw.get("key", KEY)}
    r0, e0 = attempt(call({**keyed, "train": False}))
    r1, e1 = attempt(call({**keyed, "train": True}))
    flat = e0 is None and e1 is None and same(r0, r1)  # a layer that ignores train
    for t in ("yes", None, 1, 0.0, np.array([True])):
        yield f"train={t!r}", verdict(c, call({**keyed, "train": t}), CONVERT if flat else REFUSE,
                                      call({**keyed, "train": False}))
    for t in (np.bool_(True), np.bool_(False)):
        yield f"train=np.{t!r}", verdict(c, call({**keyed, "train": t}), CONVERT,
                                         call({**keyed, "train": bool(t)}))
    for k in (0, "k", np.zeros(2), np.array([1, 2]), KEY[None], [1, 2]):
        yield f"key={k!r}", verdict(c, call({**c.kw, "key": k}), CONVERT,
                                    call({**c.kw, "key": None}))
    if "key" in c.kw:
        yield "no key", verdict(c, call({k: v for k, v in c.kw.items() if k != "key"}),
                                CONVERT, call(c.kw))


def tree_variants(t: Any, leaf: str, path: str = "") -> Iterator[tuple[str, Any, str, Any]]:
    """``variants`` of each leaf of tree ``t`` (each a copy of ``t`` with one change), and of
    its containers: a dict without each key or with one more, a tuple as a list, one
    entry shorter or longer; at the root, None, (), [] and a string."""
    if isinstance(t, dict):
        for k in t:
            yield f"{path}-{k}", {j: v for j, v in t.items() if j != k}, REFUSE, None
            for label, b, kind, canon in tree_variants(t[k], leaf, f"{path}[{k!r}]"):
                yield label, {**t, k: b}, kind, canon if canon is None else {**t, k: canon}
        yield f"{path}+extra", {**t, "extra": np.zeros(1, F32)}, REFUSE, None
    elif isinstance(t, tuple):
        yield f"{path}:list", list(t), CONVERT, t
        if t:
            yield f"{path}:shorter", t[:-1], REFUSE, None
        yield f"{path}:longer", (*t, t[-1] if t else np.zeros(1, F32)), REFUSE, None
        for i, e in enumerate(t):
            for label, b, kind, canon in tree_variants(e, leaf, f"{path}[{i}]"):
                swap = (lambda v, i=i: (*t[:i], v, *t[i + 1:]))  # noqa: E731
                yield label, swap(b), kind, canon if canon is None else swap(canon)
    elif isinstance(t, np.ndarray):
        for label, b, kind, canon in variants(t, leaf):
            yield f"{path}:{label}", b, kind, canon
    if not path:
        empty = CONVERT if not leaves(t) else REFUSE
        for label, b in (("None", None), ("()", ()), ("[]", []), ("{}", {})):
            yield label, b, empty, t
        yield "str", "w", REFUSE, None


def leaves(t: Any) -> list[Any]:
    if isinstance(t, dict):
        t = list(t.values())
    return [x for e in t for x in leaves(e)] if isinstance(t, (tuple, list)) else [t]


def params_checks(c: Case) -> Iterator[tuple[str, str | None]]:
    _, params, state = setup(c)
    for label, b, kind, canon in tree_variants(params, "param"):
        if c.own and label.startswith("[0]"):  # the user's layer checks its params, or not
            kind = ANY
        yield f"params {label}", verdict(c, lambda b=b: run(c, b, c.x, state, c.kw), kind,
                                         lambda b=b, canon=canon: mirrored(
                                             run(c, canon, c.x, state, c.kw), b, canon))
    if state is not NO_STATE:
        for label, b, kind, canon in tree_variants(state, "param"):
            if label.endswith(":masked") and not c.kw.get("train"):
                kind = CLOSE  # inference returns the state object it was given (the contract)
            yield f"state {label}", verdict(c, lambda b=b: run(c, params, c.x, b, c.kw), kind,
                                            lambda canon=canon: run(c, params, c.x, canon, c.kw))


def mirrored(result: tuple[Any, ...], given: Any, canon: Any) -> tuple[Any, ...]:
    """``run``'s result at ``canon`` params, its dparams as they come back for the params
    ``given`` instead: params without leaves (None, [], {} for ()) come back as given, as
    a pytree's cotangent takes the primal's structure."""
    if given is canon or leaves(canon) or not isinstance(result[-1], tuple):
        return result
    return (*result[:-1], (given, *result[-1][1:]))


def cotangent_checks(c: Case) -> Iterator[tuple[str, str | None]]:
    _, params, state = setup(c)
    st = {} if state is NO_STATE else {"state": state}
    y, pullback, *_ = c.layer.vjp(params, c.x, **st, **c.kw)
    for label, b, kind, canon in tree_variants(cotangent(y), "dy"):
        if label.endswith("]:None"):  # one branch of a tuple: nothing flows back from it
            kind = ANY
        yield f"dy {label}", verdict(c, lambda b=b: untouched(pullback, b), kind,
                                     lambda canon=canon: pullback(canon))


def debug_checks(c: Case) -> Iterator[tuple[str, str | None]]:
    """The input's perturbations through a Sequential's other path, that of
    ``debug.check_finite`` (child by child, each output checked)."""
    if c.tag == "Sequential":
        with debug.check_finite():
            yield from list(input_checks(c))


FAMILIES = {"init": init_checks, "params": params_checks, "keywords": keyword_checks,
            "cotangent": cotangent_checks, "debug": debug_checks}
SEQUENTIAL = {c.id for c in CASES if c.tag == "Sequential"}  # debug_checks' only cases


@pytest.mark.parametrize("c, family", [
    pytest.param(c, fam, id=f"{c.id}-{fam}") for c in CASES for fam in FAMILIES
    if fam != "debug" or c.id in SEQUENTIAL])
def test_fuzz(c: Case, family: str) -> None:
    faults = [f"  {label}: {why}" for label, why in FAMILIES[family](c) if why]
    assert not faults, f"{c.id} {family}, {len(faults)} faults:\n" + "\n".join(faults)


# ---------------------------------------------------------------------------- constructors
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
      "b_init": INIT}),
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
     {"eps": (*NUM, 0), "axis": (*INT, (), (1, 1.5), 0, 2, (1, 1))}),
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
    ("MultiHeadAttention", L.MultiHeadAttention, {"num_heads": 2}, f(2, 3, 4),
     {"num_heads": (*POS, 3), "causal": FLAG, "dropout": (*NUM, -0.1, 1.5), "use_bias": FLAG,
      "w_init": INIT, "b_init": INIT}),
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
    ("TransformerEncoderLayer", L.TransformerEncoderLayer,
     {"d_model": 4, "nhead": 2, "dim_feedforward": 6}, f(2, 3, 4),
     {"d_model": (*POS, 3, 8), "nhead": (*POS, 3), "dim_feedforward": POS,
      "dropout": (*NUM, -0.1, 1.5), "activation": (None, 3, "tanh", "RELU", L.ReLU),
      "layer_norm_eps": (*NUM, 0, -1), "norm_first": FLAG, "causal": FLAG,
      "bias": (*FLAG, False), "batch_first": (*FLAG, False)}),
    ("TransformerDecoderLayer", L.TransformerDecoderLayer,
     {"d_model": 4, "nhead": 2, "dim_feedforward": 6}, (f(2, 3, 4), f(2, 5, 4)),
     {"d_model": (*POS, 3, 8), "nhead": (*POS, 3), "dim_feedforward": POS,
      "dropout": (*NUM, -0.1, 1.5), "activation": (None, 3, "tanh", L.ReLU),
      "layer_norm_eps": (*NUM, 0, -1), "norm_first": FLAG, "causal": FLAG,
      "bias": (*FLAG, False), "batch_first": (*FLAG, False)}),
    ("Bidirectional", L.Bidirectional, {"layer": L.LSTM(3)}, f(2, 4, 3),
     {"layer": (L.LSTM, None, 3, "lstm", L.LSTM(3, reverse=True), L.BatchNorm()),
      "merge": (3, "mul", "Concat", True), "backward_layer": (L.LSTM, 3, "lstm")}),
    ("WeightNorm", L.WeightNorm, {"layer": L.Dense(3)}, f(2, 3),
     {"layer": (L.ReLU, None, 3, "dense", L.ReLU()), "name": (None, 3, "b2", "kernel"),
      "dim": (*INT[1:], 2, -3)}),
    ("SpectralNorm", L.SpectralNorm, {"layer": L.Dense(3)}, f(2, 3),
     {"layer": (L.ReLU, None, 3, L.ReLU(), L.BatchNorm()), "name": (None, 3, "kernel"),
      "n_power_iterations": POS, "eps": (*NUM, 0, -1), "dim": (*INT[1:], 2, -3)}),
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
