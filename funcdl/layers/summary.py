"""``summary(layer, in_shape)``: a model's parts as a table, read off its ``init`` (Keras'
``model.summary()``, flax's ``Module.tabulate``, torchinfo's ``summary``).

The combinators (Sequential, Parallel, Residual, Shared, Repeat, Tied, and the wrappers
built like them: BatchThreads, Remat, the transformer blocks' parts) initialise each child
through one helper (``_children.child_init``), which, under a summary, records the child's
depth, name, output shape, params and state; a layer that makes its parameters itself is
one row. An init that fails and is caught (a layer trying a shape) leaves no rows. Nothing
runs but ``init``; the params it draws are dropped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from funcdl import random, tree
from funcdl._args import int_arg
from funcdl.layers._children import DEPTH, TRACE, child_init
from funcdl.layers.base import LayerLike, layer_arg

__all__ = ["summary"]

_NAME = 44  # widest name shown; longer ones end in "…"


def summary(layer: LayerLike, in_shape: Any, key: random.Key | None = None, *,
            depth: int | None = None) -> str:
    """The table of ``layer`` on inputs of ``in_shape``: a row per part (indented by
    nesting; a combinator by its kind, a leaf by its full name), its output shape and
    its number of params (and of state entries, when any part has state), then the totals,
    the params' bytes by dtype. ``print(layers.summary(model, (None, 784)))``.
    ``depth``: the deepest nesting shown (0: the model's own row; torchinfo's ``depth``),
    a part at that depth by its full name, its parts' params in its row; None: all.

    Params a part reuses count once: a Shared's later branches are one row each, their
    params ``(shared)``; a Tied model's rows show the copies tying dropped as ``(+n tied)``
    (``(n tied)``: all of the row's), so each row adds up to its parent's; a Repeat's row
    reads ``Repeat ×n`` above its one child.
    ``key``: the init's (default ``random.key(0)``; only a layer whose shapes depend on its
    draws would differ). Errors are ``init``'s own: a bad ``in_shape`` names the part that
    refused it."""
    layer_arg("layers.summary", layer)
    deepest = None if depth is None else int_arg(depth, "layers.summary", "depth", 0)
    rows: list[list[Any]] = []
    token, level = TRACE.set(rows), DEPTH.set(0)  # (a summary inside another's init too)
    try:
        _, params, state = child_init(layer, random.key(0) if key is None else key, in_shape)
    finally:
        TRACE.reset(token)
        DEPTH.reset(level)
    stateful = any(_count(r[4]) for r in rows)
    table = [("Layer", "Output shape", "Params") + (("State",) if stateful else ())]
    for i, (level, name, out_shape, p, s, marks) in enumerate(rows):
        if deepest is not None and level > deepest:
            continue
        # its parts shown below it (a Shared's later branch: below its first)
        below = (i + 1 < len(rows) and rows[i + 1][0] > level) or marks.get("parent", False)
        parent = below and (deepest is None or level < deepest)
        shown = marks.get("kind", name.split("(", 1)[0]) if parent else name
        shown = "  " * level + " ".join(shown.splitlines())  # one line per row
        if len(shown) > _NAME:
            shown = shown[:_NAME - 1] + "…"
        shared = marks.get("params") == "(shared)"  # its state too: one, threaded
        states = "(shared)" if shared and _count(s) else f"{_count(s):,}"  # through branches
        table.append((shown, str(tuple(out_shape)), marks.get("params", f"{_count(p):,}"))
                     + ((states,) if stateful else ()))
    widths = [max(len(r[j]) for r in table) for j in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) if j < 2 else c.rjust(w)
                       for j, (c, w) in enumerate(zip(r, widths))).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"Total: {_count(params):,} params, {_bytes(params)}"
                 + (f"; {_count(state):,} state entries, {_bytes(state)}" if stateful else ""))
    return "\n".join(lines)


def _count(t: Any) -> int:
    """The entries of the arrays (and numbers) of a tree."""
    return sum(int(np.size(a)) for a in tree.leaves(t))


def _bytes(t: Any) -> str:
    """``'2.68 MB: 669,706 float32'``: the arrays' bytes, and their entries by dtype."""
    arrays = [np.asarray(a) for a in tree.leaves(t)]
    by = Counter[str]()
    for a in arrays:
        by[str(a.dtype)] += a.size
    size = sum(a.nbytes for a in arrays)
    amount = f"{size / 1e6:.2f} MB" if size >= 10_000 else f"{size:,} bytes"
    return amount + "".join(f"{': ' if i == 0 else ', '}{n:,} {d}"
                            for i, (d, n) in enumerate(sorted(by.items())))
