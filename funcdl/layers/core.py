"""Core layers: Dense, Identity, Flatten, Reshape, Dropout, DropPath."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from funcdl import initializers, random, tree
from funcdl._args import bool_arg, int_arg, is_int, real_arg, train_arg
from funcdl.layers._dense import affine_layer
from funcdl.layers._params import initializer_arg
from funcdl.layers._passthrough import array_tree, cotangents, not_empty, shape_tree
from funcdl.layers._step import POSITIONWISE
from funcdl.layers.base import (
    _F32,
    Array,
    Layer,
    Shape,
    as_array,
    cast_ints,
    check_cotangent,
    check_in_shape,
    linear_map,
    no_params,
    none_cotangent,
)

__all__ = ["Dense", "DropPath", "Dropout", "Flatten", "Identity", "Reshape"]




def Dense(out: int, w_init: initializers.Initializer | None = None,
          b_init: initializers.Initializer | None = None, use_bias: bool = True) -> Layer:
    """Affine map on the last axis, ``(..., in) -> (..., out)``.

    params: ``{'w': (in, out), 'b': (out,)}`` (no ``'b'`` when ``use_bias=False``).
    forward: ``y = x @ w + b``;
    vjp: ``dw = xᵀ dy``, ``db = Σ_batch dy``, ``dx = dy wᵀ``.
    Default init is PyTorch's ``nn.Linear``: w, b ~ U(±1/sqrt(in)).
    """
    out = int_arg(out, "Dense", "out", minimum=1)
    name = f"Dense({out})"
    use_bias = bool_arg(use_bias, name, "use_bias")
    return affine_layer(name, out, use_bias, initializer_arg(name, "w_init", w_init),
                        initializer_arg(name, "b_init", b_init))


def _shape_layer(name: str, out_shape: Any, min_rank: int = 1) -> Layer:
    """A layer that only reshapes: ``y = reshape(x)``, ``dx = reshape(dy, x.shape)``;
    ``min_rank``: the least rank its init takes (its apply checks through ``out_shape``)."""

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape, min_rank=min_rank)
        return out_shape(shape), ()

    def check(params: Any, x: Any) -> Array:
        no_params(name, params)
        return as_array(name, x)

    def forward(x: Array) -> Array:
        y: Array = x.reshape(out_shape(x.shape, check=True))
        return y

    return linear_map(name, init, check, forward, lambda dy, x_shape: dy.reshape(x_shape))


def Identity() -> Layer:
    """``y = x``; ``dx = dy``. Any pytree of arrays too, as stax's: a tuple ``(x, mask)``
    beside ``Parallel``'s other branches, its in_shape the tree of their shapes, and dy of
    its structure (None at an entry nothing flows back to)."""
    return identity_layer("Identity()")


def identity_layer(name: str) -> Layer:
    """Identity's layer, its errors naming ``name`` (StopGradient's forward is this one)."""
    one = _shape_layer(name, lambda s, check=False: tuple(s), min_rank=0)  # as apply

    def init(key: random.Key, in_shape: Any) -> tuple[Any, Any]:
        if not shape_tree(in_shape):
            out: tuple[Any, Any] = one.init(key, in_shape)
            return out
        return tree.map(lambda s: check_in_shape(name, s, min_rank=0), in_shape,
                        is_leaf=lambda s: not shape_tree(s)), ()

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        if type(x) is np.ndarray or not array_tree(not_empty(name, x)):
            return one.apply(params, x)
        no_params(name, params)
        return tree.map(lambda a: None if a is None else as_array(name, not_empty(name, a)),
                        x, is_leaf=lambda a: not array_tree(a))

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        if type(x) is np.ndarray or not array_tree(not_empty(name, x)):
            return one.vjp(params, x)
        y = apply(params, x)

        def pullback(dy: Any) -> tuple[Any, Any]:
            if dy is None:
                raise none_cotangent(name)
            return params, cotangents(name, y, dy, "dy")

        return y, pullback

    return Layer(init, apply, vjp, name=name, step=POSITIONWISE)


def Flatten() -> Layer:
    """Collapse every axis after the batch axis: ``(n, *rest) -> (n, prod(rest))``; vjp:
    ``dx = dy`` reshaped to ``(n, *rest)``."""
    name = "Flatten()"

    def out_shape(s: Shape, check: bool = False) -> Any:
        if len(s) < 1:
            raise ValueError(f"{name}: expected an input with a batch axis, got shape {s}")
        rest = s[1:]
        return (s[0], None if None in rest else math.prod(rest))  # type: ignore[arg-type]

    return _shape_layer(name, out_shape)


def Reshape(shape: int | Sequence[int]) -> Layer:
    """Reshape every axis after the batch axis: ``(n, *rest) -> (n, *shape)``; ``shape`` may
    hold one -1 (as Keras' Reshape; the batch axis is never part of ``shape``); an int
    ``n`` is ``(n,)``. vjp: ``dx = dy`` reshaped to the input's shape."""
    if is_int(shape):
        shape = (int(shape),)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"Reshape: shape must be a tuple of ints (one may be -1), got "
                        f"{shape!r}")
    target = tuple(int_arg(d, "Reshape", f"every size in shape {tuple(shape)!r}", -1)
                   for d in shape)
    name = f"Reshape({target})"
    if sum(d == -1 for d in target) > 1 or any(d < -1 or d == 0 for d in target):
        raise ValueError(f"{name}: shape must hold positive sizes and at most one -1")

    def out_shape(s: Shape, check: bool = False) -> Any:
        if len(s) < 1:
            raise ValueError(f"{name}: expected an input with a batch axis, got shape {s}")
        rest = s[1:]
        if None in rest:  # the size of -1 is unknown too
            return (s[0], *(None if d == -1 else d for d in target))
        size = math.prod(rest)  # type: ignore[arg-type]
        known = math.prod(d for d in target if d != -1)
        if (-1 in target and size % known) or (-1 not in target and size != known):
            raise ValueError(f"{name}: cannot reshape an input of shape {s} "
                             f"({size} values per example) to {target}")
        return (s[0], *(size // known if d == -1 else d for d in target))

    return _shape_layer(name, out_shape)


def Dropout(rate: float, broadcast_dims: Sequence[int] = ()) -> Layer:
    """Zero a fraction ``rate`` of the entries in training and scale the rest by 1/(1-rate).

    forward (train): ``y = x * m / (1 - rate)``, ``m = random.uniform(key, shape, float32) >=
    rate`` (Bernoulli(1 - rate));
    vjp: ``dx = dy * m / (1 - rate)``. Inference (``train=False``) is the identity.
    ``broadcast_dims`` (Flax's): axes along which one draw is shared, so whole slices drop;
    ``(1, 2)`` on NHWC drops whole channels per example, PyTorch's ``Dropout2d``.
    Training asks for a key at every rate, 0 included (stax's rule): a script that raises the
    rate later does not break then. The ``dropout=`` option of MultiHeadAttention and the
    transformer layers draws nothing at 0 and then asks for no key, as torch's.
    """
    rate = real_arg(rate, "Dropout", "rate (the fraction dropped)", low=0.0, high=1.0)
    if not isinstance(broadcast_dims, (tuple, list)):
        raise TypeError(f"Dropout: broadcast_dims must be a tuple of axes, e.g. (1, 2), got "
                        f"{broadcast_dims!r}")
    shared = tuple(int_arg(a, "Dropout", "broadcast_dims", None) for a in broadcast_dims)
    name = f"Dropout({rate})" if not shared else f"Dropout({rate}, broadcast_dims={shared})"

    def mask_shape(shape: tuple[Any, ...]) -> tuple[Any, ...]:
        if any(not -len(shape) <= a < len(shape) for a in shared):
            raise ValueError(f"{name}: broadcast_dims {shared} are out of range for an input "
                             f"of shape {shape}")
        drop = {a % len(shape) for a in shared}
        return tuple(1 if i in drop else d for i, d in enumerate(shape))

    return _dropout(name, rate, mask_shape if shared else None, min_rank=0)


def DropPath(rate: float, mode: str = "row") -> Layer:
    """Stochastic depth (Huang et al. 2016): in training, drop whole examples of a residual
    branch with probability ``rate`` and scale the kept ones by 1/(1-rate); torchvision's
    ``StochasticDepth(p=rate, mode)``, timm's ``DropPath(drop_prob)``. Put it on the branch,
    ``Residual(Sequential(block, DropPath(0.1)))``, so that a dropped example skips the block.

    forward (train): ``y = x * m / (1 - rate)``, ``m`` one Bernoulli(1 - rate) draw per
    example (``mode='row'``, shape (N, 1, ..., 1)) or one for the whole batch
    (``mode='batch'``); vjp: ``dx = dy * m / (1 - rate)``. Inference (``train=False``) is
    the identity; ``train=True`` needs ``key=``, as Dropout's. ``rate=1`` gives zeros, as
    torchvision's. Input ``(N, ...)``, batch first: a 0-d input is refused in both modes.
    """
    rate = real_arg(rate, "DropPath", "rate (the fraction of examples dropped)", low=0.0,
                    high=1.0)
    if not isinstance(mode, str) or mode not in ("row", "batch"):
        raise ValueError(f"DropPath: mode must be 'row' (one draw per example) or 'batch' "
                         f"(one for the whole batch), as torchvision's StochasticDepth, got "
                         f"{mode!r}")
    name = f"DropPath({rate})" if mode == "row" else f"DropPath({rate}, mode='batch')"

    def mask_shape(shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (shape[0] if mode == "row" else 1,) + (1,) * (len(shape) - 1)

    return _dropout(name, rate, mask_shape, min_rank=1)


def _dropout(name: str, rate: float,
             mask_shape: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None,
             min_rank: int) -> Layer:
    """Dropout's and DropPath's layer: ``x * m / (1 - rate)`` in training, ``m`` drawn in
    ``mask_shape(x.shape)`` (x's own shape for None) and broadcast against x."""

    def init(key: random.Key, in_shape: Shape) -> tuple[Shape, Any]:
        del key
        shape = check_in_shape(name, in_shape, min_rank=min_rank)
        if mask_shape is not None:
            mask_shape(shape)  # the axes' range, checked here and not first in training
        return shape, ()

    def scaled_mask(x: Array, key: Any, train: bool) -> Array | None:
        """``m / (1 - rate)``, or None when nothing is dropped (inference, rate 0)."""
        if x.ndim < min_rank:
            raise ValueError(f"{name}: expected an input with a batch axis (N, ...), got "
                             f"shape {x.shape}")
        keep = keep_mask(name, x.shape, key, train, rate, mask_shape)
        if keep is None:
            return None
        dtype = x.dtype if x.dtype.kind == "f" else _F32  # as_array gave native order
        if rate == 1.0:
            return np.zeros(keep.shape, dtype)
        scaled: Array = keep * np.asarray(1.0 / (1.0 - rate), dtype)
        return scaled

    def dropped(x: Array, mask: Array) -> Array:
        """``x ⊙ mask``; a dropped inf gives NaN, a kept value past the dtype's maximum /
        (1 - rate) inf, as PyTorch gives them, without NumPy's warnings."""
        with np.errstate(invalid="ignore", over="ignore"):
            return cast_ints(x, mask.dtype) * mask

    def apply(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Array:
        no_params(name, params)
        xa = as_array(name, x)
        mask = scaled_mask(xa, key, train)
        return xa if mask is None else dropped(xa, mask)

    def vjp(params: Any, x: Any, *, key: Any = None, train: bool = False) -> Any:
        no_params(name, params)
        x = as_array(name, x)
        mask = scaled_mask(x, key, train)
        if mask is None:
            return x, lambda dy: (params, check_cotangent(name, dy, x.shape, x.dtype))
        y = dropped(x, mask)
        y_shape, y_dtype = y.shape, y.dtype  # not y, which the caller may free
        return y, lambda dy: (params, check_cotangent(name, dy, y_shape, y_dtype) * mask)

    return Layer(init, apply, vjp, name=name, step=POSITIONWISE)  # inference: y = x


def keep_mask(name: str, x_shape: tuple[int, ...], key: Any, train: Any, rate: float,
              shape: Callable[[tuple[int, ...]], tuple[int, ...]] | None = None
              ) -> Array | None:
    """A dropout layer's boolean keep mask, ``u >= rate`` for ``u ~ U[0, 1)`` drawn from
    ``key`` in the shape ``shape(x_shape)`` (``x_shape`` without ``shape``; called only
    when a mask is drawn), or None when nothing is dropped (``train`` false, rate 0). In
    training the key is checked at every rate, so changing the rate cannot break a script;
    rate 1 drops everything, with no draw."""
    if not train_arg(train, name):
        return None
    if key is None:
        raise ValueError(
            f"{name}: train=True needs a random key: pass key= to the call that runs "
            f"it, apply(params, x, train=True, key=funcdl.random.key(seed)), vjp, or "
            f"the function from value_and_grad, f(params, x, target, key=...); a new "
            f"key per step, e.g. from funcdl.random.split")
    random.check_key(key, name)
    if rate == 0.0:
        return None
    mask_shape = x_shape if shape is None else shape(x_shape)
    if rate >= 1.0:
        return np.zeros(mask_shape, bool)
    # float32 draws whatever x's dtype, as JAX's bernoulli: a float64 rerun of a float32
    # experiment (check_vjp's, say) drops the same entries
    keep: Array = random.uniform(key, mask_shape, dtype=np.float32) >= np.float32(rate)
    return keep
