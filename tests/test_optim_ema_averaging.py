"""``ema`` as parameter averaging: the recipe in its docstring (``debias=False`` from
``EmaState(0, params)``) is torch's ``AveragedModel`` with an EMA, which copies the params at
its first update; the default is optax's, debiased from zero."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import optim

D = 0.9


def _trajectory() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.standard_normal(5) for _ in range(8)]


def _averaged(params: list[np.ndarray]) -> np.ndarray:
    avg = optim.ema(D, debias=False)
    state = optim.EmaState(np.int64(0), params[0])  # the first update copies
    out = params[0]
    for p in params[1:]:
        out, state = avg.update(state, p)
    return np.asarray(out)


def test_the_recipe_copies_first_then_averages():
    ps = _trajectory()
    want = ps[0]
    for p in ps[1:]:
        want = D * want + (1 - D) * p
    np.testing.assert_allclose(_averaged(ps), want, rtol=1e-14)
    # the default, debiased from zero, is another average (optax's)
    default = optim.ema(D)
    s = default.init(ps[0])
    for p in ps:
        got, s = default.update(s, p)
    assert not np.allclose(got, want)


def test_the_recipe_is_torchs_averaged_model():
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ps = _trajectory()
    model = torch.nn.Linear(5, 1, bias=False).double()
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(D))
    for p in ps:
        with torch.no_grad():
            model.weight.copy_(torch.tensor(p[None]))
        averaged.update_parameters(model)
    theirs = averaged.module.weight.detach().numpy()[0]
    np.testing.assert_allclose(_averaged(ps), theirs, rtol=1e-14)
