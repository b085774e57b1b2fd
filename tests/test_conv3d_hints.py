"""Conv3D's error on a rank-4 input gives one hint, its own (an image batch for Conv2D, or
one volume without its batch axis), not Conv2D's layout hint beside it saying the latter
again; the channels-first hint of a rank-5 input stays."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L


@pytest.mark.parametrize("groups", [1, 3])
def test_rank4_input_one_hint(groups):
    layer = L.Conv3D(6, 3, groups=groups)
    _, params = layer.init(fd.random.key(0), (None, 4, 5, 5, 3))
    with pytest.raises(ValueError) as e:
        layer.apply(params, np.zeros((4, 5, 5, 3), np.float32))  # one volume, no batch
    msg = str(e.value)
    assert msg.startswith("Conv3D(6, 3") and "(4, 5, 5, 3)" in msg and "Conv2D" in msg
    assert msg.count("without its batch axis") == 1 and msg.count("x[None]") == 1
    with pytest.raises(ValueError) as e:
        layer.apply(params, np.zeros((2, 3, 4, 5, 5), np.float32))  # torch's NCDHW
    assert "channels-first" in str(e.value) and "Conv2D" not in str(e.value)
