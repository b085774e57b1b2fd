"""The peers: PyTorch eager (``torch.nn`` modules, ``torch.optim.SGD``) and JAX jit
(``jax.value_and_grad`` of a pure function, plain SGD, the whole step under ``jax.jit``).

Neither is imported at module import: ``available()`` tries them, and a peer that is
absent is skipped with its reason. Both start from the same ``(w, b)`` pairs as funcdl
(funcdl's layouts, converted here), so that their first losses agree with funcdl's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .workloads import LR, Pairs, Workload

__all__ = ["PEERS", "available", "make_step"]

PEERS = ("torch", "jax")


def available(name: str) -> tuple[Any, str]:
    """``(module, "")`` when peer ``name`` imports, else ``(None, reason)``."""
    if name == "jax":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")  # no probing for GPUs / TPUs
    try:
        module = __import__(name)
    except Exception as e:  # ImportError, or a broken install raising anything
        return None, f"`import {name}` failed: {type(e).__name__}: {e}"
    return module, ""


def make_step(peer: str, w: Workload, params: Pairs, x: np.ndarray, y: np.ndarray
              ) -> tuple[Callable[[], Any], Callable[[Any], float]]:
    """``(step, to_float)``: ``step()`` runs one training step and returns the loss before
    the update (a tensor / array; ``to_float`` reads it, outside the timed loop)."""
    if peer == "torch":
        return _torch_step(w, params, x, y)
    if peer == "jax":
        return _jax_step(w, params, x, y)
    raise ValueError(f"unknown peer {peer!r}")


# ---------------------------------------------------------------------------- PyTorch

def _torch_module(w: Workload) -> Any:
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, f: nn.Module) -> None:
            super().__init__()
            self.f = f

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.f(x)

    if w.name == "disk":
        return nn.Sequential(nn.Linear(2, 25), nn.ReLU(), nn.Linear(25, 25), nn.ReLU(),
                             nn.Linear(25, 25), nn.ReLU(), nn.Linear(25, 1), nn.Sigmoid())
    if w.name == "mlp":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))
    if w.name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(7 * 7 * 32, 10))
    if w.name == "resmlp":
        blocks = [Residual(nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256)))
                  for _ in range(4)]
        return nn.Sequential(nn.Linear(64, 256), *blocks, nn.Linear(256, 10))
    raise ValueError(f"unknown workload {w.name!r}")


def _to_torch_layout(w: Workload, params: Pairs) -> list[tuple[np.ndarray, np.ndarray]]:
    """funcdl's layouts to torch's: Dense (in, out) -> Linear (out, in); Conv2D
    (kh, kw, C, out) -> Conv2d (out, C, kh, kw). The CNN's Dense after Flatten reads an
    NHWC feature map in funcdl and an NCHW one in torch: its rows are permuted to match."""
    out = []
    for i, (wt, b) in enumerate(params):
        if wt.ndim == 4:
            wt = wt.transpose(3, 2, 0, 1)
        else:
            if w.name == "cnn" and i == len(params) - 1:
                wt = wt.reshape(7, 7, 32, -1).transpose(2, 0, 1, 3).reshape(7 * 7 * 32, -1)
            wt = wt.T
        out.append((np.ascontiguousarray(wt, np.float32), np.array(b, np.float32)))
    return out


def _torch_step(w: Workload, params: Pairs, x: np.ndarray, y: np.ndarray
                ) -> tuple[Callable[[], Any], Callable[[Any], float]]:
    import torch
    from torch import nn

    module = _torch_module(w)
    with torch.no_grad():
        mods = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        for m, (wt, b) in zip(mods, _to_torch_layout(w, params), strict=True):
            m.weight.copy_(torch.from_numpy(wt))
            m.bias.copy_(torch.from_numpy(b))
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x)
    yt = torch.from_numpy(y)
    criterion = nn.MSELoss() if w.classes is None else nn.CrossEntropyLoss()
    opt = torch.optim.SGD(module.parameters(), lr=LR)

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = criterion(module(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return step, lambda loss: float(loss.item())


# ---------------------------------------------------------------------------- JAX

def _jax_step(w: Workload, params: Pairs, x: np.ndarray, y: np.ndarray
              ) -> tuple[Callable[[], Any], Callable[[Any], float]]:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    from jax import lax

    def dense(p: Any, a: Any) -> Any:
        return a @ p[0] + p[1]

    def conv_relu_pool(p: Any, a: Any) -> Any:
        h = lax.conv_general_dilated(a, p[0], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + p[1]
        return lax.reduce_window(jnp.maximum(h, 0), -jnp.inf, lax.max, (1, 2, 2, 1),
                                 (1, 2, 2, 1), "VALID")

    def forward(ps: Any, a: Any) -> Any:
        if w.name in ("disk", "mlp"):
            for p in ps[:-1]:
                a = jnp.maximum(dense(p, a), 0)
            z = dense(ps[-1], a)
            return jax.nn.sigmoid(z) if w.name == "disk" else z
        if w.name == "cnn":
            a = conv_relu_pool(ps[1], conv_relu_pool(ps[0], a))
            return dense(ps[2], a.reshape(a.shape[0], -1))
        if w.name == "resmlp":
            a = dense(ps[0], a)
            for i in range(1, len(ps) - 1, 2):
                a = a + dense(ps[i + 1], jnp.maximum(dense(ps[i], a), 0))
            return dense(ps[-1], a)
        raise ValueError(f"unknown workload {w.name!r}")

    def loss_fn(ps: Any, a: Any, t: Any) -> Any:
        out = forward(ps, a)
        if w.classes is None:
            return jnp.mean((out - t) ** 2)
        logp = jax.nn.log_softmax(out, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=-1))

    @jax.jit
    def train_step(ps: Any, a: Any, t: Any) -> Any:
        loss, grads = jax.value_and_grad(loss_fn)(ps, a, t)
        return loss, jax.tree_util.tree_map(lambda p, g: p - LR * g, ps, grads)

    state = [(jnp.asarray(wt), jnp.asarray(b)) for wt, b in params]
    xj = jnp.asarray(x)
    yj = jnp.asarray(y if w.classes is None else y.astype(np.int32))

    def step() -> Any:
        nonlocal state
        loss, state = train_step(state, xj, yj)
        return loss.block_until_ready()

    return step, lambda loss: float(loss)
