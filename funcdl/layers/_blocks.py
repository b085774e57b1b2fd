"""What the building blocks of ``blocks`` share: a composition that carries its own
parameter layout, and the wrapper that gives it a name and named params.

A part is ``(layer, skeleton)``: the skeleton mirrors the layer's params tree, a name
(``'self_attn'``) where a named child's whole params sit, ``()`` where a child has none.
The block's params are the flat dict ``{name: child params}``, the nested tuples of the
Sequential/Parallel composition built from it on each call (``fill``) and its gradients
read back into a dict (``collect``): a pytree rearrangement, no arithmetic. The shape
checks the blocks share (``sequence_shape``, ``mask_shape``) close the module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funcdl import random
from funcdl._treenodes import describe
from funcdl.layers import _step as stepping
from funcdl.layers._attention import mask_shape as attention_mask_shape
from funcdl.layers._children import ERRORS
from funcdl.layers._wrap import relabelled
from funcdl.layers.base import Layer, LayerLike, check_in_shape
from funcdl.layers.branching import Parallel, Residual
from funcdl.layers.combinators import Sequential

Part = tuple[Any, Any]


def named(layer: LayerLike, key: str) -> Part:
    return layer, key


def bare(layer: LayerLike) -> Part:
    return layer, ()


class Maybe(str):
    """A skeleton name whose child may have no params (a given activation: a PReLU has,
    ReLU has not): in the block's dict only when it has some, as torch's state_dict."""


def maybe_named(layer: LayerLike, key: str) -> Part:
    return layer, Maybe(key)


def seq(*parts: Part | None) -> Part:
    """Sequential of the parts given, None ones left out (a dropout at rate 0)."""
    kept = [p for p in parts if p is not None]
    return Sequential(*(p[0] for p in kept)), tuple(p[1] for p in kept)


def par(*parts: Part) -> Part:
    return Parallel(*(p[0] for p in parts)), tuple(p[1] for p in parts)


def res(part: Part) -> Part:
    return Residual(part[0]), part[1]  # Residual's params are its child's own


def fill(skeleton: Any, params: dict[str, Any]) -> Any:
    if isinstance(skeleton, str):
        return params.get(skeleton, ()) if isinstance(skeleton, Maybe) else params[skeleton]
    return tuple(fill(s, params) for s in skeleton)


def collect(skeleton: Any, tree: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(skeleton, str):
        if not (isinstance(skeleton, Maybe) and type(tree) is tuple and not tree):
            out[str(skeleton)] = tree  # a plain str key
    else:
        for s, t in zip(skeleton, tree):
            collect(s, t, out)
    return out


def keys_of(skeleton: Any) -> list[str]:
    if isinstance(skeleton, str):
        return [skeleton]
    return [k for s in skeleton for k in keys_of(s)]


def _shapes_of(x: Any) -> Any:
    """The shape of an array input, or the shapes of a tuple of arrays; None otherwise (the
    inner layers then say what they expected)."""
    if isinstance(x, np.ndarray):
        return x.shape
    if isinstance(x, (tuple, list)) and x and all(isinstance(a, np.ndarray) for a in x):
        return tuple(a.shape for a in x)
    return None


def block(name: str, part: Part, check_shape: Callable[[Any, str], Any]) -> Layer:
    """A stateless Layer named ``name`` running ``part``'s layer, its params the dict of the
    skeleton's names; ``check_shape(shape, what)`` refuses a wrong in_shape (at init) or
    input (at apply and vjp) in the block's words and gives the shape to pass on."""
    inner, skeleton = part
    keys = keys_of(skeleton)
    needed = {k for k in keys if not isinstance(k, Maybe)}
    maybe = "".join(f" (and {k!r} for an {k} with params)" for k in keys if k not in needed)

    def packed(params: Any) -> Any:
        if not isinstance(params, dict) or not needed <= set(params) <= set(keys):
            raise ValueError(f"{name}: expected params as a dict with keys {sorted(needed)}"
                             f"{maybe}, as init returns them, got {describe(params)}")
        return fill(skeleton, params)

    def unpacked(grads: Any) -> dict[str, Any]:
        got = collect(skeleton, grads, {})
        return {str(k): got[k] for k in keys if k in got}

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any]:
        shape = check_shape(in_shape, "in_shape")
        try:
            out, params = inner.init(key, shape)
        except ERRORS as e:
            raise relabelled(name, e) from e
        return out, unpacked(params)

    def checked(x: Any) -> None:
        shapes = _shapes_of(x)
        if shapes is not None:
            check_shape(shapes, "the input")

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        p = packed(params)
        checked(x)
        try:
            return inner.apply(p, x, key=key, train=train)
        except ERRORS as e:
            raise relabelled(name, e) from e

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        p = packed(params)
        checked(x)
        try:
            y, pb = inner.vjp(p, x, key=key, train=train)
        except ERRORS as e:
            raise relabelled(name, e) from e

        def pullback(dy: Any, need_dx: bool = True) -> tuple[Any, Any]:
            try:
                grads, dx = pb(dy, need_dx=need_dx)
            except ERRORS as e:
                raise relabelled(name, e) from e
            return unpacked(grads), dx

        return y, pullback

    return Layer(init, apply, vjp, name=name, dx_optional=True,
                 step=stepping.wrapped(inner, packed, name))


