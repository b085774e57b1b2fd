"""The loss value, its options bound by partial, and what every loss shares: the checks of
pred and target (the reductions with their pullbacks are ``_reduction``'s)."""

from __future__ import annotations

import functools
import inspect
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from funcdl._args import (
    F32,
    F64,
    FLOAT_MAX,
    array_arg,
    foreign_dtype,
    python_floats,
)
from funcdl._blas import product

Array = NDArray[Any]
Pullback = Callable[..., Array]
add_reduce = np.add.reduce  # ndarray.sum without its Python-level wrapper: the same reduction
# (np.maximum.reduce and np.minimum.reduce stand for .max() and .min() the same way)
_MISSING: Any = object()  # pred or target not given: a loss called as if it were a factory


@dataclass(frozen=True, slots=True)
class Loss:
    """A loss: ``vjp(pred, target, **kw) -> (value, pullback)``; calling it gives the value.
    A loss with aux (for ``value_and_grad(..., has_aux=True)``): vjp returns ``((value,
    aux), pullback)`` or ``(value, pullback, aux)``; calling it gives ``(value, aux)``."""

    name: str
    vjp: Callable[..., Any]

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and callable(self.vjp)):
            raise TypeError(f"Loss({self.name!r}, ...): expected a name (a str) and a vjp, a "
                            f"function (pred, target) -> (value, pullback); got "
                            f"{type(self.name).__name__} and {type(self.vjp).__name__}")

    def __call__(self, pred: Any = _MISSING, target: Any = _MISSING, *args: Any,
                 **kwargs: Any) -> Any:
        if pred is _MISSING:  # mse(reduction='sum'), as if it were a factory
            raise TypeError(f"{self.name}: a loss is called on (pred, target), not built by "
                            f"a call; bind its options with functools.partial, e.g. "
                            f"partial(fd.losses.huber, delta=0.5)")
        if target is _MISSING:
            raise TypeError(f"{self.name}: missing the target; call it as "
                            f"{self.name}(pred, target)")
        got = self.vjp(pred, target, *args, **kwargs)
        bad = vjp_form(got)
        if bad is not None:
            raise TypeError(f"{self.name}: its vjp must return (value, pullback), or with aux "
                            f"((value, aux), pullback) or (value, pullback, aux), pullback a "
                            f"function; got {bad}")
        return (got[0], got[2]) if len(got) == 3 else got[0]

    def __repr__(self) -> str:
        """``funcdl.losses.mse`` for a public loss; a user's shows its constructor call."""
        import funcdl.losses

        if getattr(funcdl.losses, self.name, None) is self:
            return f"funcdl.losses.{self.name}"
        return f"Loss({self.name!r}, {getattr(self.vjp, '__qualname__', self.vjp)})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its public name when it is one of funcdl.losses' (a sweep's config
        may hold one; its vjp's qualified name, ``losses.huber``, names no module
        attribute); a loss of your own, by its name and vjp."""
        import funcdl.losses

        if getattr(funcdl.losses, self.name, None) is self:
            return (_public_loss, (self.name,))
        for public in funcdl.losses.__all__:  # a public loss's vjp under a name of yours
            if getattr(getattr(funcdl.losses, public), "vjp", None) is self.vjp:
                return (_renamed, (self.name, public))
        return (Loss, (self.name, self.vjp))


def _public_loss(name: str) -> Loss:
    """The loss ``funcdl.losses.<name>``: what an unpickled public loss is."""
    import funcdl.losses

    loss: Loss = getattr(funcdl.losses, name)
    return loss


def _renamed(name: str, public: str) -> Loss:
    """``Loss(name, funcdl.losses.<public>.vjp)``, unpickled."""
    return Loss(name, _public_loss(public).vjp)


class _FromVjp:
    """A loss's ``__doc__`` or ``__signature__``: its vjp's, so that ``help(losses.huber)``
    and ``inspect.signature`` show the loss's own formula and options (``delta=``), not
    ``Loss``'s; on the class itself, the class's (``sig`` None: from ``__init__``)."""

    def __init__(self, sig: bool, own: Any) -> None:
        self.sig, self.own = sig, own

    def __get__(self, loss: Any, owner: Any = None) -> Any:
        if loss is None:
            return self.own
        if self.sig:
            try:
                return _signature(loss)
            except (TypeError, ValueError):  # a builtin or a C function: Loss.__call__'s
                return None
        doc = getattr(loss.vjp, "__doc__", None)
        try:  # help() prints an object's doc, not its __signature__: the options first
            head = f"{loss.name}{_signature(loss)}\n\n"
        except (TypeError, ValueError):
            head = ""
        return None if doc is None else (
            f"{head}{inspect.cleandoc(doc)}\n\nCalling the loss gives the value; its ``vjp`` (the "
            f"same arguments) gives ``(value, pullback)``.")


def _signature(loss: Loss) -> inspect.Signature:
    """The loss's call: its vjp's parameters, returning the value (not the vjp's pair)."""
    return inspect.signature(loss.vjp).replace(return_annotation=inspect.Signature.empty)


Loss.__signature__ = _FromVjp(True, None)  # type: ignore[attr-defined]
Loss.__doc__ = _FromVjp(False, Loss.__doc__)  # type: ignore[assignment]


def vjp_form(got: Any) -> str | None:
    """None when a loss vjp's return has one of ``Loss``'s forms, ``(value, pullback)``,
    ``((value, aux), pullback)`` or ``(value, pullback, aux)``; else what came, for the
    error of its caller (``Loss.__call__``, ``testing.check_loss``)."""
    if isinstance(got, (tuple, list)) and len(got) in (2, 3) and callable(got[1]):
        return None
    if not isinstance(got, (tuple, list)):
        return type(got).__name__
    second = f" whose second entry is a {type(got[1]).__name__}" if len(got) in (2, 3) else ""
    return f"a {type(got).__name__} of length {len(got)}{second}"


def bound(loss: Any) -> Any:
    """``functools.partial(fd.losses.huber, delta=0.5)``, a loss with its options bound as a
    JAX user binds them, as a ``Loss`` whose vjp binds the same; any other value as it
    came (``value_and_grad`` and ``check_loss`` need the vjp, which a partial hides)."""
    if not (isinstance(loss, functools.partial) and callable(getattr(loss.func, "vjp", None))):
        return loss
    func: Any = loss.func
    shown = ", ".join([*map(_option, loss.args),
                       *(f"{k}={_option(v)}" for k, v in loss.keywords.items())])
    return Loss(f"{getattr(func, 'name', func)}({shown})",
                functools.partial(func.vjp, *loss.args, **loss.keywords))


def _option(v: Any) -> str:
    """A bound option as a loss's name shows it: an array of more than a few entries by its
    shape and dtype (a class weight of 500 entries made a 2,240-character name, and every
    error message carried it)."""
    if isinstance(v, np.ndarray) and v.size > 8:
        return f"array(shape={v.shape}, dtype={v.dtype})"
    return repr(v)


# ---------------------------------------------------------------------------- helpers

class LabelDtypeError(TypeError, ValueError):
    """Integer class labels given in another dtype (floats read from a text file, bools):
    both a TypeError and a ValueError, as NumPy's AxisError is both a ValueError and an
    IndexError, so that code catching either (the losses raised one or the other before
    they shared ``int_labels``) still catches it."""


def int_labels(name: str, target: Any, want: str, ids: str, fix: str = "") -> Array:
    """``target`` as an array of integers, else a ``LabelDtypeError`` (see ``label_error``)."""
    t = array_arg(target, name, "target")
    if t.dtype.kind not in "iu":
        raise label_error(name, t, want, ids, fix)
    return t


def label_error(name: str, t: Array, want: str, ids: str, fix: str = "") -> LabelDtypeError:
    """The error of every loss taking integer labels, given ``t`` of another dtype: ``want``
    what the target must be (``class labels of shape (4,)``), ``ids`` their values
    (``class ids must be integers in [0, 3)``), ``fix`` another way (``, or ...``)."""
    seen, cast = "", "target.astype(int)"
    if foreign_dtype(t.dtype):  # bfloat16 ids: numbers, to cast as floats are
        pass
    elif t.dtype.kind not in "fb":  # strings, objects: names to map to ids, not to cast
        cast = "the ids np.unique(target, return_inverse=True)[1]"
    elif t.dtype.kind == "f" and np.isnan(t).any():  # a cast would make NaN a garbage id
        seen, cast = " (holding NaN)", "the class ids, the NaN examples dropped or labelled"
    elif t.size:
        lo, hi = np.minimum.reduce(t, axis=None), np.maximum.reduce(t, axis=None)
        whole = t.dtype.kind == "b" or bool((np.floor(t) == t).all())
        seen = f" (values in [{lo}, {hi}]{'' if whole else ', not all whole numbers'})"
    return LabelDtypeError(f"{name}: target must be integer {want}, got dtype {t.dtype}"
                           f"{seen}; {ids}: pass {cast}{fix}")


def pred_array(name: str, pred: Any, like: Any = None) -> Array:
    """``pred`` as a float32 or float64 array. Python floats (a nested list of them, or
    one) are weakly typed, as in JAX: they take ``like``'s dtype when that is a float32 or
    float64 array (the other input of a pair), else float32, as the layers read them;
    NumPy's float64 would make a float32 model's gradient float64."""
    if type(pred) is np.ndarray and (pred.dtype is F32 or pred.dtype is F64):
        return pred  # a model's output: the common case in a few attribute reads
    p = array_arg(pred, name, "pred")
    if p.dtype.char == "d" and type(pred) is not np.ndarray and python_floats(pred):
        weak = like.dtype if isinstance(like, np.ndarray) and like.dtype.char in "fd" else F32
        with np.errstate(over="ignore"):  # 1e39 as float32: inf, as JAX's cast
            return p.astype(weak)
    if foreign_dtype(p.dtype) or (p.dtype.kind == "f" and p.dtype.char not in "fd"):
        raise TypeError(f"{name}: {p.dtype} pred is not supported; cast it to float32 "
                        f"(pred.astype(np.float32))")
    if p.dtype.kind != "f":
        raise TypeError(f"{name}: pred must be a float array, got dtype {p.dtype}")
    return p



def target_like(name: str, pred: Array, target: Any) -> Array:
    """``target`` as an array of ``pred``'s shape and dtype (cast to it), else an error."""
    if type(target) is np.ndarray and target.dtype is pred.dtype and target.shape == pred.shape:
        return target
    t = array_arg(target, name, "target")
    if foreign_dtype(t.dtype):
        raise TypeError(f"{name}: {t.dtype} target is not supported; cast it to float32 "
                        f"(target.astype(np.float32))")
    if t.dtype.kind not in "biuf":  # before the shape: None or a str has shape ()
        raise TypeError(f"{name}: target must be a numeric array, got "
                        f"{type(target).__name__} (dtype {t.dtype})")
    if t.shape != pred.shape:
        hint = (f"; reshape the target, e.g. target.reshape{pred.shape}"
                if t.size == pred.size else "")
        raise ValueError(f"{name}: pred has shape {pred.shape} but target has shape "
                         f"{t.shape}{hint}")
    if t.dtype is pred.dtype:
        return t
    # in pred's dtype, as JAX without x64 (torch gives a float32 pred and float64 target a
    # float64 value): no silent upcasting; float64 1e300 is inf in float32, as casts give
    with np.errstate(over="ignore"):
        return t.astype(pred.dtype, copy=False)


def in_dtype(name: str, what: str, value: float, dtype: Any) -> float:
    """An option that is cast to the data's dtype (a temperature, a margin, an eps): past
    that dtype's range the cast would be inf with NumPy's overflow warning, so a ValueError
    names it instead."""
    big = float(np.finfo(dtype).max)
    if abs(value) > big:
        raise ValueError(f"{name}: {what}={value:g} is past the range of {np.dtype(dtype)} "
                         f"(|{what}| <= {big:.4g}), the dtype of the data it is cast to; pass "
                         f"a smaller {what}, or float64 data")
    return value


def value_span(a: Array) -> str:
    """What an array out of its domain holds, for an error: its range, or its NaN count (a
    NaN makes min and max NaN, which read as if every entry were)."""
    if a.dtype.kind in "fc" and np.isnan(a).any():
        return f"nan at {int(np.isnan(a).sum())} of its {a.size} entries"
    return f"values in [{np.minimum.reduce(a, axis=None)}, {np.maximum.reduce(a, axis=None)}]"


def check_probabilities(name: str, t: Array) -> Array:
    """Probability targets of the cross-entropies must lie in [0, 1] (PyTorch does not
    check; a target of 2, or -1, would give a finite, meaningless loss)."""
    if t.size and not (t.min() >= 0 and t.max() <= 1):
        raise ValueError(f"{name}: target must hold probabilities in [0, 1], got {value_span(t)}")
    return t


def check_one_hot(name: str, t: Array, shape: tuple[int, ...]) -> Array:
    """``t`` (an integer or boolean target of the logits' shape, cast to their dtype) if it is
    one-hot: (N,) logits with (N,) labels in {0, 1}, a binary task, would otherwise be one
    example of N classes with several right answers, and train without a word. Entries
    >= 0 whose rows sum to 1 are 0s and one 1, so no [0, 1] check is needed after this.
    1-D logits, or one class, are refused whatever the data (as torch refuses every integer
    target of the logits' shape): a batch of binary labels holding a single 1, or all 1s,
    would pass that check."""
    if len(shape) == 1:
        raise ValueError(f"{name}: an integer target of the logits' shape {shape} is refused "
                         f"with 1-D logits, where binary labels could pass for a one-hot: "
                         f"for one example of {shape[-1]} classes pass its label as an int, "
                         f"or float probabilities; for binary labels, one logit per example, "
                         f"use bce_with_logits")
    if shape[-1] == 1:
        raise ValueError(f"{name}: an integer target of the logits' shape {shape} is refused "
                         f"with one class, where the loss is 0 whatever the logits: for "
                         f"binary labels, one logit per example, use bce_with_logits")
    if t.size and not (np.minimum.reduce(t, axis=None) >= 0 and (
            product(np.matmul, t.reshape(-1, shape[-1]), np.ones(shape[-1], t.dtype)) == 1).all()):
        raise ValueError(f"{name}: an integer target of the logits' shape {shape} is read as "
                         f"one-hot, but not every row along the last axis holds a single 1 "
                         f"and zeros; pass integer labels of shape {shape[:-1]}, or float "
                         f"probabilities")
    return t


def check_weights(name: str, what: str, value: Any, shape: tuple[int, ...],
                  dtype: Any, per_class: bool = False) -> Array | None:
    """``value`` as finite weights >= 0 in ``dtype`` (within its range) that broadcast to
    ``shape`` without changing it (``per_class``: of that shape, (C,), as torch's class
    weights), None for None: a TypeError for non-numbers, else a ValueError."""
    if value is None:
        return None
    v = array_arg(value, name, what)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"{name}: {what} must hold real numbers, got dtype {v.dtype}")
    try:
        fits = np.broadcast_shapes(v.shape, shape) == shape and (
            not per_class or v.shape == shape)
    except ValueError:
        fits = False
    if not fits and per_class:
        raise ValueError(f"{name}: {what} must have shape {shape}, one per class (as "
                         f"torch's), got shape {v.shape}")
    if not fits:
        raise ValueError(f"{name}: {what} must broadcast to shape {shape} (one per class, "
                         f"shape {shape[-1:]}, say), got shape {v.shape}")
    top = FLOAT_MAX[np.dtype(dtype).newbyteorder("=")]  # the pred's, in any byte order
    # float(...): a Python float top beside a float32 max is cast to float32 (NEP 50), and
    # float64's maximum overflows there with a warning
    if v.size and not (np.isfinite(v).all() and v.min() >= 0 and float(v.max()) <= top):
        raise ValueError(f"{name}: {what} must be finite, >= 0 and within {np.dtype(dtype)}'s "
                         f"range, got {value_span(v)}")
    return v.astype(dtype)


def weighed(terms: Array, w: Array) -> Array:
    """``terms · w``, 0 where ``w`` is 0: a term of weight 0 counts for nothing, even where
    it is infinite (-log p of logits ~3e38 apart in float32, or a pos_weight times a huge
    logit), which 0 · inf would make NaN."""
    with np.errstate(invalid="ignore"):
        out: Array = np.where(w != 0, terms * w, 0)
    return out


def publish_loss(name: str, fn: Callable[..., Any]) -> Loss:
    """The loss ``name``, its function named ``losses.name`` (Python's own errors, as for an
    unknown keyword, name the function: ``losses.mse() got an unexpected keyword ...``).
    Pickle finds a function by its module and qualified name: the defining module gets a
    namespace ``losses`` holding it, so ``losses.huber.vjp`` (and a partial of it, in a
    sweep's config) pickles."""
    fn.__name__, fn.__qualname__ = name, f"losses.{name}"
    home = sys.modules[fn.__module__].__dict__
    setattr(home.setdefault("losses", types.SimpleNamespace()), name, fn)
    return Loss(name, fn)

