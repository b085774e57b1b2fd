"""End-to-end training against PyTorch in float64: the same network in funcdl and torch, from
funcdl's initial params, trained K steps on the same fixed data; the losses must agree after
every step, and the params, BatchNorm running statistics and optimizer moments at the end.
Skipped where torch is not installed.

Layouts: a funcdl Dense weight is (in, out), torch's Linear (out, in); a funcdl Conv2D is
NHWC with an HWIO kernel, torch's Conv2d NCHW with OIHW; Flatten after NHWC reads (h, w, c),
after NCHW (c, h, w), so the Dense after it has its input rows permuted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _torch_util import t64

import funcdl as fd
from funcdl import layers as L
from funcdl import losses

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
K = 6
TOL = {"rtol": 1e-9, "atol": 1e-12}
Array = np.ndarray
Layout = tuple[Callable[[Array], Array], Callable[[Array], Array]]  # funcdl -> torch, back


def _same(a: Array) -> Array:
    return a


def _t(a: Array) -> Array:
    return a.T


SAME: Layout = (_same, _same)
DENSE: Layout = (_t, _t)
CONV: Layout = (lambda a: a.transpose(3, 2, 0, 1), lambda a: a.transpose(2, 3, 1, 0))


def flat_dense(h: int, w: int, c: int) -> Layout:
    """A Dense after Flatten of an (h, w, c) NHWC map; torch's Linear reads (c, h, w)."""
    def to(a: Array) -> Array:
        return a.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1).T

    def back(a: Array) -> Array:
        return a.T.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)
    return to, back


Link = tuple[tuple[Any, ...], Any, Layout]  # path into funcdl's params, torch param, layout


def links(*pairs: tuple[tuple[Any, ...], Any]) -> list[Link]:
    """(funcdl path of a layer's params, torch module) -> one link per parameter."""
    out: list[Link] = []
    for path, m in pairs:
        if isinstance(m, nn.Embedding):
            out.append(((*path, "table"), m.weight, SAME))
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            out += [((*path, "scale"), m.weight, SAME), ((*path, "bias"), m.bias, SAME)]
        else:
            w = CONV if isinstance(m, nn.Conv2d) else DENSE
            out += [((*path, "w"), m.weight, w), ((*path, "b"), m.bias, SAME)]
    return out


def get(tree: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def init64(model: L.Layer, in_shape: tuple[Any, ...], seed: int = 0) -> tuple[Any, ...]:
    """funcdl's params (and state), cast to float64."""
    return tuple(fd.tree.map(lambda a: a.astype(np.float64), t)
                 for t in model.init(fd.random.key(seed), in_shape)[1:])


def load(ls: list[Link], params: Any) -> list[Any]:
    """funcdl's initial params into torch; every funcdl leaf has exactly one link."""
    assert len(ls) == len(fd.tree.leaves(params))
    with torch.no_grad():
        for path, p, (to, _) in ls:
            p.copy_(t64(to(get(params, path))))
    return [p for _, p, _ in ls]


def compare(ls: list[Link], tree: Any, torch_of: Callable[[Any], Any], what: str,
            loose: tuple[Any, ...] = ()) -> None:
    for path, p, (_, back) in ls:
        tol = {**TOL, "atol": NOISE_ATOL} if path == loose else TOL
        np.testing.assert_allclose(get(tree, path), back(torch_of(p).detach().numpy()),
                                   **tol, err_msg=f"{what} at {path}")


def train(model: L.Layer, loss: Any, opt: Any, params: Any, x: Array, target: Array,
          tforward: Callable[[Any], Any], tloss: Callable[[Any, Any], Any], topt: Any,
          xt: Any, tt: Any, *, state: Any = None, lr: Callable[[int], float] | None = None,
          clip: float | None = None) -> tuple[Any, Any, Any, list[float]]:
    """K steps on both sides, the losses compared at each; returns funcdl's params, model
    state and optimizer state, and torch's gradient norms before clipping."""
    f = fd.value_and_grad(model, loss)
    ostate = opt.init(params)
    tparams = [p for g in topt.param_groups for p in g["params"]]
    norms = []
    for t in range(K):
        if state is None:
            value, grads = f(params, x, target)
        else:
            (value, state), grads = f(params, x, target, state=state)
        assert {g.dtype for g in fd.tree.leaves(grads)} == {np.dtype(np.float64)}
        updates, ostate = opt.update(ostate, grads, params)
        params = fd.optim.apply_updates(params, updates)

        topt.zero_grad()
        tvalue = tloss(tforward(xt), tt)
        tvalue.backward()
        if clip is not None:
            norms.append(float(nn.utils.clip_grad_norm_(tparams, clip)))
        if lr is not None:
            for group in topt.param_groups:
                group["lr"] = lr(t)
        topt.step()
        np.testing.assert_allclose(value, tvalue.item(), **TOL, err_msg=f"loss at step {t}")
    return params, state, ostate, norms


# ---------------------------------------------------------------------------- 1, 5: a CNN

def optax_warmup_cosine(t: int, init: float, peak: float, warmup: int, decay: int,
                        end: float) -> float:
    """optax.warmup_cosine_decay_schedule (exponent 1) at count t, written out by hand."""
    if t < warmup:
        return init + (peak - init) * t / warmup
    s = min(t - warmup, decay - warmup)
    return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * s / (decay - warmup)))


