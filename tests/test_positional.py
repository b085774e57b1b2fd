"""PositionalEmbedding and SinusoidalPositionalEncoding: known values, the vjp by hand (the
batch sum, not the mean) and by finite differences, the sinusoids against the formula,
dtypes, the cache, errors, and a transformer that tells positions apart only with them.
(PyTorch has no positional layer built in: no cross-check.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

import funcdl as fd
from funcdl import initializers, random
from funcdl import layers as L
from funcdl.layers.positional import (
    PositionalEmbedding,
    SinusoidalPositionalEncoding,
    _sinusoids,
    _table,
)
from funcdl.testing import check_layer, check_vjp


def table(max_len: int, e: int) -> np.ndarray:
    """pos[t, j] = 10 t + j: every entry tells its row and column."""
    return (10 * np.arange(max_len)[:, None] + np.arange(e)).astype(np.float32)


def pe_by_formula(t: int, e: int, base: float = 10000.0) -> np.ndarray:
    """Vaswani et al.'s PE, entry by entry with math.sin/cos (a reference, not fast)."""
    out = np.zeros((t, e))
    for p in range(t):
        for j in range(e):
            angle = p / base ** ((j - j % 2) / e)
            out[p, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return out


# ---------------------------------------------------------------------------- learned

@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 3, 4), (2, 3, 5, 4), (2, 0, 4), (0, 5, 4)])
def test_learned_adds_the_first_t_rows(shape):
    layer, pos = PositionalEmbedding(5), table(5, 4)
    x = random.normal(random.key(1), shape)
    y = layer.apply({"pos": pos}, x)
    assert y.shape == shape and y.dtype == np.float32
    np.testing.assert_array_equal(y, x + pos[:shape[-2]])
    out_shape, params = layer.init(random.key(0), (None, *shape[1:]))
    assert out_shape == (None, *shape[1:]) and params["pos"].shape == (5, 4)
    assert layer.init(random.key(0), (None, None, 4))[0] == (None, None, 4)  # T unknown


def test_learned_default_w_init_is_normal_002_and_w_init_is_used():
    _, params = PositionalEmbedding(500).init(random.key(0), (None, 7, 64))
    pos = params["pos"]
    assert pos.shape == (500, 64) and pos.dtype == np.float32
    assert abs(pos.mean()) < 1e-3 and abs(pos.std() - 0.02) < 5e-4
    _, params = PositionalEmbedding(3, w_init=initializers.ones()).init(random.key(0),
                                                                         (2, 3, 2))
    np.testing.assert_array_equal(params["pos"], np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match=r"PositionalEmbedding\(3\).*w_init"):
        PositionalEmbedding(3, w_init=initializers.normal)
    with pytest.raises(TypeError, match="init"):  # the old keyword is gone
        PositionalEmbedding(3, init=initializers.ones())  # type: ignore[call-arg]


def test_learned_vjp_is_the_batch_sum_exactly():
    """dpos is Σ over the batch (not its mean, not negated), zero past T; dx is dy: with
    integer-valued dy every sum is exact, so any wrong factor or sign shows."""
    layer, pos = PositionalEmbedding(6), table(6, 3)
    x = np.zeros((3, 4, 3), np.float32)
    dy = (np.arange(36).reshape(3, 4, 3) % 7 - 3).astype(np.float32)
    _, pullback = layer.vjp({"pos": pos}, x)
    grads, dx = pullback(dy)
    want = np.zeros((6, 3), np.float32)
    want[:4] = dy[0] + dy[1] + dy[2]
    np.testing.assert_array_equal(grads["pos"], want)
    assert not np.array_equal(grads["pos"], want / 3)  # the mean would differ here
    np.testing.assert_array_equal(dx, dy)
    assert grads["pos"].dtype == dx.dtype == np.float32
    grads2, dx2 = pullback(dy, need_dx=False)
    assert dx2 is None
    np.testing.assert_array_equal(grads2["pos"], want)
    # every leading axis is summed; a batch of one sequence is its own sum
    dy4 = np.ones((2, 3, 4, 3), np.float32)
    grads, _ = layer.vjp({"pos": pos}, np.zeros_like(dy4))[1](dy4)
    np.testing.assert_array_equal(grads["pos"][:4], np.full((4, 3), 6.0))
    grads, _ = layer.vjp({"pos": pos}, x[:1])[1](dy[1:2])
    np.testing.assert_array_equal(grads["pos"][:4], dy[1])


