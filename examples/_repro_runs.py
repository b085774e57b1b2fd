"""The training runs behind ``examples/reproduce.py``: one pure function of a config dict per
report, each returning a small dict of numbers (and, for run 0, what the figures need).

Every run draws its data, initial parameters and batch orders from explicit keys derived from
``(report seed, run index)``, so a run is reproducible on its own and the networks of one
report are compared on the same data, from the same keys (paired runs).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import _train  # examples/ is on sys.path: reproduce.py puts it there, and so do its workers
import numpy as np

import funcdl as fd
from funcdl import layers as L
from funcdl.initializers import he_normal, normal, uniform, zeros

ACTIVATIONS: dict[str, Callable[[], Any]] = {"relu": L.ReLU, "tanh": L.Tanh,
                                             "sigmoid": L.Sigmoid}
GRID = 150  # resolution of the decision-region pictures


# ---------------------------------------------------------------------------- models

def initializers_for(scheme: str, n_in: int, n_out: int) -> tuple[Any, Any]:
    """``(w_init, b_init)`` of one Dense(n_in -> n_out) under a report's named scheme."""
    if scheme == "normal":          # report 000: torch's tensor.normal_(), N(0, 1)
        return normal(1.0), normal(1.0)
    if scheme == "uniform":         # report 000 / 002 / PyTorch's nn.Linear: U(±1/sqrt(in))
        b = 1 / math.sqrt(n_in)
        return uniform(b, low=-b), uniform(b, low=-b)
    if scheme == "xavier_uniform":  # report 001: U(±sqrt(6/(in+out))), bias column included
        b = math.sqrt(6 / (n_in + n_out))
        return uniform(b, low=-b), uniform(b, low=-b)
    if scheme == "xavier_normal":   # report 003: N(0, 2/(in+out)), weights and biases
        s = math.sqrt(2 / (n_in + n_out))
        return normal(s), normal(s)
    if scheme == "he_normal":       # report 003: N(0, 2/in), weights and biases
        s = math.sqrt(2 / n_in)
        return normal(s), normal(s)
    if scheme == "kaiming_zero_bias":  # report 004: Kaiming normal, zero biases
        return he_normal(), zeros()
    raise ValueError(f"unknown init scheme {scheme!r}")


def mlp(sizes: list[int], hidden: list[str], out: str | None, scheme: str) -> Any:
    """Dense layers ``sizes[0] -> ... -> sizes[-1]``, ``hidden[i]`` after the i-th, ``out``
    (or nothing) after the last."""
    layers: list[Any] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        w_init, b_init = initializers_for(scheme, n_in, n_out)
        layers.append(L.Dense(n_out, w_init=w_init, b_init=b_init))
        act = hidden[i] if i < len(sizes) - 2 else out
        if act is not None:
            layers.append(ACTIVATIONS[act]())
    return L.Sequential(*layers)


def net1_shared() -> Any:
    """Report 002's weight-sharing variant of Net_1 (its architecture is not given): the first
    two layers of Net_1 (Linear-Tanh-Linear-ReLU, 1 -> 25 -> 25) are one encoder applied to
    each coordinate with the same weights, the two codes are concatenated, then
    Linear(50, 25)-ReLU-Linear(25, 1)-Sigmoid. The disk is symmetric in x and y."""
    encoder = L.Sequential(L.Dense(25), L.Tanh(), L.Dense(25), L.ReLU())
    return L.Sequential(L.FanOut(2), L.Parallel(L.Slice(np.s_[0:1]), L.Slice(np.s_[1:2])),
                        L.Shared(encoder), L.FanInConcat(), L.Dense(25), L.ReLU(),
                        L.Dense(1), L.Sigmoid())


def _half_mse(pred: Any, target: Any) -> tuple[float, Callable[..., Any]]:
    value, pullback = fd.losses.mse.vjp(pred, target)
    return 0.5 * value, lambda g=1.0: pullback(0.5 * float(g))


half_mse = fd.losses.Loss("half_mse", _half_mse)
"""Report 002's MSE, ``1/(2N) Σ (p - t)²``, and report 004's ``½ (p - t)²``."""

sum_mse = fd.losses.Loss("sum_mse", lambda p, t: fd.losses.mse.vjp(p, t, reduction="sum"))
"""Squared errors summed over the batch: per-example gradients accumulated, then one step."""


# ---------------------------------------------------------------------------- helpers

