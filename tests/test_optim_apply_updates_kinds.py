"""apply_updates keeps each param's kind: a 0-d array stays a 0-d array (NumPy's + of two
gives a scalar) and a NumPy scalar stays a scalar, whichever optimizer made the updates."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import optim

MAKERS = {"sgd": lambda: optim.sgd(0.1), "adam": lambda: optim.adam(0.1),
          "lars": lambda: optim.lars(0.1), "scale_by_adan": optim.scale_by_adan,
          "scale_by_novograd": optim.scale_by_novograd}


@pytest.mark.parametrize("name", MAKERS)
@pytest.mark.parametrize("zero_d", [np.array(1.0, np.float32), np.float32(1.0)],
                         ids=["0d-array", "numpy-scalar"])
def test_a_0d_param_keeps_its_kind(name, zero_d):
    opt = MAKERS[name]()
    params = {"a": zero_d, "w": np.ones((2, 2), np.float32)}
    grad = np.asarray(0.5, np.float32) if isinstance(zero_d, np.ndarray) else np.float32(0.5)
    updates, _ = opt.update(opt.init(params), {"a": grad, "w": np.ones((2, 2), np.float32)},
                            params)
    new = optim.apply_updates(params, updates)
    assert type(new["a"]) is type(zero_d) and new["a"].dtype == np.float32
    assert type(new["w"]) is np.ndarray