@pytest.mark.parametrize("shape", [(3, 4, 2), (1, 4, 2), (2, 2, 5, 3), (2, 6, 3)])
def test_learned_finite_differences(shape):
    layer = PositionalEmbedding(6)
    _, params = layer.init(random.key(0), shape)
    check_vjp(layer, params, random.normal(random.key(2), shape, np.float64))


def test_learned_check_layer():
    check_layer(PositionalEmbedding(8), (None, 5, 4))
    check_layer(PositionalEmbedding(3), (None, 3, 1))


def test_learned_dtypes():
    layer = PositionalEmbedding(4)
    pos32 = table(4, 2)
    x32 = np.ones((2, 3, 2), np.float32)
    y, pb = layer.vjp({"pos": pos32}, x32)
    grads, dx = pb(np.ones_like(y))
    assert y.dtype == grads["pos"].dtype == dx.dtype == np.float32
    # integers and bools take the table's dtype, as Dense's inputs do
    np.testing.assert_array_equal(layer.apply({"pos": pos32}, x32.astype(np.int64)), y)
    assert layer.apply({"pos": pos32.astype(np.float64)}, x32 > 0).dtype == np.float64
    # float64 x, float32 table: a float64 output, the table's gradient still float32
    y, pb = layer.vjp({"pos": pos32}, x32.astype(np.float64))
    grads, dx = pb(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float64 and grads["pos"].dtype == np.float32
    # float32 x, float64 table: dx back in x's dtype
    y, pb = layer.vjp({"pos": pos32.astype(np.float64)}, x32)
    grads, dx = pb(np.ones_like(y))
    assert dx.dtype == np.float32 and grads["pos"].dtype == np.float64


def test_learned_too_long_and_bad_shapes():
    layer = PositionalEmbedding(4)
    params = {"pos": table(4, 3)}
    for call in (lambda: layer.apply(params, np.zeros((2, 5, 3), np.float32)),
                 lambda: layer.vjp(params, np.zeros((1, 5, 3), np.float32)),
                 lambda: layer.init(random.key(0), (None, 5, 3))):
        with pytest.raises(ValueError, match=r"(?s)PositionalEmbedding\(4\).*T=5.*max_len=4"
                                             r".*PositionalEmbedding\(5\)"):
            call()
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\).*\(\.\.\., T, 3\).*"
                                         r"\(2, 3, 2\)"):
        layer.apply(params, np.zeros((2, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\).*\(\.\.\., T, E\).*\(3,\)"):
        layer.apply(params, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"params\['pos'\] must have shape \(4, E\).*\(5, 3\)"):
        layer.apply({"pos": table(5, 3)}, np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\).*known size > 0"):
        layer.init(random.key(0), (None, 3, None))
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\).*rank >= 3"):
        layer.init(random.key(0), (3,))
    _, pullback = layer.vjp(params, np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"PositionalEmbedding\(4\).*\(2, 3, 3\).*\(3, 3\)"):
        pullback(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="PositionalEmbedding: max_len must be >= 1"):
        PositionalEmbedding(0)
    with pytest.raises(TypeError, match="PositionalEmbedding: max_len must be an int"):
        PositionalEmbedding(2.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- sinusoidal

@pytest.mark.parametrize(("t", "e", "base"), [(7, 6, 10000.0), (5, 5, 10000.0), (4, 8, 100.0),
                                              (3, 1, 10000.0)])
def test_sinusoids_match_the_formula(t, e, base):
    layer = SinusoidalPositionalEncoding(base=base)
    pe = layer.apply((), np.zeros((1, t, e)))[0]
    np.testing.assert_allclose(pe, pe_by_formula(t, e, base), rtol=1e-13, atol=1e-15)


def test_sinusoid_entries_by_hand():
    pe = SinusoidalPositionalEncoding().apply((), np.zeros((1, 50, 8)))[0]
    np.testing.assert_array_equal(pe[0], [0, 1, 0, 1, 0, 1, 0, 1])
    # PE[t, 2i] = sin(t / 10000^(2i/8)): i = 1 at t = 3, its cos partner, and i = 3 at t = 49
    assert pe[3, 2] == pytest.approx(math.sin(3 / 10000 ** 0.25), rel=1e-14)
    assert pe[3, 3] == pytest.approx(math.cos(3 / 10000 ** 0.25), rel=1e-14)
    assert pe[49, 6] == pytest.approx(math.sin(49 / 10000 ** 0.75), rel=1e-14)
    assert pe[1, 0] == pytest.approx(math.sin(1.0), rel=1e-15)  # the fastest: wavelength 2π
    # E odd: the last column is the formula's sine (2i = E - 1)
    odd = SinusoidalPositionalEncoding().apply((), np.zeros((1, 4, 5)))[0]
    np.testing.assert_allclose(odd[:, 4], np.sin(np.arange(4) / 10000 ** 0.8), rtol=1e-14)
    np.testing.assert_array_equal(odd[0], [0, 1, 0, 1, 0])


def test_sinusoid_adds_to_every_leading_axis_and_dx_is_dy():
    layer = SinusoidalPositionalEncoding(6)
    x = random.normal(random.key(3), (2, 3, 4, 5))
    y, pullback = layer.vjp((), x)
    np.testing.assert_array_equal(y, x + pe_by_formula(4, 5).astype(np.float32))
    dy = random.normal(random.key(4), y.shape)
    dparams, dx = pullback(dy)
    assert dparams == ()
    np.testing.assert_array_equal(dx, dy)
    assert pullback(dy, need_dx=False) == ((), None)
    assert layer.init(random.key(0), (None, None, 4))[0] == (None, None, 4)


def test_sinusoid_float32_is_float64_cast_and_cached_read_only():
    x32 = np.zeros((1, 2048, 16), np.float32)
    y = SinusoidalPositionalEncoding().apply((), x32)
    assert y.dtype == np.float32
    pe64 = SinusoidalPositionalEncoding().apply((), x32.astype(np.float64))
    np.testing.assert_array_equal(y, pe64.astype(np.float32))
    a, b = _sinusoids(5, 4, 10000.0, np.dtype(np.float32)), _sinusoids(5, 4, 10000.0,
                                                                       np.dtype(np.float32))
    # views of one cached table: the same memory, never writable
    assert a.base is b.base and a.base is not None
    assert not a.flags.writeable and a.dtype == np.float32
    assert _sinusoids(5, 4, 10000.0, np.dtype(np.float64)) is not a
    out = SinusoidalPositionalEncoding().apply((), np.zeros((1, 5, 4), np.float32))
    assert out.flags.writeable and not np.shares_memory(out, a)  # the caller's own array
    # integers take float32, the default float, as the other layers without params do
    assert SinusoidalPositionalEncoding().apply((), np.zeros((1, 2, 3), np.int64)).dtype == (
        np.float32)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("e", "base"), [(8, 10000.0), (5, 100.0), (1, 10000.0)])
def test_sinusoid_rows_do_not_depend_on_the_table_length(dtype, e, base):
    """A row of the table is bit for bit the same in a table of 5 rows or of 100, so a
    longer cached table cut to T gives what a table of T rows would."""
    dt = np.dtype(dtype)
    np.testing.assert_array_equal(_table(5, e, base, dt), _table(100, e, base, dt)[:5])
    layer = SinusoidalPositionalEncoding(base=base)
    short = layer.apply((), np.zeros((1, 5, e), dtype))
    long = layer.apply((), np.zeros((1, 100, e), dtype))
    assert short.dtype == dt
    np.testing.assert_array_equal(short, long[:, :5])


def test_sinusoid_cache_holds_one_table_per_power_of_two():
    """T = 1 .. 2048 reads 6 tables (64 rows, then 128, 256 .. 2048), not 2048 of them;
    max_len caps the length; every T gets a read-only (T, E) view of the first rows."""
    dt = np.dtype(np.float64)
    tables: list[np.ndarray] = []
    for t in range(1, 2049):
        pe = _sinusoids(t, 4, 10000.0, dt)
        assert pe.shape == (t, 4) and not pe.flags.writeable and pe.flags.c_contiguous
        if not any(pe.base is table for table in tables):
            tables.append(pe.base)
    assert [len(table) for table in tables] == [64, 128, 256, 512, 1024, 2048]
    assert _sinusoids(65, 4, 10000.0, dt).base is _sinusoids(128, 4, 10000.0, dt).base
    assert _sinusoids(129, 4, 10000.0, dt).base is not _sinusoids(128, 4, 10000.0, dt).base
    # max_len below the rounded length: the table stops at max_len
    assert _sinusoids(3, 4, 10000.0, dt, 10).base.shape == (10, 4)
    assert _sinusoids(70, 4, 10000.0, dt, 100).base.shape == (100, 4)
    assert _sinusoids(70, 4, 10000.0, dt, 1000).base.shape == (128, 4)
    with pytest.raises(ValueError, match="read-only"):
        _sinusoids(3, 4, 10000.0, dt)[0, 0] = 1.0
    assert _table.cache_info().maxsize <= 16  # a bounded cache: a few tables at most


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 3, 5), (2, 2, 3, 3)])
def test_sinusoid_finite_differences(shape):
    check_vjp(SinusoidalPositionalEncoding(), (), random.normal(random.key(2), shape, np.float64))


