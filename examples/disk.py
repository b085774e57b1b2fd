"""Train the disk classifier, the task of the five reference reports (what `make demo` runs).

1000 training and 1000 test points in the unit square, labelled 1 inside the disk of centre
(0.5, 0.5) and radius 1/sqrt(2π); a 2-25-25-25-1 ReLU network on logits, binary
cross-entropy, Adam with a cosine-decayed step, batch 50. Prints progress and the final
errors, saves the trained params with funcdl.io, and, when matplotlib is installed, writes
a figure of the decision regions (misclassified points marked, the true circle drawn) and
the loss curve.

    python examples/disk.py [--epochs 200] [--seed 0] [--out examples/output]
"""

from __future__ import annotations

import math
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


def make_model(activation: Any = L.ReLU) -> Any:
    """The 2-25-25-25-1 network, ``activation()`` after each hidden layer."""
    return L.Sequential(L.Dense(25), activation(), L.Dense(25), activation(), L.Dense(25),
                        activation(), L.Dense(1))


def error(model: Any, params: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction misclassified: a point is predicted inside when its logit is positive."""
    return float(np.mean((model.apply(params, x) > 0) != (y > 0.5)))


def train(epochs: int = 200, seed: int = 0, lr: float = 1e-2, batch_size: int = 50,
          log_every: int = 25, verbose: bool = True) -> dict[str, Any]:
    """Train from ``random.key(seed)``; returns params, errors and the loss curve."""
    k_train, k_test, k_init, k_epochs = fd.random.split(fd.random.key(seed), 4)
    x_train, y_train = fd.data.disk(k_train, 1000)
    x_test, y_test = fd.data.disk(k_test, 1000)
    model = make_model()
    _, params = model.init(k_init, (None, 2))
    steps = epochs * math.ceil(len(x_train) / batch_size)
    opt = fd.optim.adam(lr=fd.optim.cosine_decay_schedule(lr, steps, alpha=0.01))
    opt_state = opt.init(params)
    value_and_grad = fd.value_and_grad(model, fd.losses.bce_with_logits)

    curve = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        # one pass of shuffled mini-batches: value_and_grad, opt.update, apply_updates
        params, opt_state, loss = _train.epoch(value_and_grad, opt, params, opt_state,
                                               fd.random.fold_in(k_epochs, epoch), x_train,
                                               y_train, batch_size=batch_size)
        curve.append(loss)
        if verbose and (epoch % log_every == 0 or epoch == 1):
            print(f"epoch {epoch:4d}  loss {curve[-1]:.4f}  "
                  f"train error {error(model, params, x_train, y_train):6.2%}  "
                  f"test error {error(model, params, x_test, y_test):6.2%}  "
                  f"{time.perf_counter() - start:5.2f} s")
    return {
        "model": model, "params": params, "curve": curve,
        "seconds": time.perf_counter() - start,
        "train_error": error(model, params, x_train, y_train),
        "test_error": error(model, params, x_test, y_test),
        "x_test": x_test, "y_test": y_test,
    }


def plot(result: dict[str, Any], path: Path) -> bool:
    """Decision regions with misclassified test points crossed, the true circle, and the
    loss curve; returns False when matplotlib is absent."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    model, params = result["model"], result["params"]
    grid = np.linspace(0, 1, 200, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    logits = model.apply(params, np.stack([gx.ravel(), gy.ravel()], axis=1)).reshape(gx.shape)
    x, y = result["x_test"], result["y_test"][:, 0] > 0.5
    pred = model.apply(params, x)[:, 0] > 0
    wrong = pred != y

    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 5))
    ax.contourf(gx, gy, logits > 0, levels=[-0.5, 0.5, 1.5], colors=["#f3d9c6", "#c6dbf3"])
    ax.scatter(x[~wrong & y, 0], x[~wrong & y, 1], s=6, c="tab:blue", label="inside")
    ax.scatter(x[~wrong & ~y, 0], x[~wrong & ~y, 1], s=6, c="tab:orange", label="outside")
    ax.scatter(x[wrong, 0], x[wrong, 1], s=40, c="k", marker="x",
               label=f"misclassified ({wrong.sum()})")
    ax.add_patch(plt.Circle((0.5, 0.5), fd.data.RADIUS, fill=False, lw=1.5, color="k"))
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal",
           title=f"test error {result['test_error']:.1%}")
    ax.legend(loc="upper right", fontsize=8)
    ax_loss.semilogy(range(1, len(result["curve"]) + 1), result["curve"])
    ax_loss.set(xlabel="epoch", ylabel="training loss (BCE)", title="loss curve")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _cli.parser(__file__, __doc__)
    _cli.add_epochs_and_seed(parser, 200, "the 1000 training points",
                             "the data, the initial params and the batches")
    _cli.add_out(parser, Path(__file__).parent / "output", "disk_params.npz and disk.png")
    args = _cli.parse(parser, argv)
    result = train(args.epochs, args.seed)
    print(f"final: train error {result['train_error']:.2%}, test error "
          f"{result['test_error']:.2%}, {result['seconds']:.2f} s of training")
    fd.io.save(args.out / "disk_params.npz", result["params"])
    print(f"saved params to {args.out / 'disk_params.npz'}")
    if plot(result, args.out / "disk.png"):
        print(f"wrote {args.out / 'disk.png'}")
    else:
        print("matplotlib is not installed: no figure (pip install funcdl[examples])")
    return result


if __name__ == "__main__":
    main()
