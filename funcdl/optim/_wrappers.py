"""Accumulating, averaging and flattening wrappers, as optax's: ``apply_every`` (sum k updates, emit
the sum every k-th), ``multi_steps`` (optax's ``MultiSteps`` as a function: run an optimizer
on the mean of k gradients, every k-th step, with its ``should_skip_update_fn`` choices
``skip_not_finite`` and ``skip_large_updates``), ``ema`` (an exponential moving average of
the updates) and ``flatten`` (an inner transform run on the trees raveled into one
vector). Notation as in ``_transforms``. Each ``update`` refuses grads that are not
real floating point and returns inf and NaN steps silently."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg, real_arg
from funcdl.optim._base import (
    Count,
    GradientTransformation,
    check_state,
    check_transforms,
    held,
    leafwise,
    like,
    next_count,
    owned,
    read_count,
    real_grad,
    state_count,
    transform,
    zero_count,
)
from funcdl.optim._checks import (
    check_float,
    check_float_params,
    check_grads,
    check_schedule,
    moment_dtype_arg,
    real_leaf,
    same_trees,
    zeros_in,
)
from funcdl.optim._keywords import check_extra, extra_keywords, forwarded, show_keywords
from funcdl.optim._schedules import check_steps

__all__ = ["ApplyEveryState", "EmaState", "MultiStepsState", "apply_every", "ema", "flatten",
           "has_updated", "multi_steps", "skip_large_updates", "skip_not_finite"]

Tree = Any


class ApplyEveryState(NamedTuple):
    count: Count  # type: ignore[assignment]  # updates since the last emitted one, mod k
    grad_acc: Tree  # the sum of the updates since then


class MultiStepsState(NamedTuple):
    mini_step: Count  # gradients accumulated since the last inner update
    gradient_step: Count  # inner updates applied
    inner_opt_state: Any
    acc_grads: Tree  # their mean (their sum with use_grad_mean=False)
    skip_state: Any = ()  # what should_skip_update_fn last returned beside its verdict


def has_updated(state: MultiStepsState) -> bool:
    """optax's ``MultiSteps.has_updated``: whether the ``multi_steps`` update that returned
    ``state`` applied the inner optimizer, the k-th of k gradients (``mini_step`` back at 0
    after at least one inner update; a skipped gradient leaves the state as it was, and so
    this answer, as optax's)."""
    check_state("has_updated", state, MultiStepsState)
    return (read_count("has_updated", state.mini_step) == 0
            and read_count("has_updated", state.gradient_step) > 0)


def skip_not_finite(updates: Tree, gradient_step: Any, params: Tree
                    ) -> tuple[np.bool_, Any]:
    """optax's ``skip_not_finite``, a ``should_skip_update_fn`` for ``multi_steps``: skip a
    gradient holding an inf or a NaN. Returns ``(skip, {'should_skip': skip,
    'num_not_finite': n})``, ``n`` the count of such entries (an int64)."""
    del gradient_step, params
    n = sum(int(np.size(x) - np.count_nonzero(np.isfinite(x))) for x in tree.leaves(updates))
    skip = np.bool_(n > 0)
    return skip, {"should_skip": skip, "num_not_finite": np.int64(n)}


def skip_large_updates(updates: Tree, gradient_step: Any, params: Tree,
                       max_squared_norm: float) -> tuple[np.bool_, Any]:
    """optax's ``skip_large_updates`` (bind ``max_squared_norm`` with functools.partial):
    skip a gradient unless ``Σ g² < max_squared_norm`` (so a NaN norm skips too). Returns
    ``(skip, {'should_skip': skip, 'norm_squared': Σ g²})``, the norm in float64."""
    del gradient_step, params
    bound = real_arg(max_squared_norm, "skip_large_updates", "max_squared_norm",
                     finite=False, hint=" (bind it: functools.partial(skip_large_updates, "
                     "max_squared_norm=...))")
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN: skipped, silently
        norm_sq = np.float64(sum(np.sum(np.square(x, dtype=np.float64))
                                 for x in tree.leaves(updates)))
    skip = np.bool_(not norm_sq < bound)
    return skip, {"should_skip": skip, "norm_squared": norm_sq}


class EmaState(NamedTuple):
    count: Count  # type: ignore[assignment]  # shadows tuple.count, as in optax
    ema: Tree


def apply_every(k: int = 1) -> GradientTransformation:
    """optax's ``apply_every``: ``a = g`` at a count that is a multiple of ``k``, else
    ``a = a + g``; ``u = a`` at every k-th update (count = k-1 mod k), else ``u = 0``.

    In a chain, the stages before it still step at every update (use ``multi_steps`` to
    average the gradients before a whole optimizer). State ``ApplyEveryState(count,
    grad_acc)``, ``count`` kept mod ``k`` (as optax), ``grad_acc`` in the params' dtype.
    """
    name = "apply_every"
    k = check_steps(name, "k", k, positive=True)

    def init(params: Tree) -> ApplyEveryState:
        check_float_params(f"{name}.init", params)
        return ApplyEveryState(zero_count(), tree.zeros_like(params))

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, ApplyEveryState]:
        del params
        check_state(name, state, ApplyEveryState)
        c = read_count(f"{name}.update", state.count) % k
        emit = c == k - 1

        def leaf(g: Any, a: Any) -> tuple[Any, Any]:
            real_grad(g)
            acc = like(a + g, a) if c else owned(g, a)
            # zeros, not 0·acc: an inf in the sum would make optax's NaN
            return (held(acc) if emit else np.zeros_like(acc)), acc

        with np.errstate(all="ignore"):  # inf - inf in the sum: NaN, silently
            out, acc = leafwise(f"{name}.update", leaf, (grads, state.grad_acc),
                                ("grads", "state.grad_acc"), n_out=2, elementwise=True)
        return out, ApplyEveryState(np.int64((c + 1) % k), acc)

    return transform(name, init, update)


