"""The fuzz of test_fuzz_layers.py over every argument but the input: ``init``'s key and
in_shape, the params and state trees, the keywords of ``apply`` and ``vjp`` (unknown ones,
``train`` that is not a bool, bad keys, a missing key or state, swapped arguments), the
cotangent given to the pullback (the constructors' arguments: test_fuzz_layers_ctor_args.py).
The perturbation kinds, the catalogue and the verdicts are test_fuzz_layers.py's.
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

from funcdl import debug

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
