"""Containers shared by the funcdl.tree tests: two NamedTuples of equal arity."""

from __future__ import annotations

from typing import Any, NamedTuple


class Adam(NamedTuple):
    mu: Any
    nu: Any


class Pair(NamedTuple):
    first: Any
    second: Any