def multi_steps(opt: GradientTransformation, every_k_schedule: int | Callable[[int], int],
                use_grad_mean: bool = True,
                should_skip_update_fn: Callable[..., tuple[Any, Any]] | None = None
                ) -> GradientTransformation:
    """optax's ``MultiSteps(opt, every_k_schedule, use_grad_mean)`` as a transform: gradient
    accumulation. ``k = every_k_schedule`` (an int >= 1, or a function of the number of
    inner updates applied that returns one); the first k-1 of every k updates return zeros
    and only accumulate ``a = a + (g - a)/(n + 1)`` (``n`` gradients so far: their mean, by
    Welford's update as optax; their sum ``a + g`` with ``use_grad_mean=False``); the k-th
    returns ``opt``'s update of ``a`` (with the params) and starts again from ``a = 0``.
    ``opt``'s state moves only at those updates.

    Should the schedule's k fall below the gradients already taken, the next update is an
    inner one (optax's would drop them and start over). State ``MultiStepsState(
    mini_step, gradient_step, inner_opt_state, acc_grads, skip_state)``, ``acc_grads`` in
    the params' dtype (optax's default is float32).

    ``should_skip_update_fn(grads, gradient_step, params) -> (skip, skip_state)``, as
    optax's: a gradient it skips (``skip`` a bool) leaves the state as it was but for
    ``skip_state``, and returns zeros, as if never taken: ``skip_not_finite``,
    ``functools.partial(skip_large_updates, max_squared_norm=...)``, or your own.

    Example (a batch of 4 × 32 in place of 128)::

        opt = multi_steps(adam(1e-3), every_k_schedule=4)

    The mean is over micro-batches, each weighted alike, as optax's and the usual torch
    loop: with a per-token loss whose micro-batches hold different token counts
    (``ignore_index`` padding), it is not the whole batch's token mean. For that, pass
    ``use_grad_mean=False`` and take each micro-batch's loss with ``reduction='sum'``
    divided by the whole batch's token count (known before its first micro-batch).
    """
    name = "multi_steps"
    check_transforms(name, [opt], ["opt"])
    mean = bool_arg(use_grad_mean, name, "use_grad_mean")
    if callable(every_k_schedule):
        schedule = check_schedule(name, "every_k_schedule", every_k_schedule)

        def every_k(step: int) -> int:
            return check_steps(f"{name}.update", f"every_k_schedule({step}) (the gradients to "
                               f"accumulate)", schedule(step), positive=True)
    else:
        fixed = check_steps(name, "every_k_schedule (the gradients to accumulate, or a function "
                            "returning it)", every_k_schedule, positive=True)

        def every_k(step: int) -> int:
            del step
            return fixed

    if should_skip_update_fn is skip_large_updates:
        raise TypeError(f"{name}: should_skip_update_fn=skip_large_updates needs its "
                        f"max_squared_norm bound: functools.partial(skip_large_updates, "
                        f"max_squared_norm=...)")
    if should_skip_update_fn is not None and not callable(should_skip_update_fn):
        raise TypeError(f"{name}: should_skip_update_fn must be a function (grads, "
                        f"gradient_step, params) -> (skip, skip_state), such as "
                        f"optim.skip_not_finite, or None; got "
                        f"{type(should_skip_update_fn).__name__}")

    def skipping(grads: Tree, step: int, params: Tree) -> tuple[bool, Any]:
        """should_skip_update_fn's verdict, checked, and its state (``()`` without one)."""
        if should_skip_update_fn is None:
            return False, ()
        try:
            got = should_skip_update_fn(grads, np.int64(step), params)
        except (TypeError, ValueError) as e:  # named here: the user's function, not NumPy
            raise type(e)(f"{name}: should_skip_update_fn(grads, gradient_step, params) "
                          f"raised {type(e).__name__}: {e}") from None
        if not (isinstance(got, tuple) and len(got) == 2):
            raise TypeError(f"{name}: should_skip_update_fn must return (skip, skip_state), "
                            f"got {type(got).__name__}")
        skip = got[0]
        if not isinstance(skip, (bool, np.bool_)) and not (
                isinstance(skip, np.ndarray) and skip.shape == () and skip.dtype == bool):
            raise TypeError(f"{name}: should_skip_update_fn must return a bool (a Python or "
                            f"NumPy bool, or a 0-d bool array) first, got "
                            f"{type(skip).__name__} {getattr(skip, 'dtype', '')}".rstrip())
        return bool(skip), got[1]

    def init(params: Tree) -> MultiStepsState:
        check_float_params(f"{name}.init", params)
        zeros = tree.zeros_like(params)
        return MultiStepsState(zero_count(), zero_count(), opt.init(params), zeros,
                               skipping(zeros, 0, params)[1])

    takes = (extra_keywords(opt.update),)

    def update(state: Any, grads: Tree, params: Tree = None, **extra: Any
               ) -> tuple[Tree, MultiStepsState]:
        check_state(name, state, MultiStepsState)
        if extra:  # passed to opt at the k-th update, as optax's MultiSteps does
            check_extra(name, extra, takes)
        n = read_count(f"{name}.update", state.mini_step)
        step = read_count(f"{name}.update", state.gradient_step)
        skip, skip_state = skipping(grads, step, params)
        if skip:  # as if never taken, but for skip_state
            # a wrong tree, or grads that are not real floats, are still errors
            same_trees(f"{name}.update", grads, state.acc_grads, ("grads", "state.acc_grads"),
                       shapes=True)
            for path, g in tree.leaves_with_path(grads):
                real_leaf(f"{name}.update", "grads", path, g)
            return tree.zeros_like(state.acc_grads), state._replace(skip_state=skip_state)
        emit = n + 1 >= every_k(step)

        def leaf(g: Any, a: Any) -> Any:
            real_grad(g)
            if n == 0:  # a = 0: a + (g - a)/1 = a + g = g
                return owned(g, a)
            return like(a + (g - a) / (n + 1) if mean else a + g, a)

        with np.errstate(all="ignore"):  # inf - inf: NaN, silently
            (acc,) = leafwise(f"{name}.update", leaf, (grads, state.acc_grads),
                              ("grads", "state.acc_grads"))
        if not emit:
            return (tree.zeros_like(acc),
                    MultiStepsState(next_count(n), np.int64(step), state.inner_opt_state,
                                    acc, skip_state))
        updates, inner = opt.update(state.inner_opt_state, acc, params, **extra)
        return updates, MultiStepsState(zero_count(), next_count(step), inner,
                                        tree.zeros_like(acc), skip_state)

    return transform(name, init, show_keywords(update, takes))


