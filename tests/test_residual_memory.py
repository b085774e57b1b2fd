"""What a pullback keeps between the passes: an activation keeps only what its vjp reads
(``Pointwise.reads``), so a fused Dense + ReLU holds its output, not its input too
(tracemalloc, deterministic); a user's Pointwise with ``reads`` runs through the guard."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import funcdl as fd
from funcdl.layers import (
    ELU,
    Dense,
    Layer,
    MaxPool2D,
    Pointwise,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from funcdl.testing import check_vjp

KEY = fd.random.key(0)


def held(model, params, x):
    """Bytes allocated by vjp and still held after it returned, its output left out."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        y, pullback = model.vjp(params, x)
        kept = tracemalloc.get_traced_memory()[0] - base - y.nbytes
        pullback(np.ones_like(y))
        return kept, y.nbytes
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("act", [ReLU, Tanh, Sigmoid])
def test_fused_dense_keeps_no_pre_activation(act):
    """Dense(1024) + act on (256, 1024): the output y is the only activation kept (the
    pre-activation h, another 1 MiB, was kept too before ``reads``)."""
    model = Sequential(Dense(1024), act())
    _, params = model.init(KEY, (None, 1024))
    x = np.ones((256, 1024), np.float32)
    kept, y_bytes = held(model, params, x)
    assert kept < y_bytes // 4, (kept, y_bytes)


def test_stack_keeps_one_activation_per_layer():
    """4 x (Dense(512) + ReLU): 3 outputs are kept besides the returned one (each the
    next Dense's input), not 7."""
    model = Sequential(*[m for _ in range(4) for m in (Dense(512), ReLU())])
    _, params = model.init(KEY, (None, 512))
    x = np.ones((256, 512), np.float32)
    kept, y_bytes = held(model, params, x)
    assert 3 * y_bytes <= kept < 3.5 * y_bytes, (kept, y_bytes)


def test_relu_after_maxpool_keeps_no_pooled_input():
    """MaxPool2D(2) then ReLU (fused): the pool's window masks and the output, not the
    pooled pre-activation too."""
    model = Sequential(MaxPool2D(2), ReLU())
    x = np.random.default_rng(0).normal(size=(16, 32, 32, 16)).astype(np.float32)
    _, params = model.init(KEY, x.shape)
    kept, y_bytes = held(model, params, x)
    pooled = Sequential(MaxPool2D(2))
    kept_pool, _ = held(pooled, ((),), x)
    assert kept < kept_pool + y_bytes // 4, (kept, kept_pool, y_bytes)


def test_standalone_activation_keeps_what_df_reads():
    """ReLU alone keeps y (x is the caller's to drop); ELU keeps x, not y too."""
    x = np.random.default_rng(1).normal(size=(512, 512)).astype(np.float32)
    for act in (ReLU(), ELU()):
        xc = x.copy()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            y, pullback = act.vjp((), xc)
            del xc  # the caller's input: ELU's pullback keeps it, ReLU's not
            kept = tracemalloc.get_traced_memory()[0] - base
            del y
            kept_no_y = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        assert kept < 1.25 * x.nbytes, (act, kept)  # one of x and y, not both
        # ReLU's pullback holds y: dropping the caller's frees nothing; ELU's holds x only
        want = (x.nbytes if act.pointwise.reads == "y" else 0)
        assert abs(kept_no_y - want) < x.nbytes // 4, (act, kept_no_y)
        del pullback


def _user_relu(reads):
    f = lambda x: np.maximum(x, 0)  # noqa: E731
    df = ((lambda x, y, dy: dy * (y > 0)) if reads == "y" else
          (lambda x, y, dy: dy * (x > 0)))

    def vjp(params, x):
        y = f(x)
        return y, lambda dy: (params, df(x, y, dy))

    return Layer(lambda key, s: (s, ()), lambda p, x: f(x), vjp, name="MyReLU",
                 pointwise=Pointwise("MyReLU", f, df, reads=reads))


