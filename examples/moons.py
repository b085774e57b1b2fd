"""Classify scikit-learn's two moons with a small MLP: funcdl.data's sets and utilities.

1000 points of `data.moons` with Gaussian noise 0.15, split 75/25 by `data.train_test_split`
(stratified), standardised with the training part's `data.moments`; a 2-32-32-2 ReLU
network on logits, softmax cross-entropy on the int64 labels, Adam, batch 50. Prints
progress and the final test error.

    python examples/moons.py [--epochs 60] [--seed 0]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import funcdl as fd
from funcdl import layers as L

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _cli.py, also when imported
import _cli
import _train


def make_model() -> Any:
    return L.Sequential(L.Dense(32), L.ReLU(), L.Dense(32), L.ReLU(), L.Dense(2))


def error(model: Any, params: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction misclassified: the predicted class is the larger logit."""
    return float(np.mean(model.apply(params, x).argmax(axis=1) != y))


def train(epochs: int = 60, seed: int = 0, lr: float = 1e-2, batch_size: int = 50,
          log_every: int = 20, verbose: bool = True) -> dict[str, Any]:
    """Train from ``random.key(seed)``; returns params, errors and the loss curve."""
    k_data, k_split, k_init, k_epochs = fd.random.split(fd.random.key(seed), 4)
    x, y = fd.data.moons(k_data, 1000, noise=0.15)
    x_train, x_test, y_train, y_test = fd.data.train_test_split(k_split, x, y, stratify=y)
    mean, std = fd.data.moments(x_train)  # the training part's: the test part is unseen
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    model = make_model()
    _, params = model.init(k_init, (None, 2))
    opt = fd.optim.adam(lr=lr)
    opt_state = opt.init(params)
    value_and_grad = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)

    curve = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        params, opt_state, loss = _train.epoch(value_and_grad, opt, params, opt_state,
                                               fd.random.fold_in(k_epochs, epoch), x_train,
                                               y_train, batch_size=batch_size)
        curve.append(loss)
        if verbose and (epoch % log_every == 0 or epoch == 1):
            print(f"epoch {epoch:4d}  loss {curve[-1]:.4f}  "
                  f"test error {error(model, params, x_test, y_test):6.2%}  "
                  f"{time.perf_counter() - start:5.2f} s")
    return {
        "model": model, "params": params, "curve": curve,
        "seconds": time.perf_counter() - start,
        "train_error": error(model, params, x_train, y_train),
        "test_error": error(model, params, x_test, y_test),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _cli.parser(__file__, __doc__)
    _cli.add_epochs_and_seed(parser, 60, "the 750 training points",
                             "the data, the split, the initial params and the batches")
    args = _cli.parse(parser, argv)
    result = train(args.epochs, args.seed)
    print(f"final: train error {result['train_error']:.2%}, test error "
          f"{result['test_error']:.2%}, {result['seconds']:.2f} s of training")
    return result


if __name__ == "__main__":
    main()