def ema(decay: float, debias: bool = True, accumulator_dtype: Any = None
        ) -> GradientTransformation:
    """optax's ``ema``: ``e = (1-decay)·g + decay·e`` from ``e = 0``; ``u = e / (1 - decay^t)``
    (``u = e`` with ``debias=False``). Unlike ``trace``, the gradient enters weighted by
    ``1 - decay``. ``accumulator_dtype`` stores ``e`` in that float dtype (None: the
    params'); the step is then in the dtype ``g`` and ``e`` promote to (as optax), else in
    ``e``'s. State ``EmaState(count, ema)``.

    Fed params, not grads, it averages them. torch's ``AveragedModel`` with an EMA
    (``multi_avg_fn=get_ema_multi_avg_fn(decay)``) copies the params at its first update and
    averages from there, undebiased: ``avg = ema(decay, debias=False)``, its state
    ``EmaState(np.int64(0), params)`` at that first update (not ``avg.init``), then
    ``p_avg, s = avg.update(s, params)`` after each optimizer step.
    """
    name = "ema"
    d = check_float(name, "decay", decay, high=1.0)
    debias = bool_arg(debias, name, "debias")
    if debias and d == 1.0:
        raise ValueError(f"{name}: debias divides by 1 - decay^t, 0 for decay=1; pass "
                         f"decay < 1, or debias=False")
    acc_dt = moment_dtype_arg(name, "accumulator_dtype", accumulator_dtype)

    def init(params: Tree) -> EmaState:
        check_float_params(f"{name}.init", params)
        e = zeros_in(params, acc_dt)
        return EmaState(zero_count(), e)

    def update(state: Any, grads: Tree, params: Tree = None) -> tuple[Tree, EmaState]:
        del params
        count = state_count(name, state, EmaState)
        bc = 1.0 - d ** (count + 1) if debias else 1.0

        def leaf(g: Any, e: Any) -> tuple[Any, Any]:
            real_grad(g)
            stored = e
            if acc_dt is not None:  # as optax: the arithmetic in g's and e's promoted dtype
                e = np.asarray(e, np.result_type(g, e))
            new = (1.0 - d) * g + d * e
            u = new / bc if bc != 1.0 else new
            step, kept = (u if acc_dt is not None else like(u, stored)), like(new, stored)
            return (held(step) if step is kept else step), kept  # debias=False: the state

        with np.errstate(all="ignore"):  # inf - inf: NaN, silently
            out, e = leafwise(f"{name}.update", leaf, (grads, state.ema), ("grads", "state.ema"),
                              n_out=2, elementwise=acc_dt is None)
        return out, EmaState(next_count(count), e)

    return transform(name, init, update)


