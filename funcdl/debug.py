"""Opt-in checks for non-finite values, scoped by a context manager (no global switch).

    with funcdl.debug.check_finite():
        loss, grads = value_and_grad(params, x, y)   # raises at the first NaN or inf

Inside the block, every ``Sequential`` checks each child's output (and a stateful child's
new state) after its forward, in ``apply`` as in ``vjp``, and its ``dx``/``dparams`` after
its pullback; ``value_and_grad`` checks the model's output, the loss and its gradient, the
new state and ``dx``, and first of all its input ``x``: a NaN the data brings is named as
the input's, not blamed on the first layer it reaches. When a check of ``value_and_grad``
fails and the params themselves hold a NaN or inf, the error carries a note naming that
leaf (Python 3.11 on); a model's own ``apply`` or ``vjp`` names the layer alone (find such
a leaf with ``tree.leaves_with_path`` and ``np.isfinite``).
The first non-finite value raises ``FloatingPointError`` naming the layer once (its place,
e.g. ``Sequential[3] Dense(25)``, nested as the other errors are) and the pass (forward or
backward). NumPy's own warnings (``invalid value encountered``)
are silenced while checking, so they cannot pre-empt that error under ``-W error``.
Outside the block the cost is one context-variable read per ``Sequential`` or
``value_and_grad`` call.

``check_finite(inf=False)`` raises at a NaN only, as ``jax_debug_nans`` and torch's anomaly
mode do: a model that puts ``-inf`` in its logits on purpose (an additive attention mask)
can be checked too. A pullback checks if the flag is on when it is called (as torch's
anomaly mode, at backward time), whatever it was when the forward ran.

The flag lives in a ``contextvars.ContextVar``, so it is local to the thread (and asyncio
task) that set it: a new thread or a ``concurrent.futures`` worker starts with it off, even
when started inside the block (enter ``check_finite`` there too). A generator that yields
inside the block leaves the flag on in the code driving it, until the generator resumes
past the block or is closed; blocks entered and left out of their nesting order (a
generator's and its driver's) restore what the contextvar's tokens say, which is then not
the enclosing block's flag: keep a generator's block inside the generator, or around its
whole use. As a decorator it serves plain functions (a generator function or a coroutine
function is refused: its body runs after the call returns).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, TypeVar

import numpy as np

from funcdl import tree
from funcdl._args import bool_arg

__all__ = ["check_finite", "enabled", "verify"]

# 0: off; 1: NaN only (check_finite(inf=False)); 2: NaN and inf
_ON: ContextVar[int] = ContextVar("funcdl_check_finite", default=0)
# how many checked Sequentials run around this point: an inner one's input is no data
_DEPTH: ContextVar[int] = ContextVar("funcdl_check_depth", default=0)
# The tokens of the check_finite blocks entered in this context, innermost last.
_ENTERED: ContextVar[tuple[Token[int], ...]] = ContextVar("funcdl_check_entered", default=())
_F = TypeVar("_F", bound=Callable[..., Any])


class check_finite:  # lower case: called as a function, as contextlib's managers are
    """``with check_finite():`` raises ``FloatingPointError`` at the first NaN or inf within
    the block; ``check_finite(inf=False)`` at the first NaN only; ``check_finite(False)``
    turns the checks off inside an enclosing block. One object may be entered again, and
    nested; as a decorator it wraps a plain function's calls."""

    def __init__(self, enabled: bool = True, *, inf: bool = True) -> None:
        where = "funcdl.debug.check_finite"
        on, with_inf = bool_arg(enabled, where, "enabled"), bool_arg(inf, where, "inf")
        self._mode = 0 if not on else 2 if with_inf else 1

    def __enter__(self) -> None:
        # the tokens on a stack of the context, not of the object or the thread: one object
        # may be entered by several threads, or asyncio tasks of one thread, at once, and
        # each leaves its own block (a thread-wide stack let a task reset another's token)
        _ENTERED.set((*_ENTERED.get(), _ON.set(self._mode)))

    def __exit__(self, *exc: object) -> None:
        *rest, token = _ENTERED.get()
        _ON.reset(token)
        _ENTERED.set(tuple(rest))

    def __call__(self, fn: _F) -> _F:
        if inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn) or \
                inspect.isasyncgenfunction(fn):
            raise TypeError(f"funcdl.debug.check_finite: {fn.__name__} is a generator or "
                            f"coroutine function, whose body runs after the call returns; "
                            f"enter `with check_finite():` inside its body instead")
        if not callable(fn):
            raise TypeError(f"funcdl.debug.check_finite: decorates a function, got "
                            f"{type(fn).__name__}")

        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return checked  # type: ignore[return-value]


def enabled() -> bool:
    """Whether the checks are on in the current context."""
    return _ON.get() > 0


@contextmanager
def inside() -> Iterator[None]:
    """Around a checked Sequential's children: a Sequential nested in them checks its input
    as what the model made before it, not as the data."""
    token = _DEPTH.set(_DEPTH.get() + 1)
    try:
        yield
    finally:
        _DEPTH.reset(token)


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


def _first_nan(value: Any) -> tuple[str, Any] | None:
    for path, leaf in tree.leaves_with_path(value):
        a = np.asarray(leaf)
        if a.dtype.kind in "fc" and np.isnan(a).any():
            return path, a
    return None


def _found(value: Any) -> tuple[str, str, tuple[int, ...]] | None:
    """``("NaN" or "inf", path, shape)`` of the first NaN or inf leaf of ``value`` (NaN
    only under ``check_finite(inf=False)``), or None."""
    found = _first_nan(value) if _ON.get() == 1 else first_nonfinite(value)
    if found is None:
        return None
    path, a = found
    return ("NaN" if np.isnan(a).any() else "inf"), path, a.shape


def verify(where: str, what: str, value: Any) -> None:
    """Raise ``FloatingPointError`` if any floating leaf of ``value`` holds a NaN or inf (a
    NaN only, inside ``check_finite(inf=False)``).

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
    if found is not None and _DEPTH.get() > 0:  # a Sequential inside a checked one
        bad, path, shape = found
        raise FloatingPointError(
            f"{where}: {bad} in its {what}{path} (shape {shape}), made by the model before "
            f"it: an enclosing combinator's own arithmetic (a Residual's x + f(x), the "
            f"blocks a Repeat chains) or a layer no Sequential checks; "
            f"funcdl.debug.check_finite is on")
    if found is not None:
        bad, path, shape = found
        name = what.split()[-1] + path  # the leaf itself: x[1] of a tuple x
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
