"""``combine``: the weighted sum of losses, each reading some entries of a tuple pred (a
two-head model's ``(logits, value)``, a VAE's ``(recon, mu, logvar)``), or each the whole
pred (Dice + cross-entropy on one segmentation's logits), as a ``Loss`` whose pullback
sums the terms' cotangents per entry."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from funcdl._args import real_arg
from funcdl.losses._base import Loss, bound, vjp_form

_WHERE = "losses.combine"


@dataclass(frozen=True, slots=True)
class _Term:
    """One term: ``weight · loss(pred[index], target)``; ``index`` an int, or a tuple of
    ints whose entries make the term's pred tuple, or None: the whole pred."""

    loss: Any
    index: int | tuple[int, ...] | None
    weight: float

    @property
    def label(self) -> str:
        """``0.5*mse@1``, ``gaussian_kl@(1, 2)``, ``dice`` (the whole pred): how a name and
        an error show the term."""
        scale = "" if self.weight == 1.0 else f"{self.weight!r}*"
        at = "" if self.index is None else f"@{self.index}"
        return f"{scale}{self.loss.name}{at}"

    def reads(self) -> tuple[int, ...]:
        if self.index is None:  # the whole pred, one entry
            return (0,)
        return self.index if isinstance(self.index, tuple) else (self.index,)


def _index(where: str, index: Any) -> int | tuple[int, ...] | None:
    """A term's index: an int >= 0, a non-empty tuple of them (bools refused), or None."""
    def one(i: Any) -> int:
        if isinstance(i, (bool, np.bool_)):
            raise TypeError(f"{where}: an index must be an int, got {i!r}")
        try:
            j = operator.index(i)
        except TypeError:
            raise TypeError(f"{where}: the index must be an int or a tuple "
                            f"of ints (the pred entries the loss reads), got "
                            f"{type(i).__name__}") from None
        if j < 0:
            raise ValueError(f"{where}: an index must be >= 0 (a position "
                             f"in the model's output tuple), got {j}")
        return j

    if index is None:
        return None
    if isinstance(index, tuple):
        if not index:
            raise ValueError(f"{where}: an index tuple must name at least "
                             f"one pred entry, got ()")
        return tuple(one(i) for i in index)
    return one(index)


def _term(k: int, term: Any) -> _Term:
    """``(loss, index)`` or ``(loss, index, weight)`` as a ``_Term``, else an error naming it."""
    form = ("each term must be (loss, index) or (loss, index, weight), index an int or a "
            "tuple of ints (or None: the whole pred), weight a float")
    if not (isinstance(term, tuple) and len(term) in (2, 3)):
        raise TypeError(f"{_WHERE}: term {k} is {term!r:.80}; {form}")
    loss = bound(term[0])  # a functools.partial of a loss: its options bound
    if isinstance(loss, type) or not (callable(loss) and callable(getattr(loss, "vjp", None))):
        raise TypeError(f"{_WHERE}: term {k}: {term[0]!r:.80} is not a loss (callable, with a "
                        f".vjp(pred, target), as funcdl.losses' and Loss(name, vjp)); {form}")
    if not isinstance(getattr(loss, "name", None), str):
        loss = Loss(getattr(loss, "__name__", type(loss).__name__), loss.vjp)
    weight = 1.0 if len(term) == 2 else real_arg(
        term[2], f"{_WHERE}: term {k} ({loss.name}@{term[1]!r})", "weight")
    return _Term(loss, _index(f"{_WHERE}: term {k} ({loss.name}@{term[1]!r:.40})", term[1]),
                 weight)


