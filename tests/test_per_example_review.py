"""Adversarial review of per_example_value_and_grad / per_example_grad: edge configurations of
every layer with a rule against the loop over the rows (float64), torch.func.vmap(grad) and
jax.vmap(grad), the flag's lifetime (exceptions, threads, nested calls), refusals and bad
inputs. Tests marked ``# DEFECT (fixed)`` assert the correct behaviour; each failed on the
reviewed commit (before bc7d737) and passes since its fix."""

from __future__ import annotations

import functools
import threading

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, tree

RNG = np.random.default_rng(20240701)
N = 4
LENS = np.array([5, 0, 3, 1])


def _x(*shape, n=N):
    return RNG.normal(size=(n, *shape))


def _row(x, i):
    return tuple(_row(a, i) for a in x) if isinstance(x, tuple) else x[i:i + 1]


def _init(model, in_shape, f64=True):
    out = model.init(random.key(3), in_shape)
    params = tree.astype(out[1], np.float64) if f64 else out[1]
    return params, ({"state": out[2], "train": False} if model.stateful else {})


def _against_loop(model, in_shape, x, loss=losses.mse, target=None):
    """Entry n == grad on row n (float64), and the mean == the batch's grad."""
    params, kw = _init(model, in_shape)
    if target is None:
        y = model.apply(params, x, **kw)
        target = RNG.normal(size=(y[0] if model.stateful else y).shape)
    got = fd.per_example_grad(model, loss)(params, x, target, **kw)
    g = fd.grad(model, loss)
    batch = g(params, x, target, **kw)
    if model.stateful:
        got, batch = got[0], batch[0]
    n = len(target)
    scale = max(np.abs(a).max(initial=0) for a in tree.leaves(got)) + 1e-300
    for i in range(n):
        row = g(params, _row(x, i), target[i:i + 1], **kw)
        row = row[0] if model.stateful else row
        for (path, a), b in zip(tree.leaves_with_path(got), tree.leaves(row)):
            assert a.shape == (n, *b.shape), path
            np.testing.assert_allclose(a[i], b, rtol=0, atol=1e-12 * scale,
                                       err_msg=f"example {i}, params{path}")
    for (path, a), b in zip(tree.leaves_with_path(got), tree.leaves(batch)):
        np.testing.assert_allclose(a.mean(0), b, rtol=0, atol=1e-12 * scale, err_msg=path)


_MASK = np.arange(3)[:, None] < np.arange(5)[None] - 1  # query i hides keys j > i + 1
_SEL = (L.Sequential(L.MultiHeadAttention(2, return_weights="mean"),
                     L.Parallel(L.Flatten(), L.Flatten()), L.FanInConcat()))
