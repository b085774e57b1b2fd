"""random.choice and random.permutation read their first argument by one rule (an int, a
0-d integer array as in JAX, or an array of rank >= 1 with an axis), so they refuse the
same values with the same words."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import random

K = random.key(11)
BAD = {"0d-bool": np.array(True), "0d-float": np.array(2.0), "list": [1, 2], "tuple": (3,),
       "float": 2.5, "none": None, "str": "5", "bool": True}


def _message(call):
    with pytest.raises((TypeError, ValueError)) as e:
        call()
    return type(e.value), str(e.value)


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
def test_choice_and_permutation_refuse_a_bad_first_argument_alike(bad):
    kind_p, perm = _message(lambda: random.permutation(K, bad))
    kind_c, choice = _message(lambda: random.choice(K, bad, (2,)))
    assert kind_p is kind_c is TypeError
    assert choice == (perm.replace("random.permutation", "random.choice")
                      .replace("n must", "a must").replace("to shuffle", "to sample from"))


@pytest.mark.parametrize(("a", "axis"), [(5, 1), (np.zeros((2, 3)), 2), (np.zeros((2, 3)), -3),
                                         (np.zeros(3), 0.0), (-1, 0)])
def test_choice_and_permutation_refuse_a_bad_axis_or_size_alike(a, axis):
    kind_p, perm = _message(lambda: random.permutation(K, a, axis))
    kind_c, choice = _message(lambda: random.choice(K, a, (0,), axis=axis))
    assert kind_p is kind_c
    assert choice == perm.replace("random.permutation", "random.choice").replace("n must",
                                                                                 "a must")


def test_a_0d_bool_is_named_as_such_by_choice():
    with pytest.raises(TypeError, match=r"^random\.choice: a must be an int or an array of "
                                        r"rank >= 1 to sample from, got a 0-d array of dtype "
                                        r"bool$"):
        random.choice(K, np.array(True))


def test_both_take_a_0d_int_array_as_a_size_and_an_array_along_its_axis():
    np.testing.assert_array_equal(random.choice(K, np.array(6), (4,)), random.choice(K, 6, (4,)))
    np.testing.assert_array_equal(random.permutation(K, np.array(6)), random.permutation(K, 6))
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(random.permutation(K, x, -1), x[:, random.permutation(K, 4)])
    np.testing.assert_array_equal(random.choice(K, x, (2,), axis=-1),
                                  x[:, random.choice(K, 4, (2,))])


def test_prngkey_is_jax_name_for_key() -> None:
    assert random.PRNGKey is random.key
    np.testing.assert_array_equal(random.PRNGKey(7), random.key(7))
