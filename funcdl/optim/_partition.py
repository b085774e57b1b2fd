"""optax's ``partition`` (and its older name ``multi_transform``): a transform per group of
leaves, as PyTorch's param groups; ``freeze`` and ``selective_transform``, which keep some
leaves still. The other wrappers: ``_conditional`` (``apply_if_finite``,
``conditionally_*``), ``_stateless`` (``stateless*``, the target-network updates)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

from funcdl import tree
from funcdl._treenodes import children_of
from funcdl.optim._base import GradientTransformation, check_state, check_transforms, transform
from funcdl.optim._checks import real_leaf, same_trees
from funcdl.optim._keywords import check_extra, extra_keywords, forwarded, show_keywords
from funcdl.optim._masked import (
    DESCEND,
    MaskedState,
    check_mask_flags,
    is_mask_flag,
    make_masked,
    masked_extra,
    params_along,
    spread,
)
from funcdl.optim._transforms import set_to_zero

__all__ = ["MultiTransformState", "PartitionState", "freeze", "multi_transform", "partition",
           "selective_transform"]

Tree = Any


class PartitionState(NamedTuple):
    """``inner_states[label]``: ``MaskedState(inner_state)`` of the transform for ``label``,
    over its own leaves only (as optax's)."""

    inner_states: dict[Hashable, Any]


MultiTransformState = PartitionState  # optax's older name, one class


def partition(transforms: Mapping[Any, GradientTransformation],  # Any: a dict[str, ...] too
              param_labels: Tree | Callable[[Tree], Tree]) -> GradientTransformation:
    """optax's ``partition``: ``transforms[label]`` on the leaves labelled ``label``, each
    transform seeing only its own leaves (the others as None, as under ``masked``), its
    updates put back in place: ``u_i = transforms[label_i](g)_i``.

    ``param_labels``: a tree of labels (keys of ``transforms``) with the params' structure,
    or a prefix of it (a label for a whole subtree), or a function returning one from the
    params (at ``init``) or the grads (at ``update``). Every leaf needs a label that has a
    transform (a ValueError naming the path otherwise); a transform no leaf is labelled with
    is allowed, as in optax, and keeps an empty state. State ``PartitionState(inner_states)``
    (``MultiTransformState`` is the same class). Keyword arguments of an update (``value=``)
    go to the transforms that take them.

    PyTorch's param groups, e.g. a smaller rate and no weight decay for the embedding::

        params = {'embed': {'table': ...}, 'dense': {'w': ..., 'b': ...}}
        opt = partition({'embed': adam(1e-4), 'dense': adamw(1e-3, weight_decay=1e-2)},
                        {'embed': 'embed', 'dense': 'dense'})
        state = opt.init(params)
        updates, state = opt.update(state, grads, params)
    """
    return make_partition("partition", transforms, param_labels)


multi_transform = partition  # optax's older name, one function


def make_partition(name: str, transforms: Any, param_labels: Any) -> GradientTransformation:
    """``partition(transforms, param_labels)``, its errors naming ``name``."""
    if not isinstance(transforms, Mapping):
        raise TypeError(f"{name}: transforms must be a dict label -> GradientTransformation "
                        f"(e.g. {{'w': adam(1e-3), 'b': sgd(0.1)}}), got "
                        f"{type(transforms).__name__}")
    if not transforms:
        raise ValueError(f"{name}: transforms is empty; give one transform per label")
    groups = dict(transforms)
    check_transforms(name, list(groups.values()), [f"transforms[{k!r}]" for k in groups])
    known = f"transforms has labels {list(groups)}"
    if not callable(param_labels):
        for path, label in tree.leaves_with_path(param_labels):  # once, when made
            _check_label(name, path, label, groups, known)

    def labels_of(where: str, t: Tree, what: str) -> list[Hashable]:
        """The label of each leaf of ``t``, in ``t``'s order, each checked."""
        def mark(m: Any, path: str) -> Any:
            if children_of(m) is not None:  # a node of param_labels: walked into
                return DESCEND
            _check_label(where, path, m, groups, known)
            return m

        m = param_labels(t) if callable(param_labels) else param_labels
        out: list[Hashable] = []
        try:
            spread(t, m, what, "param_labels", "", out, mark)
        except ValueError as e:  # a mismatch; a label's own error names `where` already
            if not str(e).startswith("tree structure"):
                raise
            raise ValueError(f"{where}: {e}") from None
        return out

    def init(params: Tree) -> PartitionState:
        labels = labels_of(f"{name}.init", params, "params")
        leaves, treedef = tree.leaves(params), tree.structure(params)
        return PartitionState({
            group: MaskedState(t.init(tree.unflatten(treedef, [
                x if lab == group else None for x, lab in zip(leaves, labels)])))
            for group, t in groups.items()})

    takes = tuple(extra_keywords(t.update) for t in groups.values())

    def update(state: Any, grads: Tree, params: Tree = None, **extra: Any
               ) -> tuple[Tree, PartitionState]:
        check_state(name, state, PartitionState)
        inner = state.inner_states
        if not isinstance(inner, dict) or inner.keys() != groups.keys():
            got = list(inner) if isinstance(inner, dict) else type(inner).__name__
            raise ValueError(f"{name}.update: the state's inner_states are {got}, expected "
                             f"{list(groups)}; pass the state made by this optimizer's init")
        if extra:
            check_extra(name, extra, takes)
        labels = labels_of(f"{name}.update", grads, "grads")
        g_leaves, treedef = tree.leaves(grads), tree.structure(grads)
        p_leaves = None if params is None else params_along(name, grads, params)
        out = list(g_leaves)
        new: dict[Hashable, Any] = {}
        for (group, t), keys in zip(groups.items(), takes, strict=True):
            s = inner[group]
            check_state(f"{name}.update (inner_states[{group!r}])", s, MaskedState)
            keep = [lab == group for lab in labels]
            g = tree.unflatten(treedef, [x if k else None for x, k in zip(g_leaves, keep)])
            p = None if p_leaves is None else tree.unflatten(
                treedef, [x if k else None for x, k in zip(p_leaves, keep)])
            more = forwarded(masked_extra(name, extra, keep), keys) if extra else {}
            u, new[group] = t.update(s.inner_state, g, p, **more)
            mine = [i for i, k in enumerate(keep) if k]
            done = tree.leaves(u)
            if len(done) != len(mine):
                raise ValueError(f"{name}.update: transforms[{group!r}] returned "
                                 f"{len(done)} update leaves for its {len(mine)} leaves")
            for i, x in zip(mine, done):
                out[i] = x
            new[group] = MaskedState(new[group])
        return tree.unflatten(treedef, out), PartitionState(new)

    return transform(name, init, show_keywords(update, takes))


def _check_label(name: str, path: str, label: Any, groups: dict[Hashable, Any],
                 known: str) -> None:
    try:
        ok = label in groups
    except TypeError:  # unhashable: an array, a set
        raise TypeError(f"{name}: param_labels{path} is a {type(label).__name__}, not a "
                        f"label; param_labels must hold keys of transforms ({known})"
                        ) from None
    if not ok:
        raise ValueError(f"{name}: param_labels{path} is {label!r:.60}, which has no "
                         f"transform; {known}")


def freeze(mask: Tree | Callable[[Tree], Tree]) -> GradientTransformation:
    """optax's ``freeze``: ``u = 0`` where ``mask`` is True, ``u = g`` elsewhere (it is
    ``masked(set_to_zero(), mask)``). ``mask``: a bool (every leaf), a tree of bools with
    the params' structure or a prefix of it, or a function of the params returning one.
    Chained before an optimizer with state, that state still moves on the zeros (momentum
    keeps stepping), and a weight decay after it still moves the frozen params:
    ``chain(freeze(m), adamw(lr))`` shrinks them by ``lr·wd·p`` a step, as optax's does.
    Put it last, ``chain(adamw(lr), freeze(m))`` (torch's ``requires_grad_(False)``), or
    use ``selective_transform``, which keeps the frozen leaves out of the optimizer. State
    ``MaskedState(inner_state)``. The grads must be real floating point and, with params
    given, of their structure and leaf shapes (the leaves passing through are checked too)."""
    name = "freeze"
    frozen = make_masked(name, set_to_zero(), mask)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, MaskedState]:
        check_state(name, state, MaskedState)
        if params is not None:
            same_trees(f"{name}.update", params, grads, ("params", "grads"), shapes=True)
        for path, g in tree.leaves_with_path(grads):
            real_leaf(f"{name}.update", "grads", path, g)
        return frozen.update(state, grads, params)

    return transform(name, frozen.init, update)


def selective_transform(optimizer: GradientTransformation, *,
                        freeze_mask: Tree | Callable[[Tree], Tree]) -> GradientTransformation:
    """optax's ``selective_transform``: ``optimizer`` on the leaves where ``freeze_mask`` is
    False, ``u = 0`` where it is True; the frozen leaves stay out of ``optimizer`` and its
    state. It is ``partition({'train': optimizer, 'freeze': set_to_zero()}, labels)``, the
    labels read from ``freeze_mask`` (a bool, a tree of bools with the params' structure or
    a prefix of it, or, beyond optax, a function of the params returning one). State
    ``PartitionState({'freeze': ..., 'train': ...})``."""
    name = "selective_transform"
    check_transforms(name, [optimizer], ["optimizer"])

    def as_labels(m: Tree) -> Tree:
        check_mask_flags(name, m)
        return tree.map(lambda f: "freeze" if f else "train", m)

    if callable(freeze_mask) and not is_mask_flag(freeze_mask):
        labels: Any = lambda t: as_labels(freeze_mask(t))  # noqa: E731
    else:
        labels = as_labels(freeze_mask)
    return make_partition(name, {"train": optimizer, "freeze": set_to_zero()}, labels)
