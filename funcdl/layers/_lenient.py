"""A user's ``apply`` or ``vjp`` written without ``key=`` or ``train=`` (``apply(params,
x)``), called without the keywords it lacks: combinators pass both to every child."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any


def lenient(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, or, where it takes just ``(params, x)`` plus perhaps one of ``key``, ``train``
    (no ``**kw``), ``fn`` called without the keywords it lacks: combinators pass both to
    every child, and a deterministic layer written as ``apply(params, x)`` could not use
    them anyway (stax asks for ``**kwargs``). A function with other parameters is left as
    it is, so that ``apply(params, x, rng=None, training=False)`` still fails loudly rather
    than run in inference with its flag dropped."""
    if isinstance(fn, Without):  # a layer rebuilt from a lenient one (dataclasses.replace)
        return fn
    code = getattr(fn, "__code__", None)
    if code is not None and (code.co_flags & inspect.CO_VARKEYWORDS or {"key", "train"} <= set(
            code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])):
        return fn  # a user's function taking both: no inspect.signature (funcdl's own
        # closures do not come here: Layer.__post_init__ keeps them as they are)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: as it is
        return fn
    ps = list(sig.parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in ps):
        return fn
    named = [p.name for p in ps if p.kind is not p.VAR_POSITIONAL]
    drop = tuple(k for k in ("key", "train") if k not in named)
    bound = getattr(fn, "keywords", None) if isinstance(fn, functools.partial) else None
    if not drop or [n for n in named[2:] if n not in ("key", "train", "state")
                    and n not in (bound or ())]:
        return fn

    wrapper = Without()
    functools.update_wrapper(wrapper, fn)  # fn's name, signature and attributes
    wrapper.without_fn, wrapper.without_drop = fn, drop  # after: fn's own may share names
    return wrapper


class Without:
    """A function called without the keywords it lacks (see ``lenient``): a class, not a
    closure, so that a user's layer of module-level functions still pickles (a sweep's
    process pool sends it to its workers). Already one, a function is left as it is."""

    without_fn: Callable[..., Any]
    without_drop: tuple[str, ...]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for k in self.without_drop:
            kwargs.pop(k, None)
        return self.without_fn(*args, **kwargs)
