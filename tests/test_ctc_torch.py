"""losses.ctc against torch.nn.functional.ctc_loss in float64 (torch is time first: its
log_probs are funcdl's pred transposed to (T, N, C)): values, and gradients through
log_softmax (the same in both) and with respect to the log-probabilities themselves (where
torch gives exp(lp) + funcdl's, its gradient with respect to the logits)."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import losses

torch = pytest.importorskip("torch")
F = torch.nn.functional

CTC = losses.ctc


def _case(seed, n, t_max, n_cls, s_max, blank, repeats, impossible):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, t_max, n_cls)) * 2
    others = [c for c in range(n_cls) if c != blank]
    tg = rng.choice(others, size=(n, s_max))
    if repeats:
        tg[:, 1::2] = tg[:, ::2][:, :tg[:, 1::2].shape[1]]  # l_1 l_1 l_3 l_3 ...: repeats
    tl = rng.integers(0, s_max + 1, size=n)
    tl[0] = s_max
    il = rng.integers(1, t_max + 1, size=n)
    il[0] = t_max
    if impossible:
        il[-1] = max(0, tl[-1] - 1)  # fewer steps than labels
    tg = np.where(np.arange(s_max) < tl[:, None], tg, -3)  # torch ignores the padding too
    return z, tg, il, tl


GRID = [  # (seed, N, T, C, S, blank, repeats, impossible)
    (0, 3, 6, 4, 2, 0, False, False),
    (1, 4, 10, 5, 4, 0, True, False),
    (2, 4, 9, 6, 3, 5, False, True),
    (3, 5, 12, 3, 4, 1, True, True),
    (4, 2, 5, 5, 5, 2, True, True),
]


@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", GRID, ids=[f"case{g[0]}" for g in GRID])
def test_value_and_gradients_equal_torchs(case, reduction, zero_infinity):
    seed, n, t_max, n_cls, s_max, blank, repeats, impossible = case
    z, tg, il, tl = _case(seed, n, t_max, n_cls, s_max, blank, repeats, impossible)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    kw = {"input_lengths": il, "target_lengths": tl, "blank": blank,
          "zero_infinity": zero_infinity}
    value, pb = CTC.vjp(lp, tg, reduction, **kw)
    rng = np.random.default_rng(seed + 10)
    c = rng.normal(size=n) if reduction == "none" else 1.7
    g = pb(c)

    def torch_loss(log_probs):
        return F.ctc_loss(log_probs.transpose(0, 1), torch.tensor(tg), torch.tensor(il),
                          torch.tensor(tl), blank=blank, reduction=reduction,
                          zero_infinity=zero_infinity)

    zt = torch.tensor(z, requires_grad=True)
    want = torch_loss(torch.log_softmax(zt, -1))
    (want * torch.tensor(c, dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(value, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    # through log_softmax: dz = dlp - softmax Σ_c dlp, funcdl's vjp composed by hand
    dz = g - np.exp(lp) * g.sum(-1, keepdims=True)
    finite = np.isfinite(np.asarray(value)).all()
    if finite:
        np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=1e-10, atol=1e-12)
    # with respect to lp itself: torch's is exp(lp) + funcdl's on each example's steps
    # t < T_n (times its cotangent and, for the mean, 1 / (N max(L_n, 1)))
    lpt = torch.tensor(lp, requires_grad=True)
    (torch_loss(lpt) * torch.tensor(c, dtype=torch.float64)).sum().backward()
    weight = np.broadcast_to(np.asarray(c, float), (n,)).copy()
    if reduction == "mean":
        weight /= n * np.maximum(tl, 1)
    steps = np.arange(t_max) < il[:, None]
    if zero_infinity:  # torch zeroes an infinite example's gradient whole, as funcdl
        steps &= np.isfinite(CTC(lp, tg, "none", **{**kw, "zero_infinity": False}))[:, None]
    shifted = g + np.exp(lp) * (steps * weight[:, None])[..., None]
    np.testing.assert_allclose(shifted, lpt.grad.numpy(), rtol=1e-10, atol=1e-12)
    # NaN where torch has NaN (an infinite loss without zero_infinity), nowhere else
    np.testing.assert_array_equal(np.isnan(g), np.isnan(lpt.grad.numpy()))


def test_float32_close_to_torchs_float32():
    z, tg, il, tl = _case(7, 6, 40, 8, 6, 0, True, False)
    lp = (z - np.log(np.exp(z).sum(-1, keepdims=True))).astype(np.float32)
    value, pb = CTC.vjp(lp, tg, "sum", input_lengths=il, target_lengths=tl)
    g = pb()
    lpt = torch.tensor(lp, requires_grad=True)
    want = F.ctc_loss(lpt.transpose(0, 1), torch.tensor(tg), torch.tensor(il),
                      torch.tensor(tl), reduction="sum")
    want.backward()
    assert g.dtype == np.float32
    assert value == pytest.approx(want.item(), rel=1e-5)
    steps = (np.arange(40) < il[:, None])[..., None]
    np.testing.assert_allclose(g + np.exp(lp) * steps, lpt.grad.numpy(), atol=1e-4)
