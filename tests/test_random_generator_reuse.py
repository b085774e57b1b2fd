"""``random``'s samplers draw from each thread's one Philox Generator, its state set anew per
call (``_keys._gen``), where they built a new one per call. The numbers must be those of a
new ``Generator(Philox(key=k, counter=c))`` per call, for every sampler, whatever the
thread's generator drew before (a half-used buffer, a spare 32-bit word) and with many
threads drawing at once. A pure speed change: these tests pass on the code before it (a new
generator per call is their reference); each fails on a mutant of the reuse (a generator
shared by all threads, a state reset that keeps the spare word, fold_in's counter dropped).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import _keys
from funcdl import random as R

_MODULES = [m for name, m in sorted(sys.modules.items())
            if name.startswith("funcdl") and getattr(m, "_gen", None) is _keys._gen]


def _fresh(k: Any, counter: Any = None) -> np.random.Generator:
    """The reference: a new generator per call, as before the reuse."""
    return np.random.Generator(np.random.Philox(key=k, counter=counter))


@contextmanager
def fresh_generators() -> Iterator[None]:
    """Every module that imported ``_gen`` given the new-generator-per-call reference."""
    saved = [m._gen for m in _MODULES]
    for m in _MODULES:
        m._gen = _fresh
    try:
        yield
    finally:
        for m, g in zip(_MODULES, saved, strict=True):
            m._gen = g


K = R.key(7)
LOGITS = np.array([[0.3, -1.0, 2.0, 0.0], [1.0, 1.0, -np.inf, 0.5]], np.float32)

# every public sampler, its key first, with arguments that reach its several branches
SAMPLERS: dict[str, Callable[[Any], Any]] = {
    "split": lambda k: np.stack(R.split(k, 3)),
    "fold_in": lambda k: R.fold_in(k, 12345),
    "normal": lambda k: R.normal(k, (5, 3)),
    "normal64": lambda k: R.normal(k, (7,), np.float64),
    "uniform": lambda k: R.uniform(k, (6,), -2.0, 3.0),
    "bernoulli": lambda k: R.bernoulli(k, 0.3, (9,)),
    "permutation": lambda k: R.permutation(k, 11),
    "randint": lambda k: R.randint(k, (5,), 0, 100),
    "randint_int32": lambda k: R.randint(k, (3,), 0, 7, dtype=np.int32),
    "choice": lambda k: R.choice(k, 10, (4,), replace=False),
    "choice_p": lambda k: R.choice(k, 4, (6,), p=np.array([0.1, 0.2, 0.3, 0.4])),
    "categorical": lambda k: R.categorical(k, LOGITS),
    "categorical_k": lambda k: R.categorical(k, LOGITS, shape=(2, 2), replace=False),
    "categorical_lead": lambda k: R.categorical(k, LOGITS, shape=(3, 2)),
    "categorical_axis0": lambda k: R.categorical(k, LOGITS.T, axis=0),
    "gumbel": lambda k: R.gumbel(k, (4,)),
    "exponential": lambda k: R.exponential(k, (4,)),
    "truncated_normal": lambda k: R.truncated_normal(k, -1.0, 2.0, (5,)),
    "gamma": lambda k: R.gamma(k, np.array([0.2, 1.0, 5.0])),
    "loggamma": lambda k: R.loggamma(k, np.array([1e-3, 2.0])),
    "beta": lambda k: R.beta(k, 0.5, 2.0, (4,)),
    "dirichlet": lambda k: R.dirichlet(k, np.array([0.5, 1.0, 2.0]), (2,)),
    "chisquare": lambda k: R.chisquare(k, 3.0, (3,)),
    "t": lambda k: R.t(k, 4.0, (3,)),
    "poisson": lambda k: R.poisson(k, np.array([0.5, 30.0, 1e3])),
    "geometric": lambda k: R.geometric(k, 0.3, (4,)),
    "binomial": lambda k: R.binomial(k, np.array([5, 100, 10**6]), 0.3),
    "laplace": lambda k: R.laplace(k, (3,)),
    "logistic": lambda k: R.logistic(k, (3,)),
    "cauchy": lambda k: R.cauchy(k, (3,)),
    "rademacher": lambda k: R.rademacher(k, (5,)),
    "rayleigh": lambda k: R.rayleigh(k, 2.0, (3,)),
    "weibull_min": lambda k: R.weibull_min(k, 1.0, 0.5, (3,)),
    "pareto": lambda k: R.pareto(k, 3.0, (3,)),
    "lognormal": lambda k: R.lognormal(k, 0.5, (3,)),
    "mvn": lambda k: R.multivariate_normal(k, np.zeros(2), np.array([[2.0, 0.5], [0.5, 1.0]]),
                                           (3,)),
    "glorot": lambda k: fd.initializers.glorot_uniform()(k, (3, 4), np.float32),
    "orthogonal": lambda k: fd.initializers.orthogonal(2.0)(k, (4, 3), np.float64),
}


def _dirty(k: Any) -> None:
    """Leave the thread's generator mid-stream: a partly used buffer and a spare 32-bit word
    (an odd number of 32-bit draws keeps one), at another key and counter."""
    R.randint(R.fold_in(k, 99), (3,), 0, 5, dtype=np.int32)
    R.uniform(R.fold_in(k, 98), (1,), dtype=np.float32)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_each_sampler_draws_what_a_new_generator_draws(name):
    with fresh_generators():
        expected = SAMPLERS[name](K)
    got = SAMPLERS[name](K)
    np.testing.assert_array_equal(got, expected)
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    _dirty(K)  # whatever the generator drew last, the next call starts clean
    np.testing.assert_array_equal(SAMPLERS[name](K), expected)


def test_the_samplers_called_in_turn_match_a_new_generator_each():
    # each call's state is set anew, so a sequence gives the calls' own numbers
    order = sorted(SAMPLERS)
    with fresh_generators():
        expected = [SAMPLERS[n](R.fold_in(K, i)) for i, n in enumerate(order)]
    for _ in range(2):
        got = [SAMPLERS[n](R.fold_in(K, i)) for i, n in enumerate(order)]
        for n, a, b in zip(order, got, expected, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=n)


def test_categorical_classes_on_another_axis_are_the_last_axis_draws():
    # the classes are moved last only when they are not there already
    np.testing.assert_array_equal(R.categorical(K, LOGITS.T, axis=0), R.categorical(K, LOGITS))
    three = np.stack([LOGITS, LOGITS[::-1]], axis=1)  # (2, 2, 4): classes last
    np.testing.assert_array_equal(R.categorical(K, np.moveaxis(three, -1, 1), axis=1),
                                  R.categorical(K, three))


def test_a_spare_32_bit_word_is_not_carried_to_the_next_key():
    # NumPy keeps the other half of a 64-bit word after an odd number of 32-bit draws
    k1, k2 = R.key(1), R.key(2)
    R.randint(k1, (1,), 0, 1 << 30, dtype=np.int32)
    got = R.randint(k2, (4,), 0, 1 << 30, dtype=np.int32)
    want = _fresh(k2).integers(0, 1 << 30, size=4, dtype=np.int32, endpoint=True)
    np.testing.assert_array_equal(got, want)


def test_fold_in_and_split_are_their_documented_philox_streams():
    k = R.key(3)
    for d in (0, 1, 2**40, 2**64 - 1):
        want = _fresh(k, np.array([d, 1, 0, 0], np.uint64)).integers(
            0, 2**64 - 1, size=2, dtype=np.uint64, endpoint=True)
        np.testing.assert_array_equal(R.fold_in(k, d), want)
    want = _fresh(k).integers(0, 2**64 - 1, size=(4, 2), dtype=np.uint64, endpoint=True)
    np.testing.assert_array_equal(np.stack(R.split(k, 4)), want)
    assert R.fold_in(k, 0).tolist() != R.fold_in(k, 1).tolist()


def test_the_thread_generator_keeps_no_key_alive_between_calls():
    # a key the caller changes after a draw must not change the next draw's numbers
    k = R.key(5).copy()
    a = R.normal(k, (3,))
    k[0] ^= np.uint64(1)
    b = R.normal(R.key(5), (3,))
    np.testing.assert_array_equal(a, b)


def test_threads_drawing_at_once_get_their_serial_numbers():
    # large draws release the GIL inside NumPy, so a generator shared between threads
    # would have its state reset under another thread's draw
    keys = [R.key(100 + i) for i in range(6)]

    def work(k: Any) -> list[Any]:
        out = []
        for j in range(25):
            kj = R.fold_in(k, j)
            out.append(R.normal(kj, (20_000,)))
            out.append(R.categorical(kj, np.zeros((64, 5), np.float32)))
            out.append(np.stack(R.split(kj, 2)))
        return out

    serial = [work(k) for k in keys]
    results: list[Any] = [None] * len(keys)
    barrier = threading.Barrier(len(keys))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(keys[i])

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(keys))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old)
    for got, want in zip(results, serial, strict=True):
        assert got is not None
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


class _DrawsWhenRead:
    """An argument whose conversion draws from funcdl.random (a user's ``__array__``),
    as a ``__del__`` or a signal handler might in the middle of another draw."""

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        R.normal(R.key(123), (3,))
        return np.array(2.0, dtype or np.float64)


@pytest.mark.parametrize("draw", [
    lambda k, a: R.gamma(k, a, (4,)),
    lambda k, a: R.uniform(k, (4,), 0.0, a),
    lambda k, a: R.poisson(k, a, (4,)),
])
def test_a_draw_nested_in_another_leaves_its_numbers_alone(draw):
    # the thread's generator is reset only when nothing holds it: a sampler still drawing
    # keeps its stream, and the nested draw gets a generator of its own
    k = R.key(7)
    np.testing.assert_array_equal(draw(k, _DrawsWhenRead()), draw(k, 2.0))


def test_a_held_generator_is_not_handed_out_again():
    held = _keys._gen(R.key(1))
    first = held.random()
    other = _keys._gen(R.key(2))
    assert other is not held
    assert held.random() == np.random.Generator(np.random.Philox(key=R.key(1))).random(2)[1]
    assert first == np.random.Generator(np.random.Philox(key=R.key(1))).random()
