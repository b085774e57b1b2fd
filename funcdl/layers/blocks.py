"""One-line building blocks composed of funcdl's layers, as PyTorch and Keras give them:
TransformerEncoderLayer, TransformerDecoderLayer (``torch.nn``'s, ``batch_first=True``) and
Bidirectional (Keras', over a recurrent layer; ``torch.nn.LSTM(bidirectional=True)``).

Each is a composition of existing layers (MultiHeadAttention, Dense, LayerNorm, Dropout,
Residual, FanOut, Parallel, Select, FanInSum, FanInConcat), so its vjp is theirs, chained:
nothing here differentiates by hand but Bidirectional's time flip (``dx = flip(dx')``).
Params are a dict named as torch's submodules, each entry the child layer's own params
(``_blocks``). From a torch state_dict ``sd`` (E = d_model):

- ``'self_attn'``, ``'multihead_attn'`` (MultiHeadAttention): ``w_q, w_k, w_v =
  sd['self_attn.in_proj_weight'][:E].T, [E:2E].T, [2E:].T``, ``b_q, b_k, b_v`` the thirds of
  ``in_proj_bias``, ``w_o = out_proj.weight.T``, ``b_o = out_proj.bias``;
- ``'linear1'``, ``'linear2'`` (Dense): ``w = weight.T``, ``b = bias``;
- ``'norm1'``, ``'norm2'``, ``'norm3'`` (LayerNorm): ``scale = weight``, ``bias = bias``;
- ``bias=False`` (torch's, 2.1): the same without every ``b_*``, ``b`` and ``bias`` entry;
- Bidirectional ``'forward'``, ``'backward'`` (the recurrent layers'): ``w_ih =
  weight_ih_l0.T``, ``w_hh = weight_hh_l0.T``, ``b_ih``, ``b_hh`` as they are; the backward
  ones from the ``*_l0_reverse`` entries.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from funcdl._args import bool_arg, call_name, int_arg, nearest_divisors, real_arg
from funcdl.layers._blocks import (
    Part,
    bare,
    block,
    mask_dtype,
    maybe_named,
    named,
    padding_shape,
    par,
    res,
    seq,
    sequence_shape,
    shown_input,
)
from funcdl.layers._children import is_stateful, name_of
from funcdl.layers._time_flip import flipped
from funcdl.layers._wrap import relabelled
from funcdl.layers.activations import ReLU
from funcdl.layers.attention import MultiHeadAttention
from funcdl.layers.base import (
    Layer,
    LayerLike,
    layer_arg,
    pair_of_shapes,
)
from funcdl.layers.core import Dense, Dropout, Identity
from funcdl.layers.gated import GELU
from funcdl.layers.norm import LayerNorm
from funcdl.layers.routing import FanInConcat, FanInSum, FanOut, Select, typed_input

__all__ = ["Bidirectional", "TransformerDecoderLayer", "TransformerEncoderLayer"]


class _Shown(str):
    """A layer's name shown bare in a block's name: ``activation=GELU(approximate=True)``."""

    def __repr__(self) -> str:
        return str(self)


def _options(kind: str, d_model: Any, nhead: Any, dim_feedforward: Any, dropout: Any,
             activation: Any, layer_norm_eps: Any, norm_first: Any, extra: dict[str, Any],
             bias: Any, batch_first: Any, normalizer: Any, hidden_rows: Any
             ) -> tuple[str, int, int, int, float, Any, float, bool, bool]:
    """The checked options and the block's name; options torch has and funcdl does not
    support cheaply are refused here, saying what to do instead."""
    d = int_arg(d_model, kind, "d_model", 1)
    h = int_arg(nhead, kind, "nhead", 1)
    where = f"{kind}({d}, {h})"
    ff = int_arg(dim_feedforward, where, "dim_feedforward", 1)
    rate = real_arg(dropout, where, "dropout (the fraction dropped)", low=0.0, high=1.0)
    eps = real_arg(layer_norm_eps, where, "layer_norm_eps", low=0.0, open_low=True)
    first = bool_arg(norm_first, where, "norm_first")
    shift = bool_arg(bias, where, "bias")
    flags = {k: (bool_arg(v, where, k), default) for k, (v, default) in extra.items()}
    if isinstance(activation, str):
        if activation not in ("relu", "gelu"):
            raise ValueError(f"{where}: activation must be 'relu' or 'gelu' (torch's "
                             f"strings) or a funcdl layer such as GELU(approximate=True), "
                             f"got {activation!r}")
        act: Any = activation
    else:
        layer_arg(where, activation, "activation must be 'relu', 'gelu' or a layer: expected "
                  "one")
        act = _Shown(name_of(activation))
    name = call_name(kind, (d, h), dim_feedforward=(ff, 2048), dropout=(rate, 0.1),
                     activation=(act, "relu"), layer_norm_eps=(eps, 1e-5),
                     norm_first=(first, False), bias=(shift, True),
                     **flags, normalizer=(normalizer, "softmax"),
                     hidden_rows=(hidden_rows, "zero"))
    if d % h:
        raise ValueError(f"{name}: d_model {d} is not divisible by nhead {h}: each head takes "
                         f"d_model / nhead channels; use nhead {nearest_divisors(d, h)}")
    if not bool_arg(batch_first, name, "batch_first"):
        raise ValueError(f"{name}: batch_first=False is not supported: funcdl's sequences are "
                         f"(N, T, E), batch first; transpose a (T, N, E) input with "
                         f"x.transpose(1, 0, 2)")
    activation_layer = (activation if not isinstance(activation, str) else
                        ReLU() if activation == "relu" else GELU())
    return name, d, h, ff, rate, activation_layer, eps, first, shift


def _drop(rate: float) -> Part | None:
    """A Dropout, or nothing at rate 0: then training needs no key, as MultiHeadAttention's
    dropout=0 needs none (the params' dict is the same either way)."""
    return bare(Dropout(rate)) if rate else None


def _feedforward(d: int, ff: int, act: Any, rate: float, bias: bool) -> Part:
    """torch's ``_ff_block`` with its dropout after: ``drop(linear2(drop(act(linear1(x)))))``."""
    return seq(named(Dense(ff, use_bias=bias), "linear1"), maybe_named(act, "activation"),
               _drop(rate), named(Dense(d, use_bias=bias), "linear2"), _drop(rate))


def _attention(name: str, h: int, **options: Any) -> Layer:
    """MultiHeadAttention(h, **options), an error in its arguments (a bad normalizer or
    hidden_rows) named as the block's."""
    try:
        return MultiHeadAttention(h, **options)
    except (ValueError, TypeError) as e:
        raise relabelled(name, e) from None


def TransformerEncoderLayer(d_model: int, nhead: int, dim_feedforward: int = 2048,
                            dropout: float = 0.1, activation: str | LayerLike = "relu",
                            layer_norm_eps: float = 1e-5, norm_first: bool = False, *,
                            causal: bool = False, bias: bool = True,
                            batch_first: bool = True, masked: bool = False,
                            normalizer: str = "softmax", hidden_rows: str = "zero") -> Layer:
    """``torch.nn.TransformerEncoderLayer(..., batch_first=True)``: ``(N, T, E) -> (N, T, E)``;
    ``masked=True``: ``(x, src_key_padding_mask) -> (N, T, E)``, the mask (N, T) boolean,
    True at padding (torch's ``src_key_padding_mask``; any mask MultiHeadAttention's
    ``masked=True`` takes, e.g. an attention mask (N, T, T), passes to the self-attention
    as it is); dx is ``(dx, None)``.

    params: ``{'self_attn', 'linear1', 'linear2', 'norm1', 'norm2'}``, the
    MultiHeadAttention's, the two Dense's and the two LayerNorm's params, each its own
    default init, as torch's layer (not nn.Transformer's xavier over every matrix); module
    docstring: from a torch state_dict.
    forward (post-norm): ``x = norm1(x + drop(sa(x)))``, ``y = norm2(x + ff(x))``;
    ``norm_first=True`` (pre-norm): ``x = x + drop(sa(norm1(x)))``, ``y = x + ff(norm2(x))``;
    with ``ff(x) = drop(linear2(drop(act(linear1(x)))))`` and sa's attention weights dropped
    too, all at ``dropout``, as torch's (``dropout=0``: training needs no key).
    ``causal=True`` hides the keys after each query, torch's ``is_causal=True`` with its
    ``-inf``-above-the-diagonal ``src_mask``. ``normalizer='sparsemax'``: sparse attention
    weights (MultiHeadAttention's). ``hidden_rows='zero'``: a query whose keys are all hidden
    (an empty sequence; causal with left padding) gets context 0, as torch's training path
    (need_weights=False); torch's eval fast path gives NaN there, as ``hidden_rows='nan'``.
    vjp: the composition's, each child's vjp chained; masked, the mask reaches self_attn by
    FanOut, Select(0) and Parallel with an Identity (its cotangent None), the residual
    ``x + drop(sa(x, mask))`` as ``FanInSum(Select(0)(x, mask), sa(x, mask))``.
    ``bias=False``, torch's: no bias in the attention, the two Dense and the LayerNorms.
    Refused: ``batch_first=False``; activation 'relu', 'gelu' (exact erf, torch's) or a
    funcdl layer.
    """
    name, d, h, ff, rate, act, eps, first, bias = _options(
        "TransformerEncoderLayer", d_model, nhead, dim_feedforward, dropout, activation,
        layer_norm_eps, norm_first, {"causal": (causal, False), "masked": (masked, False)},
        bias, batch_first, normalizer, hidden_rows)
    sa = seq(named(_attention(name, h, causal=causal, dropout=rate, masked=masked,
                              normalizer=normalizer, hidden_rows=hidden_rows, use_bias=bias),
                   "self_attn"), _drop(rate))
    feed = _feedforward(d, ff, act, rate, bias)
    norm1, norm2 = (named(LayerNorm(eps, bias=bias), f"norm{i}") for i in (1, 2))
    if not masked:
        part = (seq(res(seq(norm1, sa)), res(seq(norm2, feed))) if first else
                seq(res(sa), norm1, res(feed), norm2))
        return block(name, part, lambda s, what: sequence_shape(name, d, s, what))
    # (x, mask) -> x + sa(x, mask): FanOut copies the pair, Select(0) takes x back out
    keep = bare(Identity())  # the mask, passed on to self_attn as it is
    if first:
        part = seq(bare(FanOut(2)), par(bare(Select(0)), seq(par(norm1, keep), sa)),
                   bare(FanInSum()), res(seq(norm2, feed)))
    else:
        part = seq(bare(FanOut(2)), par(bare(Select(0)), sa), bare(FanInSum()), norm1,
                   res(feed), norm2)

    def shapes(in_shape: Any, what: str) -> Any:
        if not pair_of_shapes(in_shape):
            got = shown_input(in_shape, what)
            raise ValueError(f"{name}: expected {what} as a tuple (x, src_key_padding_mask), "
                             f"of shapes ((N, T, {d}), (N, T)), got {got}")
        x = sequence_shape(name, d, in_shape[0], f"x ({what}[0])")
        return x, padding_shape(name, in_shape[1], x[:2], ("T", x[1]),
                                f"src_key_padding_mask ({what}[1])")

    return _typed_masks(block(name, part, shapes), name, 2, ["src_key_padding_mask (N, T)"])


def TransformerDecoderLayer(d_model: int, nhead: int, dim_feedforward: int = 2048,
                            dropout: float = 0.1, activation: str | LayerLike = "relu",
                            layer_norm_eps: float = 1e-5, norm_first: bool = False, *,
                            causal: bool = True, bias: bool = True,
                            batch_first: bool = True, masked: bool = False,
                            tgt_masked: bool = False, normalizer: str = "softmax",
                            hidden_rows: str = "zero") -> Layer:
    """``torch.nn.TransformerDecoderLayer(..., batch_first=True)`` called with
    ``tgt_is_causal=True`` and its causal ``tgt_mask``: ``(tgt, memory) -> (N, T, E)``, tgt
    (N, T, E) and memory (N, S, E); dx is ``(dtgt, dmemory)``.

    params: ``{'self_attn', 'multihead_attn', 'linear1', 'linear2', 'norm1', 'norm2',
    'norm3'}`` (module docstring: from a torch state_dict).
    forward (post-norm): ``x = norm1(tgt + drop(sa(tgt)))``, ``x = norm2(x + drop(mha(x,
    memory)))``, ``y = norm3(x + ff(x))``; ``norm_first=True``: ``x = tgt +
    drop(sa(norm1(tgt)))``, ``x = x + drop(mha(norm2(x), memory))``, ``y = x + ff(norm3(x))``;
    ``ff`` and the dropouts as in TransformerEncoderLayer. ``causal=False`` lets tgt's
    queries see every tgt position (torch's call without ``tgt_mask``).
    Padding masks, boolean, True at padding, each an input entry after memory in torch's
    argument order (any mask MultiHeadAttention's ``masked=True`` takes passes to its
    attention as it is, e.g. an attention mask (N, T, T) for tgt), their cotangents None:
    ``tgt_masked=True``: ``(tgt, memory, tgt_key_padding_mask)``, the mask (N, T), torch's
    ``tgt_key_padding_mask``, hiding tgt's padded keys from sa, with ``causal`` too (both
    apply, as torch's); ``masked=True``: ``(tgt, memory, memory_key_padding_mask)``, the mask
    (N, S), torch's ``memory_key_padding_mask``, hiding memory's padding from mha; both:
    ``(tgt, memory, tgt_key_padding_mask, memory_key_padding_mask)``, dx ``(dtgt, dmemory,
    None, None)``. A query whose keys are all hidden (a tgt row padded from its start with
    ``causal``, an empty memory) follows ``hidden_rows``: 'zero' (default) gives it context
    0 in that attention and no gradient through it, as torch's training path; 'nan' gives
    NaN there, as torch's eval path. Decoding (``layers.decode_step``) takes the masks too:
    the step's tgt mask is the new position's column, ``tgt_key_padding_mask[:, t:t+1]``
    (N, 1), the memory's whole (N, S) at every step; attention masks (rank 3) are refused.
    With ``causal=True`` a right-padded tgt's valid queries never see its padding, so there
    the tgt mask changes only the padded rows; it matters with left padding or causal=False.
    ``normalizer='sparsemax'``: sparse weights in both attentions (MultiHeadAttention's).
    vjp: the composition's; memory's cotangent is the cross-attention's; tgt_masked, the
    mask reaches sa as in TransformerEncoderLayer(masked=True), by FanOut and Select.
    Refused as in TransformerEncoderLayer.
    """
    name, d, h, ff, rate, act, eps, first, bias = _options(
        "TransformerDecoderLayer", d_model, nhead, dim_feedforward, dropout, activation,
        layer_norm_eps, norm_first, {"causal": (causal, True), "masked": (masked, False),
                                     "tgt_masked": (tgt_masked, False)},
        bias, batch_first, normalizer, hidden_rows)
    masked, tgt_masked = bool(masked), bool(tgt_masked)
    sa = seq(named(_attention(name, h, causal=causal, dropout=rate, masked=tgt_masked,
                              normalizer=normalizer, hidden_rows=hidden_rows, use_bias=bias),
                   "self_attn"), _drop(rate))
    cross = seq(named(_attention(name, h, dropout=rate, masked=masked, normalizer=normalizer,
                                 hidden_rows=hidden_rows, use_bias=bias), "multihead_attn"),
                _drop(rate))
    feed = _feedforward(d, ff, act, rate, bias)
    n1, n2, n3 = (named(LayerNorm(eps, bias=bias), f"norm{i}") for i in (1, 2, 3))
    keep = bare(Identity())  # memory (and the mask), passed on as it is
    kept = (keep, keep) if masked else (keep,)
    if tgt_masked:
        # (tgt, memory, tgt_mask[, memory_mask]) -> (x, memory[, memory_mask]): the pair
        # (tgt, tgt_mask) through the self-attention block, as the masked encoder's
        if first:
            own = seq(bare(FanOut(2)), par(bare(Select(0)), seq(par(n1, keep), sa)),
                      bare(FanInSum()))
        else:
            own = seq(bare(FanOut(2)), par(bare(Select(0)), sa), bare(FanInSum()), n1)
        rest = (1, 3) if masked else (1,)
        self_part = seq(bare(FanOut(1 + len(rest))),
                        par(seq(bare(Select(0, 2)), own), *(bare(Select(i)) for i in rest)))
    else:
        self_part = par(res(seq(n1, sa)), *kept) if first else par(seq(res(sa), n1), *kept)
    # (x, memory) -> (x, memory), (x, memory) -> x + cross(...): FanOut copies the pair,
    # Select(0) takes x back out of one copy, FanInSum adds the residual; masked, the
    # triple (x, memory, mask) rides along the same way
    if first:
        part = seq(self_part, bare(FanOut(2)),
                   par(bare(Select(0)), seq(par(n2, *kept), cross)), bare(FanInSum()),
                   res(seq(n3, feed)))
    else:
        part = seq(self_part, bare(FanOut(2)),
                   par(bare(Select(0)), cross), bare(FanInSum()), n2, res(feed), n3)
    roles = [("tgt", "T"), ("memory", "S")] + ([("tgt_key_padding_mask", "T")] * tgt_masked
                                              + [("memory_key_padding_mask", "S")] * masked)
    form = "(" + ", ".join(r for r, _ in roles) + ")"
    want = f"((N, T, {d}), (N, S, {d})" + "".join(f", (N, {t})" for _, t in roles[2:]) + ")"

    def shapes(in_shape: Any, what: str) -> Any:
        if not (isinstance(in_shape, (tuple, list)) and len(in_shape) == len(roles)
                and all(isinstance(s, (tuple, list)) for s in in_shape)):
            got = shown_input(in_shape, what)
            raise ValueError(f"{name}: expected {what} as a tuple {form}, of shapes "
                             f"{want}, got {got}")
        out = (sequence_shape(name, d, in_shape[0], f"tgt ({what}[0])"),
               sequence_shape(name, d, in_shape[1], f"memory ({what}[1])",
                              ("S", "source time")))
        # each mask against the sizes of tgt's queries and its own keys (tgt's or memory's)
        return (*out, *(padding_shape(name, in_shape[i], out[0][:2],
                                      (t, out[1 if t == "S" else 0][1]), f"{r} ({what}[{i}])")
                         for i, (r, t) in enumerate(roles) if i >= 2))

    made = block(name, part, shapes)
    if not (masked or tgt_masked):
        return made
    return _typed_masks(made, name, len(roles), [f"{r} (N, {t})" for r, t in roles[2:]])


def _typed_masks(made: Layer, name: str, size: int, labels: list[str]) -> Layer:
    """``made`` raising a TypeError that names the mask by its role (``labels``, one per
    input entry after the first ``size - len(labels)`` of an input tuple of ``size``) when
    one is not boolean, where MultiHeadAttention would only say 'the mask'; another layout
    is left to the block's own ValueError."""

    def typed(x: Any) -> Any:
        if isinstance(x, (tuple, list)) and len(x) == size:
            for label, m in zip(labels, x[size - len(labels):]):
                mask_dtype(name, m, label)
        return x

    return dataclasses.replace(
        made, apply=lambda p, x, **kw: made.apply(p, typed(x), **kw),
        vjp=lambda p, x, **kw: made.vjp(p, typed(x), **kw))


# ---------------------------------------------------------------------------- Bidirectional

_MERGES = {"concat": FanInConcat, "sum": FanInSum}


def _backward(shown: str) -> bool | None:
    """Whether a recurrent layer, by its name, runs backward in time; None for another."""
    if not shown.startswith(("LSTM(", "GRU(", "SimpleRNN(")):
        return None
    return "reverse=True" in shown.split("(", 1)[-1]


def Bidirectional(layer: LayerLike, merge: str | None = "concat", *,
                  backward_layer: LayerLike | None = None) -> Layer:
    """Keras' ``Bidirectional`` over a recurrent layer, ``(N, T, C) -> (N, T, 2H)`` (or
    ``(N, 2H)`` when the layer has ``return_sequences=False``): torch's
    ``nn.LSTM(..., bidirectional=True, batch_first=True)`` output (its ``h_n`` of both
    directions, concatenated, without sequences).

    ``layer`` runs forward; the backward direction is, by default, the same constructor
    value run on the input reversed in time (its output reversed back), with params of its
    own: ``Bidirectional(LSTM(32))`` as in Keras. ``backward_layer`` (Keras' name) replaces
    it by a layer that itself runs backward and answers in the input's time order, such as
    ``LSTM(32, reverse=True)``: the same numbers. A ``layer`` built with ``reverse=True`` is
    refused (its default twin would run forward).
    params: ``{'forward': layer's params, 'backward': the backward layer's}``.
    forward: ``y = merge(f(x), b(x))``, merge ``'concat'`` ``[f, b]`` on the last axis (torch's
    order), ``'sum'`` ``f + b``, None the pair ``(f, b)``; vjp: the composition's
    (FanOut, Parallel, the merge), ``dx = f_xᵀ dy_f + b_xᵀ dy_b``.
    """
    layer_arg("Bidirectional", layer, "expected a recurrent layer, as Bidirectional(LSTM(32)); "
              "a layer is a value")
    child = name_of(layer)
    if merge is not None and (not isinstance(merge, str) or merge not in _MERGES):
        raise ValueError(f"Bidirectional({child}): merge must be 'concat', 'sum' or None (the "
                         f"pair), got {merge!r}")
    if backward_layer is None:
        if _backward(child):
            raise ValueError(f"Bidirectional({child}): the layer runs backward already "
                             f"(reverse=True); pass the forward layer, or both: "
                             f"Bidirectional(forward, backward_layer={child})")
        back: Any = flipped(layer)
    else:
        layer_arg("Bidirectional", backward_layer, "backward_layer: expected a layer")
        back = backward_layer
    name = call_name("Bidirectional", (_Shown(child),), merge=(merge, "concat"),
                     backward_layer=(None if backward_layer is None else
                                     _Shown(name_of(backward_layer)), None))
    for what, lay in (("layer", layer), ("backward_layer", back)):
        shown = name_of(lay)
        if shown.startswith(("LSTM(", "GRU(", "SimpleRNN(")) and any(
                f"{flag}=True" in shown for flag in ("initial_state", "return_state")):
            raise ValueError(f"{name}: {what} {shown} passes or returns a state, which "
                             f"Bidirectional does not route; build the two directions "
                             f"yourself (the layer and its reverse=True twin) to pass or "
                             f"read states")
        if is_stateful(lay):
            raise TypeError(f"{name}: {what} {name_of(lay)} is stateful; Bidirectional takes "
                            f"stateless (recurrent) layers")
    runs = [_backward(name_of(lay)) for lay in (layer, back)]
    if backward_layer is not None and None not in runs and runs[0] == runs[1]:
        way = "backward (reverse=True)" if runs[0] else "forward"  # Keras: opposite ways
        raise ValueError(f"{name}: the layer and backward_layer {name_of(back)} both run "
                         f"{way}; the two must run opposite ways, as Bidirectional(LSTM(32), "
                         f"backward_layer=LSTM(32, reverse=True))")
    parts = [bare(FanOut(2)), par(named(layer, "forward"), named(back, "backward"))]
    if merge is not None:
        parts.append(bare(_MERGES[merge]()))
    made = block(name, seq(*parts), lambda s, what: s)
    # FanOut, without params, would round Python floats to float32: the params' dtype first
    return dataclasses.replace(
        made, apply=lambda p, x, **kw: made.apply(p, typed_input(name, p, x), **kw),
        vjp=lambda p, x, **kw: made.vjp(p, typed_input(name, p, x), **kw))
