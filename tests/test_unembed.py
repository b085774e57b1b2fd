"""Unembed, the scores of a vector against every row of a table (a language model's output
head): finite differences in float64, a closed form in small integers, the equivalence with
a Dense of weight tableᵀ (values and dtypes), weight tying with an Embedding (gradients the
sum of both uses; a tiny tied LM against PyTorch's ``head.weight = emb.weight``),
per-example gradients against a loop over the rows, and bad inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import funcdl as fd
from funcdl import initializers, losses, optim, random, tree
from funcdl import layers as L
from funcdl.testing import check_layer, check_vjp

KEY = random.key(0)
RNG = np.random.default_rng(0)


def _params64(layer: L.Layer, in_shape: tuple[Any, ...]) -> dict[str, np.ndarray]:
    _, params = layer.init(KEY, in_shape)
    return {k: v.astype(np.float64) for k, v in params.items()}


@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("shape", [(2, 3), (2, 4, 3), (3,)])
def test_finite_differences_in_float64(use_bias: bool, shape: tuple[int, ...]) -> None:
    layer = L.Unembed(5, use_bias=use_bias)
    if len(shape) > 1:
        check_layer(layer, shape)
    check_vjp(layer, _params64(layer, (None, 3)), RNG.standard_normal(shape))


# table (3, 2), x (2, 2), dy (2, 3), b (3,): every product worked out by hand
TABLE = np.array([[1, 2], [3, -1], [0, 4]], np.float64)
X = np.array([[1, -2], [2, 1]], np.float64)
B = np.array([1, 0, -1], np.float64)
DY = np.array([[1, 0, 2], [0, -1, 1]], np.float64)
Y = np.array([[-3 + 1, 5 + 0, -8 - 1], [4 + 1, 5 + 0, 4 - 1]])  # x @ tableᵀ + b
DTABLE = np.array([[1, -2], [-2, -1], [2 + 2, -4 + 1]])  # Σ_n dy[n, v] x[n]
DB = np.array([1, -1, 3])
DX = np.array([[1 + 0 + 0, 2 + 0 + 8], [0 - 3 + 0, 0 + 1 + 4]])  # dy @ table


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lead", [(2,), (1, 2), (2, 1)])
def test_closed_form_in_small_integers(dtype: Any, lead: tuple[int, ...]) -> None:
    """A sign, a factor of 2 or a transposed table would change these exact values."""
    params = {"table": TABLE.astype(dtype), "b": B.astype(dtype)}
    x = X.astype(dtype).reshape(*lead, 2)
    layer = L.Unembed(3, use_bias=True)
    y, pullback = layer.vjp(params, x)
    np.testing.assert_array_equal(y, Y.reshape(*lead, 3))
    np.testing.assert_array_equal(layer.apply(params, x), y)
    grads, dx = pullback(DY.astype(dtype).reshape(*lead, 3))
    np.testing.assert_array_equal(grads["table"], DTABLE)
    np.testing.assert_array_equal(grads["b"], DB)
    np.testing.assert_array_equal(dx, DX.reshape(*lead, 2))
    assert y.dtype == dx.dtype == grads["table"].dtype == grads["b"].dtype == dtype
    # without a bias: the same products; need_dx=False skips dx alone
    plain = L.Unembed(3)
    y0, pullback0 = plain.vjp({"table": params["table"]}, x)
    np.testing.assert_array_equal(y0, (Y - B).reshape(*lead, 3))
    g0, none = pullback0(DY.astype(dtype).reshape(*lead, 3), need_dx=False)
    assert none is None and set(g0) == {"table"} and plain.dx_optional
    np.testing.assert_array_equal(g0["table"], DTABLE)


DT = [np.float32, np.float64]


@pytest.mark.parametrize("x_dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("t_dtype", DT)
@pytest.mark.parametrize("b_dtype", DT)
def test_is_dense_of_the_transposed_table_in_values_and_dtypes(x_dtype: Any, t_dtype: Any,
                                                                b_dtype: Any) -> None:
    """Dense(V) with w = tableᵀ: the same outputs, dx and (transposed) gradients, in the
    same dtypes over mixed inputs (float32 stays float32, ints take the table's dtype)."""
    table = RNG.standard_normal((7, 4)).astype(t_dtype)
    b = RNG.standard_normal(7).astype(b_dtype)
    x = (RNG.standard_normal((3, 5, 4)) * 3).astype(x_dtype)
    y, pb = L.Unembed(7, use_bias=True).vjp({"table": table, "b": b}, x)
    y_ref, pb_ref = L.Dense(7).vjp({"w": table.T.copy(), "b": b}, x)
    assert y.dtype == y_ref.dtype and y.shape == (3, 5, 7)
    dy = RNG.standard_normal(y.shape).astype(y.dtype)
    (g, dx), (g_ref, dx_ref) = pb(dy), pb_ref(dy)
    tol = {"rtol": 1e-5, "atol": 1e-5} if np.float32 in (y.dtype, t_dtype) else {"rtol": 1e-12}
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(g["table"], g_ref["w"].T, **tol)
    np.testing.assert_allclose(g["b"], g_ref["b"], **tol)
    np.testing.assert_allclose(dx, dx_ref, **tol)
    assert (g["table"].dtype, g["b"].dtype, dx.dtype) == (g_ref["w"].dtype, g_ref["b"].dtype,
                                                          dx_ref.dtype)
    assert g["table"].dtype == t_dtype and g["b"].dtype == b_dtype
    assert g["table"].flags.c_contiguous  # (vocab, dim) as computed, not a transposed view


def test_default_init_is_torch_linear_and_inits_are_used() -> None:
    out, params = L.Unembed(1000, use_bias=True).init(KEY, (None, 7, 16))
    assert out == (None, 7, 1000)
    t, b = params["table"], params["b"]
    assert t.shape == (1000, 16) and b.shape == (1000,) and t.dtype == b.dtype == np.float32
    for a in (t, b):  # U(±1/sqrt(dim)) = U(±0.25), as nn.Linear(16, 1000)
        assert np.abs(a).max() < 0.25 and np.abs(a).max() > 0.24
        assert abs(a.std() - 0.25 / np.sqrt(3)) < 0.01
    _, params = L.Unembed(5, use_bias=True, w_init=initializers.ones(),
                          b_init=initializers.zeros()).init(KEY, (None, 3))
    np.testing.assert_array_equal(params["table"], np.ones((5, 3), np.float32))
    np.testing.assert_array_equal(params["b"], np.zeros(5, np.float32))
    # for one key, the default draws are Dense(vocab)'s, the table its w transposed
    _, dense = L.Dense(1000).init(KEY, (None, 7, 16))
    np.testing.assert_array_equal(t, dense["w"].T)
    np.testing.assert_array_equal(b, dense["b"])
    assert t.flags.c_contiguous


V, D = 7, 4


def _lm(use_bias: bool) -> tuple[L.Layer, L.Layer]:
    """The tiny LM ``Embedding -> Dense -> ReLU -> Unembed``, tied and untied."""
    body = L.Sequential(L.Embedding(V, D), L.Dense(D), L.ReLU(), L.Unembed(V, use_bias=use_bias))
    return L.Tied(body, [(0, "table"), (3, "table")]), body


def _batch(n: int = 3, t: int = 5) -> tuple[np.ndarray, np.ndarray]:
    return RNG.integers(0, V, (n, t)), RNG.integers(0, V, (n, t))


@pytest.mark.parametrize("use_bias", [False, True])
def test_tied_gradient_is_the_sum_of_both_uses(use_bias: bool) -> None:
    tied, body = _lm(use_bias)
    out, params = tied.init(KEY, (None, 5))
    assert out == (None, 5, V) and params[3]["table"] is None
    assert params[0]["table"].shape == (V, D)
    ids, labels = _batch()
    full = [params[0], params[1], params[2],
            {**params[3], "table": params[0]["table"]}]
    loss, grads = fd.value_and_grad(tied, losses.softmax_cross_entropy)(params, ids, labels)
    loss_u, grads_u = fd.value_and_grad(body, losses.softmax_cross_entropy)(full, ids, labels)
    assert loss == loss_u and grads[3]["table"] is None
    np.testing.assert_allclose(grads[0]["table"], grads_u[0]["table"] + grads_u[3]["table"],
                               rtol=1e-6, atol=1e-7)
    assert np.abs(grads_u[3]["table"]).max() > 1e-3  # the head's share is not nothing
    if use_bias:
        np.testing.assert_array_equal(grads[3]["b"], grads_u[3]["b"])
    check_layer(tied, (2, 5))


@pytest.mark.parametrize("use_bias", [False, True])
def test_tied_lm_trains_as_torch_with_head_weight_set_to_embedding_weight(use_bias: bool
                                                                          ) -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    tied, _ = _lm(use_bias)
    _, params = tied.init(KEY, (None, 5))
    params = tree.map(lambda a: None if a is None else a.astype(np.float64), params)
    emb, lin, head = nn.Embedding(V, D), nn.Linear(D, D), nn.Linear(D, V, bias=use_bias)
    head.weight = emb.weight  # PyTorch's tying: one Parameter at both places
    net = nn.Sequential(emb, lin, nn.ReLU(), head).double()
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(params[0]["table"]))
        lin.weight.copy_(torch.from_numpy(params[1]["w"].T))
        lin.bias.copy_(torch.from_numpy(params[1]["b"]))
        if use_bias:
            head.bias.copy_(torch.from_numpy(params[3]["b"]))
    assert head.weight is emb.weight and len(list(net.parameters())) == 3 + use_bias
    opt, topt = optim.sgd(0.5), torch.optim.SGD(net.parameters(), lr=0.5)
    state = opt.init(params)
    step = fd.value_and_grad(tied, losses.softmax_cross_entropy)
    for k in range(5):
        ids, labels = _batch()
        loss, grads = step(params, ids, labels)
        updates, state = opt.update(state, grads, params)
        params = optim.apply_updates(params, updates)
        topt.zero_grad()
        logits = net(torch.from_numpy(ids))
        tloss = nn.functional.cross_entropy(logits.reshape(-1, V),
                                            torch.from_numpy(labels).reshape(-1))
        tloss.backward()
        topt.step()
        assert abs(float(loss) - tloss.item()) < 1e-10, k
    np.testing.assert_allclose(params[0]["table"], emb.weight.detach().numpy(), rtol=0,
                               atol=1e-10)
    np.testing.assert_allclose(params[1]["w"], lin.weight.detach().numpy().T, rtol=0, atol=1e-10)
    if use_bias:
        np.testing.assert_allclose(params[3]["b"], head.bias.detach().numpy(), rtol=0,
                                   atol=1e-10)
    assert params[3]["table"] is None and params[0]["table"].dtype == np.float64


