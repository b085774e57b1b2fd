"""Read label sequences off unsegmented frames with a bidirectional GRU and the CTC loss.

Each example spells 3 to 6 labels out of 6 (repeats allowed) as a sequence of up to 40
noisy 8-feature frames: every label is held for 2 to 4 frames, with 0 to 2 frames of
silence before it (at least 1 between two equal labels, else they read as one), silence
after the last, and the frames' count varies. No frame is labelled: the model is trained
on the label sequences alone, with `losses.ctc` (blank = class 0; the targets, input and
target lengths travel together as its tuple target). Model: Dense(32), tanh,
Bidirectional(GRU(32)), Dense(7), LogSoftmax; Adam with a cosine-decayed step, batch 32,
2000 training sequences. Decoding is greedy: each frame's most likely class, repeats
merged, blanks dropped. Prints progress, a few decoded test sequences and the label error
rate (edit distance over length) on 300 test sequences.

    python examples/ctc_sequences.py [--epochs 6] [--seed 0]
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

LABELS, FEATURES = 6, 8  # labels 1..6; class 0 is CTC's blank (and the silence)
MIN_LEN, MAX_LEN = 3, 6
T = 40  # frames: at most 6 labels x (2 + 4) frames and 2 of silence after
NOISE = 0.7


def sequences(key: Any, n: int, prototypes: np.ndarray) -> tuple[np.ndarray, ...]:
    """``n`` examples: frames (n, T, F) float32, labels (n, MAX_LEN) int64 padded with 0,
    input lengths (n,) and target lengths (n,). Frame ``t`` of a label ``c`` is
    ``prototypes[c] + NOISE · ε``, of silence ``NOISE · ε``; frames past the input length
    are silence too."""
    k_len, k_lab, k_dur, k_gap, k_end, k_noise = fd.random.split(key, 6)
    target_len = fd.random.randint(k_len, (n,), MIN_LEN, MAX_LEN + 1)
    used = np.arange(MAX_LEN) < target_len[:, None]
    labels = np.where(used, fd.random.randint(k_lab, (n, MAX_LEN), 1, LABELS + 1), 0)
    held = np.where(used, fd.random.randint(k_dur, (n, MAX_LEN), 2, 5), 0)
    gap = fd.random.randint(k_gap, (n, MAX_LEN), 0, 3)
    repeat = np.zeros_like(used)
    repeat[:, 1:] = labels[:, 1:] == labels[:, :-1]
    gap = np.where(used, np.maximum(gap, repeat), 0)
    # segments per row: silence, label 1, silence, label 2, ..., silence at the end
    seg_len = np.stack([gap, held], axis=2).reshape(n, -1)
    seg_len = np.concatenate([seg_len, fd.random.randint(k_end, (n, 1), 0, 3)], axis=1)
    seg_val = np.concatenate([np.stack([np.zeros_like(labels), labels], axis=2).reshape(n, -1),
                              np.zeros((n, 1), np.int64)], axis=1)
    input_len = seg_len.sum(axis=1)
    row = np.repeat(np.arange(n), input_len)
    col = np.arange(row.size) - np.repeat(np.cumsum(input_len) - input_len, input_len)
    frame_class = np.zeros((n, T), np.int64)
    frame_class[row, col] = np.repeat(seg_val.ravel(), seg_len.ravel())
    x = prototypes[frame_class] + NOISE * fd.random.normal(k_noise, (n, T, FEATURES))
    return x.astype(np.float32), labels, input_len, target_len


def make_model(hidden: int = 32) -> Any:
    return L.Sequential(L.Dense(32), L.Tanh(), L.Bidirectional(L.GRU(hidden)),
                        L.Dense(LABELS + 1), L.LogSoftmax())


def greedy_decode(log_probs: np.ndarray, input_len: np.ndarray) -> list[list[int]]:
    """Best path (``metrics.ctc_greedy_decode``): each frame's most likely class, repeats
    merged, then blanks (0) dropped; frames past ``input_len`` ignored."""
    labels, lengths = fd.metrics.ctc_greedy_decode(log_probs, input_len)
    return [row[:n].tolist() for row, n in zip(labels, lengths)]


def edit_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein distance of two label lists (``metrics.edit_distance`` on one pair)."""
    row = np.array([a], np.int64).reshape(1, len(a)), np.array([b], np.int64).reshape(1, len(b))
    return int(fd.metrics.edit_distance(*row)[0])