# The first conv's bias feeds a BatchNorm, which cancels it: its gradient is 0 in exact
# arithmetic, ~1e-17 of rounding noise on either side (asserted below), and Adam scales noise
# to steps of up to lr·|g|/eps ~ 1e-10. Measured: 1.3e-10 on the bias, 3e-11 on the running
# mean it shifts; every other leaf agrees to 2e-15. Those two get this atol, the rest TOL.
NOISE_ATOL = 1e-9
SCHED = {"init": 2e-3, "peak": 4e-2, "warmup": 2, "decay": 5, "end": 5e-3}
MAX_NORM = 1.0


def cnn_run() -> tuple[Any, ...]:
    model = L.Sequential(
        L.Conv2D(8, 3, padding="SAME"), L.BatchNorm(), L.ReLU(), L.MaxPool2D(2),
        L.Conv2D(6, 3, stride=2, padding=1), L.GELU(), L.Flatten(), L.Dense(16), L.LayerNorm(),
        L.Tanh(), L.Dense(5))
    params, state = init64(model, (None, 10, 10, 3))
    # torch's GELU default is the exact erf form, as funcdl's: asked for explicitly anyway
    tm = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 6, 3, stride=2, padding=1), nn.GELU(approximate="none"), nn.Flatten(),
        nn.Linear(54, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 5)).to(torch.float64)
    ls = links(((0,), tm[0]), ((1,), tm[1]), ((4,), tm[4]), ((7,), tm[7]), ((8,), tm[8]),
               ((10,), tm[10]))
    ls = [(q, p, flat_dense(3, 3, 6) if q == (7, "w") else lay) for q, p, lay in ls]
    tparams = load(ls, params)
    s = SCHED
    schedule = fd.optim.warmup_cosine_decay_schedule(s["init"], s["peak"], s["warmup"],
                                                     s["decay"], end_value=s["end"])
    # eps=1e-6: torch's clip_grad_norm_ divides by (norm + 1e-6); funcdl's default is optax's 0
    opt = fd.optim.chain(fd.optim.clip_by_global_norm(MAX_NORM, eps=1e-6),
                         fd.optim.adamw(lr=schedule, weight_decay=1e-2))
    topt = torch.optim.AdamW(tparams, lr=s["init"], weight_decay=1e-2)
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((6, 10, 10, 3)), rng.integers(0, 5, 6)
    _, g = fd.value_and_grad(model, losses.softmax_cross_entropy)(params, x, labels, state=state)
    assert np.abs(g[0]["b"]).max() < 1e-15 < np.abs(g[0]["w"]).max()  # the noise, above
    params, state, ostate, norms = train(
        model, losses.softmax_cross_entropy, opt, params, x, labels, tm, F.cross_entropy, topt,
        t64(x.transpose(0, 3, 1, 2)), torch.tensor(labels), state=state,
        lr=lambda t: optax_warmup_cosine(t, **s), clip=MAX_NORM)
    return model, params, state, ostate, tm, ls, topt, norms