# ---------------------------------------------------------------------------- shapes

def mask_shape(name: str, in_shape: Any, what: str) -> Any:
    """A mask's in_shape passed on as it is: MultiHeadAttention checks it against the
    sequences, in its words."""
    if not isinstance(in_shape, (tuple, list)):
        raise ValueError(f"{name}: expected {what} as a shape, (N, S) for a key padding "
                         f"mask, got {in_shape!r}")
    return tuple(in_shape)


def padding_shape(name: str, in_shape: Any, queries: tuple[Any, Any],
                  keys: tuple[str, Any], what: str) -> Any:
    """A mask's in_shape checked against ``queries`` = (N, Tq) and ``keys`` = (its letter,
    Tk), None where unknown, as MultiHeadAttention checks it: a key padding mask (N, Tk), or
    an attention mask (N or 1, Tq, Tk); else a ValueError naming the mask by its role, the
    expected and the actual shape (the attention's own would say only 'the mask')."""
    shape = mask_shape(name, in_shape, what)
    (n, tq), (letter, tk) = queries, keys
    try:
        attention_mask_shape(name, shape, (n, tq, None), tk)
    except ValueError:
        raise ValueError(f"{name}: expected {what} of shape (N, {letter}) = ({n}, {tk}), True "
                         f"at padding (or an attention mask (N, T, {letter}) = ({n}, {tq}, "
                         f"{tk})), got {shape}") from None
    return shape


def mask_dtype(name: str, mask: Any, what: str) -> None:
    """A TypeError naming the mask unless it is boolean (an array's dtype; a list is left to
    the attention, which reads it as NumPy does)."""
    dtype = getattr(mask, "dtype", None)
    if dtype is not None and dtype != np.bool_:
        raise TypeError(f"{name}: expected {what} boolean, True at padding, got dtype "
                        f"{dtype} (shape {np.shape(mask)}); pass a 0/1 array as "
                        f"mask.astype(bool), torch's float masks (-inf hides) as "
                        f"np.isneginf(mask)")


def shown_input(shapes: Any, what: str) -> str:
    """An input's shape(s) or an in_shape, as an error shows them."""
    if what != "the input":
        return repr(shapes)
    if shapes and all(isinstance(s, tuple) for s in shapes):
        return f"a tuple of {len(shapes)} arrays of shapes {shapes}"
    return f"an array of shape {shapes}"


def sequence_shape(name: str, d: int, in_shape: Any, what: str = "in_shape",
                   time: tuple[str, str] = ("T", "time")) -> Any:
    """``in_shape`` as (N, T, d_model), an unknown last axis taken as d_model; ``time``
    names the time axis in messages (a decoder's memory: ``("S", "source time")``)."""
    if isinstance(in_shape, (tuple, list)) and in_shape and all(
            isinstance(s, (tuple, list)) for s in in_shape):
        raise ValueError(f"{name}: expected {what} (N, {time[0]}, {d}), got "
                         f"{shown_input(tuple(map(tuple, in_shape)), what)}; an input "
                         f"with a padding mask needs {name.split('(')[0]}(..., masked=True)")
    shape = check_in_shape(name, in_shape)
    if len(shape) != 3 or shape[2] not in (None, d):
        raise ValueError(f"{name}: expected {what} (N, {time[0]}, {d}) (batch, {time[1]}, "
                         f"d_model), got "
                         f"{shape}" + (f"; token ids (N, {time[0]}) need an Embedding(vocab, "
                                       f"{d}) first" if len(shape) == 2 else ""))
    return (shape[0], shape[1], d)
