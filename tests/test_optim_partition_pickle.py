"""partition, multi_transform and selective_transform after a cloudpickle round trip (what a
Dask worker receives in a sweep's config): the same updates. Their label walk returned a
module sentinel from a closure, which cloudpickle copied by value, so no label matched:
the raw grads came back as the updates (a probe; a sweep's loss went 0.69 -> 91)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from funcdl import optim, tree
from funcdl.optim._masked import DESCEND

cloudpickle = pytest.importorskip("cloudpickle")

PARAMS = {"dense": {"b": np.ones(2), "w": np.ones((3, 2))}, "embed": np.ones((4, 2))}
GRADS = tree.map(lambda p: np.full_like(p, 0.5), PARAMS)


@pytest.mark.parametrize("make", [
    lambda: optim.partition({"slow": optim.sgd(1e-4), "fast": optim.adam(1e-1)},
                            {"dense": "fast", "embed": "slow"}),
    lambda: optim.multi_transform({"a": optim.sgd(0.1), "b": optim.set_to_zero()},
                                  lambda p: {"dense": {"b": "b", "w": "a"}, "embed": "a"}),
    lambda: optim.chain(optim.clip(1.0), optim.selective_transform(
        optim.sgd(0.1), freeze_mask={"dense": True, "embed": False})),
], ids=["partition", "multi_transform", "selective_transform"])
def test_a_cloudpickled_partition_gives_the_same_updates(make) -> None:
    opt = make()
    copy = cloudpickle.loads(cloudpickle.dumps(opt))
    want, _ = opt.update(opt.init(PARAMS), GRADS, PARAMS)
    got, _ = copy.update(copy.init(PARAMS), GRADS, PARAMS)
    for a, b in zip(tree.leaves(want), tree.leaves(got)):
        np.testing.assert_array_equal(a, b)


def test_the_label_walks_sentinel_pickles_as_itself() -> None:
    assert pickle.loads(pickle.dumps(DESCEND)) is DESCEND
    assert cloudpickle.loads(cloudpickle.dumps(DESCEND)) is DESCEND
