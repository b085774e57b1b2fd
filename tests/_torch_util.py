"""What the PyTorch cross-checks share: float64 tensors of NumPy arrays and back, torch on
one thread for a while, and the padding JAX's and funcdl's 'SAME' gives an axis (torch
takes it as explicit pads)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def t64(a: Any, grad: bool = False) -> Any:
    """``a`` as a float64 torch tensor (torch imported here: the callers skip without it)."""
    import torch
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def numpy_of(t: Any) -> Any:
    """A torch tensor's values as a NumPy array of their own."""
    return t.detach().numpy().copy()


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread meanwhile: the whole-training tests' tiny ops ran 5-40x slower on
    its thread pool on a shared 2-core machine."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def same_pads(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """'SAME' padding of an axis of ``n`` for a window ``k`` at stride ``s``, dilation ``d``:
    ⌈n/s⌉ outputs, the odd pixel at the end (bottom or right)."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def mha_params(m: Any, grad: bool = False) -> dict[str, Any]:
    """funcdl's MultiHeadAttention params (or torch's gradients, ``grad``) from a torch
    ``nn.MultiheadAttention``: the stacked in_proj_weight's row blocks transposed, or the
    separate q/k/v_proj_weight transposed when kdim or vdim differs from E."""
    def arr(t: Any) -> Any:
        return (t.grad if grad else t.detach()).numpy().copy()

    e = m.embed_dim
    if m._qkv_same_embed_dim:
        w = arr(m.in_proj_weight)
        p = {f"w_{r}": w[i * e:(i + 1) * e].T for i, r in enumerate("qkv")}
    else:
        p = {f"w_{r}": arr(getattr(m, f"{r}_proj_weight")).T for r in "qkv"}
    p["w_o"] = arr(m.out_proj.weight).T
    if m.in_proj_bias is not None:
        b = arr(m.in_proj_bias)
        p.update({f"b_{r}": b[i * e:(i + 1) * e] for i, r in enumerate("qkv")})
        p["b_o"] = arr(m.out_proj.bias)
    return p


def block_params(module: Any, grads: bool = False, block: bool = True) -> dict[str, Any]:
    """funcdl's params (or gradients) of a torch TransformerEncoderLayer /
    TransformerDecoderLayer (``block``), or of a bare nn.MultiheadAttention."""
    if not block:
        return mha_params(module, grads)
    def arr(t: Any) -> Any:
        return (t.grad if grads else t).detach().numpy().copy()

    out: dict[str, Any] = {a: mha_params(getattr(module, a), grads)
                           for a in ("self_attn", "multihead_attn") if hasattr(module, a)}
    out.update({k: {"w": arr(getattr(module, k).weight).T, "b": arr(getattr(module, k).bias)}
                for k in ("linear1", "linear2")})
    out.update({k: {"scale": arr(getattr(module, k).weight), "bias": arr(getattr(module, k).bias)}
                for k in ("norm1", "norm2", "norm3") if hasattr(module, k)})
    return out
