"""tests/typing_user_code.py, which `make test` type-checks with `mypy --strict`, is a
correct program: it runs, under the suite's warnings-as-errors, and gives its numbers."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest


def test_the_type_checked_user_code_runs() -> None:
    main = runpy.run_path(str(Path(__file__).with_name("typing_user_code.py")))["main"]
    lr, count, best = main()
    assert lr == pytest.approx(0.004)      # the warmup schedule at the state's count, 4
    assert count == 101.0                   # resumed from a Python int count of 100
    assert best == pytest.approx(0.1)
