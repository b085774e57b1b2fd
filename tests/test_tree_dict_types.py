"""OrderedDict and defaultdict through funcdl.tree: their type (and default factory) kept by
map, map_multi, unflatten and ravel's unravel, as JAX keeps them; keys visited sorted, as a
plain dict's (DESIGN.md), so such params meet a layer's plain-dict grads whatever the order."""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest

from funcdl import optim, tree


def _ordered() -> collections.OrderedDict[str, np.ndarray]:
    return collections.OrderedDict([("w", np.ones(2)), ("b", np.zeros(1))])  # not sorted


def _default() -> collections.defaultdict[str, np.ndarray]:
    return collections.defaultdict(list, {"w": np.ones(2), "b": np.zeros(1)})


MAPS = {
    "map": lambda t: tree.map(lambda x: x + 1, t),
    "map-two": lambda t: tree.map(np.add, t, t),
    "map-three": lambda t: tree.map(lambda x, y, z: x + y + z, t, t, t),
    "map_multi": lambda t: tree.map_multi(lambda x: (x, x + 1), 2, t)[1],
    "unflatten": lambda t: tree.unflatten(tree.structure(t), [v + 1 for v in tree.leaves(t)]),
    "unravel": lambda t: tree.ravel(t)[1](tree.ravel(t)[0] + 1),
    "zeros_like": lambda t: tree.map(lambda z: z + 1, tree.zeros_like(t)),
    "astype": lambda t: tree.map(lambda x: x + 1, tree.astype(t, np.float32)),
}


@pytest.mark.parametrize("how", MAPS)
@pytest.mark.parametrize("make", [_ordered, _default], ids=["OrderedDict", "defaultdict"])
def test_the_container_type_comes_back_nested_or_not(make, how):
    for t, get in [(make(), lambda r: r), ([make(), (make(),)], lambda r: r[1][0])]:
        out = get(MAPS[how](t))
        assert type(out) is type(make())
        assert list(out) == ["b", "w"]  # sorted, as a plain dict's
        if how != "zeros_like":
            assert out["w"].tolist() == ([3.0, 3.0] if how == "map-three" else [2.0, 2.0])
        if isinstance(out, collections.defaultdict):
            assert out.default_factory is list


def test_flattening_order_and_structure_are_a_plain_dicts():
    plain = dict(_ordered())
    assert [x.shape for x in tree.leaves(_ordered())] == [(1,), (2,)]
    assert tree.structure(_ordered()) == tree.structure(plain) == tree.structure(_default())
    # params as an OrderedDict, grads as a layer gives them: one structure, params' type kept
    grads = {"b": np.ones(1), "w": np.ones(2)}
    opt = optim.sgd(0.5, momentum=0.9)
    updates, _ = opt.update(opt.init(_ordered()), grads, _ordered())
    new = optim.apply_updates(_ordered(), updates)
    assert type(new) is collections.OrderedDict and new["w"].tolist() == [0.5, 0.5]


def test_the_first_trees_type_is_the_results():
    plain = {"b": np.zeros(1), "w": np.ones(2)}
    assert type(tree.map(np.add, _ordered(), plain)) is collections.OrderedDict
    assert type(tree.map(np.add, plain, _ordered())) is dict


def test_treedef_repr_names_the_type_and_pickles_with_it():
    td = tree.structure([_ordered(), _default(), {"a": 1}])
    assert repr(td) == "[OrderedDict({'b': *, 'w': *}), defaultdict({'b': *, 'w': *}), {'a': *}]"
    back = pickle.loads(pickle.dumps(td))
    assert back == td
    out = tree.unflatten(back, [1, 2, 3, 4, 5])
    assert [type(x) for x in out] == [collections.OrderedDict, collections.defaultdict, dict]
    assert out[1].default_factory is list and out[0] == {"b": 1, "w": 2}


def test_other_dict_subclasses_come_back_as_plain_dicts():
    class Config(dict):  # type: ignore[type-arg]
        pass

    out = tree.map(lambda x: x, Config(a=1, b=2))
    assert type(out) is dict and out == {"a": 1, "b": 2}
    counts = tree.map(lambda x: x * 2, collections.Counter(a=1))
    assert type(counts) is dict and counts == {"a": 2}


def test_as_jax_keeps_the_types():
    jtu = pytest.importorskip("jax.tree_util")
    for t in [_ordered(), _default(), [_ordered(), {"x": _default()}]]:
        ours = tree.map(lambda x: x, t)
        theirs = jtu.tree_map(lambda x: x, t)
        assert _types(ours) == _types(theirs)


def _types(t: object) -> list[type]:
    if isinstance(t, dict):
        return [type(t)] + [k for v in t.values() for k in _types(v)]
    if isinstance(t, (list, tuple)):
        return [type(t)] + [k for v in t for k in _types(v)]
    return []