def flatten(inner: GradientTransformation) -> GradientTransformation:
    """optax's ``flatten``: ``inner`` runs on one vector ``v = ravel(tree)`` (the leaves laid
    end to end in ``funcdl.tree.ravel``'s order and promoted dtype); its step is cut back
    into the grads' leaves, shapes and dtypes. The state is ``inner``'s, over the vector;
    keyword arguments of the update (``value=``...) go to ``inner``."""
    name = "flatten"
    check_transforms(name, [inner], ("inner",))
    takes = (extra_keywords(inner.update),)

    def init(params: Tree) -> Any:
        check_float_params(f"{name}.init", params)
        return inner.init(tree.ravel(params)[0])

    def update(state: Any, grads: Tree, params: Tree = None, **extra: Any) -> tuple[Tree, Any]:
        where = f"{name}.update"
        if type(grads).__module__.startswith("funcdl.optim"):  # inner's state: any type
            raise TypeError(f"{where}: the first argument must be the optimizer state returned "
                            f"by init (call update(state, grads, params)); got grads of type "
                            f"{type(grads).__name__}, an optimizer's state")
        if extra:
            check_extra(name, extra, takes)
        if params is None:
            for path, leaf in tree.leaves_with_path(grads):
                real_leaf(where, "grads", path, leaf)
            flat_p = None
        else:
            check_grads(where, grads, params)
            flat_p = tree.ravel(params)[0]
        flat_g, unravel = tree.ravel(grads)
        flat_u, state = inner.update(state, flat_g, flat_p, **forwarded(extra, takes[0]))
        if np.shape(flat_u) != flat_g.shape:
            raise ValueError(f"{where}: inner must return a step shaped as the vector it was "
                             f"given, {flat_g.shape}, got {np.shape(flat_u)}")
        return unravel(flat_u), state

    return transform(name, init, show_keywords(update, takes))
