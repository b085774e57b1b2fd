"""Integer class labels given as floats or bools: every loss taking integer labels refuses
them with one error, ``losses.LabelDtypeError`` (a TypeError and a ValueError, so code
catching either still catches it), and one message: the loss, what it expects (integer ids
in [0, K)), what came, and the fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcdl import losses

Z = np.linspace(-1.0, 1.0, 12).reshape(4, 3)  # 4 examples, 3 classes
LABELS = np.array([0, 1, 2, 1])
LISTS = np.array([[0, -1, -1], [1, 2, -1], [2, -1, -1], [0, 1, 2]])  # multilabel_margin's
LP = np.log(np.full((2, 5, 3), 1 / 3))  # ctc: (N, T, C) log-probabilities
SEQS = np.array([[1, 2], [2, 2]])

# name, call on a target, a valid target, the ids it names
CASES: list[tuple[str, Callable[[Any], Any], Any, str]] = [
    ("softmax_cross_entropy", lambda y: losses.softmax_cross_entropy(Z, y), LABELS, "[0, 3)"),
    ("poly_loss_cross_entropy", lambda y: losses.poly_loss_cross_entropy(Z, y), LABELS,
     "[0, 3)"),
    ("nll", lambda y: losses.nll(Z, y), LABELS, "[0, 3)"),
    ("multi_margin", lambda y: losses.multi_margin(Z, y), LABELS, "[0, 3)"),
    ("multiclass_sparsemax", lambda y: losses.multiclass_sparsemax(Z, y), LABELS, "[0, 3)"),
    ("multilabel_margin", lambda y: losses.multilabel_margin(Z, y), LISTS, "[0, 3)"),
    ("ntxent", lambda y: losses.ntxent(Z, y), LABELS, "group labels must be integers"),
    ("ctc", lambda y: losses.ctc(LP, y), SEQS, "[0, 3) other than the blank, 0"),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("name", "call", "valid", "ids"), CASES, ids=IDS)
@pytest.mark.parametrize("as_", [np.float64, np.float32, bool])
def test_float_or_bool_labels_raise_one_error_that_is_both_kinds(name, call, valid, ids, as_):
    call(valid)  # the integer labels pass
    bad = valid.astype(as_)
    for kind in (TypeError, ValueError, losses.LabelDtypeError):
        with pytest.raises(kind) as e:
            call(bad)
        assert type(e.value) is losses.LabelDtypeError
    msg = str(e.value)
    assert msg.startswith(f"{name}: target must be integer "), msg
    assert f"got dtype {np.dtype(as_)}" in msg and ids in msg, msg
    assert "must be integer" in msg and "pass target.astype(int)" in msg, msg


def test_the_two_cross_entropies_say_the_same_with_the_one_hot_alternative():
    """softmax_cross_entropy raised ValueError, poly_loss_cross_entropy TypeError, each its
    own words: now one message but for the name, naming the probabilities' shape."""
    msgs = []
    for loss in (losses.softmax_cross_entropy, losses.poly_loss_cross_entropy):
        with pytest.raises(losses.LabelDtypeError) as e:
            loss(Z, LABELS.astype(float))
        msgs.append(str(e.value).split(": ", 1)[1])
        assert str(e.value).startswith(f"{loss.name}: ")
    assert msgs[0] == msgs[1]
    assert ("class ids must be integers in [0, 3)" in msgs[0]
            and "values in [0.0, 2.0]" in msgs[0]
            and "or probabilities of shape (4, 3) (one-hot rows: "
                "funcdl.data.one_hot(labels, 3))" in msgs[0]), msgs[0]


def test_fractional_labels_are_said_not_whole_and_strings_get_ids_not_a_cast():
    with pytest.raises(losses.LabelDtypeError, match=r"values in \[0\.2, 0\.9\], not all "
                                                     r"whole numbers"):
        losses.nll(Z, np.array([0.2, 0.9, 0.5, 0.5]))
    with pytest.raises(losses.LabelDtypeError, match=r"got dtype <U1; .*pass the ids "
                                                     r"np\.unique\(target, return_inverse"):
        losses.multi_margin(Z, np.array(list("abca")))


