"""User code that `make test` type-checks with `mypy --strict` (beside the package) and
tests/test_typing_user_code.py runs: correct programs that funcdl's annotations once made
mypy reject (a probe of the public API's types). Not collected by pytest itself."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

import funcdl as fd
from funcdl import layers as L
from funcdl import optim, sweep


class SkipState(NamedTuple):
    best: float


def skip_if_worse() -> optim.GradientTransformation:
    """A user's transform whose update takes value=, as reduce_on_plateau's, chained."""
    def init(params: Any) -> SkipState:
        return SkipState(float("inf"))

    def update(state: SkipState, grads: Any, params: Any = None, *,
               value: float) -> tuple[Any, SkipState]:
        if value > state.best:
            return fd.tree.zeros_like(grads), state
        return grads, SkipState(value)

    return optim.GradientTransformation(init, update)


class Square:
    """A duck-typed layer: init, apply and vjp, no name or stateful flag."""

    def init(self, key: Any, in_shape: tuple[int | None, ...]) -> tuple[Any, Any]:
        return in_shape, ()

    def apply(self, params: Any, x: Any, **kw: Any) -> Any:
        return x * x

    def vjp(self, params: Any, x: Any, **kw: Any) -> Any:
        return x * x, lambda dy: ((), 2 * x * dy)


def train(config: dict[str, float]) -> float:
    return config["lr"] * config["seed"]


def main() -> list[float]:
    model = L.Sequential(L.Reshape(2), L.Dense(8), L.Dropout(0.1, broadcast_dims=[1]),
                         L.Tanh(), Square(), L.Dense(1))
    _, params = model.init(fd.random.key(np.int64(0)), (None, 2))  # a NumPy int seed
    x, y = fd.data.disk(fd.random.fold_in(fd.random.key(1), np.int64(2)), 64)
    vg = fd.value_and_grad(model, fd.losses.mse)
    out: list[float] = []

    sched = optim.warmup_cosine_decay_schedule(0.0, 1e-2, 10, 100)
    opt = optim.chain(optim.adam(sched), optim.reduce_on_plateau(patience=2), skip_if_worse())
    state = opt.init(params)
    batches = fd.data.batches(fd.random.key(3), x, y, batch_size=np.int64(16))
    for step, (xb, yb) in enumerate(batches):
        value, grads = vg(params, xb, yb, key=fd.random.fold_in(fd.random.key(4), step))
        updates, state = opt.update(state, grads, params=params, value=value)  # by keyword
        params = optim.apply_updates(params, updates)
    out.append(sched(state.states[0].count))          # a schedule read at a state's count

    resumed = optim.ScaleByAdamState(100, fd.tree.zeros_like(params),  # a Python int count
                                     fd.tree.zeros_like(params))
    out.append(float(optim.scale_by_adam().update(resumed, params)[1].count))

    vector, unravel = fd.tree.ravel(params)
    params = unravel(vector.tolist())                                 # a list, as JAX's

    groups = {"body": optim.adam(1e-3), "head": optim.sgd(0.1)}       # a dict[str, ...]
    labels = fd.tree.map(lambda _: "body", params)
    split = optim.partition(groups, labels)
    split.update(split.init(params), params, params)

    configs = [{"lr": lr, "seed": float(s)} for lr in (0.1, 0.01) for s in range(2)]
    with ThreadPoolExecutor(2) as pool:
        best: float = max(sweep.run(train, configs, pool, progress=False, strict=True))
    out.append(best)
    return out


if __name__ == "__main__":
    print(main())
