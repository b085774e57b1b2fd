"""What the PyTorch cross-checks share: float64 tensors of NumPy arrays, and the padding
JAX's and funcdl's 'SAME' gives an axis (torch takes it as explicit pads)."""

from __future__ import annotations

from typing import Any

import numpy as np


def t64(a: Any, grad: bool = False) -> Any:
    """``a`` as a float64 torch tensor (torch imported here: the callers skip without it)."""
    import torch
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def same_pads(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """'SAME' padding of an axis of ``n`` for a window ``k`` at stride ``s``, dilation ``d``:
    ⌈n/s⌉ outputs, the odd pixel at the end (bottom or right)."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2
