"""A small CNN on real handwritten digits: scikit-learn's bundled 8x8 digits (1797 images).

Conv2D-BatchNorm-ReLU-MaxPool twice, Dropout, Dense, trained with Adam on softmax
cross-entropy. The train/test split (80/20) is drawn from the key. BatchNorm's running
statistics live in an explicit ``state`` that the training step threads and returns. Prints
progress and the final test accuracy; writes a confusion-matrix PNG when matplotlib is
installed. Needs scikit-learn (``pip install funcdl[examples]``).

    python examples/digits_cnn.py [--epochs 30] [--seed 0] [--out examples/output]
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


def load(key: Any) -> tuple[np.ndarray, ...]:
    """Images (n, 8, 8, 1) scaled to [0, 1] and integer labels, split 80/20 by ``key``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    order = fd.random.permutation(key, len(x))
    n_train = int(0.8 * len(x))
    train, test = order[:n_train], order[n_train:]
    return x[train], y[train], x[test], y[test]


def make_model() -> Any:
    return L.Sequential(
        L.Conv2D(16, 3), L.BatchNorm(), L.ReLU(), L.MaxPool2D(2),      # 8x8x1 -> 4x4x16
        L.Conv2D(32, 3), L.BatchNorm(), L.ReLU(), L.MaxPool2D(2),      # -> 2x2x32
        L.Flatten(), L.Dropout(0.25), L.Dense(10))


def accuracy(model: Any, params: Any, state: Any, x: np.ndarray, y: np.ndarray) -> float:
    logits, _ = model.apply(params, x, state=state, train=False)
    return float(np.mean(logits.argmax(axis=1) == y))


def train(epochs: int = 30, seed: int = 0, batch_size: int = 64, lr: float = 3e-3,
          verbose: bool = True) -> dict[str, Any]:
    k_split, k_init, k_epochs = fd.random.split(fd.random.key(seed), 3)
    x_train, y_train, x_test, y_test = load(k_split)
    model = make_model()
    _, params, state = model.init(k_init, (None, 8, 8, 1))
    steps = epochs * -(-len(x_train) // batch_size)
    opt = fd.optim.adam(fd.optim.cosine_decay_schedule(lr, steps, alpha=0.01))
    opt_state = opt.init(params)
    value_and_grad = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)

    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        k_epoch = fd.random.fold_in(k_epochs, epoch)
        k_batches, k_drop = fd.random.split(k_epoch)
        total = 0.0
        batches = fd.data.batches(k_batches, x_train, y_train, batch_size=batch_size)
        for i, (xb, yb) in enumerate(batches):
            (loss, state), grads = value_and_grad(params, xb, yb, state=state,
                                                  key=fd.random.fold_in(k_drop, i))
            updates, opt_state = opt.update(opt_state, grads, params)
            params = fd.optim.apply_updates(params, updates)
            total += loss * len(xb)
        if verbose and (epoch % 5 == 0 or epoch == 1):
            print(f"epoch {epoch:3d}  loss {total / len(x_train):.4f}  "
                  f"test accuracy {accuracy(model, params, state, x_test, y_test):6.2%}  "
                  f"{time.perf_counter() - start:5.1f} s")
    logits, _ = model.apply(params, x_test, state=state, train=False)
    return {"model": model, "params": params, "state": state,
            "test_accuracy": float(np.mean(logits.argmax(axis=1) == y_test)),
            "train_accuracy": accuracy(model, params, state, x_train, y_train),
            "predictions": logits.argmax(axis=1), "labels": y_test,
            "seconds": time.perf_counter() - start}


def plot_confusion(labels: np.ndarray, predictions: np.ndarray, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    counts = np.zeros((10, 10), np.int64)
    np.add.at(counts, (labels, predictions), 1)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(counts, cmap="Blues")
    for i in range(10):
        for j in range(10):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if counts[i, j] > counts.max() / 2 else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
           title=f"digits test set: accuracy {np.mean(labels == predictions):.2%}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _cli.parser(__file__, __doc__)
    _cli.add_epochs_and_seed(parser, 30, "the training images", "the train/test split, the "
                             "initial params, the batches and dropout")
    _cli.add_out(parser, Path(__file__).parent / "output", "digits_confusion.png")
    args = _cli.parse(parser, argv)
    result = train(args.epochs, args.seed)
    print(f"final: test accuracy {result['test_accuracy']:.2%} (train "
          f"{result['train_accuracy']:.2%}), {result['seconds']:.1f} s of training")
    if plot_confusion(result["labels"], result["predictions"], args.out / "digits_confusion.png"):
        print(f"wrote {args.out / 'digits_confusion.png'}")
    else:
        print("matplotlib is not installed: no figure (pip install funcdl[examples])")
    return result


if __name__ == "__main__":
    main()