@pytest.mark.parametrize("use_bias", [False, True])
def test_per_example_grads_are_the_rows_own(use_bias: bool) -> None:
    """One pass (Unembed's own rule, not a refusal) equals value_and_grad on each row alone,
    tied (the table's two per-example shares summed) and alone on (N, T, D)."""
    tied, _ = _lm(use_bias)
    _, params = tied.init(KEY, (None, 5))
    ids, labels = _batch(4)
    each = fd.per_example_grad(tied, losses.softmax_cross_entropy)(params, ids, labels)
    assert each[0]["table"].shape == (4, V, D) and each[3]["table"] is None
    grad = fd.grad(tied, losses.softmax_cross_entropy)
    for n in range(4):
        own = grad(params, ids[n:n + 1], labels[n:n + 1])
        mine = [g[n] for g in tree.leaves(each)]
        assert len(mine) == len(tree.leaves(own)) == 3 + use_bias  # table, w, b (and the head's b)
        for a, b in zip(tree.leaves(own), mine):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    head = L.Unembed(V, use_bias=use_bias)
    p = _params64(head, (None, D))
    x = RNG.standard_normal((3, 2, D))
    t = RNG.standard_normal((3, 2, V))
    each = fd.per_example_grad(head, losses.mse)(p, x, t)
    assert each["table"].shape == (3, V, D)
    for n in range(3):
        own = fd.grad(head, losses.mse)(p, x[n:n + 1], t[n:n + 1])
        for k in p:
            np.testing.assert_allclose(each[k][n], own[k], rtol=1e-12, atol=1e-14)