@pytest.mark.parametrize("reads", ["x", "y", "xy"])
def test_user_pointwise_with_reads_fuses_and_differentiates(reads):
    """A user's Pointwise declaring what its df reads is fused after Dense (it gets None
    for the other) with the gradients of the unfused pair."""
    model = Sequential(Dense(3), _user_relu(reads))
    _, params = model.init(KEY, (None, 4))
    x = np.random.default_rng(2).normal(size=(5, 4))
    params64 = fd.tree.map(lambda a: a.astype(np.float64), params)
    check_vjp(model, params64, x)
    y, pb = model.vjp(params64, x)
    dp, _ = pb(np.ones_like(y))
    h = x @ params64[0]["w"] + params64[0]["b"]
    np.testing.assert_allclose(dp[0]["w"], x.T @ (h > 0).astype(float), rtol=1e-12)


def test_pointwise_reads_refused_when_not_x_y_or_xy():
    f = lambda x: x  # noqa: E731
    with pytest.raises(ValueError, match=r"MyId.*reads must be 'x', 'y' or 'xy'.*'z'"):
        Layer(lambda key, s: (s, ()), lambda p, x: x, lambda p, x: (x, None), name="MyId",
              pointwise=Pointwise("MyId", f, lambda x, y, dy: dy, reads="z"))


@pytest.mark.parametrize("norm", [fd.layers.LayerNorm, fd.layers.BatchNorm, fd.layers.RMSNorm])
def test_norm_then_relu_keeps_one_copy(norm):
    """LayerNorm/BatchNorm/RMSNorm + ReLU on (256, 1024): the norm's pullback keeps x̂ (or
    x - μ) and its output's shape, not the output, which the ReLU's pullback drops too."""
    model = Sequential(norm(), ReLU())
    _, params, *state = model.init(KEY, (None, 1024))
    x = np.random.default_rng(3).normal(size=(256, 1024)).astype(np.float32)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        if state:
            y, pullback, _ = model.vjp(params, x, state=state[0], train=True)
        else:
            y, pullback = model.vjp(params, x)
        kept = tracemalloc.get_traced_memory()[0] - base - y.nbytes
    finally:
        tracemalloc.stop()
    assert kept < 1.25 * x.nbytes, kept
    del pullback


def test_conv_by_offsets_keeps_no_padded_copy():
    """Conv2D(16, 3, SAME) + ReLU, twice, on (24, 28, 28, 16) (an im2col buffer past 8 MiB:
    the convolution goes by kernel offset and its pullback reads the input): one activation
    is held, the ReLU's output that the second Conv2D reads, not a padded copy of each
    Conv2D's input (which made 3 more)."""
    model = Sequential(fd.layers.Conv2D(16, 3, padding="SAME"), ReLU(),
                       fd.layers.Conv2D(16, 3, padding="SAME"), ReLU())
    _, params = model.init(KEY, (None, 28, 28, 16))
    x = np.random.default_rng(4).normal(size=(24, 28, 28, 16)).astype(np.float32)
    kept, y_bytes = held(model, params, x)
    assert kept < 1.25 * y_bytes, (kept, y_bytes)


def test_a_user_pointwise_whose_reads_is_wrong_is_named():
    """df reads x but reads='y' says not: the error names the activation and its reads,
    not the Dense before it, whose pullback runs the fused df."""
    f = lambda x: x / (1 + np.abs(x))  # noqa: E731
    df = lambda x, y, dy: dy / (1 + np.abs(x)) ** 2  # noqa: E731

    def vjp(params, x):
        y = f(x)
        return y, lambda dy: (params, df(x, y, dy))

    act = Layer(lambda key, s: (s, ()), lambda p, x: f(x), vjp, name="Softsign",
                pointwise=Pointwise("Softsign", f, df, reads="y"))
    model = Sequential(Dense(3), act)
    _, params = model.init(KEY, (None, 2))
    y, pullback = model.vjp(params, np.ones((4, 2), np.float32))
    with pytest.raises(TypeError, match=r"Softsign: its Pointwise df failed .* None for x, "
                                        r"which its reads='y' says it does not read"):
        pullback(np.ones_like(y))