def test_sinusoid_check_layer():
    check_layer(SinusoidalPositionalEncoding(), (None, 5, 4))
    check_layer(SinusoidalPositionalEncoding(3, base=100.0), (None, 3, 3))


def test_sinusoid_errors():
    layer = SinusoidalPositionalEncoding(4)
    for call in (lambda: layer.apply((), np.zeros((2, 5, 3))),
                 lambda: layer.init(random.key(0), (None, 5, 3))):
        with pytest.raises(ValueError, match=r"(?s)SinusoidalPositionalEncoding\(4\).*T=5.*"
                                             r"max_len=4.*max_len=5"):
            call()
    with pytest.raises(ValueError, match=r"SinusoidalPositionalEncoding\(\).*\(\.\.\., T, E\)"):
        SinusoidalPositionalEncoding().apply((), np.zeros(3))
    with pytest.raises(ValueError, match=r"SinusoidalPositionalEncoding\(\).*no parameters"):
        SinusoidalPositionalEncoding().apply({"pos": np.zeros((3, 2))}, np.zeros((3, 2)))
    _, pullback = layer.vjp((), np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"SinusoidalPositionalEncoding\(4\).*\(2, 3, 3\)"):
        pullback(np.zeros((2, 3)))
    for base in (1.0, 0.5, -1.0, math.inf):
        with pytest.raises(ValueError, match="SinusoidalPositionalEncoding: base"):
            SinusoidalPositionalEncoding(base=base)
    with pytest.raises(ValueError, match="SinusoidalPositionalEncoding: max_len must be >= 1"):
        SinusoidalPositionalEncoding(0)
    assert SinusoidalPositionalEncoding(16, base=100.0).name == (
        "SinusoidalPositionalEncoding(16, base=100)")


