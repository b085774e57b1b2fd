"""funcdl: a functional, JAX-flavoured deep-learning library on NumPy alone.

A network is a value: layers are immutable ``Layer(init, apply, vjp)`` records of pure
functions, parameters and optimizer states are pytrees of NumPy arrays, gradients come from
chaining hand-written vjps, and optimizers are pure ``(init, update)`` pairs.

How funcdl differs from its models (JAX's stax, optax):

1. The vjp is the third member of every layer, written by hand next to its apply; there is
   no tracing, no jit and no compile latency, and each vjp is unit-testable on its own
   (``funcdl.testing.check_vjp``).
2. NumPy only: runtime dependencies are numpy and typing-extensions.
3. Running statistics (BatchNorm) live in an explicit ``state`` pytree, threaded and
   returned, never mutated; stateless models keep the plain signatures.
4. Optimizers are called ``update(state, grads, params)`` (optax: ``update(grads, state,
   params)``); a swapped call raises instead of training wrongly.
5. Every layer constructor is called (``ReLU()``); ``Dropout(rate)`` drops ``rate``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from funcdl import (
        data,
        debug,
        initializers,
        io,
        layers,
        losses,
        metrics,
        optim,
        random,
        testing,
        tree,
    )
    from funcdl import parallel as parallel
    from funcdl import perf as perf
    from funcdl import sweep as sweep
    from funcdl.autodiff import (
        grad,
        per_example_active,
        per_example_grad,
        per_example_value_and_grad,
        value_and_grad,
        vjp,
    )

__version__ = "0.1.0"

__all__ = [
    "data",
    "debug",
    "grad",
    "initializers",
    "io",
    "layers",
    "losses",
    "metrics",
    "optim",
    "per_example_active",
    "per_example_grad",
    "per_example_value_and_grad",
    "random",
    "testing",
    "tree",
    "value_and_grad",
    "vjp",
]

# Submodules load on first use (``fd.layers``, ``from funcdl import optim``), so that
# ``import funcdl`` costs little more than ``import numpy``; parallel, sweep and perf are
# reachable the same way but stay out of ``__all__`` (``import *`` would load them).
_SUBMODULES = frozenset(
    {"autodiff", "data", "debug", "initializers", "io", "layers", "losses", "metrics", "optim",
     "parallel", "perf", "random", "sweep", "testing", "tree"})


# autodiff's functions load on first use too: `import funcdl` then imports no submodule, so
# that a thread importing one directly (`import funcdl.tree`, which takes that module's
# import lock before the package's) cannot meet this __init__ importing it (CPython raises
# _DeadlockError in one of them)
_AUTODIFF = frozenset({"grad", "per_example_active", "per_example_grad",
                       "per_example_value_and_grad", "value_and_grad", "vjp"})


def __getattr__(name: str) -> Any:
    if name in _AUTODIFF:
        value = globals()[name] = getattr(importlib.import_module("funcdl.autodiff"), name)
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"funcdl.{name}")  # also binds funcdl.<name>
    raise AttributeError(f"module 'funcdl' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the public names, not this module's own imports and helpers (Any, importlib, ...)
    return sorted({*__all__, *_SUBMODULES, "__version__"})