@dataclass(frozen=True, slots=True)
class _Combined:
    """The combined loss's vjp: ``Σ_k w_k · loss_k(pred[index_k], target[k])``; the
    pullback at g gives, per pred entry, ``Σ_k`` over the terms reading it of their
    pullbacks at ``w_k · g`` (None for an entry no term reads)."""

    name: str
    terms: tuple[_Term, ...]
    whole: bool  # every index None: each term reads pred itself, one cotangent back

    def __repr__(self) -> str:  # Loss's repr shows its vjp: the name, not every term's record
        return f"losses.{self.name}"

    def __call__(self, pred: Any, target: Any) -> tuple[Any, Any]:
        n, where = len(self.terms), f"losses.{self.name}"  # the name is combine(...)
        if not self.whole and not isinstance(pred, (tuple, list)):
            raise TypeError(f"{where}: pred must be the tuple a multi-output model "
                            f"returns (Parallel's), got {type(pred).__name__}; for several "
                            f"losses on one output, pass index None in every term: "
                            f"combine((dice, None), (cross_entropy, None))")
        if not (isinstance(target, tuple) and len(target) == n):
            got = (f"a tuple of {len(target)}" if isinstance(target, tuple)
                   else type(target).__name__)
            raise ValueError(f"{where}: target must be a tuple of {n} entries, one per "
                             f"term (None for a term without one), got {got}")
        if self.whole:
            pred = (pred,)  # each term's index None reads entry 0, the whole pred
        width = max(i for t in self.terms for i in t.reads()) + 1
        if len(pred) < width:
            bad = next(t for t in self.terms if max(t.reads()) >= len(pred))
            raise ValueError(f"{where}: term {bad.label} reads pred[{max(bad.reads())}], "
                             f"but pred has {len(pred)} entries")
        value: Any = 0.0
        pullbacks: list[Any] = []
        for term, t in zip(self.terms, target):
            p = (tuple(pred[i] for i in term.index) if isinstance(term.index, tuple)
                 else pred[term.reads()[0]])
            try:
                got = term.loss.vjp(p, t)
            except (TypeError, ValueError) as e:  # the term's own message names its loss
                if hasattr(e, "add_note"):  # Python >= 3.11: which term of which combine
                    e.add_note(f"in {where}, term {term.label}")
                raise
            if vjp_form(got) is not None or len(got) != 2 or isinstance(got[0], tuple):
                raise TypeError(f"{where}: term {term.label}'s vjp must return (value, "
                                f"pullback); a loss with aux is not a term")
            v, pb = got
            if pullbacks and np.shape(v) != np.shape(value):  # a g for one is none for the other
                raise ValueError(f"{where}: term {term.label} gave a value of shape "
                                 f"{np.shape(v)}, the terms before it {np.shape(value)}; "
                                 f"bind one reduction for every term")
            # w = 1 adds the value itself: a hand-written sum's bits
            value = value + (v if term.weight == 1.0 else term.weight * v)
            pullbacks.append(pb)
        size, whole = len(pred), self.whole
        terms, shape = self.terms, np.shape(value)

        def pullback(g: Any = 1.0) -> Any:
            if g is None:  # as a loss's own pullback reads it: 1, or ones per element
                g = 1.0 if not shape else np.ones(shape, np.result_type(value))
            out: list[Any] = [None] * size
            for term, pb in zip(terms, pullbacks):
                d = pb(g if term.weight == 1.0 else term.weight * g)
                for i, di in zip(term.reads(), d if isinstance(term.index, tuple) else (d,)):
                    if di is None:
                        continue
                    if out[i] is None:
                        out[i] = di
                    else:  # a new array, never one a term returned; huge ones: inf, quietly
                        with np.errstate(over="ignore", invalid="ignore"):
                            out[i] = out[i] + di
            return out[0] if whole else tuple(out)

        pullback.__qualname__ = f"{where}: pullback"
        return value, pullback


def combine(*terms: Any) -> Loss:
    """The weighted sum of losses on a tuple pred, as one ``Loss``.

    Each term is ``(loss, index)`` or ``(loss, index, weight)``: ``index`` an int (the
    term's pred is ``pred[index]``) or a tuple of ints (the tuple of those entries, e.g.
    ``gaussian_nll`` on ``(mean, var)``), ``weight`` a finite float (1.0). ``index`` None in
    every term: each reads the whole pred, which need not be a tuple (Dice + cross-entropy
    on one model's logits), and the pullback gives its one cotangent. The target is a
    tuple with one entry per term (None for a term without one).

    value = ``Σ_k w_k · loss_k(pred_k, target_k)``; pullback(g) = one cotangent per pred
    entry, ``Σ_k w_k · dloss_k(g)`` over the terms that read it, None where none does.

    Example: an actor-critic's ``combine((softmax_cross_entropy, 0), (mse, 1, 0.5))`` on
    ``(logits, value)`` against ``(actions, returns)``."""
    if not terms:
        raise TypeError(f"{_WHERE}: expected at least one term, (loss, index) or (loss, "
                        f"index, weight)")
    parsed = tuple(_term(k, t) for k, t in enumerate(terms))
    name = f"combine({', '.join(t.label for t in parsed)})"
    whole = [t.index is None for t in parsed]
    if any(whole) and not all(whole):
        raise ValueError(f"{_WHERE}: {name}: index None (the whole pred) must be in every "
                         f"term or in none; for a tuple pred give each term its entry")
    return Loss(name, _Combined(name, parsed, all(whole)))
