"""The Layer value, its protocol, and the small helpers every layer family shares.

A layer is an immutable record of three pure functions::

    out_shape, params = layer.init(key, in_shape)      # in_shape: batch axis first, may be None
    y                 = layer.apply(params, x, *, key=None, train=False)
    y, pullback       = layer.vjp(params, x, *, key=None, train=False)
    dparams, dx       = pullback(dy)                     # dparams has the structure of params

The pullback reads what ``vjp`` kept: ``x``, and an activation's ``y``, which ``vjp``
returns read-only (``kept``); write to neither before the pullback runs. Stateful layers
(``layer.stateful``) take and return an explicit ``state`` as well; see
``funcdl.layers.norm``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Protocol

from funcdl import tree as pytree
from funcdl._args import (
    F32,
    F64,
    INTP_MAX,
    bool_arg,
    foreign_dtype,
    is_int,
    native_float,
    python_floats,
    refuse_masked,
    several_arrays,
)
from funcdl._treenodes import describe
from funcdl.layers._lenient import lenient
from funcdl.layers._pointwise import Pointwise as Pointwise
from funcdl.layers._shapes import axis_in_range as axis_in_range  # re-exported: the
from funcdl.layers._shapes import located as located  # layers import them from base
from funcdl.layers._shapes import pair_of_shapes as pair_of_shapes
from funcdl.layers._stepper import Stepper

__all__ = ["Layer", "LayerLike", "Pullback", "Shape"]

_F32, _F64 = F32, F64  # `x.dtype is _F32`: the cheapest test

Array = NDArray[Any]
Params = Any
Shape = tuple[int | None, ...]
# dy (an array, or a tuple for several outputs) -> (dparams, dx), dx a tuple for several
# inputs; None for ids (Embedding's integer input, which has no gradient) or when the
# caller passes need_dx=False. Other layers read an integer input as floats: dx in those
Pullback = Callable[..., tuple[Params, Any]]


class LayerLike(Protocol):
    """What a combinator needs of a child: the three functions (its ``name`` and ``stateful``
    are read where it has them, as a ``Layer`` does; a duck-typed child may leave them out)."""

    @property
    def init(self) -> Callable[..., Any]: ...
    @property
    def apply(self) -> Callable[..., Any]: ...
    @property
    def vjp(self) -> Callable[..., Any]: ...


@dataclass(frozen=True, slots=True)
class Layer:
    """A layer: ``Layer(init, apply, vjp)`` builds a user's own, composable like any other.
    Its ``apply(params, x)`` and ``vjp(params, x)`` may leave out ``key=`` and ``train=``,
    which combinators pass to every child: they are then not passed.

    ``name`` appears in error messages (``Sequential[3] Dense(25): ...``); ``stateful`` marks
    layers that thread running statistics (BatchNorm) through an explicit ``state``;
    ``dx_optional`` marks layers whose pullback accepts ``pullback(dy, need_dx=False)`` and
    then skips the input cotangent (returning None for it): ``value_and_grad`` uses it on
    the first layer, whose dx nobody reads (for a 784-512 Dense, 12% of an MLP step).
    ``ids = n`` marks layers that read integer ids in ``[0, n)`` (Embedding, and a
    Sequential starting with one): ``testing.check_layer`` draws such ids as its input,
    none equal to ``frozen_id``, an id whose row the vjp leaves without a gradient by design
    (Embedding's ``padding_idx``, as torch's), where finite differences would find one.
    ``weight_out_axis`` is the output axis of the layer's weight (-1 for Dense's (in, out),
    -2 for ConvTranspose2D's (kh, kw, out, C), 0 for Embedding's torch-layout table and
    Bilinear's (out, D1, D2)):
    SpectralNorm's default ``dim``.
    ``step``, a ``Stepper``, is the layer's incremental form for ``layers.decode_step``
    (one position at a time, with a cache): a position-wise layer's, causal attention's,
    a combinator's; None: the layer cannot be stepped.

    Two optional fields let ``Sequential`` run a layer and the elementwise activation after
    it as one step (one call and one pullback instead of two; the same arithmetic):
    ``pointwise = Pointwise(name, f, df)`` on an activation ``y = f(x)``,
    ``dx = df(x, y, dy)``; ``vjp_then(params, x, pointwise) -> (y, pullback)`` on the layer
    before it, computing ``f(layer(x))`` with a pullback that applies ``df`` first and
    returns the layer's ``(dparams, dx)``. A third, ``selects_max``, marks a layer whose
    output is the maximum of some of its input's entries (MaxPool2D); an activation before
    it whose ``Pointwise`` has ``commutes_with_max`` (ReLU) then runs after it, through its
    ``vjp_then``, on fewer values: ``max(f(x)) = f(max(x))``, the same numbers.
    """

    init: Callable[..., Any]
    apply: Callable[..., Any]
    vjp: Callable[..., Any]
    stateful: bool = False
    name: str = "Layer"
    dx_optional: bool = False
    pointwise: Pointwise | None = None
    vjp_then: Callable[..., Any] | None = None
    ids: int | None = None
    selects_max: bool = False
    weight_out_axis: int = -1
    frozen_id: int | None = None
    step: Stepper | None = None

    def __post_init__(self) -> None:
        odd = next((f for f in ("init", "apply", "vjp") if not callable(getattr(self, f))), None)
        if odd is not None:
            raise TypeError(f"Layer: {odd} must be a function, got "
                            f"{type(getattr(self, odd)).__name__}; Layer(init, apply, vjp) "
                            f"takes init(key, in_shape), apply(params, x, **kw) and "
                            f"vjp(params, x, **kw)")
        self._check_fields()
        for f in ("init", "apply", "vjp"):
            fn = getattr(self, f)
            if ours(fn) and "<locals>" in str(getattr(fn, "__qualname__", "")):
                # Python's own errors name the function (a stray state= or keyword): name
                # funcdl's closures after their layer, not "Sequential.<locals>.apply"
                fn.__qualname__ = f"{self.name}.{f}"
            elif f != "init":  # a user's apply(params, x) need not take key=, train=
                object.__setattr__(self, f, lenient(fn))

    def _check_fields(self) -> None:
        """The optional fields' types: a user's ``stateful='no'`` would count as True, a
        ``pointwise=3`` fail deep in Sequential, a ``name=None`` in every error message."""
        if not isinstance(self.name, str):
            raise TypeError(f"Layer: name must be a str (it names the layer in errors), got "
                            f"{self.name!r} ({type(self.name).__name__})")
        where = "Layer" if self.name == "Layer" else f"Layer {self.name}"
        for flag in ("stateful", "dx_optional", "selects_max"):
            object.__setattr__(self, flag, bool_arg(getattr(self, flag), where, flag))
        odd = ("pointwise", "a Pointwise(name, f, df)") if not (
            self.pointwise is None or isinstance(self.pointwise, Pointwise)) else (
            "vjp_then", "a function (params, x, pointwise) -> (y, pullback)") if not (
            self.vjp_then is None or callable(self.vjp_then)) else (
            "ids", "an int >= 1 (the id count)") if not (self.ids is None or (
                is_int(self.ids) and self.ids >= 1)) else (
            "frozen_id", "an int >= 0 (an id)") if not (self.frozen_id is None or (
                is_int(self.frozen_id) and self.frozen_id >= 0)) else (
            "step", "a Stepper (layers.decode's incremental form)") if not (
                self.step is None or isinstance(self.step, Stepper)) else None
        if odd is not None:
            got = getattr(self, odd[0])
            raise TypeError(f"{where}: {odd[0]} must be None or {odd[1]}, got "
                            f"{got!r} ({type(got).__name__})")
        if self.pointwise is not None and self.pointwise.reads not in ("x", "y", "xy"):
            raise ValueError(f"{where}: its Pointwise's reads must be 'x', 'y' or 'xy' (what "
                             f"df reads), got {self.pointwise.reads!r}")

    def __repr__(self) -> str:
        return self.name


def ours(fn: Any) -> bool:
    """Whether ``fn`` was written in funcdl (a function made by exec has __module__ None)."""
    return (getattr(fn, "__module__", None) or "").startswith("funcdl.")


# ---------------------------------------------------------------------------- validation

def not_a_layer(x: Any) -> str | None:
    """None for a layer (it has init, apply and vjp); else what came, as an error shows it,
    with the fix for an uncalled constructor (``ReLU`` for ``ReLU()``)."""
    if all(hasattr(x, f) for f in ("init", "apply", "vjp")):
        return None
    name = getattr(x, "__name__", None) if callable(x) else None
    # a layer constructor (funcdl's, or a user's named like one), not any function
    maker = name and ((getattr(x, "__module__", None) or "").startswith("funcdl.layers")
                      or name[0].isupper())
    hint = f"; call the constructor: {name}(), not {name}" if maker else ""
    shown = repr(x)  # params passed where the layer goes: their keys, not every number
    return f"{shown if len(shown) <= 80 else describe(x)}{hint}"


def layer_arg(where: str, x: Any, what: str = "expected a layer") -> None:
    """A TypeError unless ``x`` is a layer, saying what came (``not_a_layer``)."""
    got = not_a_layer(x)
    if got is not None:
        raise TypeError(f"{where}: {what} with init, apply and vjp (see funcdl.layers.Layer), "
                        f"got {got}")


_JOIN = ("; a layer after FanOut or Parallel needs their branches joined first, by "
         "FanInSum() or FanInConcat(), or one taken by Select(i)")


def check_in_shape(name: str, in_shape: Any, *, min_rank: int = 1,
                   rank: int | None = None, layout: str = "", tree_hint: str = _JOIN) -> Shape:
    """Validate ``in_shape`` given to ``init``: a tuple of positive ints (or None), of rank
    ``rank`` when given (named with ``layout``, e.g. '(N, H, W, C)', in the error);
    ``tree_hint`` ends the error for a tuple of shapes."""
    if isinstance(in_shape, (int, np.integer)) or not isinstance(in_shape, (tuple, list)):
        raise TypeError(
            f"{name}: in_shape must be a tuple with the batch axis first, e.g. (None, 2), "
            f"got {in_shape!r}")
    shape = tuple(in_shape)
    for d in shape:
        if d is not None and (not is_int(d) or not 0 <= d <= INTP_MAX):  # True is no size 1
            hint = (" (stax's -1 for an unknown batch is None here)" if is_int(d) and d == -1
                    else f" (NumPy's largest axis is {INTP_MAX})" if is_int(d) and d > 0
                    else tree_hint if all(isinstance(e, (tuple, list)) for e in shape) else "")
            raise ValueError(f"{name}: in_shape entries must be ints >= 0 or None, "
                             f"got {shape}{hint}")
    if rank is not None and len(shape) != rank:
        raise ValueError(f"{name}: expected an input shape {layout}{' ' if layout else ''}of "
                         f"rank {rank}, got {shape} (rank {len(shape)})")
    if len(shape) < min_rank:
        raise ValueError(f"{name}: expected an input shape of rank >= {min_rank}, got {shape}")
    return tuple(None if d is None else int(d) for d in shape)


def as_array(name: str, x: Any, weak: np.dtype[Any] = _F32, *,
             cotangent: bool = False) -> Array:
    """The input as an ndarray; lists are converted, anything non-numeric is refused.
    Python floats (a list of them) take the dtype ``weak``, the layer's params' (float32
    for a layer without params), as JAX's weakly typed floats take the other operand's,
    rather than NumPy's float64, which would turn a float32 network's forward and dx
    into float64. ``cotangent=True``: ``x`` is a pullback's ``dy``, and the errors call
    it that, not the input."""
    if type(x) is np.ndarray and (x.dtype is _F32 or x.dtype is _F64 or x.dtype.kind in "biu"
                                  or native_float(x.dtype)):
        return x
    noun, var = ("cotangent dy", "dy") if cotangent else ("input", "x")
    several_arrays(x, name, f"the {noun}", _JOIN)
    refuse_masked(x, name, f"the {noun}")
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: the {noun} is not a rectangular numeric array: {e}") from None
    # NumPy has no fast float16 matrix product, and its float16 sums lose precision;
    # ml_dtypes' bfloat16 and float8 (what JAX's arrays convert to) are no better, and
    # NumPy files them under kind 'V', so they are told apart by name
    low = (a.dtype.kind == "f" and a.dtype.char not in "fd") or foreign_dtype(a.dtype)
    if low:
        raise TypeError(f"{name}: {a.dtype} {noun} is not supported; cast it to float32 "
                        f"({var}.astype(np.float32)) or float64")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    if a.dtype.char == "d" and python_floats(x):
        with np.errstate(over="ignore"):  # 1e39 as a float32 input: inf, as JAX's cast
            return a.astype(weak)
    if not a.dtype.isnative:  # big-endian data from a file: NumPy's own order, as JAX takes
        # it (its float32 would leave the float32 paths, and its products leave BLAS)
        return a.astype(a.dtype.newbyteorder("="))
    return a


def in_input_dtype(dx: Array, dtype: Any) -> Array:
    """``dx`` in its input's floating dtype (``dtype``, None for a list), as JAX gives an
    input's cotangent: float64 params must not turn a float32 input's dx into float64. A
    dtype not NumPy's (a torch tensor's) leaves dx as computed."""
    if (dtype is None or dx.dtype is dtype or not isinstance(dtype, np.dtype) or dtype.kind != "f"
            or dx.dtype.itemsize == dtype.itemsize):  # the same, or one in another byte order
        return dx
    with np.errstate(over="ignore"):  # beyond float32: inf, as JAX's cast gives
        return dx.astype(dtype.char)


def kept(y: Any) -> Any:
    """``y``, an activation's output, made read-only: an in-place edit by the caller between
    ``vjp`` and the pullback (``y -= target``) would change the gradients silently where
    the pullback reads ``y`` (Tanh, Sigmoid, Softplus, Softmax, SiLU, a fused Dense's),
    where PyTorch raises and JAX's arrays cannot change. Every activation's, for one rule."""
    if type(y) is np.ndarray:
        # write=False, positional as NumPy's docs give it (its stubs say keyword-only): a
        # third of flags.writeable's cost, 60% of setflags(write=False)'s
        y.setflags(False)  # type: ignore[call-arg]
    return y


def no_params(name: str, params: Any) -> None:
    """A layer without parameters takes ``params == ()``, as its init returns; arrays there
    are another layer's params, passed in the wrong place: say so rather than ignore them."""
    if (type(params) is tuple and not params) or params is None:
        return
    if pytree.leaves(params):
        raise ValueError(f"{name}: this layer has no parameters (its init returns ()), got "
                         f"{type(params).__name__} params holding arrays; are the params of "
                         f"a Sequential in the order of its layers?")


def need_state(name: str, state: Any) -> Any:
    """A stateful layer called without ``state=``: say where the state comes from."""
    if state is None:
        raise TypeError(f"{name} is stateful (it keeps running statistics): pass state=..., "
                        f"the third value of init: out_shape, params, state = "
                        f"layer.init(key, in_shape)")
    return state


def as_floats(name: str, x: Any) -> Array:
    """``as_array``, with integers and booleans as float32 (the default float, as JAX's
    activations give), not NumPy's float64: for layers that have no params to cast to."""
    if type(x) is np.ndarray and (x.dtype is _F32 or x.dtype is _F64  # the common case
                                  or native_float(x.dtype)):
        return x
    return cast_ints(as_array(name, x), _F32)


def cast_ints(x: Array, dtype: np.dtype[Any]) -> Array:
    """Integer and boolean inputs take the params' dtype, rather than promoting float32
    params to float64 (NumPy's int64 @ float32 rule)."""
    return x.astype(dtype) if x.dtype.kind in "biu" else x


def like(primal: Any, items: Any) -> list[Any] | tuple[Any, ...]:
    """``items`` in ``primal``'s container (``primal`` a value, or its type): a list for a
    list, a NamedTuple of the same class for a NamedTuple, else a tuple; a pytree's
    cotangent (dx, dparams) has its primal's structure, as JAX gives it."""
    kind = primal if isinstance(primal, type) else type(primal)
    if kind is tuple:  # a model's params: every training step, before hasattr's lookup
        return tuple(items)
    if kind is list:
        return list(items)
    if issubclass(kind, tuple) and hasattr(kind, "_fields"):
        return kind(*items)
    return tuple(items)


def none_cotangent(name: str) -> TypeError:
    """The error for ``pullback(None)`` called from outside. Combinators pass None between
    their children (nothing flows back from integer ids) but never into a pullback: a None
    from the caller is a mistake, and read as "nothing flows back" it gives zero gradients."""
    return TypeError(f"{name}: pullback expected dy, the cotangent of the output (an array "
                     f"of its shape), got None; did a loss's pullback miss a return?")


def check_cotangent(name: str, dy: Any, y_shape: tuple[int, ...],
                    y_dtype: np.dtype[Any]) -> Array:
    """A pullback's ``dy`` must have the output's shape: never broadcast silently. It is
    taken in a float output's dtype, as PyTorch's engine casts a gradient to its tensor's:
    ``np.ones(y.shape)`` (float64) must not turn a float32 layer's dx into float64."""
    if type(dy) is np.ndarray and dy.shape == y_shape and dy.dtype is y_dtype:
        return dy  # the common case, in three attribute reads
    if dy is None:
        raise none_cotangent(name)
    refuse_masked(dy, name, "dy")
    several_arrays(dy, name, "the pullback's dy", f", the cotangent of an output of shape "
                   f"{y_shape}")
    arr = as_array(name, dy, cotangent=True)
    if arr.shape != y_shape:
        raise ValueError(f"{name}: pullback expected dy of shape {y_shape} (the output's), "
                         f"got {arr.shape}")
    if y_dtype.kind == "f" and arr.dtype != y_dtype:
        with np.errstate(over="ignore"):  # beyond float32: inf, as in_input_dtype's cast
            return arr.astype(y_dtype)
    return arr


def linear_map(name: str, init: Callable[..., Any], check: Callable[[Any, Any], Array],
               forward: Callable[[Array], Array],
               backward: Callable[[Array, tuple[int, ...]], Array]) -> Layer:
    """A layer without params, linear in x (padding, upsampling, a permutation of entries):
    ``y = forward(check(params, x))``; its pullback ``dx = backward(dy, x.shape)`` keeps
    the shapes only, never x."""
    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        del key, train
        return forward(check(params, x))

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        del key, train
        xa = check(params, x)
        y = forward(xa)
        x_shape, y_shape, y_dtype = xa.shape, y.shape, y.dtype

        def pullback(dy: Any) -> tuple[Any, Array]:
            return params, backward(check_cotangent(name, dy, y_shape, y_dtype), x_shape)

        return y, pullback

    return Layer(init, apply, vjp, name=name)