CASES = {
    "dense (N, A, T, C)": (L.Dense(3), (None, 2, 5, 4), lambda: _x(2, 5, 4)),
    "dense, batch of 1": (L.Sequential(L.Dense(3), L.ReLU(), L.Dense(2)), (None, 4),
                          lambda: _x(4, n=1)),
    "layernorm over two axes": (L.LayerNorm(axis=(-2, -1)), (None, 3, 5, 4),
                                lambda: _x(3, 5, 4)),
    "layernorm on axis 1": (L.LayerNorm(axis=1), (None, 3, 5), lambda: _x(3, 5)),
    "rmsnorm (N, A, T, C)": (L.RMSNorm(), (None, 3, 5, 4), lambda: _x(3, 5, 4)),
    "prelu per channel, (N, T, C)": (L.PReLU(4), (None, 3, 5, 4), lambda: _x(3, 5, 4)),
    "prelu scalar on (N,)": (L.PReLU(), (None,), lambda: _x()),
    "embedding (N, A, T), repeats, padding_idx=-1": (
        L.Embedding(7, 3, padding_idx=-1), (None, 2, 6),
        lambda: np.array([[[6, 6, 1, 1, 1, 2], [0, 1, 1, 6, 3, 3]]] * N)),
    "embedding, one id per example": (L.Embedding(7, 3), (None,),
                                      lambda: RNG.integers(0, 7, N)),
    "positional (N, A, T, E), T < max_len": (L.PositionalEmbedding(6), (None, 2, 4, 3),
                                              lambda: _x(2, 4, 3)),
    "conv2d strides, dilation, VALID": (
        L.Conv2D(4, (3, 2), stride=(2, 1), dilation=(1, 2), padding="VALID"), (None, 7, 8, 2),
        lambda: _x(7, 8, 2)),
    "conv2d groups, int padding, stride 3": (L.Conv2D(4, 3, stride=3, padding=2, groups=2),
                                             (None, 7, 8, 4), lambda: _x(7, 8, 4)),
    "conv1d depthwise, dilated": (L.Conv1D(4, 3, stride=2, dilation=2, padding=3, groups=4),
                                  (None, 11, 4), lambda: _x(11, 4)),
    "convtranspose2d output_padding": (
        L.ConvTranspose2D(3, 3, stride=(2, 3), padding=(1, 0), output_padding=(1, 2)),
        (None, 3, 4, 2), lambda: _x(3, 4, 2)),
    "convtranspose1d groups, output_padding": (
        L.ConvTranspose1D(4, 4, stride=3, padding=1, output_padding=2, groups=2),
        (None, 5, 2), lambda: _x(5, 2)),
    "bilinear on (N, T, D)": (L.Bilinear(3), ((None, 4, 2), (None, 4, 3)),
                              lambda: (_x(4, 2), _x(4, 3))),
    "mha kdim, vdim, no bias": (L.MultiHeadAttention(2, kdim=3, vdim=5, use_bias=False),
                                ((None, 3, 4), (None, 5, 3), (None, 5, 5)),
                                lambda: (_x(3, 4), _x(5, 3), _x(5, 5))),
    "mha attention mask (N, Tq, Tk), sparsemax": (
        L.MultiHeadAttention(2, masked=True, normalizer="sparsemax"),
        ((None, 3, 4), (None, 5, 4), (None, 3, 5)),
        lambda: (_x(3, 4), _x(5, 4), np.broadcast_to(_MASK, (N, 3, 5)).copy())),
    "mha return_weights": (_SEL, (None, 3, 4), lambda: _x(3, 4)),
    "lstm lengths + initial_state": (
        L.LSTM(3, lengths=True, initial_state=True), ((None, 5, 2), (None,),
                                                       ((None, 3), (None, 3))),
        lambda: (_x(5, 2), LENS, (_x(3), _x(3)))),
    "gru return_state, reverse": (
        L.Sequential(L.GRU(3, return_state=True, reverse=True), L.Select(1)), (None, 5, 2),
        lambda: _x(5, 2)),
    "simple rnn relu, last step": (L.SimpleRNN(3, "relu", return_sequences=False),
                                   (None, 5, 2), lambda: _x(5, 2)),
    "bidirectional lstm, lengths, sum": (
        L.Bidirectional(L.LSTM(3, lengths=True), merge="sum"), ((None, 5, 2), (None,)),
        lambda: (_x(5, 2), LENS)),
    "batchnorm at inference, axis=1": (L.Sequential(L.Conv1D(3, 2), L.BatchNorm(axis=1)),
                                       (None, 5, 2), lambda: _x(5, 2)),
    "residual, fanout, parallel, fan-in sum": (
        L.Residual(L.Sequential(L.FanOut(3), L.Parallel(L.Dense(4), L.LayerNorm(),
                                                        L.Conv1D(4, 1)), L.FanInSum())),
        (None, 5, 4), lambda: _x(5, 4)),
    "shared over 3 inputs, repeat, remat": (
        L.Sequential(L.Shared(L.Dense(4), 3), L.FanInConcat(),
                     L.Repeat(L.Remat(L.Sequential(L.Dense(12), L.Tanh())), 2)),
        ((None, 4),) * 3, lambda: (_x(4), _x(4), _x(4))),
    "tied, carry of masked attention twice": (
        L.Sequential(L.Carry(L.MultiHeadAttention(2, masked=True)),
                     L.Carry(L.MultiHeadAttention(2, masked=True)), L.Select(0),
                     L.Tied(L.Sequential(L.Dense(4), L.Tanh(), L.Dense(4)), [0, 2])),
        ((None, 5, 4), (None, 5)), lambda: (_x(5, 4), np.arange(5) >= LENS[:, None] + 1)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_edge_configurations_equal_the_loop_over_rows(case):
    model, in_shape, make = CASES[case]
    _against_loop(model, in_shape, make())


def test_a_broadcast_1_tq_tk_mask_equals_the_loop():
    model = L.MultiHeadAttention(2, masked=True)
    params, _ = _init(model, ((None, 3, 4), (None, 5, 4), (1, 3, 5)))
    q, kv, t, mask = _x(3, 4), _x(5, 4), _x(3, 4), _MASK[None]
    got = fd.per_example_grad(model, losses.mse)(params, (q, kv, mask), t)
    for i in range(N):
        row = fd.grad(model, losses.mse)(params, (q[i:i + 1], kv[i:i + 1], mask), t[i:i + 1])
        for a, b in zip(tree.leaves(got), tree.leaves(row)):
            np.testing.assert_allclose(a[i], b, rtol=1e-11, atol=1e-13)


def test_a_fully_hidden_query_poisons_only_its_own_example():
    model = L.Sequential(L.Carry(L.MultiHeadAttention(2, masked=True)), L.MaskedMean(),
                         L.Dense(2))
    params, _ = _init(model, ((None, 5, 4), (None, 5)))
    mask = np.arange(5) >= np.array([5, 0, 3, 1])[:, None]  # example 1: every key hidden
    with np.errstate(invalid="ignore", divide="ignore"):
        got = fd.per_example_grad(model, losses.mse)(params, (_x(5, 4), mask), _x(2))
    for i in (0, 2, 3):
        assert all(np.isfinite(g[i]).all() for g in tree.leaves(got)), i


def test_ignored_labels_keep_the_mean_as_the_batch_gradient():
    model = L.Sequential(L.Dense(5), L.Tanh(), L.Dense(3))
    params, _ = _init(model, (None, 4))
    x, t = _x(4), np.array([0, 2, 1, 2])
    loss = functools.partial(losses.softmax_cross_entropy, ignore_index=2)
    got = fd.per_example_grad(model, loss)(params, x, t)
    batch = fd.grad(model, loss)(params, x, t)
    for a, b in zip(tree.leaves(got), tree.leaves(batch)):
        np.testing.assert_allclose(a.mean(0), b, rtol=1e-12, atol=1e-15)
        assert not a[1].any() and not a[3].any()  # ignored: no share


FLOAT32 = [
    (L.Conv2D(4, 3, groups=2, stride=2), (None, 5, 5, 2)),
    (L.ConvTranspose2D(4, 3, stride=2, output_padding=1), (None, 3, 3, 2)),
    (L.ConvTranspose1D(4, 3, stride=2), (None, 3, 2)),
    (L.Sequential(L.Embedding(5, 3, padding_idx=0), L.PositionalEmbedding(4)), (None, 4)),
    (L.Sequential(L.LayerNorm(axis=(-2, -1)), L.RMSNorm(), L.PReLU(2), L.GroupNorm(1),
                  L.InstanceNorm(affine=True)), (None, 3, 2)),
    (L.Sequential(L.Bilinear(3), L.Dense(2)), ((None, 2), (None, 3))),
    (L.Sequential(L.MultiHeadAttention(2), L.LSTM(2), L.GRU(2), L.SimpleRNN(2)), (None, 3, 4)),
]


def test_float32_stays_float32_for_every_rule():
    for model, in_shape in FLOAT32:
        params, _ = _init(model, in_shape, f64=False)
        x = (RNG.integers(0, 5, (N, 4)) if in_shape == (None, 4) else
             tuple(_x(*s[1:]).astype(np.float32) for s in in_shape)
             if isinstance(in_shape[0], tuple) else _x(*in_shape[1:]).astype(np.float32))
        y = model.apply(params, x)
        got = fd.per_example_grad(model, losses.mse)(params, x, np.zeros_like(y))
        assert {g.dtype for g in tree.leaves(got)} == {np.dtype(np.float32)}, model.name


@pytest.mark.parametrize("model", [
    L.Sequential(L.Dense(5), L.Dropout(0.5), L.Dense(2)),
    L.Sequential(L.MultiHeadAttention(2, dropout=0.5), L.Flatten(), L.Dense(2)),
    L.Sequential(L.TransformerEncoderLayer(4, 2, 8, dropout=0.3), L.Flatten(), L.Dense(2)),
], ids=["dropout", "attention dropout", "encoder dropouts"])
def test_dropout_uses_the_batchs_masks(model):
    params, _ = _init(model, (None, 3) if model.name.startswith("Sequential(Dense") else
                      (None, 3, 4))
    x = _x(3) if model.name.startswith("Sequential(Dense") else _x(3, 4)
    t, key = _x(2), random.key(5)
    value, got = fd.per_example_value_and_grad(model, losses.mse)(params, x, t, key=key)
    v2, batch = fd.value_and_grad(model, losses.mse)(params, x, t, key=key)
    _, no_drop = fd.value_and_grad(model, losses.mse)(params, x, t, train=False)
    assert value == v2
    for a, b in zip(tree.leaves(got), tree.leaves(batch)):
        np.testing.assert_allclose(a.mean(0), b, rtol=1e-12, atol=1e-14)
    assert any(not np.allclose(a.mean(0), c) for a, c in zip(tree.leaves(got),
                                                             tree.leaves(no_drop)))


def _raising_layer():
    def vjp(p, x, **kw):
        def pullback(dy):
            raise RuntimeError("boom in the pullback")
        return x, pullback
    return L.Layer(lambda k, s: (s, ()), lambda p, x, **kw: x, vjp, name="Boom")


def test_the_flag_does_not_outlive_an_exception():
    model = L.Sequential(L.Dense(3), _raising_layer())
    params, _ = _init(model, (None, 4))
    x, t = _x(4), _x(3)
    with pytest.raises(RuntimeError, match="boom"):
        fd.per_example_grad(model, losses.mse)(params, x, t)
    plain = L.Sequential(L.Dense(3), L.Dense(2))
    params, _ = _init(plain, (None, 4))
    assert fd.grad(plain, losses.mse)(params, x, _x(2))[0]["w"].shape == (4, 3)


def test_threads_calling_grad_and_per_example_grad_concurrently():
    model = L.Sequential(L.Dense(5), L.ReLU(), L.Dense(2))
    params, _ = _init(model, (None, 3))
    x, t = _x(3), _x(2)
    want = {False: fd.grad(model, losses.mse)(params, x, t),
            True: fd.per_example_grad(model, losses.mse)(params, x, t)}
    bad, gate = [], threading.Barrier(2)

    def run(each):
        f = (fd.per_example_grad if each else fd.grad)(model, losses.mse)
        gate.wait()
        for _ in range(150):
            got = f(params, x, t)
            if not all(a.shape == b.shape and np.array_equal(a, b) for a, b in
                       zip(tree.leaves(got), tree.leaves(want[each]))):
                bad.append(each)
    threads = [threading.Thread(target=run, args=(e,)) for e in (False, True)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not bad


# DEFECT (fixed): a plain grad nested in a per-example call (a loss reading an inner
# model's gradient) gets per-example shapes: the flag is not reset for value_and_grad's own duration
def test_a_nested_plain_grad_inside_a_per_example_call_is_summed():
    inner = L.Dense(2)
    p_in, _ = _init(inner, (None, 4))
    seen = []

    def vjp(pred, target):
        seen.append(fd.grad(inner, losses.mse)(p_in, pred, target)["w"].shape)
        return losses.mse.vjp(pred, np.zeros_like(pred))
    model = L.Dense(4)
    params, _ = _init(model, (None, 3))
    fd.per_example_grad(model, losses.Loss("penalty", vjp))(params, _x(3), _x(2))
    assert seen == [(4, 2)]


def test_has_aux_without_state():
    def aux_vjp(pred, target):
        return (losses.mse(pred, target), float(pred.sum())), losses.mse.vjp(pred, target)[1]
    loss = losses.Loss("aux", aux_vjp)
    model = L.Dense(3)
    params, _ = _init(model, (None, 4))
    x, t = _x(4), _x(3)
    grads, aux = fd.per_example_grad(model, loss, has_aux=True)(params, x, t)
    (value, aux2), grads2 = fd.per_example_value_and_grad(model, loss, has_aux=True)(
        params, x, t)
    assert aux == aux2 == pytest.approx(model.apply(params, x).sum())
    assert value == losses.mse(model.apply(params, x), t)
    assert grads["w"].shape == (N, 4, 3)
    np.testing.assert_array_equal(grads["w"], grads2["w"])


def test_a_users_layer_is_named_by_its_nested_path():
    def vjp(p, x):
        return x * p["a"], lambda dy: ({"a": (dy * x).reshape(-1, x.shape[-1]).sum(0)},
                                       dy * p["a"])
    own = L.Layer(lambda k, s: (s, {"a": np.ones(s[-1])}), lambda p, x: x * p["a"], vjp,
                  name="Scale")
    model = L.Sequential(L.Dense(4), L.Residual(L.Sequential(
        L.FanOut(2), L.Parallel(L.Dense(4), own), L.FanInSum())))
    params, _ = _init(model, (None, 4))
    with pytest.raises(ValueError, match=r"params\[1\]\[1\]\[1\]\['a'\] came back .* no "
                                         r"per-example rule"):
        fd.per_example_grad(model, losses.mse)(params, _x(4), _x(4))


def test_refusals_at_inference_too():
    # (SpectralNorm refused here until it had a rule; BatchThreads refuses whatever train)
    model = L.BatchThreads(L.Dense(2), 2)
    _, params = model.init(random.key(0), (None, 4))
    with pytest.raises(ValueError, match=r"BatchThreads\(Dense\(2\), threads=2\): no "
                                         r"per-example"):
        fd.per_example_grad(model, losses.mse)(params, _x(4), _x(2), train=False)


# DEFECT (fixed): BatchNorm(track_running_stats=False) at train=False refuses telling the
# caller that at inference, train=False, it has per-example gradients -- what they just passed
def test_batchnorm_without_running_stats_refuses_with_a_true_reason():
    model = L.Sequential(L.Dense(3), L.BatchNorm(track_running_stats=False))
    params, _ = _init(model, (None, 4))
    with pytest.raises(ValueError, match="no per-example gradients") as err:
        fd.per_example_grad(model, losses.mse)(params, _x(4), _x(3), train=False)
    assert "at inference, train=False, it has per-example gradients" not in str(err.value)


def test_bad_inputs_give_clear_errors():
    for model, in_shape, x, t, msg in [
        (L.RMSNorm(), (None, 4), RNG.normal(size=4), RNG.normal(size=4), "need a batch axis"),
        (L.Embedding(5, 3), (None,), np.int64(2), RNG.normal(size=3), "need a batch axis"),
        (L.Bilinear(3), ((None, 3), (None, 2)), (RNG.normal(size=3), RNG.normal(size=2)),
         RNG.normal(size=3), "need a batch axis"),
        (L.Dense(2), (None, 4), _x(4), _x(2, n=3), r"target has shape \(3, 2\)"),
        (L.Dense(3), (None, 4), _x(4), np.array([0, 1, 2]), r"must have shape \(4,\)"),
    ]:
        params, _ = _init(model, in_shape)
        with pytest.raises(ValueError, match=msg):
            fd.per_example_grad(model, losses.softmax_cross_entropy if t.dtype.kind == "i"
                                else losses.mse)(params, x, t)


# DEFECT (fixed): PReLU(c > 1) on a 1-D input fails with NumPy's bare "cannot reshape array of size
# 4 into shape (4,newaxis,4)" instead of its own "per-example gradients need a batch axis"
def test_prelu_per_channel_on_a_1d_input_names_the_missing_batch_axis():
    model = L.PReLU(4)
    params, _ = _init(model, (None, 4))
    with pytest.raises(ValueError, match=r"PReLU.*batch axis"):
        fd.per_example_grad(model, losses.mse)(params, RNG.normal(size=4), RNG.normal(size=4))


# DEFECT (fixed): a branch whose output nobody reads (Select drops it) gets no_flow's zeros in the
# params' shape, and the call fails saying its Dense "has no per-example rule"
def test_a_dropped_branch_gets_zero_per_example_grads():
    model = L.Sequential(L.FanOut(2), L.Parallel(L.Dense(3), L.Dense(2)), L.Select(1))
    params, _ = _init(model, (None, 4))
    got = fd.per_example_grad(model, losses.mse)(params, _x(4), _x(2))
    assert got[1][0]["w"].shape == (N, 4, 3) and not got[1][0]["w"].any()
    assert got[1][1]["w"].shape == (N, 4, 2)


# DEFECT (fixed): uint64 ids: ids + arange(n)·vocab is promoted to float64 and the scatter
# fails with "arrays used as indices must be of integer (or boolean) type"; grad takes the same ids
def test_embedding_with_uint64_ids():
    model = L.Sequential(L.Embedding(7, 3), L.Flatten(), L.Dense(2))
    _against_loop(model, (None, 4), RNG.integers(0, 7, (N, 4)).astype(np.uint64))


SUM = functools.partial(losses.mse, reduction="sum")
EMPTY_OK = [(L.Dense(3), (None, 2, 4)), (L.LayerNorm(), (None, 4)), (L.GroupNorm(2), (None, 3, 4)),
            (L.Conv2D(4, 3, groups=2), (None, 5, 5, 2)), (L.ConvTranspose1D(2, 3), (None, 3, 2))]
EMPTY_BAD = [(L.RMSNorm(), (None, 4)), (L.PReLU(4), (None, 3, 4)), (L.Embedding(7, 3), (None, 5)),
             (L.PositionalEmbedding(6), (None, 4, 3)), (L.Bilinear(2), ((None, 3), (None, 2))),
             (L.MultiHeadAttention(2), (None, 3, 4)), (L.LSTM(3), (None, 3, 4)),
             (L.GRU(3), (None, 3, 4)), (L.SimpleRNN(3), (None, 3, 4))]


def _empty(model, in_shape):
    params, _ = _init(model, in_shape, f64=False)
    x = (np.zeros((0, 5), np.int64) if in_shape == (None, 5) else
         tuple(np.zeros((0, *s[1:]), np.float32) for s in in_shape)
         if isinstance(in_shape[0], tuple) else np.zeros((0, *in_shape[1:]), np.float32))
    y = model.apply(params, x)
    assert tree.leaves(fd.grad(model, SUM)(params, x, np.zeros_like(y)))  # the batch's works
    got = fd.per_example_grad(model, SUM, loss_reduction="sum")(params, x, np.zeros_like(y))
    for g, p in zip(tree.leaves(got), tree.leaves(params)):
        assert g.shape == (0, *p.shape) and g.dtype == p.dtype


@pytest.mark.parametrize("model, in_shape", EMPTY_OK, ids=[m.name for m, _ in EMPTY_OK])
def test_a_batch_of_zero_gives_zero_entries(model, in_shape):
    _empty(model, in_shape)


# DEFECT (fixed): a batch of 0 fails with NumPy's "cannot reshape array of size 0 into shape
# (0,newaxis,...)" in these rules (reshape(n, -1, ...)); grad and the other rules take it
@pytest.mark.parametrize("model, in_shape", EMPTY_BAD, ids=[m.name for m, _ in EMPTY_BAD])
def test_a_batch_of_zero_in_layers_reshaping_by_minus_one(model, in_shape):
    _empty(model, in_shape)


def test_against_torch_func_vmap_grad_conv_layernorm_dense():
    torch = pytest.importorskip("torch")
    model = L.Sequential(L.Conv2D(4, 3, stride=2, padding=2, dilation=2, groups=2),
                         L.LayerNorm(), L.Flatten(), L.Dense(3))
    params, _ = _init(model, (None, 7, 6, 2))
    x, t = _x(7, 6, 2), RNG.integers(0, 3, N)
    tp = {"cw": torch.tensor(params[0]["w"].transpose(3, 2, 0, 1)),
          "cb": torch.tensor(params[0]["b"]), "s": torch.tensor(params[1]["scale"]),
          "b": torch.tensor(params[1]["bias"]), "w": torch.tensor(params[3]["w"]),
          "d": torch.tensor(params[3]["b"])}
    fn = torch.nn.functional

    def f(p, xi, ti):
        h = fn.conv2d(xi[None].permute(0, 3, 1, 2), p["cw"], p["cb"], stride=2, padding=2,
                      dilation=2, groups=2).permute(0, 2, 3, 1)
        h = fn.layer_norm(h, (4,), p["s"], p["b"], eps=1e-5).reshape(1, -1)
        return fn.cross_entropy(h @ p["w"] + p["d"], ti[None])
    want = torch.func.vmap(torch.func.grad(f), in_dims=(None, 0, 0))(
        tp, torch.tensor(x), torch.tensor(t))
    got = fd.per_example_grad(model, losses.softmax_cross_entropy)(params, x, t)
    pairs = [(got[0]["w"], want["cw"].numpy().transpose(0, 3, 4, 2, 1)),
             (got[0]["b"], want["cb"]), (got[1]["scale"], want["s"]),
             (got[1]["bias"], want["b"]), (got[3]["w"], want["w"]), (got[3]["b"], want["d"])]
    for a, b in pairs:
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-10, atol=1e-12)
    batch = fd.grad(model, losses.softmax_cross_entropy)(params, x, t)  # the plain path
    np.testing.assert_allclose(batch[0]["w"], pairs[0][1].mean(0), rtol=1e-10, atol=1e-12)


def test_against_jax_vmap_grad_embedding_positions_prelu(jax64):
    jax, jnp = jax64, jax64.numpy
    model = L.Sequential(L.Embedding(7, 4, padding_idx=0), L.PositionalEmbedding(6),
                         L.PReLU(4), L.Flatten(), L.Dense(3))
    params, _ = _init(model, (None, 5))
    ids = np.array([[3, 3, 0, 3, 1], [0, 0, 6, 6, 6], [2, 5, 2, 5, 2], [1, 1, 1, 1, 1]])
    t = _x(3)

    def f(p, xi, ti):
        h = jnp.take(p[0]["table"], xi, axis=0) + p[1]["pos"][:5]
        h = jnp.maximum(h, 0) + p[2]["a"] * jnp.minimum(h, 0)
        return jnp.mean((h.reshape(-1) @ p[4]["w"] + p[4]["b"] - ti) ** 2)
    jp = [{k: jnp.asarray(v) for k, v in q.items()} if q else q for q in params]
    want = jax.vmap(jax.grad(f), in_axes=(None, 0, 0))(jp, jnp.asarray(ids),
                                                     jnp.asarray(t))
    want[0]["table"] = want[0]["table"].at[:, 0].set(0)  # padding_idx: no gradient
    got = fd.per_example_grad(model, losses.mse)(params, ids, t)
    for a, b in zip(tree.leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-10, atol=1e-12)
