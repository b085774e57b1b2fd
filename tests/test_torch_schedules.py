"""funcdl.optim's ports of torch's schedulers: onecycle_lr_schedule and
onecycle_momentum_schedule (torch's OneCycleLR, value for value; trainings through
inject_hyperparams against torch's AdamW and SGD), and reduce_on_plateau's apply_next (torch's
ReduceLROnPlateau timing). Closed forms and bad arguments first, then the torch cross-checks."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcdl import optim

# ---------------------------------------------------------------------------- closed forms


def test_onecycle_lr_takes_torchs_boundaries_not_optaxs() -> None:
    # T = 100: torch peaks at count 0.3·100 - 1 = 29 and reaches max_lr/(25·1e4) at 99
    lr = optim.onecycle_lr_schedule(100, 1.0)
    assert lr(0) == pytest.approx(0.04, rel=1e-13)
    assert lr(29) == pytest.approx(1.0, rel=1e-13)
    assert lr(99) == 4e-6
    optax_like = optim.cosine_onecycle_schedule(100, 1.0)
    assert optax_like(29) == pytest.approx(0.99737, rel=1e-5)
    assert optax_like(99) == pytest.approx(5.07e-4, rel=1e-3)


def test_onecycle_linear_and_three_phase_closed_forms() -> None:
    # T = 11, pct 0.5: the legs end at 4.5 and 10 (two phases), 4.5, 9 and 10 (three)
    lr = optim.onecycle_lr_schedule(11, 1.0, 0.5, "linear", 10.0, 100.0)
    assert lr(0) == pytest.approx(0.1) and lr(3) == pytest.approx(0.1 + 0.9 * 3 / 4.5)
    assert lr(5) == pytest.approx(1.0 + (0.001 - 1.0) * 0.5 / 5.5)
    assert lr(10) == pytest.approx(0.001)
    three = optim.onecycle_lr_schedule(11, 1.0, 0.5, "linear", 10.0, 100.0, True)
    assert three(6) == pytest.approx(1.0 - 0.9 * 1.5 / 4.5)
    assert three(9) == pytest.approx(0.1) and three(10) == pytest.approx(0.001)
    mom = optim.onecycle_momentum_schedule(11, 0.5, "linear", 0.8, 0.9, True)
    assert mom(0) == pytest.approx(0.9) and mom(3) == pytest.approx(0.9 - 0.1 * 3 / 4.5)
    assert mom(9) == pytest.approx(0.9) and mom(10) == pytest.approx(0.9)
    cos = optim.onecycle_momentum_schedule(11, 0.5)
    assert cos(5) == pytest.approx(0.85 + 0.1 * (1 - math.cos(math.pi * 0.5 / 5.5)) / 2)


@pytest.mark.parametrize("make", [
    lambda: optim.onecycle_lr_schedule(20, 0.5, 0.25, "cos", three_phase=True),
    lambda: optim.onecycle_momentum_schedule(20, 0.4, "linear")], ids=["lr", "momentum"])
def test_onecycle_holds_its_last_value_past_the_cycle_and_its_first_before(
        make: Callable[[], Any]) -> None:
    # torch raises after its T-th scheduler.step(); here counts >= T - 1 hold the value at
    # T - 1, and negative counts the value at 0
    s = make()
    for c in (20, 21, 100, 10**12):
        assert s(c) == s(19) and type(s(c)) is float
    assert s(-1) == s(-50) == s(0)
    counts = np.arange(-2, 24).reshape(2, 13)
    np.testing.assert_array_equal(s(counts), [[s(int(c)) for c in row] for row in counts])
    assert s(np.int64(7)) == s(7)


@pytest.mark.parametrize(("call", "what", "kind"), [
    (lambda: optim.onecycle_lr_schedule(0, 1.0), "total_steps", ValueError),
    (lambda: optim.onecycle_lr_schedule(2.5, 1.0), "total_steps", ValueError),
    (lambda: optim.onecycle_lr_schedule(10, -1.0), "max_lr", ValueError),
    (lambda: optim.onecycle_lr_schedule(10, float("nan")), "max_lr", ValueError),
    (lambda: optim.onecycle_lr_schedule(10, 1.0, 1.5), "pct_start", ValueError),
    (lambda: optim.onecycle_lr_schedule(10, 1.0, 0.1), "pct_start", ValueError),  # 0.1·10=1
    (lambda: optim.onecycle_lr_schedule(10, 1.0, anneal_strategy="cosine"),
     "anneal_strategy", ValueError),
    (lambda: optim.onecycle_lr_schedule(10, 1.0, anneal_strategy=None), "anneal_strategy",
     TypeError),
    (lambda: optim.onecycle_lr_schedule(10, 1.0, div_factor=0.0), "div_factor", ValueError),
    (lambda: optim.onecycle_lr_schedule(10, 1.0, final_div_factor=-1.0), "final_div_factor",
     ValueError),
    (lambda: optim.onecycle_lr_schedule(10, 1.0, three_phase="yes"), "three_phase",
     TypeError),
    (lambda: optim.onecycle_momentum_schedule(10, base_momentum=-0.1), "base_momentum",
     ValueError),
    (lambda: optim.onecycle_momentum_schedule(10, max_momentum=1.5), "max_momentum",
     ValueError),
    (lambda: optim.onecycle_momentum_schedule(10, anneal_strategy=1), "anneal_strategy",
     TypeError),
    (lambda: optim.onecycle_momentum_schedule(4, 0.25), "pct_start", ValueError)])
def test_onecycle_refuses_bad_arguments_by_name(call: Callable[[], Any], what: str,
                                                kind: type[Exception]) -> None:
    with pytest.raises(kind, match=rf"onecycle_\w+_schedule: .*{what}"):
        call()


def test_onecycle_constructors_passed_uncalled_are_refused() -> None:
    with pytest.raises(TypeError, match="onecycle_lr_schedule itself"):
        optim.sgd(optim.onecycle_lr_schedule)


# ---------------------------------------------------------------------------- apply_next

P = {"w": np.array([1.0, -2.0])}
G = {"w": np.array([0.5, 2.0])}


def _scales(opt: optim.GradientTransformation, losses: list[float]) -> list[float]:
    state, out = opt.init(P), []
    for loss in losses:
        u, state = opt.update(state, G, P, value=loss)
        out.append(float(u["w"][0] / G["w"][0]))
    return out


def test_reduce_on_plateau_apply_next_delays_each_new_scale_by_one_update() -> None:
    losses = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    kw: dict[str, Any] = {"factor": 0.5, "patience": 2}
    assert _scales(optim.reduce_on_plateau(**kw), losses) == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert _scales(optim.reduce_on_plateau(**kw, apply_next=True), losses) == [
        1, 1, 1, 0.5, 0.5, 0.25]
    # accumulations of 2: the plateau completes at update 3 (patience 1), used from 4 on
    acc = optim.reduce_on_plateau(0.5, 1, accumulation_size=2, apply_next=True)
    assert _scales(acc, losses) == [1, 1, 1, 1, 0.5, 0.5]


def test_reduce_on_plateau_apply_next_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="reduce_on_plateau: apply_next must be True or False"):
        optim.reduce_on_plateau(apply_next="yes")


# ---------------------------------------------------------------------------- against torch

CASES = [(T, pct, strategy, three, div, final)
         for T, pct in [(1, 0.3), (2, 0.3), (3, 0.5), (7, 0.0), (10, 0.25), (10, 1.0),
                        (37, 0.3), (50, 0.45), (100, 0.3), (64, 0.7)]
         for strategy in ("cos", "linear") for three in (False, True)
         for div, final in [(25.0, 1e4), (3.0, 7.5)]]


@pytest.mark.parametrize(("T", "pct", "strategy", "three", "div", "final"), CASES)
def test_onecycle_lr_and_momentum_match_torchs_onecycle_lr(
        T: int, pct: float, strategy: str, three: bool, div: float, final: float) -> None:
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0, momentum=0.5)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, 0.7, total_steps=T, pct_start=pct, anneal_strategy=strategy, three_phase=three,
        div_factor=div, final_div_factor=final, base_momentum=0.8, max_momentum=0.97)
    lr = optim.onecycle_lr_schedule(T, 0.7, pct, strategy, div, final, three)
    mom = optim.onecycle_momentum_schedule(T, pct, strategy, 0.8, 0.97, three)
    for count in range(T):
        group = opt.param_groups[0]
        assert lr(count) == pytest.approx(group["lr"], rel=1e-12, abs=1e-300), count
        assert mom(count) == pytest.approx(group["momentum"], rel=1e-12), count
        opt.step()
        if count < T - 1:  # torch's lr at T overshoots (and divides by 0 for pct_start=1)
            sched.step()


def _data(steps: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.normal(size=(steps, 8, 3)), rng.normal(size=(steps, 8, 2))


def _train_like_torch(make_torch: Callable[..., Any], ours: optim.GradientTransformation,
                      T: int, **onecycle: Any) -> None:
    """30 updates of a linear model y = x·w + b under MSE, ours against torch's."""
    torch = pytest.importorskip("torch")
    xs, ys = _data(T)
    rng = np.random.default_rng(4)
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=(2,))}
    tw = torch.tensor(params["w"], requires_grad=True)
    tb = torch.tensor(params["b"], requires_grad=True)
    topt = make_torch([tw, tb])
    sched = torch.optim.lr_scheduler.OneCycleLR(topt, total_steps=T, **onecycle)
    state = ours.init(params)
    for x, y in zip(xs, ys, strict=True):
        r = x @ params["w"] + params["b"] - y
        grads = {"w": 2.0 / r.size * x.T @ r, "b": 2.0 / r.size * r.sum(0)}
        updates, state = ours.update(state, grads, params)
        params = optim.apply_updates(params, updates)
        topt.zero_grad()
        loss = ((torch.tensor(x) @ tw + tb - torch.tensor(y)) ** 2).mean()
        loss.backward()
        topt.step()
        sched.step()
    np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(params["b"], tb.detach().numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(("pct", "strategy", "three"), [(0.3, "cos", False),
                                                         (0.4, "linear", True)])
def test_adamw_with_onecycle_trains_as_torchs_adamw_with_onecycle_lr(
        pct: float, strategy: str, three: bool) -> None:
    torch = pytest.importorskip("torch")
    T, cycle = 30, {"pct_start": pct, "anneal_strategy": strategy, "three_phase": three}
    ours = optim.inject_hyperparams(optim.adamw)(
        lr=optim.onecycle_lr_schedule(T, 0.05, div_factor=10.0, final_div_factor=50.0,
                                      **cycle),
        b1=optim.onecycle_momentum_schedule(T, base_momentum=0.8, max_momentum=0.95,
                                            **cycle),
        b2=0.99, weight_decay=0.1)
    _train_like_torch(lambda ps: torch.optim.AdamW(ps, lr=1.0, betas=(0.9, 0.99),
                                                   weight_decay=0.1),
                      ours, T, max_lr=0.05, div_factor=10.0, final_div_factor=50.0,
                      base_momentum=0.8, max_momentum=0.95, **cycle)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_with_onecycle_trains_as_torchs_sgd_with_onecycle_lr(nesterov: bool) -> None:
    torch = pytest.importorskip("torch")
    T = 30
    ours = optim.inject_hyperparams(optim.sgd)(
        lr=optim.onecycle_lr_schedule(T, 0.1, 0.3, "cos"),
        momentum=optim.onecycle_momentum_schedule(T, 0.3, "cos"), nesterov=nesterov,
        weight_decay=1e-3)
    _train_like_torch(lambda ps: torch.optim.SGD(ps, lr=1.0, momentum=0.9, nesterov=nesterov,
                                                 weight_decay=1e-3),
                      ours, T, max_lr=0.1, pct_start=0.3, anneal_strategy="cos")


EPOCH_LOSSES = [[5.0, 4.0, 3.0, 2.0], [3.6, 3.5, 3.4, 3.5], [3.6, 3.6, 3.7, 3.5],
                [3.49, 3.48, 3.47, 3.5]]


@pytest.mark.parametrize(("patience", "threshold", "cooldown"), [(0, 0.01, 0), (1, 1e-4, 0),
                                                                  (0, 0.05, 1)])
@pytest.mark.parametrize("recipe", ["apply_next", "per-epoch"])
def test_reduce_on_plateau_recipes_train_as_torchs_reduce_lr_on_plateau(
        patience: int, threshold: float, cooldown: int, recipe: str) -> None:
    # 4 epochs of 4 SGD steps; the loss each step reports is scripted (the gradient is the
    # model's), torch's scheduler stepped after each epoch on the epoch's mean loss
    torch = pytest.importorskip("torch")
    lr0, factor = 0.1, 0.5
    xs, ys = _data(16)
    params = {"w": np.ones((3, 2)), "b": np.zeros(2)}
    tw = torch.ones((3, 2), dtype=torch.float64, requires_grad=True)
    tb = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.SGD([tw, tb], lr=lr0, momentum=0.9)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        topt, factor=factor, patience=patience, threshold=threshold, cooldown=cooldown)
    plateau = optim.reduce_on_plateau(factor, patience + 1, rtol=threshold, cooldown=cooldown,
                                      accumulation_size=4, apply_next=True)
    if recipe == "apply_next":
        ours = optim.chain(optim.sgd(lr0, momentum=0.9), plateau)
    else:  # the plateau kept out of the chain, updated once per epoch
        plateau = optim.reduce_on_plateau(factor, patience + 1, rtol=threshold,
                                          cooldown=cooldown)
        ours = optim.inject_hyperparams(optim.sgd)(lr=lr0, momentum=0.9)
        pstate = plateau.init(params)
    state = ours.init(params)
    lrs = []
    for epoch, losses in enumerate(EPOCH_LOSSES):
        for i, loss in enumerate(losses):
            x, y = xs[4 * epoch + i], ys[4 * epoch + i]
            r = x @ params["w"] + params["b"] - y
            grads = {"w": 2.0 / r.size * x.T @ r, "b": 2.0 / r.size * r.sum(0)}
            extra = {"value": loss} if recipe == "apply_next" else {}
            updates, state = ours.update(state, grads, params, **extra)
            params = optim.apply_updates(params, updates)
            topt.zero_grad()
            ((torch.tensor(x) @ tw + tb - torch.tensor(y)) ** 2).mean().backward()
            lrs.append(topt.param_groups[0]["lr"])
            topt.step()
        mean = sum(losses) / len(losses)
        sched.step(mean)
        if recipe == "per-epoch":
            _, pstate = plateau.update(pstate, grads, value=mean)
            state = state._replace(hyperparams={**state.hyperparams,
                                                "lr": np.asarray(lr0 * float(pstate.scale))})
    assert len(set(lrs)) > 1  # a reduction happened, so the timing is tested
    np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(params["b"], tb.detach().numpy(), rtol=1e-12, atol=1e-15)
