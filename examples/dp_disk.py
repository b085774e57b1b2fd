"""Train the disk classifier with differential privacy: DP-SGD (Abadi et al. 2016) from
funcdl's per-example gradients, against the same training without privacy.

The task of `examples/disk.py` (1000 training and 1000 test points, a 2-25-25-25-1 ReLU
network on logits, binary cross-entropy), trained by `optim.dpsgd`: each step takes the
batch's per-example gradients in one pass (`fd.per_example_grad`), clips each example's to
norm C, adds N(0, (σC)²) noise to their sum and divides by the batch size. The privacy
spent is reported as (ε, δ) by the Rényi-DP bound of the sampled Gaussian mechanism at
integer orders (Mironov, Talwar and Zhang 2019, eq. (3)), composed over the steps; like
Opacus and TF Privacy, it reads the shuffled batches as Poisson samples of rate q = B/n.
The same network trained by SGD at the same rate, without clipping or noise, is the
baseline. Prints progress, both test errors and ε.

    python examples/dp_disk.py [--epochs 60] [--seed 0] [--noise 1.0] [--clip 1.0]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import funcdl as fd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _cli.py, also when imported
import _cli
from disk import error, make_model


def rdp_epsilon(q: float, sigma: float, steps: int, delta: float) -> tuple[float, int]:
    """``(ε, α)``: the smallest ``T·ρ(α) + log(1/δ)/(α - 1)`` over integer orders α, with
    ``ρ(α) = log Σ_k C(α, k) (1 - q)^(α-k) q^k exp((k² - k)/(2σ²)) / (α - 1)`` the Rényi
    divergence of one step of the Poisson-sampled Gaussian mechanism (summed in logs)."""
    best = (math.inf, 0)
    for alpha in range(2, 257):
        logs = [math.lgamma(alpha + 1) - math.lgamma(k + 1) - math.lgamma(alpha - k + 1)
                + (alpha - k) * math.log1p(-q) + (k * math.log(q) if k else 0.0)
                + (k * k - k) / (2 * sigma * sigma) for k in range(alpha + 1)]
        top = max(logs)
        rho = (top + math.log(sum(math.exp(v - top) for v in logs))) / (alpha - 1)
        best = min(best, (steps * rho + math.log(1 / delta) / (alpha - 1), alpha))
    return best


def train(epochs: int = 60, seed: int = 0, noise: float = 1.0, clip: float = 1.0,
          lr: float = 0.5, batch_size: int = 50, private: bool = True,
          log_every: int = 20, verbose: bool = True) -> dict[str, Any]:
    """DP-SGD (``private``) or plain SGD from ``random.key(seed)``: params and errors."""
    k_train, k_test, k_init, k_batches, k_noise = fd.random.split(fd.random.key(seed), 5)
    x_train, y_train = fd.data.disk(k_train, 1000)
    x_test, y_test = fd.data.disk(k_test, 1000)
    model = make_model()
    _, params = model.init(k_init, (None, 2))
    loss = fd.losses.bce_with_logits
    if private:
        opt = fd.optim.dpsgd(learning_rate=lr, l2_norm_clip=clip, noise_multiplier=noise,
                             key=k_noise)
        grad = fd.per_example_grad(model, loss)
    else:
        opt, grad = fd.optim.sgd(lr=lr), fd.grad(model, loss)
    state = opt.init(params)
    start, steps = time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        for xb, yb in fd.data.batches(fd.random.fold_in(k_batches, epoch), x_train, y_train,
                                      batch_size=batch_size, drop_last=True):
            updates, state = opt.update(state, grad(params, xb, yb), params)
            params = fd.optim.apply_updates(params, updates)
            steps += 1
        if verbose and (epoch % log_every == 0 or epoch == 1):
            print(f"{'DP-SGD' if private else 'SGD':>6} epoch {epoch:3d}  test error "
                  f"{error(model, params, x_test, y_test):6.2%}  "
                  f"{time.perf_counter() - start:5.2f} s")
    result = {"params": params, "steps": steps, "seconds": time.perf_counter() - start,
              "train_error": error(model, params, x_train, y_train),
              "test_error": error(model, params, x_test, y_test)}
    if private:
        result["epsilon"], result["order"] = rdp_epsilon(batch_size / len(x_train), noise,
                                                         steps, 1e-5)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _cli.parser(__file__, __doc__)
    _cli.add_epochs_and_seed(parser, 60, "the 1000 training points",
                             "the data, the initial params, the batches and the noise")
    parser.add_argument("--noise", type=_cli.positive_float, default=1.0,
                        help="the noise multiplier σ (default 1.0)")
    parser.add_argument("--clip", type=_cli.positive_float, default=1.0,
                        help="each example's gradient norm bound C (default 1.0)")
    args = _cli.parse(parser, argv)
    dp = train(args.epochs, args.seed, args.noise, args.clip)
    plain = train(args.epochs, args.seed, private=False)
    print(f"final: DP-SGD test error {dp['test_error']:.2%} (σ = {args.noise}, C = "
          f"{args.clip}, {dp['steps']} steps of q = 0.05: (ε, δ) = ({dp['epsilon']:.2f}, "
          f"1e-5) at Rényi order {dp['order']}); SGD without privacy {plain['test_error']:.2%}; "
          f"{dp['seconds']:.2f} s and {plain['seconds']:.2f} s of training")
    return {"dp": dp, "plain": plain}


if __name__ == "__main__":
    main()
