"""autodiff.per_example_value_and_grad / per_example_grad: against the loop over the rows
they replace (each row its own batch, float64), the batch's gradient as their mean, finite
differences of one example's loss, dtypes, and the layers that refuse."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, random, tree

RNG = np.random.default_rng(11)
N = 5


def _inputs(kind, shape, n=N):
    if kind == "ids":
        return RNG.integers(0, 7, (n, *shape[1:]))
    if kind == "lengths":  # (x, lengths), lengths 0 to T
        return RNG.normal(size=(n, *shape[0][1:])), np.array([5, 0, 3, 1, 4])[:n]
    if kind == "mask":  # (x, key_padding_mask), True at padding; one row all valid
        mask = np.arange(shape[1][1]) >= np.array([5, 2, 3, 1, 4])[:n, None]
        return RNG.normal(size=(n, *shape[0][1:])), mask
    if kind == "tuple":
        return tuple(RNG.normal(size=(n, *s[1:])) for s in shape)
    return RNG.normal(size=(n, *shape[1:]))


def _row(x, i):
    return tuple(a[i:i + 1] for a in x) if isinstance(x, tuple) else x[i:i + 1]


def _targets(loss, y_shape, n=N):
    if loss is losses.softmax_cross_entropy:
        return RNG.integers(0, y_shape[-1], (n, *y_shape[1:-1]))
    return RNG.normal(size=(n, *y_shape[1:]))


def _conv_net():
    return L.Sequential(L.Conv2D(4, 3, stride=2, padding=1), L.GroupNorm(2), L.ReLU(),
                        L.MaxPool2D(2, 1), L.Flatten(), L.Dense(3))


MODELS = {
    "mlp (fused Dense+ReLU)": (L.Sequential(L.Dense(6), L.ReLU(), L.Dense(3)), (None, 4),
                               losses.mse, "x"),
    "dense on (N, T, C), layernorm": (
        L.Sequential(L.Dense(5), L.LayerNorm(), L.Tanh(), L.Flatten(), L.Dense(2)),
        (None, 3, 4), losses.mse, "x"),
    "cnn, groupnorm, cross-entropy": (_conv_net(), (None, 7, 6, 2),
                                      losses.softmax_cross_entropy, "x"),
    "grouped, depthwise, dilated convs; prelu; rmsnorm": (
        L.Sequential(L.Conv2D(4, 3, groups=2, padding="SAME"), L.PReLU(4),
                     L.Conv2D(4, 3, groups=4, dilation=2, use_bias=False), L.RMSNorm(),
                     L.GlobalAvgPool(), L.Dense(2)), (None, 6, 7, 2), losses.mse, "x"),
    "conv1d, instancenorm, scalar prelu": (
        L.Sequential(L.Conv1D(6, 3, stride=2, groups=3), L.InstanceNorm(affine=True),
                     L.PReLU(), L.Flatten(), L.Dense(2)), (None, 9, 3), losses.mse, "x"),
    "embedding, positions, layernorm": (
        L.Sequential(L.Embedding(7, 4, padding_idx=0), L.PositionalEmbedding(6), L.LayerNorm(),
                     L.Flatten(), L.Dense(3)), (None, 5), losses.softmax_cross_entropy, "ids"),
    "combinators": (
        L.Sequential(L.Residual(L.Dense(4)), L.FanOut(2), L.Parallel(L.Dense(3), L.Dense(3)),
                     L.Shared(L.Dense(3)), L.FanInConcat(), L.Repeat(L.Dense(6), 2),
                     L.Remat(L.Sequential(L.Dense(2), L.Sigmoid()))), (None, 4), losses.mse,
        "x"),
    "tied": (L.Tied(L.Sequential(L.Dense(4), L.Tanh(), L.Dense(4)), [0, 2]), (None, 4),
             losses.mse, "x"),
    "transformer encoder, norm_first, gelu": (
        L.Sequential(L.TransformerEncoderLayer(4, 2, 8, dropout=0.0, norm_first=True,
                                               activation="gelu"), L.Flatten(), L.Dense(2)),
        (None, 5, 4), losses.mse, "x"),
    "attention (q, k, v), kdim, vdim, no bias": (
        L.Sequential(L.MultiHeadAttention(2, kdim=3, vdim=2, use_bias=False), L.Flatten()),
        ((None, 4, 4), (None, 6, 3), (None, 6, 2)), losses.mse, "tuple"),
    "masked causal attention, masked mean": (
        L.Sequential(L.Carry(L.MultiHeadAttention(2, causal=True, masked=True,
                                                  hidden_rows="zero")),
                     L.MaskedMean(), L.Dense(2)),
        ((None, 5, 4), (None, 5)), losses.mse, "mask"),
    "bidirectional lstm, gru reversed": (
        L.Sequential(L.Bidirectional(L.LSTM(3)), L.GRU(2, reverse=True), L.Flatten(),
                     L.Dense(2)), (None, 5, 4), losses.mse, "x"),
    "transposed convs, grouped and strided": (
        L.Sequential(L.ConvTranspose2D(4, 3, stride=2, padding=1, output_padding=1),
                     L.ConvTranspose2D(4, 2, groups=2, dilation=2), L.Flatten(), L.Dense(2)),
        (None, 3, 4, 2), losses.mse, "x"),
    "conv transpose 1d, bilinear on positions": (
        L.Sequential(L.ConvTranspose1D(4, 3, stride=2, groups=4), L.FanOut(2),
                     L.Bilinear(3), L.Flatten(), L.Dense(2)), (None, 5, 4), losses.mse, "x"),
    "bilinear, many outputs of few features": (
        L.Sequential(L.Bilinear(8), L.Dense(2)), ((None, 2), (None, 3)), losses.mse, "tuple"),
    "weight norm, every axis and one slice": (
        L.Sequential(L.WeightNorm(L.Conv2D(3, 2), dim=0), L.Flatten(),
                     L.WeightNorm(L.Dense(3), dim=None), L.Tanh(), L.WeightNorm(L.Dense(2))),
        (None, 4, 4, 2), losses.mse, "x"),
    "rnn over lengths 0 to T": (
        L.Sequential(L.SimpleRNN(3, lengths=True, return_sequences=False), L.Dense(2)),
        ((None, 5, 4), (None,)), losses.mse, "lengths"),
}


def _setup(case):
    model, in_shape, loss, kind = MODELS[case]
    y_shape, params = model.init(random.key(3), in_shape)
    params = tree.astype(params, np.float64)
    x = _inputs(kind, in_shape)
    return model, params, x, _targets(loss, (N, *y_shape[1:])), loss


@pytest.mark.parametrize("case", sorted(MODELS))
def test_equals_the_loop_over_the_rows(case):
    model, params, x, t, loss = _setup(case)
    value, grads = fd.per_example_value_and_grad(model, loss)(params, x, t)
    g = fd.grad(model, loss)
    rows = [g(params, _row(x, i), t[i:i + 1]) for i in range(N)]
    assert value == fd.value_and_grad(model, loss)(params, x, t)[0]
    for path, leaf, p in zip(tree.leaves_with_path(grads), tree.leaves(grads),
                             tree.leaves(params)):
        assert leaf.shape == (N, *p.shape) and leaf.dtype == np.float64, path
    for i in range(N):
        for (path, got), want in zip(tree.leaves_with_path(grads), tree.leaves(rows[i])):
            np.testing.assert_allclose(got[i], want, rtol=1e-11, atol=1e-13,
                                       err_msg=f"example {i}, params{path}")


@pytest.mark.parametrize("case", sorted(MODELS))
def test_their_mean_is_the_batch_gradient(case):
    model, params, x, t, loss = _setup(case)
    grads = fd.per_example_grad(model, loss)(params, x, t)
    batch = fd.grad(model, loss)(params, x, t)
    for (path, got), want in zip(tree.leaves_with_path(grads), tree.leaves(batch)):
        np.testing.assert_allclose(got.mean(axis=0), want, rtol=1e-11, atol=1e-14,
                                   err_msg=f"params{path}")


def test_a_weighted_loss_keeps_the_mean_as_the_batch_gradient():
    # class weights: the batch's mean is Σ w_y l / Σ w_y, example n's share N·w_n/Σw of it
    model, params, x, _, _ = _setup("mlp (fused Dense+ReLU)")
    t = np.array([0, 1, 2, 1, 0])
    loss = functools.partial(losses.softmax_cross_entropy, weight=np.array([1.0, 3.0, 0.5]))
    grads = fd.per_example_grad(model, loss)(params, x, t)
    batch = fd.grad(model, loss)(params, x, t)
    for got, want in zip(tree.leaves(grads), tree.leaves(batch)):
        np.testing.assert_allclose(got.mean(axis=0), want, rtol=1e-11, atol=1e-14)


def test_one_examples_gradient_against_finite_differences():
    model, params, x, t, loss = _setup("cnn, groupnorm, cross-entropy")
    grads = fd.per_example_grad(model, loss)(params, x, t)
    flat, unravel = tree.ravel(params)
    v = random.normal(random.key(9), flat.shape, np.float64)
    for i in (0, 3):
        def own(z, i=i):
            return losses.softmax_cross_entropy(model.apply(unravel(z), x[i:i + 1]), t[i:i + 1])
        h = 1e-6
        fd_i = (own(flat + h * v) - own(flat - h * v)) / (2 * h)
        g_i = tree.ravel(tree.map(lambda g, i=i: g[i], grads))[0]
        np.testing.assert_allclose(g_i @ v, fd_i, rtol=1e-6)
        # a wrong factor (the share without N) or sign would be off by far more
        assert abs(g_i @ v / N - fd_i) > 1e-3 * abs(fd_i)


def test_batchnorm_at_inference_with_state_and_aux():
    model = L.Sequential(L.Dense(4), L.BatchNorm(), L.ReLU(), L.Dense(2))
    _, params, state = model.init(random.key(0), (None, 3))
    params = tree.astype(params, np.float64)
    x, t = RNG.normal(size=(N, 3)), RNG.normal(size=(N, 2))
    _, state = model.apply(params, x, state=state, train=True)  # running statistics moved

    def loss_aux(pred, target):
        return losses.mse(pred, target), pred.mean()
    loss_aux.vjp = lambda pred, target: (  # type: ignore[attr-defined]
        (losses.mse(pred, target), pred.mean()), losses.mse.vjp(pred, target)[1])

    f = fd.per_example_value_and_grad(model, loss_aux, has_aux=True)
    (value, aux, new_state), grads = f(params, x, t, state=state, train=False)
    assert value == fd.value_and_grad(model, losses.mse)(params, x, t, state=state,
                                                         train=False)[0][0]
    assert new_state is state and np.isfinite(aux)
    g = fd.grad(model, losses.mse)
    for i in range(N):
        want, _ = g(params, x[i:i + 1], t[i:i + 1], state=state, train=False)
        for got, w in zip(tree.leaves(grads), tree.leaves(want)):
            np.testing.assert_allclose(got[i], w, rtol=1e-11, atol=1e-13)
    grads2, state2 = fd.per_example_grad(model, losses.mse)(params, x, t, state=state,
                                                             train=False)
    assert state2 is state
    for a, b in zip(tree.leaves(grads), tree.leaves(grads2)):
        np.testing.assert_array_equal(a, b)


def test_float32_stays_float32():
    model, in_shape, loss, _ = MODELS["cnn, groupnorm, cross-entropy"]
    y_shape, params = model.init(random.key(3), in_shape)
    x = RNG.normal(size=(N, *in_shape[1:])).astype(np.float32)
    grads = fd.per_example_grad(model, loss)(params, x, _targets(loss, (N, *y_shape[1:])))
    assert {g.dtype for g in tree.leaves(grads)} == {np.dtype(np.float32)}


@pytest.mark.parametrize("make, name", [
    (lambda: L.Sequential(L.Dense(3), L.BatchNorm(), L.Dense(2)), r"BatchNorm\(\): no "
     r"per-example gradients: in training its batch statistics mix the examples"),
    (lambda: L.BatchThreads(L.Dense(2), 2), r"BatchThreads\(Dense\(2\), threads=2\): no "
     r"per-example gradients: it sums its slices' gradients"),
])
def test_layers_that_cannot_give_them_refuse(make, name):
    model = make()
    out = model.init(random.key(0), (None, 3))
    kw = {"state": out[2]} if model.stateful else {}
    x, t = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2))
    with pytest.raises(ValueError, match=name + r".*rules exist for Dense, Conv1D"):
        fd.per_example_grad(model, losses.mse)(out[1], x, t, **kw)


def _scale_layer():
    """A user's own layer with params, ``y = x·a`` per feature: no per-example rule."""
    def vjp(p, x):
        return x * p["a"], lambda dy: ({"a": (dy * x).reshape(-1, x.shape[-1]).sum(0)},
                                       dy * p["a"])
    return L.Layer(lambda k, s: (s, {"a": np.ones(s[-1])}), lambda p, x: x * p["a"], vjp,
                   name="Scale")


