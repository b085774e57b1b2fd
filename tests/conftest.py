"""Shared fixtures. Warnings are errors (pyproject.toml), so a NumPy overflow or invalid
value anywhere fails the test that caused it."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import random


@pytest.fixture
def key() -> np.ndarray:
    return random.key(0)
