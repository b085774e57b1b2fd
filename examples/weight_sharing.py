"""Weight sharing on a two-input task: are two points on the same side of the disk boundary?

Each example is a pair of points in the unit square, (x1, y1, x2, y2); its label is 1 when
both lie inside the disk of centre (0.5, 0.5) and radius 1/sqrt(2π), or both outside. The
question is symmetric in the two points, so one encoder can serve both:

    shared:    slice the pair -> Shared(encoder) -> concatenate -> head
    unshared:  slice the pair -> Parallel(encoder, encoder) (two parameter sets) -> ... -> head

Both are trained the same way (Adam, cosine-decayed step from 3e-3, batch 50, 1000 training
pairs) from the same keys, over several seeds; the script prints each model's parameter
count, mean ± std of train and test error, and time, and writes a figure of the test-error
curves when matplotlib is installed. The shared model has about half the parameters, and
each of its encoder's weights sees twice the points.

    python examples/weight_sharing.py [--epochs 150] [--runs 3] [--out examples/output]
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
from _cli import positive_int
from disk import error


def encoder() -> Any:
    return L.Sequential(L.Dense(25), L.ReLU(), L.Dense(25), L.ReLU(), L.Dense(4))


def make_model(shared: bool) -> Any:
    branches = L.Shared(encoder()) if shared else L.Parallel(encoder(), encoder())
    return L.Sequential(
        L.FanOut(2), L.Parallel(L.Slice(np.s_[0:2]), L.Slice(np.s_[2:4])), branches,
        L.FanInConcat(), L.Dense(16), L.ReLU(), L.Dense(1))


def pairs(key: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs of points and their same-side labels, float32, shapes (n, 4) and (n, 1)."""
    k1, k2 = fd.random.split(key)
    a, la = fd.data.disk(k1, n)
    b, lb = fd.data.disk(k2, n)
    return np.concatenate([a, b], axis=1), (la == lb).astype(np.float32)


def train(shared: bool, epochs: int = 150, seed: int = 0, n: int = 1000,
          batch_size: int = 50, verbose: bool = True) -> dict[str, Any]:
    k_train, k_test, k_init, k_epochs = fd.random.split(fd.random.key(seed), 4)
    x_train, y_train = pairs(k_train, n)
    x_test, y_test = pairs(k_test, n)
    model = make_model(shared)
    _, params = model.init(k_init, (None, 4))
    steps = epochs * -(-n // batch_size)
    opt = fd.optim.adam(fd.optim.cosine_decay_schedule(3e-3, steps, alpha=0.01))
    opt_state = opt.init(params)
    value_and_grad = fd.value_and_grad(model, fd.losses.bce_with_logits)
    curve = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        params, opt_state, _ = _train.epoch(value_and_grad, opt, params, opt_state,
                                            fd.random.fold_in(k_epochs, epoch), x_train,
                                            y_train, batch_size=batch_size)
        curve.append(error(model, params, x_test, y_test))
        if verbose and epoch % 50 == 0:
            print(f"  {'shared' if shared else 'unshared':8s} epoch {epoch:4d}  "
                  f"test error {curve[-1]:6.2%}")
    return {
        "shared": shared, "params": params, "curve": curve,
        "n_params": sum(p.size for p in fd.tree.leaves(params)),
        "train_error": error(model, params, x_train, y_train),
        "test_error": curve[-1], "seconds": time.perf_counter() - start,
    }


def plot(results: list[list[dict[str, Any]]], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for runs, colour in zip(results, ["tab:blue", "tab:orange"]):
        label = f"{'shared' if runs[0]['shared'] else 'unshared'} ({runs[0]['n_params']} params)"
        for i, r in enumerate(runs):
            ax.plot(range(1, len(r["curve"]) + 1), r["curve"], color=colour, alpha=0.7,
                    label=label if i == 0 else None)
    ax.set(xlabel="epoch", ylabel="test error (one line per run)", yscale="log",
           title="same side of the disk boundary?")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> list[list[dict[str, Any]]]:
    parser = _cli.parser(__file__, __doc__)
    parser.add_argument("--epochs", type=positive_int, default=150,
                        help="passes over the 1000 training pairs (default: %(default)s)")
    parser.add_argument("--runs", type=positive_int, default=3,
                        help="runs of each model, with seeds 0 to RUNS-1 (default: %(default)s)")
    _cli.add_out(parser, Path(__file__).parent / "output", "weight_sharing.png")
    args = _cli.parse(parser, argv)
    results = [[train(shared, args.epochs, seed, verbose=False) for seed in range(args.runs)]
               for shared in (True, False)]
    print(f"{'model':10s} {'params':>7s} {'train error':>16s} {'test error':>16s} "
          f"{'time/run':>9s}")
    ddof = 1 if args.runs > 1 else 0  # the std with n - 1, as the reproduction's tables
    for runs in results:
        tr = np.array([r["train_error"] for r in runs])
        te = np.array([r["test_error"] for r in runs])
        print(f"{'shared' if runs[0]['shared'] else 'unshared':10s} {runs[0]['n_params']:7d} "
              f"{tr.mean():8.2%} ± {tr.std(ddof=ddof):5.2%} {te.mean():8.2%} ± "
              f"{te.std(ddof=ddof):5.2%} "
              f"{np.mean([r['seconds'] for r in runs]):8.1f}s")
    if plot(results, args.out / "weight_sharing.png"):
        print(f"wrote {args.out / 'weight_sharing.png'}")
    else:
        print("matplotlib is not installed: no figure (pip install funcdl[examples])")
    return results


if __name__ == "__main__":
    main()
