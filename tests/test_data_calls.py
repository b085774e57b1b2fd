"""funcdl.data's review fixes: a data set maker called without its key or n (``moons(400)``)
names itself, its parameters, what came and the fix; ``moments`` checks its axis once, by
the shared rule (the wording of random's axes); the stratified split's counts live in
funcdl.data, their one user."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from funcdl import data, random

K = random.key(5)
MAKERS = ["moons", "circles", "spirals", "blobs", "disk"]


@pytest.mark.parametrize("name", MAKERS)
def test_a_maker_without_its_key_names_itself_what_it_expects_and_the_fix(name):
    maker = getattr(data, name)
    with pytest.raises(TypeError) as e:
        maker(400)
    msg = str(e.value)
    assert msg.startswith(f"data.{name}: expected data.{name}(key, n, "), msg
    assert (f"got data.{name}(400): missing a required argument: 'n'; the key comes first: "
            f"pass e.g. data.{name}(funcdl.random.key(0), 400)") in msg, msg


@pytest.mark.parametrize("name", MAKERS)
@pytest.mark.parametrize(("args", "kwargs", "says"), [
    ((K,), {}, "missing a required argument: 'n'"),
    ((), {"n": 7}, "missing a required argument: 'key'"),
    ((K, 5), {"seed": 1}, "got an unexpected keyword argument 'seed'"),
    ((K, 5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), {}, "too many positional arguments")])
def test_every_misfit_call_is_named(name, args, kwargs, says):
    with pytest.raises(TypeError, match=rf"^data\.{name}: expected data\.{name}\(key, n"):
        getattr(data, name)(*args, **kwargs)
    with pytest.raises(TypeError, match=says):
        getattr(data, name)(*args, **kwargs)


@pytest.mark.parametrize("name", MAKERS)
def test_makers_keep_their_signature_and_output(name):
    maker = getattr(data, name)
    assert list(inspect.signature(maker).parameters)[:2] == ["key", "n"]
    x, y = maker(K, 6)
    x2, y2 = maker(key=K, n=6)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    with pytest.raises(TypeError, match=rf"data\.{name}: expected a key"):
        maker(6, K)  # swapped: the key check's own message, as before


def test_moments_axis_refusals_use_the_shared_axis_rule():
    with pytest.raises(ValueError, match=r"^data\.moments: axis 1 is out of bounds for an "
                                         r"array of rank 1$"):
        data.moments(np.zeros(3), axis=1)
    with pytest.raises(ValueError, match=r"^data\.moments: axis -3 is out of bounds"):
        data.moments(np.zeros((2, 3)), axis=-3)
    with pytest.raises(TypeError, match=r"^data\.moments: axis must be an int"):
        data.moments(np.zeros((2, 3)), axis=1.0)
    # an empty axis is named by its index >= 0, whichever way it was given
    with pytest.raises(ValueError, match=r"^data\.moments: axis 1 of x must have at least one "
                                         r"entry, got x of shape \(2, 0\)"):
        data.moments(np.zeros((2, 0)), axis=-1)
    x = np.arange(6.0).reshape(2, 3)
    for a, b in zip(data.moments(x, axis=-1), data.moments(x, axis=1)):
        np.testing.assert_array_equal(a, b)


def test_stratified_test_counts_live_in_data_and_split_by_largest_remainders():
    assert data.stratified_test_counts.__module__ == "funcdl.data"
    counts = np.array([5, 3, 2])
    # shares 2.5, 1.5, 1.0: floors 2, 1, 1; the place left goes to the tie's lower class
    np.testing.assert_array_equal(data.stratified_test_counts(counts, 5), [3, 1, 1])
    np.testing.assert_array_equal(data.stratified_test_counts(np.array([3, 3, 3]), 4),
                                  [2, 1, 1])
    # 0.5 and 4.5: the tie again to class 0, the rare one
    np.testing.assert_array_equal(data.stratified_test_counts(np.array([1, 9]), 5), [1, 4])
    np.testing.assert_array_equal(data.stratified_test_counts(np.array([2, 8]), 3), [1, 2])
