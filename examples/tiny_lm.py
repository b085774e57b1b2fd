"""A character-level causal transformer that learns to write balanced brackets.

The corpus: 3000 random Dyck words over two kinds of brackets, ``([])[]``, ``[(())]``, up
to 12 characters long, each between ``;`` marks (the start and the end), drawn from the
seed's key. The model: token Embedding plus a learned position table (PositionalEmbedding,
N(0, 1) as the Embedding's), two pre-norm causal TransformerEncoderLayers (d_model 32, 4 heads),
a final LayerNorm and a Dense to the 5 logits (with ``--tie``, an Unembed reading the
Embedding's own table, GPT-2's tied head, through ``layers.Tied``; that table is then drawn
N(0, 1/32)); softmax cross-entropy on every next character, AdamW with a linear warmup and
cosine decay, batch 64. Then it completes 300
prompts, ``;`` followed by the first 0 to L-1 characters of a held-out word, sampling each
next character with `random.categorical` at temperature 0.8 until it writes ``;`` (one
position per step through ``layers.decode_step``'s key/value cache), and
prints some completions and the fraction that are balanced (a random string of brackets
almost never is).

    python examples/tiny_lm.py [--epochs 10] [--seed 0] [--tie]
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

CHARS = ";([)]"  # id 0 marks a word's start and end; opening i+1 is closed by i+3
MAX_HALF = 6  # words of 2 to 12 characters
T = 2 * MAX_HALF + 1  # the model reads ';' and 12 characters, and predicts the next 13


def dyck_words(key: Any, n: int) -> np.ndarray:
    """``n`` random balanced words as (n, T + 1) int64 ids: ``;``, the word, then ``;``
    to the end. Built one position at a time for all words at once: a word must open at
    depth 0, must close when its depth equals the characters left, else opens or closes
    with probability 1/2; a closing bracket matches the kind on top of its stack."""
    k_half, k_coin, k_kind = fd.random.split(key, 3)
    length = 2 * fd.random.randint(k_half, (n,), 1, MAX_HALF + 1)
    coin = fd.random.bernoulli(k_coin, 0.5, (n, 2 * MAX_HALF))
    kind = fd.random.randint(k_kind, (n, 2 * MAX_HALF), 0, 2)
    seq = np.zeros((n, T + 1), np.int64)
    stack = np.zeros((n, MAX_HALF), np.int64)
    depth = np.zeros(n, np.int64)
    rows = np.arange(n)
    for s in range(2 * MAX_HALF):
        left = length - s
        opens = (left > 0) & ((depth == 0) | ((depth < left) & coin[:, s]))
        closes = (left > 0) & ~opens
        stack[rows[opens], depth[opens]] = kind[opens, s]
        depth += opens
        depth -= closes
        top = stack[rows, np.minimum(depth, MAX_HALF - 1)]
        seq[:, s + 1] = np.where(opens, 1 + kind[:, s], np.where(closes, 3 + top, 0))
    return seq


def balanced(word: str) -> bool:
    """Whether ``word`` is a non-empty balanced string of ``()`` and ``[]`` only."""
    stack: list[str] = []
    for c in word:
        if c in "([":
            stack.append(")]"["([".index(c)])
        elif c not in ")]" or not stack or stack.pop() != c:
            return False
    return bool(word) and not stack


def make_model(d: int = 32, heads: int = 4, blocks: int = 2, tie: bool = False) -> Any:
    """The model; ``tie``: the logits from the Embedding's own table, ``h @ tableᵀ``."""
    # tied, the table is the head too: N(0, 1/d) keeps the first logits near unit scale
    # (N(0, 1) made them ~sqrt(d) and trained slower: 74% balanced after 10 epochs)
    emb = L.Embedding(len(CHARS), d, w_init=fd.initializers.normal(d ** -0.5) if tie else None)
    body = L.Sequential(
        emb, L.PositionalEmbedding(T, w_init=fd.initializers.normal(1.0)),
        *[L.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, causal=True,
                                    norm_first=True) for _ in range(blocks)],
        L.LayerNorm(), L.Unembed(len(CHARS)) if tie else L.Dense(len(CHARS)))
    head = 2 + blocks + 1  # after the Embedding, the position table, the blocks, LayerNorm
    return L.Tied(body, [(0, "table"), (head, "table")]) if tie else body


