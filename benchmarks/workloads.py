"""The four workloads: shapes, data and parameter layout. NumPy only (no funcdl, no peer),
so that a fresh subprocess timing torch's or JAX's first step imports nothing else.

Every implementation trains the same network on the same batch with plain SGD (lr 0.01):
one call of its ``step()`` is forward, loss, backward and update, float32 throughout.
Parameters travel between implementations as a list of ``(w, b)`` pairs in forward order,
in funcdl's layouts: Dense ``w (in, out)``, Conv2D ``w (kh, kw, C, out)``, NHWC images.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LR", "NAMES", "WORKLOADS", "Workload", "chosen", "data", "layer_params",
           "random_params"]

LR = 0.01
Pairs = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Workload:
    name: str
    label: str            # one line for the report
    batch: int
    x_shape: tuple[int, ...]  # one example
    classes: int | None   # integer labels in [0, classes); None: a (batch, 1) float target
    shapes: tuple[tuple[int, ...], ...]  # the w of each parametrised layer, forward order


_RES = tuple(s for _ in range(4) for s in ((256, 256), (256, 256)))

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("disk", "2-25-25-25-1 MLP, ReLU, sigmoid + MSE, batch 50", 50, (2,), None,
             ((2, 25), (25, 25), (25, 25), (25, 1))),
    Workload("mlp", "784-512-512-10 MLP, ReLU, softmax CE, batch 128", 128, (784,), 10,
             ((784, 512), (512, 512), (512, 10))),
    Workload("cnn", "28x28x1 conv16-pool-conv32-pool-dense10, softmax CE, batch 64", 64,
             (28, 28, 1), 10, ((3, 3, 1, 16), (3, 3, 16, 32), (7 * 7 * 32, 10))),
    Workload("resmlp", "64-256, 4 x residual(256-ReLU-256), -10, softmax CE, batch 128", 128,
             (64,), 10, ((64, 256), *_RES, (256, 10))),
)}
NAMES = tuple(WORKLOADS)


def chosen(ap: argparse.ArgumentParser, given: list[str], default: list[str]) -> list[str]:
    """A script's positional workload names, ``default`` when none: checked here, as
    argparse (3.11) refuses the empty list of ``nargs="*"`` with ``choices``."""
    bad = [g for g in given if g not in WORKLOADS]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {list(NAMES)}")
    return given or default


def data(w: Workload, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One fixed batch ``(x, y)``: float32 inputs; int64 labels, or for the disk task the
    0/1 float32 target of a point inside the disk of centre (0.5, 0.5), radius 1/sqrt(2 pi)
    (funcdl.data.disk's task)."""
    rng = np.random.default_rng(seed)
    if w.classes is None:
        x = rng.random((w.batch, *w.x_shape), dtype=np.float32)
        inside = ((x - 0.5) ** 2).sum(axis=1, keepdims=True) < 1 / (2 * np.pi)
        return x, inside.astype(np.float32)
    x = rng.standard_normal((w.batch, *w.x_shape), dtype=np.float32)
    return x, rng.integers(0, w.classes, w.batch).astype(np.int64)


def random_params(w: Workload, seed: int = 1) -> Pairs:
    """PyTorch-default-like parameters, U(±1/sqrt(fan_in)), for a process without funcdl."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in w.shapes:
        bound = 1 / np.sqrt(np.prod(shape[:-1]))
        out.append((rng.uniform(-bound, bound, shape).astype(np.float32),
                    rng.uniform(-bound, bound, shape[-1]).astype(np.float32)))
    return out


def layer_params(tree: Any) -> Pairs:
    """The ``(w, b)`` pairs of a funcdl params tree (tuples of dicts, ``()`` for layers
    without parameters; Residual/Sequential nest tuples), in forward order."""
    out: Pairs = []

    def walk(t: Any) -> None:
        if isinstance(t, dict):
            out.append((t["w"], t["b"]))
        elif isinstance(t, (tuple, list)):
            for c in t:
                walk(c)

    walk(tree)
    return out


def copy_pairs(pairs: Pairs) -> Pairs:
    return [(np.array(w, np.float32), np.array(b, np.float32)) for w, b in pairs]