def test_a_layer_without_a_rule_is_named_by_its_params():
    model = L.Sequential(L.Dense(4), _scale_layer(), L.Flatten(), L.Dense(2))
    _, params = model.init(random.key(0), (None, 5, 4))
    x, t = RNG.normal(size=(3, 5, 4)), RNG.normal(size=(3, 2))
    with pytest.raises(ValueError, match=r"params\[1\]\['\w+'\] came back with gradient shape "
                                         r"\(.*\), not \(3, \*\(.*\)\) for 3 examples: its layer "
                                         r"has no per-example rule"):
        fd.per_example_grad(model, losses.mse)(params, x, t)
    # and the flag does not outlive the call: the batch gradient is as before
    grads = fd.grad(model, losses.mse)(params, x, t)
    assert grads[0]["w"].shape == params[0]["w"].shape


def test_feeds_dpsgd():
    model, params, x, t, loss = _setup("mlp (fused Dense+ReLU)")
    grads = fd.per_example_grad(model, loss)(params, x, t)
    opt = fd.optim.dpsgd(learning_rate=0.1, l2_norm_clip=1.0, noise_multiplier=0.0,
                         key=random.key(0))
    updates, _ = opt.update(opt.init(params), grads, params)
    clipped, _ = fd.optim.per_example_global_norm_clip(grads, 1.0)
    for u, c in zip(tree.leaves(updates), tree.leaves(clipped)):
        np.testing.assert_allclose(u, -0.1 * c / N, rtol=1e-12, atol=1e-15)


