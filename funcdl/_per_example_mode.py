"""Whether gradients are being taken per example (``autodiff.per_example_value_and_grad``)
and for how many examples. Here, below both autodiff and the layers, so that every
``value_and_grad`` sets them for its own call (a plain ``grad`` nested inside a per-example
one, as in a gradient penalty, sums as always) without ``import funcdl`` loading the
layers."""

from __future__ import annotations

from contextvars import ContextVar

ON: ContextVar[bool] = ContextVar("funcdl_per_example", default=False)
SIZE: ContextVar[int] = ContextVar("funcdl_per_example_size", default=0)  # N while ON