def run_keys(seed: int, run: int) -> tuple[Any, ...]:
    """(train data, test data, init, batch order) keys of run ``run`` of a report."""
    return fd.random.split(fd.random.fold_in(fd.random.key(seed), run), 4)


def disk_data(config: dict[str, Any]) -> tuple[Any, ...]:
    k_train, k_test, k_init, k_epochs = run_keys(config["seed"], config["run"])
    x, y = fd.data.disk(k_train, config["n_train"])
    xt, yt = fd.data.disk(k_test, config["n_test"])
    return x, y, xt, yt, k_init, k_epochs


def error(pred: np.ndarray, y: np.ndarray, threshold: float) -> float:
    """Fraction of points on the wrong side of ``threshold`` (labels are 0/1 or ±1)."""
    return float(np.mean((pred > threshold) != (y > threshold)))


def grid_points(n: int = GRID) -> np.ndarray:
    g = np.linspace(0, 1, n, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def snapshot(predict: Callable[[np.ndarray], np.ndarray], xt: np.ndarray,
             yt: np.ndarray) -> dict[str, Any]:
    """What a picture of the network needs: its output over the square and at the test set."""
    return {"grid": predict(grid_points()).reshape(GRID, GRID), "x": xt, "y": yt[:, 0],
            "pred": predict(xt)[:, 0]}


def make_opt(config: dict[str, Any]) -> Any:
    if config["opt"] == "adam":
        return fd.optim.adam(config["lr"], weight_decay=config.get("wd", 0.0))
    return fd.optim.sgd(config["lr"], weight_decay=config.get("wd", 0.0))


def train(model: Any, loss: Any, opt: Any, params: Any, x: np.ndarray, y: np.ndarray,
          key: Any, epochs: int, batch_size: int,
          after_epoch: Callable[[int, Any, float], None] | None = None) -> tuple[Any, float]:
    """Minibatch training; ``after_epoch(epoch, params, mean batch loss)`` runs outside the
    timed region. Returns the trained params and the seconds spent training."""
    value_and_grad = fd.value_and_grad(model, loss)
    state = opt.init(params)
    seconds = 0.0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        params, state, mean_loss = _train.epoch(value_and_grad, opt, params, state,
                                                fd.random.fold_in(key, epoch), x, y,
                                                batch_size=batch_size)
        seconds += time.perf_counter() - start
        if after_epoch is not None:
            after_epoch(epoch, params, mean_loss)
    return params, seconds


# ---------------------------------------------------------------------------- reports

def run_000(config: dict[str, Any]) -> dict[str, Any]:
    """Report 000: 2-25-25-25-1, one hidden activation, Sigmoid output, squared error
    (summed over the batch with ``reduction='sum'``, else the batch mean), plain SGD."""
    x, y, xt, yt, k_init, k_epochs = disk_data(config)
    act = config["act"]
    model = mlp([2, 25, 25, 25, 1], [act] * 3, "sigmoid", config["init"])
    _, params = model.init(k_init, (None, 2))
    loss = sum_mse if config.get("reduction") == "sum" else fd.losses.mse
    params, seconds = train(model, loss, fd.optim.sgd(config["lr"]), params, x, y, k_epochs,
                            config["epochs"], config["batch"])
    return {"seconds": seconds, "train_error": error(model.apply(params, x), y, 0.5),
            "test_error": error(model.apply(params, xt), yt, 0.5)}


def run_001(config: dict[str, Any]) -> dict[str, Any]:
    """Report 001: 2-25-25-25-1 ReLU, Tanh output, targets ±1, MSE, SGD lr 0.1; test
    accuracy at checkpoints; with ``torch``, the same network in PyTorch on the same data and
    batch order."""
    x, y, xt, yt, k_init, k_epochs = disk_data(config)
    y, yt = 2 * y - 1, 2 * yt - 1
    model = mlp([2, 25, 25, 25, 1], ["relu"] * 3, "tanh", config["init"])
    _, params = model.init(k_init, (None, 2))
    out: dict[str, Any] = {"accuracy": {}}

    def after_epoch(epoch: int, p: Any, _loss: float) -> None:
        if epoch in config["checkpoints"]:
            out["accuracy"][epoch] = 1 - error(model.apply(p, xt), yt, 0.0)
        if epoch == config["snapshot_epoch"] and config["run"] == 0:
            out["snapshot"] = snapshot(lambda z: model.apply(p, z), xt, yt)

    _, seconds = train(model, fd.losses.mse, fd.optim.sgd(config["lr"]), params, x, y,
                       k_epochs, config["epochs"], config["batch"], after_epoch)
    out["seconds_per_epoch"] = seconds / config["epochs"]
    if config.get("torch"):
        out["torch"] = _torch_001(config, x, y, xt, yt, k_epochs)
    return out


def _torch_001(config: dict[str, Any], x: np.ndarray, y: np.ndarray, xt: np.ndarray,
               yt: np.ndarray, k_epochs: Any) -> dict[str, Any]:
    """The same network and training in PyTorch (its default init, as the report's PyTorch
    baseline), on the same data in the same batch order; one thread, as funcdl's workers."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(config["seed"] * 1000 + config["run"])
    nn = torch.nn
    net = nn.Sequential(nn.Linear(2, 25), nn.ReLU(), nn.Linear(25, 25), nn.ReLU(),
                        nn.Linear(25, 25), nn.ReLU(), nn.Linear(25, 1), nn.Tanh())
    opt = torch.optim.SGD(net.parameters(), lr=config["lr"])
    loss_fn = nn.MSELoss()
    xs, ys, xts = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xt)
    b = config["batch"]
    out: dict[str, Any] = {"accuracy": {}}

    def predict(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(z)).numpy()

    seconds = 0.0
    for epoch in range(1, config["epochs"] + 1):
        order = torch.from_numpy(fd.random.permutation(fd.random.fold_in(k_epochs, epoch),
                                                       len(x)))
        start = time.perf_counter()
        xe, ye = xs[order], ys[order]
        for i in range(0, len(x), b):
            opt.zero_grad()
            loss = loss_fn(net(xe[i:i + b]), ye[i:i + b])
            loss.backward()
            opt.step()
        seconds += time.perf_counter() - start
        if epoch in config["checkpoints"]:
            with torch.no_grad():
                pred = net(xts).numpy()
            out["accuracy"][epoch] = 1 - error(pred, yt, 0.0)
        if epoch == config["snapshot_epoch"] and config["run"] == 0:
            out["snapshot"] = snapshot(predict, xt, yt)
    out["seconds_per_epoch"] = seconds / config["epochs"]
    return out


def run_002(config: dict[str, Any]) -> dict[str, Any]:
    """Report 002: Net_1 (Tanh, ReLU, ReLU, Sigmoid) or its weight-sharing variant, half-MSE
    or BCE, SGD (with L2 weight decay) or Adam; per-epoch loss and errors."""
    x, y, xt, yt, k_init, k_epochs = disk_data(config)
    if config["shared"]:
        model = net1_shared()
    else:
        model = mlp([2, 25, 25, 25, 1], ["tanh", "relu", "relu"], "sigmoid", "uniform")
    _, params = model.init(k_init, (None, 2))
    loss = half_mse if config["loss"] == "mse" else fd.losses.bce
    curves: dict[str, list[float]] = {"loss": [], "train_error": [], "test_error": []}

    def after_epoch(epoch: int, p: Any, mean_loss: float) -> None:
        curves["loss"].append(mean_loss)
        curves["train_error"].append(error(model.apply(p, x), y, 0.5))
        curves["test_error"].append(error(model.apply(p, xt), yt, 0.5))

    params, seconds = train(model, loss, make_opt(config), params, x, y, k_epochs,
                            config["epochs"], config["batch"], after_epoch)
    out = {"seconds": seconds, "curves": curves, "train_error": curves["train_error"][-1],
           "test_error": curves["test_error"][-1]}
    if config["run"] == 0:
        out["snapshot"] = snapshot(lambda z: model.apply(params, z), xt, yt)
    return out


def run_003(config: dict[str, Any]) -> dict[str, Any]:
    """Report 003: 2-25-25-25-1, Tanh or ReLU hidden, linear output, MSE, SGD; loss curve."""
    x, y, xt, yt, k_init, k_epochs = disk_data(config)
    model = mlp([2, 25, 25, 25, 1], [config["act"]] * 3, None, config["init"])
    _, params = model.init(k_init, (None, 2))
    curve: list[float] = []
    params, seconds = train(model, fd.losses.mse, fd.optim.sgd(config["lr"]), params, x, y,
                            k_epochs, config["epochs"], config["batch"],
                            lambda _e, _p, value: curve.append(value))
    out = {"seconds": seconds, "loss": curve,
           "train_error": error(model.apply(params, x), y, 0.5),
           "test_error": error(model.apply(params, xt), yt, 0.5)}
    if config["run"] == 0:
        out["snapshot"] = snapshot(lambda z: model.apply(params, z), xt, yt)
    return out


def model_004() -> Any:
    """Report 004: 2-10-10-1, ReLU, linear output, Kaiming-normal weights, zero biases."""
    return mlp([2, 10, 10, 1], ["relu", "relu"], None, "kaiming_zero_bias")


def pair_loss(model: Any, target: np.ndarray) -> Any:
    """``x -> ½ (model(x) - target)²`` as a Layer, so that ``funcdl.testing.check_vjp``
    checks the whole chain, network and loss, against finite differences."""

    def init(key: Any, in_shape: Any) -> tuple[Any, Any]:
        out_shape, params = model.init(key, in_shape)
        return out_shape, params

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        return 0.5 * (model.apply(params, x) - target) ** 2

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        pred, pullback = model.vjp(params, x)
        d = pred - target
        return 0.5 * d * d, lambda dy: pullback(dy * d)

    return L.Layer(init, apply, vjp, name="2-10-10-1 ReLU, then ½(p - t)²")


def first_layer_fd(model: Any, params: Any, x: np.ndarray, target: np.ndarray,
                   eps: float = 1e-6) -> dict[str, np.ndarray]:
    """Central finite differences in float64 of ``½ (model(x) - target)²`` with respect to
    each first-layer weight and bias, entry by entry (the values to print next to the vjp's)."""
    p64 = fd.tree.astype(params, np.float64)
    x64, t64 = x.astype(np.float64), target.astype(np.float64)

    def loss(first: dict[str, np.ndarray]) -> float:
        return 0.5 * float(np.sum((model.apply((first, *p64[1:]), x64) - t64) ** 2))

    out = {}
    for name, leaf in p64[0].items():
        grad = np.zeros_like(leaf)
        for idx in np.ndindex(leaf.shape):
            values = []
            for step in (eps, -eps):
                bumped = leaf.copy()
                bumped[idx] += step
                values.append(loss({**p64[0], name: bumped}))
            grad[idx] = (values[0] - values[1]) / (2 * eps)
        out[name] = grad
    return out


def gradient_check_004(seed: int, n_train: int = 1000) -> dict[str, Any]:
    """Report 004's first-pair gradients: the vjp's (float32, as training uses them) for the
    first-layer weights and biases, the finite differences, and funcdl.testing's verdict."""
    k_data, k_init = fd.random.split(fd.random.key(seed))
    x, y = fd.data.disk(k_data, n_train)
    model = model_004()
    _, params = model.init(k_init, (None, 2))
    x1, y1 = x[:1], y[:1]
    grads = fd.grad(model, half_mse)(params, x1, y1)
    numeric = first_layer_fd(model, params, x1, y1)
    fd.testing.check_vjp(pair_loss(model, y1), params, x1, rtol=1e-6, atol=1e-9)
    return {"x": x1[0], "y": float(y1[0, 0]), "vjp": grads[0], "fd": numeric,
            "max_abs_diff": max(float(np.max(np.abs(grads[0][k] - numeric[k])))
                                for k in numeric)}


def run_004(config: dict[str, Any]) -> dict[str, Any]:
    """Report 004: the gradient check, then full-batch gradient descent on the mean of
    ½ (p - t)², with the average loss before any update and after each."""
    out = gradient_check_004(config["seed"], config["n_train"])
    k_data, k_init = fd.random.split(fd.random.key(config["seed"]))
    x, y = fd.data.disk(k_data, config["n_train"])
    model = model_004()
    _, params = model.init(k_init, (None, 2))
    value_and_grad = fd.value_and_grad(model, half_mse)
    opt = fd.optim.sgd(config["lr"])
    state = opt.init(params)
    curve = []
    start = time.perf_counter()
    for _ in range(config["epochs"]):
        value, grads = value_and_grad(params, x, y)  # the loss before this update
        curve.append(value)
        updates, state = opt.update(state, grads, params)
        params = fd.optim.apply_updates(params, updates)
    curve.append(half_mse(model.apply(params, x), y))
    out.update(loss=curve, seconds=time.perf_counter() - start,
               train_error=error(model.apply(params, x), y, 0.5))
    return out


RUNS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "000": run_000, "001": run_001, "002": run_002, "003": run_003, "004": run_004}
