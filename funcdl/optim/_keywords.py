"""Keyword arguments beyond ``update(state, grads, params)``: a transform's update may take
keyword-only ones, as ``reduce_on_plateau``'s ``value=`` (the loss; optax's "extra args").
``chain`` and ``named_chain`` read which keywords each stage takes once, when built, forward
each keyword to the stages that take it, and refuse one that none takes."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["Keywords", "check_extra", "extra_keywords", "forwarded", "show_keywords"]

# A stage's keywords: a frozenset of names, or None when it takes **kwargs (any name).
Keywords = frozenset[str] | None
_F = TypeVar("_F", bound=Callable[..., Any])


def extra_keywords(update: Callable[..., Any]) -> Keywords:
    """The keyword-only parameters of ``update`` (None: it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: none
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def all_keywords(takes: Sequence[Keywords]) -> Keywords:
    """The keywords any of the stages takes (None: any name)."""
    names: set[str] = set()
    for k in takes:
        if k is None:
            return None
        names |= k
    return frozenset(names)


def check_extra(name: str, extra: dict[str, Any], takes: Sequence[Keywords]) -> None:
    """Refuse a keyword that no stage takes, with a TypeError naming it and those they
    take."""
    known = all_keywords(takes)
    if known is None:
        return
    for key in extra:
        if key not in known:
            offer = (f"its transforms take {', '.join(f'{k}=' for k in sorted(known))}"
                     if known else "none of its transforms takes a keyword argument")
            hint = (" (value= is the loss)" if "value" in known else
                    " (reduce_on_plateau, momo, momo_adam, scale_by_polyak, polyak_sgd and "
                    "lbfgs with a line search take value=, the loss)" if key == "value" else "")
            raise TypeError(f"{name}.update: got an unexpected keyword argument {key!r}; "
                            f"{offer}{hint}")


def forwarded(extra: dict[str, Any], keys: Keywords) -> dict[str, Any]:
    """The part of ``extra`` that a stage taking ``keys`` receives."""
    if keys is None:
        return extra
    return {k: v for k, v in extra.items() if k in keys}


def show_keywords(update: _F, takes: Sequence[Keywords]) -> _F:
    """``update`` (which takes ``**extra``), its signature showing instead the keywords its
    stages take (keyword-only, default None; ``**extra`` when one takes any name), so that
    a chain in a chain forwards them too, and no others."""
    known = all_keywords(takes)
    sig = inspect.signature(update)
    plain = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    more = ([inspect.Parameter("extra", inspect.Parameter.VAR_KEYWORD)] if known is None else
            [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None)
             for k in sorted(known)])
    update.__signature__ = sig.replace(parameters=[*plain, *more])  # type: ignore[attr-defined]
    return update