T3 = {"table": np.ones((5, 3), np.float32)}
TB = {**T3, "b": np.zeros(5, np.float32)}
BAD = [
    ("vocab-float", lambda: L.Unembed(2.5), TypeError, ["Unembed", "vocab", "2.5"]),
    ("vocab-str", lambda: L.Unembed("5"), TypeError, ["Unembed", "vocab"]),
    ("vocab-bool", lambda: L.Unembed(True), TypeError, ["Unembed", "vocab"]),
    ("vocab-0", lambda: L.Unembed(0), ValueError, ["Unembed", "vocab", "0"]),
    ("use-bias-str", lambda: L.Unembed(5, use_bias="no"), TypeError, ["Unembed(5)", "use_bias"]),
    ("w-init-factory", lambda: L.Unembed(5, w_init=initializers.normal), TypeError,
     ["Unembed(5)", "w_init=initializers.normal()"]),
    ("in-shape-last-none", lambda: L.Unembed(5).init(KEY, (2, None)), ValueError,
     ["Unembed(5)", "known size > 0", "(2, None)"]),
    ("in-shape-scalar", lambda: L.Unembed(5).init(KEY, ()), ValueError, ["Unembed(5)", "()"]),
    ("input-last-axis", lambda: L.Unembed(5).apply(T3, np.ones((2, 4), np.float32)), ValueError,
     ["Unembed(5)", "(..., 3)", "(2, 4)"]),
    ("input-3d-last-axis", lambda: L.Unembed(5).vjp(T3, np.ones((2, 6, 2))), ValueError,
     ["Unembed(5)", "(..., 3)", "(2, 6, 2)"]),
    ("input-0d", lambda: L.Unembed(5).apply(T3, 1.0), ValueError, ["Unembed(5)", "shape ()"]),
    ("input-str", lambda: L.Unembed(5).apply(T3, np.array([["a", "b", "c"]])), TypeError,
     ["Unembed(5)", "numeric"]),
    ("input-float16", lambda: L.Unembed(5).apply(T3, np.ones((2, 3), np.float16)), TypeError,
     ["Unembed(5)", "float16", "float32"]),
    ("table-vocab", lambda: L.Unembed(6).apply(T3, np.ones((2, 3))), ValueError,
     ["Unembed(6)", "params['table'] must have shape (6, dim)", "got params['table'] (5, 3)"]),
    ("table-transposed", lambda: L.Unembed(5).apply({"table": np.ones((3, 5))}, np.ones((2, 3))),
     ValueError, ["Unembed(5)", "(5, dim)", "(3, 5)"]),
    ("table-1d", lambda: L.Unembed(5).apply({"table": np.ones(5)}, np.ones((2, 3))), ValueError,
     ["Unembed(5)", "(5, dim)", "(5,)"]),
    ("table-int", lambda: L.Unembed(5).apply({"table": np.ones((5, 3), int)}, np.ones((2, 3))),
     TypeError, ["Unembed(5)", "params['table'] has dtype int64"]),
    ("table-list", lambda: L.Unembed(5).apply({"table": [[1.0] * 3] * 5}, np.ones((2, 3))),
     TypeError, ["Unembed(5)", "params['table'] must be a NumPy array", "list"]),
    ("dense-params", lambda: L.Unembed(5).apply({"w": np.ones((3, 5))}, np.ones((2, 3))),
     ValueError, ["Unembed(5)", "['table']", "got ['w']"]),
    ("params-tuple", lambda: L.Unembed(5).apply((), np.ones((2, 3))), TypeError,
     ["Unembed(5)", "params must be a dict", "tuple"]),
    ("bias-missing", lambda: L.Unembed(5, use_bias=True).apply(T3, np.ones((2, 3))), ValueError,
     ["Unembed(5)", "lack ['b']", "['table', 'b']"]),
    ("bias-unexpected", lambda: L.Unembed(5).apply(TB, np.ones((2, 3))), ValueError,
     ["Unembed(5)", "unexpected keys ['b']"]),
    ("bias-shape", lambda: L.Unembed(5, use_bias=True).apply({**T3, "b": np.ones(3, np.float32)},
                                                            np.ones((2, 3))),
     ValueError, ["Unembed(5)", "params['b'] (5,)", "params['b'] (3,)"]),
    ("dy-shape", lambda: L.Unembed(5).vjp(T3, np.ones((2, 3), np.float32))[1](np.ones((2, 3))),
     ValueError, ["Unembed(5)", "dy of shape (2, 5)", "(2, 3)"]),
    ("per-example-no-batch", lambda: fd.per_example_grad(L.Unembed(5), losses.mse)(
        T3, np.ones(3, np.float32), np.ones(5, np.float32)), ValueError, ["batch axis"]),
    ("tied-bias-to-table", lambda: L.Tied(L.Sequential(L.Embedding(5, 3), L.Unembed(5, True)),
                                          [0, 1]).init(KEY, (None, 2)),
     ValueError, ["Tied(", "tied params must be alike"]),
]