def complete(model: Any, params: Any, key: Any, prompts: np.ndarray, lengths: np.ndarray,
             temperature: float = 0.8) -> list[str]:
    """Continue each prompt (``prompts[i, :lengths[i]]``, ids) to position T, one character
    at a time for all prompts at once, each drawn from ``softmax(logits / temperature)``;
    returns the words: the characters after the first ``;`` up to the next (or the end)."""
    # past its prompt a row holds ';' until drawn: the logits at t - 1 of a causal model
    # read positions <= t - 1 only, but nothing of a held-out word may be left to peek at
    seq = np.where(np.arange(prompts.shape[1]) < lengths[:, None], prompts, 0)
    # one position per step with the attention's keys and values cached (layers.decode):
    # the logits at t - 1 without re-running positions 0 .. t - 2; a model that cannot be
    # stepped (one that looks ahead, causal=False) re-runs the whole sequence instead
    try:
        cache = L.decode_init(model, params, seq[:, :1], T)
    except TypeError as e:
        if "cannot be stepped" not in str(e):  # only that refusal: a real error surfaces
            raise
        cache = None
    for t in range(1, T + 1):
        if cache is None:
            logits = model.apply(params, seq[:, :T])[:, t - 1]
        else:
            logits, cache = L.decode_step(model, params, cache, seq[:, t - 1:t])
            logits = logits[:, 0]
        logits = logits / np.float32(temperature)
        drawn = fd.random.categorical(fd.random.fold_in(key, t), logits)
        seq[:, t] = np.where(t < lengths, seq[:, t], drawn)
    words = []
    for row in seq:
        text = "".join(CHARS[i] for i in row[1:])
        words.append(text.split(";")[0] if ";" in text else text + "…")  # … : unfinished
    return words


def train(epochs: int = 10, seed: int = 0, lr: float = 3e-3, batch_size: int = 64,
          n_train: int = 3000, n_prompts: int = 300, log_every: int = 2,
          verbose: bool = True, tie: bool = False) -> dict[str, Any]:
    """Train from ``random.key(seed)``; returns params, losses, completions and validity."""
    k_train, k_test, k_init, k_epochs, k_prompt, k_sample = fd.random.split(
        fd.random.key(seed), 6)
    words = dyck_words(k_train, n_train)
    held_out = dyck_words(k_test, n_prompts)
    x_train, y_train = words[:, :-1], words[:, 1:]
    model = make_model(tie=tie)
    _, params = model.init(k_init, (None, T))
    # prompts: ';' and the first 0 to L-1 characters of each held-out word of length L;
    # completed by the untrained model too, for the chance level
    word_len = (held_out[:, 1:] != 0).sum(axis=1)
    lengths = 1 + fd.random.randint(k_prompt, (n_prompts,), 0, word_len)
    untrained = complete(model, params, k_sample, held_out, lengths)
    steps = epochs * math.ceil(n_train / batch_size)
    opt = fd.optim.adamw(fd.optim.warmup_cosine_decay_schedule(0.0, lr, steps // 10, steps,
                                                               end_value=lr / 20),
                         weight_decay=1e-2)
    opt_state = opt.init(params)
    value_and_grad = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)

    def test_loss() -> float:
        return float(fd.losses.softmax_cross_entropy(model.apply(params, held_out[:, :-1]),
                                                     held_out[:, 1:]))

    curve = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        params, opt_state, loss = _train.epoch(value_and_grad, opt, params, opt_state,
                                               fd.random.fold_in(k_epochs, epoch), x_train,
                                               y_train, batch_size=batch_size)
        curve.append(loss)
        if verbose and (epoch % log_every == 0 or epoch == 1):
            print(f"epoch {epoch:4d}  loss {curve[-1]:.4f}  test loss {test_loss():.4f}  "
                  f"{time.perf_counter() - start:5.2f} s")
    seconds = time.perf_counter() - start

    samples = complete(model, params, k_sample, held_out, lengths)
    prompts = ["".join(CHARS[i] for i in row[1:n]) for row, n in zip(held_out, lengths)]
    return {
        "model": model, "params": params, "curve": curve, "seconds": seconds,
        "test_loss": test_loss(), "prompts": prompts, "samples": samples,
        "valid": float(np.mean([balanced(w) for w in samples])),
        "distinct": len(set(samples)),
        "valid_untrained": float(np.mean([balanced(w) for w in untrained])),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = _cli.parser(__file__, __doc__)
    _cli.add_epochs_and_seed(parser, 10, "the 3000 training words",
                             "the words, the initial params, the batches and the samples")
    parser.add_argument("--tie", action="store_true",
                        help="the output head reads the input Embedding's table (Unembed)")
    args = _cli.parse(parser, argv)
    result = train(args.epochs, args.seed, tie=args.tie)
    print("prompt -> completion:")
    for prompt, word in list(zip(result["prompts"], result["samples"]))[:8]:
        print(f"  {prompt or '(empty)':>12s} -> {word:14s} "
              f"{'balanced' if balanced(word) else 'NOT balanced'}")
    print(f"final: {result['valid']:.1%} of {len(result['samples'])} completions balanced "
          f"({result['distinct']} distinct), test loss {result['test_loss']:.3f} per "
          f"position, the padding after each end mark included (uniform: "
          f"{math.log(len(CHARS)):.3f}); untrained: "
          f"{result['valid_untrained']:.1%} balanced; {result['seconds']:.2f} s of training")
    return result


if __name__ == "__main__":
    main()