def label_error_rate(model: Any, params: Any, data: tuple[np.ndarray, ...]) -> float:
    """Σ edit distance(decoded, truth) / Σ truth length over the examples
    (``metrics.edit_distance``; torchmetrics' ``CharErrorRate``)."""
    x, labels, input_len, target_len = data
    decoded, lengths = fd.metrics.ctc_greedy_decode(model.apply(params, x), input_len)
    errors = fd.metrics.edit_distance(decoded, labels, lengths, target_len)
    return int(errors.sum()) / int(target_len.sum())


def train(epochs: int = 6, seed: int = 0, lr: float = 1e-2, batch_size: int = 32,
          n_train: int = 2000, n_test: int = 300, log_every: int = 2,
          verbose: bool = True) -> dict[str, Any]:
    """Train from ``random.key(seed)``; returns params, the loss curve and error rates."""
    k_proto, k_train, k_test, k_init, k_epochs = fd.random.split(fd.random.key(seed), 5)
    prototypes = fd.random.normal(k_proto, (LABELS + 1, FEATURES))
    prototypes[0] = 0.0  # silence
    train_set = sequences(k_train, n_train, prototypes)
    test_set = sequences(k_test, n_test, prototypes)
    model = make_model()
    _, params = model.init(k_init, (None, T, FEATURES))
    steps = epochs * math.ceil(n_train / batch_size)
    opt = fd.optim.adam(fd.optim.cosine_decay_schedule(lr, steps, alpha=0.05))
    opt_state = opt.init(params)
    value_and_grad = fd.value_and_grad(model, fd.losses.ctc)

    curve = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        params, opt_state, loss = _train.epoch(value_and_grad, opt, params, opt_state,
                                               fd.random.fold_in(k_epochs, epoch), *train_set,
                                               batch_size=batch_size)
        curve.append(loss)
        if verbose and (epoch % log_every == 0 or epoch == 1):
            print(f"epoch {epoch:4d}  CTC loss {curve[-1]:.4f}  test label error "
                  f"{label_error_rate(model, params, test_set):6.2%}  "
                  f"{time.perf_counter() - start:5.2f} s")
    seconds = time.perf_counter() - start
    x, labels, input_len, target_len = test_set
    return {
        "model": model, "params": params, "curve": curve, "seconds": seconds,
        "train_ler": label_error_rate(model, params, train_set),
        "test_ler": label_error_rate(model, params, test_set),
        "decoded": greedy_decode(model.apply(params, x), input_len),
        "truth": [lab[:n].tolist() for lab, n in zip(labels, target_len)],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _cli.parser(__file__, __doc__)
    _cli.add_epochs_and_seed(parser, 6, "the 2000 training sequences",
                             "the label prototypes, the sequences, the initial params and "
                             "the batches")
    args = _cli.parse(parser, argv)
    result = train(args.epochs, args.seed)
    print("truth -> decoded:")
    for truth, decoded in list(zip(result["truth"], result["decoded"]))[:6]:
        print(f"  {''.join(map(str, truth)):>6s} -> {''.join(map(str, decoded)):8s}"
              f"{'' if truth == decoded else '  (wrong)'}")
    print(f"final: label error rate train {result['train_ler']:.2%}, test "
          f"{result['test_ler']:.2%}, {result['seconds']:.2f} s of training")
    return result


if __name__ == "__main__":
    main()