@pytest.mark.parametrize(("call", "exc", "parts"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_inputs_are_refused_by_name(call: Any, exc: type[Exception], parts: list[str]
                                        ) -> None:
    with pytest.raises(exc) as err:
        call()
    assert type(err.value) is exc
    missing = [p for p in parts if p not in str(err.value)]
    assert not missing, f"{missing} not in: {err.value}"


def test_params_and_input_are_not_written() -> None:
    params = {"table": RNG.standard_normal((5, 3)), "b": RNG.standard_normal(5)}
    x = RNG.standard_normal((2, 4, 3))
    before = tree.map(np.copy, (params, x))
    y, pullback = L.Unembed(5, use_bias=True).vjp(params, x)
    pullback(np.ones_like(y))
    for a, b in zip(tree.leaves(before), tree.leaves((params, x))):
        np.testing.assert_array_equal(a, b)


def test_fused_with_a_following_activation() -> None:
    # Sequential runs Unembed and a pointwise activation after it as one step (Dense's
    # vjp_then): the same numbers as the two apart, and finite differences in float64
    model = L.Sequential(L.Unembed(5, use_bias=True), L.Tanh())
    _, params = model.init(KEY, (None, 2, 3))
    params = tree.map(lambda a: a.astype(np.float64), params)
    x = RNG.standard_normal((4, 2, 3))
    head = params[0]
    np.testing.assert_allclose(model.apply(params, x), np.tanh(x @ head["table"].T + head["b"]),
                               rtol=1e-12)
    check_vjp(model, params, x)


def test_tying_an_embedding_to_a_dense_head_names_unembed() -> None:
    # the usual first try: the table (V, D) and a Dense's w (D, V), each other's transpose
    model = L.Tied(L.Sequential(L.Embedding(V, D), L.Dense(V, use_bias=False)),
                   [(0, "table"), (1, "w")])
    with pytest.raises(ValueError, match=r"\(7, 4\).*\(4, 7\).*transpose.*Unembed\(vocab\)"):
        model.init(KEY, (None, 5))
    other = L.Tied(L.Sequential(L.Dense(4), L.Dense(5)), [0, 1])  # not transposes: no hint
    with pytest.raises(ValueError, match="must be alike") as err:
        other.init(KEY, (None, 4))
    assert "Unembed" not in str(err.value)