def test_probabilities_and_int_one_hot_still_pass_the_cross_entropies():
    hot = np.eye(3)[LABELS]
    for loss in (losses.softmax_cross_entropy, losses.poly_loss_cross_entropy):
        want = loss(Z, LABELS)
        assert loss(Z, hot) == pytest.approx(want)
        assert loss(Z, hot.astype(int)) == pytest.approx(want)


def test_a_loss_shows_its_own_doc_and_options_not_the_loss_class() -> None:
    """help(losses.huber) and inspect.signature show huber's formula and delta=, as optax's
    and torch's functions do; the class Loss keeps its own doc and signature."""
    import inspect
    import pydoc

    sig = inspect.signature(losses.bce_with_logits)
    assert {"pred", "target", "reduction", "weight", "pos_weight"} <= set(sig.parameters)
    assert "delta" in inspect.signature(losses.huber).parameters
    text = pydoc.render_doc(losses.huber, renderer=pydoc.plaintext)
    assert "delta" in text and "clip(d, -delta, delta)" in text and "(value, pullback)" in text
    assert losses.Loss.__doc__ is not None and losses.Loss.__doc__.startswith("A loss:")
    assert list(inspect.signature(losses.Loss).parameters) == ["name", "vjp"]
    mine = losses.Loss("mine", lambda p, t: (0.0, lambda c: (c, None)))
    assert mine.__doc__ is None and list(inspect.signature(mine).parameters) == ["p", "t"]


def test_help_on_a_loss_prints_its_options() -> None:
    """pydoc prints an object's doc, not its __signature__: the doc starts with the call."""
    import pydoc

    text = pydoc.render_doc(losses.huber, renderer=pydoc.plaintext)
    assert "huber(pred: 'Any', target: 'Any', delta: 'float' = 1.0, reduction: 'str' = " \
           "'mean')" in text


def test_a_loss_pickles_for_a_sweep_config() -> None:
    """A public loss comes back as itself; a loss of one's own with a public vjp, as a
    Loss of that name and vjp (the vjps' qualified names, losses.mse, name no attribute)."""
    import functools
    import pickle

    assert pickle.loads(pickle.dumps(losses.huber)) is losses.huber
    mine = pickle.loads(pickle.dumps(losses.Loss("mine", losses.mse.vjp)))
    assert mine.name == "mine" and mine.vjp is losses.mse.vjp
    bound = pickle.loads(pickle.dumps(functools.partial(losses.huber, delta=0.5)))
    assert bound(1.0, 0.0) == 0.375


@pytest.mark.parametrize("loss", [losses.softmax_cross_entropy,
                                  losses.poly_loss_cross_entropy, losses.nll])
def test_names_and_nan_as_labels_get_the_label_error_with_a_fix_that_works(
        loss: Callable[..., Any]) -> None:
    with pytest.raises(losses.LabelDtypeError, match=r"np\.unique\(target, return_inverse"):
        loss(np.zeros((3, 4)), np.array(["a", "b", "c"]))
    with pytest.raises(losses.LabelDtypeError, match=r"\(holding NaN\).*NaN examples dropped"):
        loss(np.zeros((3, 4)), np.array([0.0, np.nan, 1.0]))


@pytest.mark.parametrize("loss", [losses.softmax_cross_entropy, losses.nll])
def test_torchs_padding_label_minus_100_is_refused_with_the_ignore_index_to_pass(loss):
    z = -np.log(np.array([[1, 2, 3, 4], [2, 2, 3, 3], [4, 1, 1, 4]]) / 10)
    y = np.array([1, -100, 2])
    with pytest.raises(ValueError, match=r"\[-100, 2\]; -100 is PyTorch's default "
                                         r"ignore_index, here None: pass ignore_index=-100"):
        loss(z, y)
    assert loss(z, y, ignore_index=-100) == pytest.approx(loss(z[[0, 2]], y[[0, 2]]), rel=1e-12)
    with pytest.raises(ValueError, match=r"got values in \[-101, 2\]$"):  # no hint: not -100
        loss(z, np.array([1, -101, 2]))
