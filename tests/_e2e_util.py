"""What the end-to-end training cross-checks (test_e2e_training_torch.py) share: float64
copies of params, a tree's worst relative difference, and the step records they compare."""

from __future__ import annotations

from typing import Any

import numpy as np

from funcdl import tree

TOL = 1e-10  # relative, per leaf, after 20-30 steps of float64 training


def f64(t: Any) -> Any:
    """``t`` with every float leaf in float64 (funcdl's init draws float32)."""
    return tree.map(lambda a: np.asarray(a, np.float64)
                    if np.issubdtype(np.asarray(a).dtype, np.floating) else a, t)


def rel(ours: Any, theirs: Any) -> float:
    """The worst leaf's ``max |a - b| / max(max |b|, 1e-6)`` over two trees of one
    structure (the floor: a leaf whose gradient is 0, exactly in funcdl and up to
    rounding in torch, such as attention's key bias, stays 0 here and near 1e-18 there)."""
    assert tree.structure(ours) == tree.structure(theirs), (tree.structure(ours),
                                                            tree.structure(theirs))
    worst = 0.0
    for a, b in zip(tree.leaves(ours), tree.leaves(theirs)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert a.shape == b.shape, (a.shape, b.shape)
        scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-6)
        worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)) / scale)
    return worst


def losses_agree(ours: list[float], theirs: list[float], tol: float = TOL) -> float:
    """The worst step's relative loss difference, asserted below ``tol``."""
    assert len(ours) == len(theirs)
    worst = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(ours, theirs))
    assert worst < tol, [(i, a, b) for i, (a, b) in enumerate(zip(ours, theirs))
                         if abs(a - b) > tol * abs(b)][:3]
    return worst


def tel_torch(prefix: str, d: Any) -> dict[str, Any]:
    """A torch TransformerEncoderLayer's state_dict entries under ``prefix`` from funcdl's
    params ``d`` (the stacked in_proj of w_q, w_k, w_v transposed)."""
    a = d["self_attn"]
    out = {"self_attn.in_proj_weight": np.concatenate([a[f"w_{r}"].T for r in "qkv"]),
           "self_attn.in_proj_bias": np.concatenate([a[f"b_{r}"] for r in "qkv"]),
           "self_attn.out_proj.weight": a["w_o"].T, "self_attn.out_proj.bias": a["b_o"]}
    out.update({f"{k}.weight": d[k]["w"].T for k in ("linear1", "linear2")})
    out.update({f"{k}.bias": d[k]["b"] for k in ("linear1", "linear2")})
    out.update({f"{k}.weight": d[k]["scale"] for k in ("norm1", "norm2")})
    out.update({f"{k}.bias": d[k]["bias"] for k in ("norm1", "norm2")})
    return {f"{prefix}.{k}": v for k, v in out.items()}


def resume_run(dtype: str, start: int, stop: int, path_in: str | None,
               path_out: str) -> None:
    """Train the resume scenario's model from step ``start`` to ``stop`` (fresh init at
    ``path_in=None``, else what ``io.save`` left there) and save params, BatchNorm state
    and optimizer state to ``path_out``; its own process in the resume test."""
    import funcdl as fd
    from funcdl import io, losses, optim, random
    from funcdl import layers as L

    dt = np.dtype(dtype)
    model = L.Sequential(L.Dense(8), L.BatchNorm(), L.ReLU(), L.Dense(3))
    sched = optim.warmup_cosine_decay_schedule(0.0, 1e-2, warmup_steps=3, decay_steps=8)
    opt = optim.chain(optim.clip_by_global_norm(1.0),
                      optim.multi_steps(optim.adamw(sched, weight_decay=0.1), 3))
    _, p, st = model.init(random.key(0), (None, 5))
    p, st = tree.map(lambda a: a.astype(dt), p), tree.map(lambda a: a.astype(dt), st)
    fresh = {"params": p, "state": st, "opt": opt.init(p)}
    run = fresh if path_in is None else io.load(path_in, like=fresh)
    p, st, o = run["params"], run["state"], run["opt"]
    vg = fd.value_and_grad(model, losses.softmax_cross_entropy)
    for i in range(start, stop):
        x = random.normal(random.key(100 + i), (6, 5), dt)
        y = np.asarray(random.randint(random.key(200 + i), (6,), 0, 3))
        (_, st), g = vg(p, x, y, state=st, train=True)
        updates, o = opt.update(o, g, p)
        p = optim.apply_updates(p, updates)
    io.save(path_out, {"params": p, "state": st, "opt": o})
