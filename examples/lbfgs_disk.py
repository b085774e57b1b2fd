"""Full-batch L-BFGS against Adam (and Prodigy) on the disk classifier, counted in gradients.

The README's task: 1000 training and 1000 test points of `data.disk`, a 2-25-25-25-1 ReLU
network on logits, binary cross-entropy on the whole training set at every step (no
minibatches: a quasi-Newton method needs the same function at every call). `optim.lbfgs()`
takes its step length from a zoom line search, which evaluates the loss and gradient at
trial points; every such evaluation is counted, and Adam (lr 1e-2) and the learning-rate-free
Prodigy then get exactly as many full-batch gradient evaluations. Prints each optimizer's
loss as the evaluations go, then a table: final train loss, train/test error, and the
evaluations each needed to first reach the target train loss.

ReLU's kinks make the loss piecewise quadratic at best, and the curvature pairs L-BFGS
collects across a kink mislead it: with ReLU it ends with the lowest train loss of the
three on some seeds only (0, 2 and 3 of 0-4 on the AMD EPYC host of 2026-12-07; the line
search follows the BLAS's rounding, so another CPU's figures differ). ``--activation gelu``
(smooth) gives the setting quasi-Newton methods are made for: lowest on all five there.

    python examples/lbfgs_disk.py [--iterations 150] [--target 0.01] [--seed 0]
                                  [--activation {relu,gelu}]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import funcdl as fd
from funcdl import layers as L

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _cli.py, also when imported
import _cli
from disk import error, make_model

ACTIVATIONS = {"relu": L.ReLU, "gelu": L.GELU}


class Counted:
    """``params -> (loss, grads)`` on the full training set, counting its calls and keeping
    the loss after each one, so that optimizers are compared per gradient evaluation (the
    unit of cost here: a line search may spend several per step)."""

    def __init__(self, vg: Any, x: np.ndarray, y: np.ndarray) -> None:
        self.vg, self.x, self.y = vg, x, y
        self.losses: list[float] = []

    def __call__(self, params: Any) -> tuple[Any, Any]:
        loss, grads = self.vg(params, self.x, self.y)
        self.losses.append(float(loss))
        return loss, grads


def run_lbfgs(counted: Callable[[Any], tuple[Any, Any]], params: Any,
              iterations: int) -> tuple[Any, int]:
    """``iterations`` L-BFGS steps on ``counted(params) -> (loss, grads)``, reusing each line
    search's last evaluation; returns the params and the evaluations its line searches
    report having made (which a ``Counted`` must agree with, plus the first one)."""
    opt = fd.optim.lbfgs()  # the zoom line search, first guess a unit step
    state = opt.init(params)
    loss, grads = counted(params)
    searched = 0
    for _ in range(iterations):
        updates, state = opt.update(state, grads, params, value=loss, grad=grads,
                                    value_and_grad_fn=counted)
        params = fd.optim.apply_updates(params, updates)
        # the search already evaluated the new params: reuse them instead of a second call
        loss, grads = state.states["linesearch"].value, state.states["linesearch"].grad
        searched += int(state.states["linesearch"].info.num_linesearch_steps)
    return params, searched


def run_first_order(opt: Any, counted: Counted, params: Any, evaluations: int) -> Any:
    state = opt.init(params)
    for _ in range(evaluations):
        _, grads = counted(params)
        updates, state = opt.update(state, grads, params)
        params = fd.optim.apply_updates(params, updates)
    counted(params)  # the loss at the final params, as the line search's last value is
    return params


def first_below(losses: list[float], target: float) -> int | None:
    """The 1-based evaluation at which the loss first fell below ``target`` (None: never)."""
    hits = np.flatnonzero(np.asarray(losses) < target)
    return int(hits[0]) + 1 if hits.size else None


def train(iterations: int = 150, seed: int = 0, target: float = 0.01, lr: float = 1e-2,
          prodigy: bool = True, activation: str = "relu", verbose: bool = True
          ) -> dict[str, Any]:
    """All optimizers from the same initial params of ``random.key(seed)``; returns, per
    optimizer name, its params, loss curve (one entry per evaluation) and errors."""
    k_train, k_test, k_init = fd.random.split(fd.random.key(seed), 3)
    x_train, y_train = fd.data.disk(k_train, 1000)
    x_test, y_test = fd.data.disk(k_test, 1000)
    model = make_model(ACTIVATIONS[activation])
    _, init_params = model.init(k_init, (None, 2))
    vg = fd.value_and_grad(model, fd.losses.bce_with_logits)

    runs: dict[str, Any] = {}
    start = time.perf_counter()
    counted = Counted(vg, x_train, y_train)
    params, searched = run_lbfgs(counted, init_params, iterations)
    runs["lbfgs"] = (params, counted)
    budget = len(counted.losses) - 1  # the others also get one last, uncounted-for look
    others = {"adam": fd.optim.adam(lr)}
    if prodigy:
        others["prodigy"] = fd.optim.prodigy()
    for name, opt in others.items():
        counted = Counted(vg, x_train, y_train)
        runs[name] = (run_first_order(opt, counted, init_params, budget), counted)

    results: dict[str, Any] = {"model": model, "evaluations": budget + 1,
                               "linesearch_evaluations": searched,
                               "seconds": time.perf_counter() - start, "target": target}
    for name, (params, counted) in runs.items():
        results[name] = {
            "params": params, "curve": counted.losses, "loss": counted.losses[-1],
            "reached": first_below(counted.losses, target),
            "train_error": error(model, params, x_train, y_train),
            "test_error": error(model, params, x_test, y_test),
        }
        if verbose:
            n_all = len(counted.losses)
            marks = [n for n in (10, 30, 100, 300, 1000) if n < n_all] + [n_all]
            print(f"{name:8s} loss after " + ", ".join(
                f"{n} evals {counted.losses[n - 1]:.4f}" for n in marks))
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _cli.parser(__file__, __doc__)
    parser.add_argument("--iterations", type=_cli.positive_int, default=150,
                        help="L-BFGS steps; the others get as many gradient evaluations as "
                             "these took (default: %(default)s)")
    parser.add_argument("--target", type=_cli.positive_float, default=0.01,
                        help="the train loss whose first crossing is reported "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=_cli.seed, default=0,
                        help="seed of the key that draws the data and the initial params "
                             "(default: %(default)s)")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu",
                        help="the hidden layers' activation (default: %(default)s, the "
                             "README's network)")
    args = _cli.parse(parser, argv)
    result = train(args.iterations, args.seed, args.target, activation=args.activation)
    print(f"\n{result['evaluations']} full-batch gradient evaluations each, "
          f"{result['seconds']:.2f} s in all")
    print(f"{'optimizer':10s} {'train loss':>10s} {'train err':>9s} {'test err':>8s} "
          f"{'evals to loss < ' + format(args.target, 'g'):>22s}")
    for name in [n for n in ("lbfgs", "adam", "prodigy") if n in result]:
        r = result[name]
        reached = "never" if r["reached"] is None else str(r["reached"])
        print(f"{name:10s} {r['loss']:10.4f} {r['train_error']:9.2%} {r['test_error']:8.2%} "
              f"{reached:>22s}")
    return result


if __name__ == "__main__":
    main()
