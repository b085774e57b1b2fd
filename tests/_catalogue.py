"""What the catalogue of bad inputs (test_bad_inputs*.py) shares: a case is
``(call, exception, parts)``, and every one of ``parts`` must appear in the message."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random

KEY = random.key(0)
F32 = np.float32


def has(*parts: str) -> str:
    """A regex matching a message that contains every one of ``parts`` literally, in any
    order: ``has("Dense(25)", "(50, 3)")``."""
    return "(?s)" + "".join(f"(?=.*{re.escape(p)})" for p in parts)


def case(id: str, call: Callable[..., Any], exc: Any, *parts: str,
         xfail: str | None = None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(call, exc, has(*parts), id=id, marks=marks)


def ones(*shape: int, dtype: Any = F32) -> np.ndarray:
    return np.ones(shape, dtype)


def init(layer: L.Layer, in_shape: Any) -> Any:
    """The params (and state, for a stateful layer) of ``layer`` at ``in_shape``."""
    out = layer.init(KEY, in_shape)
    return out[1:] if layer.stateful else out[1]