def test_cnn_with_batchnorm_adamw_schedule_and_clipping_trains_as_torch():
    _, params, state, ostate, tm, ls, topt, norms = cnn_run()
    # clipped on some steps (the first ones), not on all
    assert any(n > MAX_NORM for n in norms) and any(n < MAX_NORM for n in norms), norms
    compare(ls, params, lambda p: p, "param", loose=(0, "b"))
    np.testing.assert_allclose(state[1]["mean"], tm[1].running_mean.numpy(), rtol=TOL["rtol"],
                               atol=NOISE_ATOL)
    np.testing.assert_allclose(state[1]["var"], tm[1].running_var.numpy(), **TOL)
    adam = ostate.states[1].states["adam"]
    compare(ls, adam.mu, lambda p: topt.state[p]["exp_avg"], "adam mu")
    compare(ls, adam.nu, lambda p: topt.state[p]["exp_avg_sq"], "adam nu")
    assert int(ostate.count) == K


def test_batchnorm_inference_after_training_matches_torch_eval():
    model, params, state, _, tm, _, _, _ = cnn_run()
    x = 1.5 + 2.0 * np.random.default_rng(1).standard_normal((4, 10, 10, 3))
    y, same = model.apply(params, x, state=state)  # train=False: the running statistics
    assert same[1] is state[1]
    tm.eval()
    with torch.no_grad():
        yt = tm(t64(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(y, yt, **TOL)
    # and inference differs from training mode here, so the running statistics were read
    assert not np.allclose(model.apply(params, x, state=state, train=True)[0], y, rtol=1e-3)


# ---------------------------------------------------------------------------- 2: an MLP

@pytest.mark.parametrize("loss, tloss", [
    (losses.mse, F.mse_loss), (losses.huber, nn.HuberLoss(delta=1.0))], ids=["mse", "huber"])
def test_residual_mlp_with_nesterov_sgd_trains_as_torch(loss, tloss):
    model = L.Sequential(L.Dense(16), L.ELU(), L.Residual(L.Sequential(
        L.Dense(16), L.LeakyReLU(0.1), L.Dense(16))), L.Softplus(), L.Dense(3))
    (params,) = init64(model, (None, 5), seed=1)
    m = nn.ModuleList([nn.Linear(5, 16), nn.Linear(16, 16), nn.Linear(16, 16),
                       nn.Linear(16, 3)]).to(torch.float64)

    def forward(x: Any) -> Any:
        h = F.elu(m[0](x))
        return m[3](F.softplus(h + m[2](F.leaky_relu(m[1](h), 0.1))))

    ls = links(((0,), m[0]), ((2, 0), m[1]), ((2, 2), m[2]), ((4,), m[3]))
    kw = {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}
    topt = torch.optim.SGD(load(ls, params), **kw)
    rng = np.random.default_rng(2)
    x, target = rng.standard_normal((8, 5)), 2.0 * rng.standard_normal((8, 3))
    y0 = model.apply(params, x)
    if loss is losses.huber:  # both of Huber's branches are in play
        assert (np.abs(y0 - target) > 1).any() and (np.abs(y0 - target) < 1).any()
    params, _, ostate, _ = train(model, loss, fd.optim.sgd(**kw), params, x, target, forward,
                                 tloss, topt, t64(x), t64(target))
    compare(ls, params, lambda p: p, "param")
    compare(ls, ostate.states["momentum"].trace, lambda p: topt.state[p]["momentum_buffer"],
            "momentum")


# ---------------------------------------------------------------------------- 3: sharing

@pytest.mark.parametrize("kw", [
    {"lr": 1e-2},  # both libraries' defaults for the rest
    {"lr": 5e-3, "alpha": 0.9, "eps": 1e-6, "weight_decay": 1e-3, "momentum": 0.5,
     "centered": True}], ids=["defaults", "centered-momentum"])
def test_shared_dense_with_rmsprop_trains_as_torch_module_called_twice(kw):
    # Shared: one Dense on each half of the input; Repeat: one Dense twice in series
    model = L.Sequential(
        L.FanOut(2), L.Parallel(L.Slice(np.s_[0:4]), L.Slice(np.s_[4:8])),
        L.Shared(L.Sequential(L.Dense(5), L.Tanh())), L.FanInConcat(),
        L.Repeat(L.Sequential(L.Dense(10), L.Tanh()), 2), L.Dense(3))
    (params,) = init64(model, (None, 8), seed=2)
    m = nn.ModuleList([nn.Linear(4, 5), nn.Linear(10, 10), nn.Linear(10, 3)]).to(torch.float64)

    def forward(x: Any) -> Any:
        h = torch.cat([torch.tanh(m[0](x[:, :4])), torch.tanh(m[0](x[:, 4:]))], dim=1)
        for _ in range(2):
            h = torch.tanh(m[1](h))
        return m[2](h)

    ls = links(((2, 0), m[0]), ((4, 0), m[1]), ((5,), m[2]))  # one link per shared leaf
    topt = torch.optim.RMSprop(load(ls, params), **kw)
    rng = np.random.default_rng(3)
    x, probs = rng.standard_normal((9, 8)), rng.dirichlet(np.ones(3), 9)
    params, _, ostate, _ = train(model, losses.softmax_cross_entropy, fd.optim.rmsprop(**kw),
                                 params, x, probs, forward, F.cross_entropy, topt, t64(x),
                                 t64(probs))
    compare(ls, params, lambda p: p, "param")
    rms = ostate.states["rms"]
    compare(ls, rms.nu, lambda p: topt.state[p]["square_avg"], "square_avg")
    if kw.get("centered"):
        compare(ls, rms.mu, lambda p: topt.state[p]["grad_avg"], "grad_avg")
        compare(ls, ostate.states["momentum"].trace,
                lambda p: topt.state[p]["momentum_buffer"], "momentum")


# ---------------------------------------------------------------------------- 4: Embedding

@pytest.mark.parametrize("kw", [
    {"lr": 0.1},
    {"lr": 0.2, "lr_decay": 0.05, "weight_decay": 1e-3, "initial_accumulator_value": 0.1,
     "eps": 1e-8}], ids=["defaults", "decay"])
def test_embedding_mean_with_adagrad_trains_as_torch(kw):
    # GlobalAvgPool averages every axis between batch and channels: over the sequence here
    model = L.Sequential(L.Embedding(11, 4), L.GlobalAvgPool(), L.Dense(1))
    (params,) = init64(model, (None, 5), seed=3)
    m = nn.ModuleList([nn.Embedding(11, 4), nn.Linear(4, 1)]).to(torch.float64)
    ls = links(((0,), m[0]), ((2,), m[1]))
    topt = torch.optim.Adagrad(load(ls, params), **kw)
    rng = np.random.default_rng(4)
    ids, target = rng.integers(0, 11, (7, 5)), rng.uniform(0, 1, (7, 1))
    assert len(np.unique(ids)) < ids.size  # repeated ids: their rows' grads summed
    params, _, ostate, _ = train(
        model, losses.bce_with_logits, fd.optim.adagrad(**kw), params, ids, target,
        lambda i: m[1](m[0](i).mean(dim=1)), F.binary_cross_entropy_with_logits, topt,
        torch.tensor(ids), t64(target))
    compare(ls, params, lambda p: p, "param")
    compare(ls, ostate.states["adagrad"].sum_of_squares, lambda p: topt.state[p]["sum"], "sum")
