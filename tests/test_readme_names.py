"""README's "What is in the package" names every public name of every module: each entry
of a module's ``__all__`` appears in backticks (``glorot_*`` stands for its family), but
optim's state records, which README describes as one kind (NamedTuples named as optax's)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
MODULES = ["random", "tree", "initializers", "layers", "losses", "optim", "testing", "io",
           "data", "metrics", "debug", "autodiff", "perf", "sweep", "parallel"]


def _listed(name: str) -> bool:
    family = name.split("_")[0] + "_*"
    return bool(re.search(rf"`{re.escape(name)}[`(]", README)) or f"`{family}`" in README


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_is_in_the_readme(module):
    mod = importlib.import_module(f"funcdl.{module}")
    records = re.compile(r"State$|Info$|Params$") if module == "optim" else None
    missing = [n for n in mod.__all__
               if not _listed(n) and not (records is not None and records.search(n))]
    assert not missing, f"funcdl.{module}: not in README.md: {missing}"
