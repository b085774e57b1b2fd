"""losses.ctc given torch's 1-D concatenated targets: the error says how to pad them, and
the padded form gives torch's value for the concatenated one."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd


def _case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 9, 5))
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    tl = np.array([3, 1, 4])
    cat = rng.integers(1, 5, size=int(tl.sum()))
    return lp, cat, np.array([9, 7, 9]), tl


def test_concatenated_targets_error_says_how_to_pad_them() -> None:
    lp, cat, il, tl = _case()
    with pytest.raises(ValueError, match=r"ctc: .*got shape \(8,\); torch's 1-D concatenated "
                                         r"targets are data.pad_sequences"):
        fd.losses.ctc(lp, (cat, il, tl))


def test_the_padded_recipe_matches_torch_on_concatenated_targets() -> None:
    torch = pytest.importorskip("torch")
    lp, cat, il, tl = _case()
    labels = fd.data.pad_sequences(np.split(cat, np.cumsum(tl)[:-1]))[0]
    want = torch.nn.functional.ctc_loss(torch.tensor(lp).transpose(0, 1), torch.tensor(cat),
                                        torch.tensor(il), torch.tensor(tl)).item()
    np.testing.assert_allclose(fd.losses.ctc(lp, (labels, il, tl)), want, rtol=1e-12)
