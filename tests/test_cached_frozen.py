"""Arrays the layers cache and hand out (causal masks, Upsample's and the adaptive pools'
matrices) cannot be made writable again: a caller's setflags(write=True) and a write would
change every later call's numbers."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl.layers import _adaptive, _attention, upsample


@pytest.mark.parametrize("make", [lambda: _attention.later(5),
                                  lambda: upsample._matrix(4, 2, False, "float32"),
                                  lambda: _adaptive._members(7, 3, np.dtype(np.float32)),
                                  lambda: _adaptive._ranks(5)],
                         ids=["causal-mask", "upsample", "adaptive-members", "adaptive-ranks"])
def test_a_cached_array_stays_read_only(make):
    a = make()
    assert not a.flags.writeable
    with pytest.raises(ValueError, match="WRITEABLE"):
        a.setflags(write=True)
    assert make() is a or np.array_equal(make(), a)
