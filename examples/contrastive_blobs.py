"""SimCLR-style self-supervised learning on 2-D data hidden in 16-D, judged by a linear probe.

Points of `data.circles` (two rings, radii 1 and 0.5) are lifted to 16-D by a fixed random
linear map, as readings of a 16-channel sensor: each reading adds noise of std 0.3 to every
channel, so the classes lie near a 2-D sheet, blurred, and no linear map of the raw
readings separates two rings. Each step draws two views of every example of a batch (a
random 10% of the channels dropped, then fresh Gaussian noise, about half the sensor's:
like a second reading), maps both through an encoder MLP (16-64-64-32) and a projection
head (32-32-16), and `losses.ntxent` pulls an example's two views together and pushes all
other examples away; the labels are never seen. Training uses `optim.schedule_free_adamw`;
the encoder is evaluated at `schedule_free_eval_params`. Then a linear probe (softmax
cross-entropy, full-batch `optim.lbfgs`) on the frozen features reports test accuracy: on
the contrastive encoder's, on the same encoder at its random initialisation, and on the
raw 16-D inputs.

    python examples/contrastive_blobs.py [--epochs 20] [--seed 0]
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import funcdl as fd
from funcdl import layers as L

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _cli.py, also when imported
import _cli
from lbfgs_disk import run_lbfgs

DIM = 16  # the lifted input width
NOISE = 0.3  # the sensor's noise std, in every channel
MASK = 0.1  # fraction of channels zeroed in a view
JITTER = 0.3  # a view's noise std, standardised scale (the sensor's: 0.2-0.9 by channel)
TEMPERATURE = 0.2


def make_data(key: Any, n: int = 1200) -> tuple[np.ndarray, ...]:
    """Train/test circles lifted to ``DIM``-D and standardised: (x_train, x_test, y_train,
    y_test), a stratified split of the ``n`` points (a quarter for testing), x float32
    (rows, DIM), y int64 (rows,)."""
    k_data, k_map, k_noise, k_split = fd.random.split(key, 4)
    x2, y = fd.data.circles(k_data, n, noise=0.05, factor=0.5)
    lift = fd.random.normal(k_map, (2, DIM)) / np.float32(np.sqrt(2))
    # one reading each; the views are like further readings, so what differs between two
    # readings (the noise) is what the encoder learns to ignore
    x = x2 @ lift + np.float32(NOISE) * fd.random.normal(k_noise, (n, DIM))
    x_train, x_test, y_train, y_test = fd.data.train_test_split(k_split, x, y, stratify=y)
    mean, std = fd.data.moments(x_train)  # the training part's: the test part is unseen
    return (x_train - mean) / std, (x_test - mean) / std, y_train, y_test


def make_model() -> tuple[Any, Any]:
    """The encoder (whose 32 features the probe reads) and encoder + projection head (what
    the contrastive loss sees: SimCLR found the features before the head generalise better
    than its output, which the loss shapes to discard what the views do not share)."""
    encoder = L.Sequential(L.Dense(64), L.ReLU(), L.Dense(64), L.ReLU(), L.Dense(32), L.ReLU())
    return encoder, L.Sequential(encoder, L.Dense(32), L.ReLU(), L.Dense(16))


def augment(key: Any, x: np.ndarray) -> np.ndarray:
    """One random view of each row: a random ``MASK`` of channels zeroed, then noise."""
    k_mask, k_noise = fd.random.split(key)
    keep = fd.random.bernoulli(k_mask, 1 - MASK, x.shape)
    return np.where(keep, x, np.float32(0)) + np.float32(JITTER) * fd.random.normal(
        k_noise, x.shape)


def probe_accuracy(f_train: np.ndarray, f_test: np.ndarray, y_train: np.ndarray,
                   y_test: np.ndarray, key: Any, steps: int = 50) -> float:
    """Test accuracy of a linear softmax classifier on frozen features, fitted full-batch by
    L-BFGS (convex and smooth: a few dozen steps suffice)."""
    mean, std = fd.data.moments(f_train)  # comparable scales for every feature set
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    probe = L.Dense(int(y_train.max()) + 1)
    _, params = probe.init(key, (None, f_train.shape[1]))
    vg = fd.value_and_grad(probe, fd.losses.softmax_cross_entropy)
    params, _ = run_lbfgs(lambda p: vg(p, f_train, y_train), params, steps)
    return float(np.mean(probe.apply(params, f_test).argmax(axis=1) == y_test))


def train(epochs: int = 20, seed: int = 0, lr: float = 1e-2, batch_size: int = 128,
          log_every: int = 10, verbose: bool = True) -> dict[str, Any]:
    """Contrastive training from ``random.key(seed)``, then the three probes; returns the
    encoder's params (training and evaluation), the loss curve and the accuracies."""
    k_data, k_init, k_epochs, k_probe = fd.random.split(fd.random.key(seed), 4)
    x_train, x_test, y_train, y_test = make_data(k_data)
    encoder, model = make_model()
    _, params = model.init(k_init, (None, DIM))
    random_encoder = params[0]  # the same init, never trained: the baseline
    opt = fd.optim.schedule_free_adamw(lr, warmup_steps=20)
    opt_state = opt.init(params)
    vg = fd.value_and_grad(model, functools.partial(fd.losses.ntxent, temperature=TEMPERATURE))

    curve = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        total, steps = 0.0, 0
        k_batches, k_views = fd.random.split(fd.random.fold_in(k_epochs, epoch))
        # drop_last: a last batch of a few examples would give an easy, noisy loss
        for i, (xb,) in enumerate(fd.data.batches(k_batches, x_train, batch_size=batch_size,
                                                  drop_last=True)):
            k1, k2 = fd.random.split(fd.random.fold_in(k_views, i))
            views = np.concatenate([augment(k1, xb), augment(k2, xb)])
            # rows i and i + B are the two views of example i: the only positive pair of each
            ids = np.tile(np.arange(len(xb)), 2)
            loss, grads = vg(params, views, ids)
            updates, opt_state = opt.update(opt_state, grads, params)
            params = fd.optim.apply_updates(params, updates)
            total, steps = total + float(loss), steps + 1
        curve.append(total / steps)
        if verbose and (epoch % log_every == 0 or epoch == 1):
            print(f"epoch {epoch:4d}  ntxent {curve[-1]:.4f}  "
                  f"{time.perf_counter() - start:5.2f} s")
    # schedule-free trains at y but its good point is the average x: probe there
    trained = fd.optim.schedule_free_eval_params(opt_state, params)[0]

    k_c, k_r, k_x = fd.random.split(k_probe, 3)
    accuracy = {
        "contrastive": probe_accuracy(encoder.apply(trained, x_train),
                                      encoder.apply(trained, x_test), y_train, y_test, k_c),
        "random": probe_accuracy(encoder.apply(random_encoder, x_train),
                                 encoder.apply(random_encoder, x_test), y_train, y_test, k_r),
        "raw": probe_accuracy(x_train, x_test, y_train, y_test, k_x),
    }
    return {"encoder": encoder, "params": trained, "train_params": params,
            "opt_state": opt_state, "curve": curve,
            "seconds": time.perf_counter() - start, "accuracy": accuracy}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _cli.parser(__file__, __doc__)
    _cli.add_epochs_and_seed(parser, 20, "the 900 unlabelled training points",
                             "the data, the lift, the initial params, batches and views")
    args = _cli.parse(parser, argv)
    result = train(args.epochs, args.seed)
    print(f"linear probe test accuracy ({result['seconds']:.2f} s in all):")
    for name, what in [("contrastive", "contrastive encoder"), ("random", "random encoder"),
                       ("raw", "raw 16-D inputs")]:
        print(f"  {what:20s} {result['accuracy'][name]:7.2%}")
    return result


if __name__ == "__main__":
    main()