def test_bad_calls():
    model, params, x, t, loss = _setup("mlp (fused Dense+ReLU)")
    f = fd.per_example_value_and_grad(model, loss)
    with pytest.raises(TypeError, match=r"per_example_value_and_grad: .*f\(params, x, target"):
        f(params, x, t, None)
    with pytest.raises(ValueError, match=r"Dense\(6\): per-example gradients need a batch "
                                         r"axis, got an input of shape \(4,\)"):
        f(params, x[0], t[0])
    with pytest.raises(TypeError, match=r"per_example_value_and_grad: the model must be a layer"):
        fd.per_example_value_and_grad(loss, model)


def test_a_summed_loss_with_loss_reduction_sum():
    # reduction='sum': each example's own gradient is its share, entry n with 'sum'; the
    # default 'mean' would make it N times that (Opacus' loss_reduction), so the mismatch
    # is refused (tests/test_per_example_reduction.py)
    model, params, x, t, _ = _setup("mlp (fused Dense+ReLU)")
    summed = functools.partial(losses.mse, reduction="sum")
    grads = fd.per_example_grad(model, summed, loss_reduction="sum")(params, x, t)
    g = fd.grad(model, summed)
    for i in range(N):
        for got, want in zip(tree.leaves(grads), tree.leaves(g(params, x[i:i + 1], t[i:i + 1]))):
            np.testing.assert_allclose(got[i], want, rtol=1e-11, atol=1e-13)
    with pytest.raises(ValueError, match=r"loss_reduction must be 'mean' or 'sum', how the "
                                         r"loss reduces over the batch, got 'none'"):
        fd.per_example_grad(model, summed, loss_reduction="none")


@pytest.mark.parametrize("train", [False, True])
def test_spectral_norm_with_its_state(train):
    # sigma from the state's power iteration, which does not read x: each row's call moves
    # u, v as the batch's does, so even in training the loop is the oracle
    model = L.Sequential(L.SpectralNorm(L.Dense(3)), L.Tanh(),
                         L.SpectralNorm(L.Conv1D(2, 2), dim=None), L.Flatten(), L.Dense(2))
    _, params, state = model.init(random.key(0), (None, 4, 3))
    params, state = tree.astype(params, np.float64), tree.astype(state, np.float64)
    x, t = RNG.normal(size=(N, 4, 3)), RNG.normal(size=(N, 2))
    grads, new_state = fd.per_example_grad(model, losses.mse)(params, x, t, state=state,
                                                               train=train)
    g = fd.grad(model, losses.mse)
    for i in range(N):
        want, row_state = g(params, x[i:i + 1], t[i:i + 1], state=state, train=train)
        for got, w in zip(tree.leaves(grads), tree.leaves(want)):
            np.testing.assert_allclose(got[i], w, rtol=1e-11, atol=1e-13)
        for a, b in zip(tree.leaves(new_state), tree.leaves(row_state)):
            np.testing.assert_array_equal(a, b)
