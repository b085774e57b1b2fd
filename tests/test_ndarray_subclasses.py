"""NumPy's masked arrays and np.matrix, refused where they would give wrong numbers silently:
``np.asarray`` drops a mask (its hidden entries then count), and np.matrix's ``*`` is a matrix
product. Layers (input and dy), losses (pred and target) and optimizers (grads) name them;
JAX refuses masked arrays too."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _layer_cases import CASES

from funcdl import layers, losses, optim, random, tree, value_and_grad
from funcdl.layers import Dense, ReLU, Sequential

X = np.ones((2, 3), np.float32)
MASKED = np.ma.masked_array(X, mask=[[0, 1, 0], [0, 0, 0]])
MASKED_WORDS = r"is a masked array, whose mask would be ignored.*a\.filled\(value\)"


def _matrix(a: np.ndarray) -> np.matrix:
    with warnings.catch_warnings():  # np.matrix warns when made; a user's choice
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(a)


def _dense() -> tuple[layers.Layer, object]:
    layer = Dense(2)
    return layer, layer.init(random.key(0), (None, 3))[1]


def test_a_layer_refuses_a_masked_input_and_a_masked_dy():
    layer, params = _dense()
    with pytest.raises(ValueError, match=r"Dense\(2\): the input " + MASKED_WORDS):
        layer.apply(params, MASKED)
    _, pullback = layer.vjp(params, X)
    with pytest.raises(ValueError, match=r"Dense\(2\): dy " + MASKED_WORDS):
        pullback(np.ma.masked_array(np.ones((2, 2), np.float32), mask=[[1, 0], [0, 0]]))
    model = Sequential(Dense(4), ReLU(), Dense(1))
    _, p = model.init(random.key(1), (None, 3))
    with pytest.raises(ValueError, match=r"Sequential\[0\] Dense\(4\): the input is a masked"):
        model.apply(p, MASKED)
    # the data beneath, or filled, as the message says: the same numbers as a plain array
    np.testing.assert_array_equal(layer.apply(params, np.asarray(MASKED)),
                                  layer.apply(params, X))
    assert layer.apply(params, MASKED.filled(0.0)).shape == (2, 2)


@pytest.mark.parametrize("which", ["pred", "target"])
def test_a_loss_refuses_a_masked_pred_or_target(which):
    args = (MASKED, X) if which == "pred" else (X, MASKED)
    with pytest.raises(ValueError, match=rf"mse: {which} " + MASKED_WORDS):
        losses.mse(*args)
    labels = np.ma.masked_array(np.array([0, 1]), mask=[0, 1])
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: target is a masked array"):
        losses.softmax_cross_entropy(X, labels)


def test_value_and_grad_refuses_a_masked_batch():
    model = Sequential(Dense(1))
    _, p = model.init(random.key(2), (None, 3))
    vg = value_and_grad(model, losses.mse)
    with pytest.raises(ValueError, match="masked array"):
        vg(p, MASKED, np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match="target is a masked array"):
        vg(p, X, np.ma.masked_array(np.zeros((2, 1), np.float32)))


OPTIMIZERS = {"sgd": lambda: optim.sgd(0.1), "adam": optim.adam, "rmsprop": optim.rmsprop,
              "adagrad": optim.adagrad, "adafactor": optim.adafactor,
              "adabelief": lambda: optim.adabelief(0.1), "amsgrad": optim.amsgrad}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_an_optimizer_refuses_a_matrix_or_masked_grad(name):
    opt = OPTIMIZERS[name]()
    params = {"w": np.ones((2, 2))}
    state = opt.init(params)
    grad = np.array([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match=r"update: grads\['w'\] is a np.matrix, whose \* is a "
                                        r"matrix product.*np.asarray\(grads\['w'\]\)"):
        opt.update(state, {"w": _matrix(grad)}, params)
    with pytest.raises(ValueError, match=r"update: grads\['w'\] is a masked array"):
        opt.update(state, {"w": np.ma.masked_array(grad, mask=[[0, 1], [0, 0]])}, params)
    # the plain array beneath steps as before
    updates, _ = opt.update(state, {"w": grad}, params)
    assert type(updates["w"]) is np.ndarray


def test_ravel_and_pmean_refuse_a_masked_leaf():
    """``tree.ravel`` packed a masked leaf's hidden entries (as ``np.asarray`` does), and
    ``parallel.pmean`` returned it masked on one process, summed without its mask on N."""
    from funcdl import parallel, tree

    grads = {"b": np.zeros(2, np.float32), "w": MASKED}
    with pytest.raises(ValueError, match=r"tree.ravel: the leaf at \['w'\] " + MASKED_WORDS):
        tree.ravel(grads)
    plain = {"b": np.zeros(2, np.float32), "w": X}
    assert parallel.pmean(plain) is plain  # its layout first: the masked one must not reuse it
    with pytest.raises(TypeError, match=r"parallel.pmean: the leaf at \['w'\] is a masked "
                                        r"array, whose mask the sum would drop"):
        parallel.pmean(grads)
    vector, _ = tree.ravel({"b": np.zeros(2, np.float32), "w": MASKED.filled(0.0)})
    assert vector.tolist() == [0, 0, 1, 0, 1, 1, 1, 1]


def _first_masked(params):
    """``params`` with its first floating leaf a masked array (nothing masked: the same
    numbers, so only the type can be refused)."""
    done = []

    def one(a):
        if not done and isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size:
            done.append(a)
            return np.ma.masked_array(a, mask=np.zeros(a.shape, bool))
        return a

    out = tree.map(one, params)
    return out if done else None


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_every_layer_refuses_masked_params(c):
    """A masked kernel's mask was dropped (its hidden entries used), where inputs, dy and
    grads were refused for it."""
    shapes = (tuple((None, *np.shape(a)[1:]) for a in c.x) if isinstance(c.x, tuple)
              else (None, *np.shape(c.x)[1:]))
    out = c.layer.init(random.key(0), shapes)
    masked = _first_masked(out[1])
    if masked is None:
        pytest.skip("no floating params")
    kw = {**c.kw, **({"state": out[2]} if len(out) == 3 else {})}
    # (a user's own layer passes its masked product on, which the next layer refuses)
    what = r"the input" if c.own or "Scale" in c.id else r"params\[.*\]"
    with pytest.raises(ValueError, match=what + r" is a masked array, whose mask"):
        c.layer.apply(masked, c.x, **kw)


def test_a_norm_refuses_a_masked_running_statistic():
    layer = layers.BatchNorm()
    _, params, state = layer.init(random.key(0), (None, 3))
    state = {**state, "var": np.ma.masked_array(state["var"], mask=[0, 1, 0])}
    with pytest.raises(ValueError, match=r"BatchNorm\(\): state\['var'\] is a masked array"):
        layer.apply(params, X, state=state)