# ---------------------------------------------------------------------------- training

T, D = 8, 16


def train(pos: L.Layer | None, steps: int = 40) -> tuple[float, float, np.ndarray]:
    """A one-block transformer trained to name each token's position from a constant input:
    (accuracy, final loss, logits)."""
    model = L.Sequential(*([pos] if pos is not None else []),
                         L.TransformerEncoderLayer(D, 2, 2 * D, dropout=0.0), L.Dense(T))
    _, params = model.init(random.key(1), (None, T, D))
    x, target = np.ones((1, T, D), np.float32), np.arange(T)[None]
    f = fd.value_and_grad(model, fd.losses.softmax_cross_entropy)
    opt = fd.optim.adam(3e-2)
    state = opt.init(params)
    for _ in range(steps):
        loss, grads = f(params, x, target)
        updates, state = opt.update(state, grads, params)
        params = fd.optim.apply_updates(params, updates)
    logits = model.apply(params, x)
    return float((logits.argmax(-1) == target).mean()), float(loss), logits


def test_a_transformer_tells_positions_apart_only_with_them():
    # without positions attention is permutation-equivariant: every position of a constant
    # input gets the same logits, so at best 1/T right, and the loss stays at log T
    acc, loss, logits = train(None)
    assert acc == 1 / T and loss > math.log(T) - 1e-3
    np.testing.assert_allclose(logits[0], np.broadcast_to(logits[0, :1], logits[0].shape),
                               rtol=1e-5, atol=1e-6)
    for pos in (PositionalEmbedding(T), SinusoidalPositionalEncoding()):
        acc, loss, _ = train(pos)
        assert acc == 1.0 and loss < 0.1, (pos, acc, loss)
