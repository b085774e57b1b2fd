"""Opt-in checks for non-finite values, scoped by a context manager (no global switch).

    with funcdl.debug.check_finite():
        loss, grads = value_and_grad(params, x, y)   # raises at the first NaN or inf

Inside the block, every ``Sequential`` checks each child's output (and a stateful child's
new state) after its forward, in ``apply`` as in ``vjp``, and its ``dx``/``dparams`` after
its pullback; ``value_and_grad`` checks the model's output, the loss and its gradient, the
new state and ``dx``, and first of all its input ``x``: a NaN the data brings is named as
the input's, not blamed on the first layer it reaches. When a check fails and the params
themselves hold a NaN or inf, the error carries a note naming that leaf (Python 3.11 on).
The first non-finite value raises ``FloatingPointError`` naming the layer once (its place,
e.g. ``Sequential[3] Dense(25)``, nested as the other errors are) and the pass (forward or
backward). NumPy's own warnings (``invalid value encountered``)
are silenced while checking, so they cannot pre-empt that error under ``-W error``.
Outside the block the cost is one context-variable read per ``Sequential`` or
``value_and_grad`` call.

The flag lives in a ``contextvars.ContextVar``, so it is local to the thread (and asyncio
task) that set it: a new thread or a ``concurrent.futures`` worker starts with it off, even
when started inside the block (enter ``check_finite`` there too). A generator that yields
inside the block leaves the flag on in the code driving it, until the generator resumes
past the block or is closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg

__all__ = ["check_finite", "enabled", "verify"]

_ON: ContextVar[bool] = ContextVar("funcdl_check_finite", default=False)


def check_finite(enabled: bool = True) -> AbstractContextManager[None]:
    """Within the block, raise ``FloatingPointError`` at the first non-finite value;
    ``check_finite(False)`` turns the checks off inside an enclosing block. Usable as a
    decorator too."""
    return _scope(bool_arg(enabled, "funcdl.debug.check_finite", "enabled"))


@contextmanager
def _scope(on: bool) -> Iterator[None]:
    token = _ON.set(on)
    try:
        yield
    finally:
        _ON.reset(token)


def enabled() -> bool:
    """Whether the checks are on in the current context."""
    return _ON.get()


def quiet() -> np.errstate:
    """The NumPy error state for a checked computation: a NaN or inf is not warned about
    where NumPy makes it (a warning would pre-empt, under ``-W error``, the named error the
    check raises just after). Used only while the checks are on."""
    return np.errstate(invalid="ignore", over="ignore", divide="ignore")


def first_nonfinite(value: Any) -> tuple[str, Any] | None:
    """``(path, array)`` of the first floating leaf of ``value`` holding a NaN or inf, or
    None."""
    for path, leaf in tree.leaves_with_path(value):
        a = np.asarray(leaf)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            return path, a
    return None


def _found(value: Any) -> tuple[str, str, tuple[int, ...]] | None:
    """``("NaN" or "inf", path, shape)`` of ``first_nonfinite(value)``, or None."""
    found = first_nonfinite(value)
    if found is None:
        return None
    path, a = found
    return ("NaN" if np.isnan(a).any() else "inf"), path, a.shape


def verify(where: str, what: str, value: Any) -> None:
    """Raise ``FloatingPointError`` if any floating leaf of ``value`` holds a NaN or inf.

    The check the library runs inside ``check_finite``; it checks whenever called, so it
    serves for a user's own values too (inside the block the message ends "; funcdl.debug.
    check_finite is on", outside it "(funcdl.debug.verify)")."""
    found = _found(value)
    if found is not None:
        bad, path, shape = found
        why = "; funcdl.debug.check_finite is on" if _ON.get() else " (funcdl.debug.verify)"
        raise FloatingPointError(f"{where}: {bad} in the {what}{path} (shape {shape}){why}")


def verify_input(where: str, x: Any, what: str = "input x") -> None:
    """Raise ``FloatingPointError`` if the model's input ``x`` (or the loss's target, ``what``
    ``"target"``) holds a NaN or inf: checked before any layer runs, so that the data is
    named, not the first layer or the loss it reaches."""
    found = _found(x)
    if found is not None:
        bad, path, shape = found
        name = what.split()[-1]
        raise FloatingPointError(
            f"{where}: {bad} in the {what}{path} (shape {shape}), before any layer ran: "
            f"the data holds it; drop or impute those examples (find them with "
            f"np.argwhere(~np.isfinite({name}))); funcdl.debug.check_finite is on")


def note_params(err: BaseException, params: Any) -> None:
    """Add to ``err`` (a failed check) a note naming the first leaf of ``params`` that holds
    a NaN or inf: the layer the check names computed from it, and is not at fault."""
    found = _found(params)
    add = getattr(err, "add_note", None)  # Python 3.11 on
    if found is not None and add is not None:
        bad, path, shape = found
        add(f"{bad} in params{path} (shape {shape}) already before the model ran: the "
            f"params are at fault, not the computation (re-initialise them; after a "
            f"diverged update, lower the learning rate)")
