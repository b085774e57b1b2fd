"""Defects a probe found: metrics' label and NaN messages, io.save's message when the
temporary file cannot be made, moments' rule for a near-constant feature (scikit-learn's),
and check_finite naming the data (or the params) rather than the first layer. The
multi-rank half of the pmean leaf-type fix lives in tests/mpi_scripts/check_parallel.py
(case leaf_types); one process returns the tree itself, checked here."""

from __future__ import annotations

import errno
import os
import sys
import tempfile

import numpy as np
import pytest

import funcdl as fd
from funcdl import data, io, losses, metrics, parallel
from funcdl import layers as L

# ------------------------------------------------------------------------- metrics


@pytest.mark.parametrize(("call", "hint"), [
    (lambda: metrics.top_k_accuracy([0, 3], [[.1, .9], [.5, .5]], 1),
     r"pass scores with a column per class \(now C = 2 columns\)"),
    (lambda: metrics.accuracy([0, 3], [[.1, .9], [.5, .5]]),
     r"pass scores with a column per class \(now C = 2 columns\)"),
    (lambda: metrics.accuracy([0, 3], [.1, .9]), r"scores \(N,\) predict 0 or 1"),
    (lambda: metrics.roc_auc([0, 3], [.1, .9]), r"roc_auc is binary"),
    (lambda: metrics.log_loss([0, 3], [[.1, .9], [.5, .5]]),
     r"pass probs with a column per class \(now C = 2 columns\)"),
    (lambda: metrics.log_loss([0, 3], [.1, .9]), r"probs \(N,\) is class 1's probability"),
])
def test_a_label_out_of_range_gets_a_fix_the_function_has(call, hint):
    # these take no num_classes: "or raise num_classes" was a fix they do not offer
    with pytest.raises(ValueError, match=r"got values from 0 to 3; map the labels") as e:
        call()
    assert "num_classes" not in str(e.value)
    assert e.match(hint)


@pytest.mark.parametrize("call", [
    lambda: metrics.confusion_matrix([0, 3], [0, 1], num_classes=2),
    lambda: metrics.precision_recall_f1([0, 3], [0, 1], num_classes=2)])
def test_a_label_beyond_num_classes_still_says_raise_it(call):
    with pytest.raises(ValueError, match=r"in 0 \.\. 1, got values from 0 to 3; .* or raise "
                                         r"num_classes$"):
        call()


def test_a_negative_label_is_not_told_to_raise_num_classes():
    with pytest.raises(ValueError, match=r"0 or more, got values from -2 to 1; map the labels "
                                         r"to 0 \.\. K-1 \(np\.unique\(y, return_inverse=True\)"
                                         r"\)$"):
        metrics.confusion_matrix([-2, 1], [0, 1])


@pytest.mark.parametrize(("call", "why"), [
    (lambda: metrics.log_loss([0, 1], [0.2, np.nan]),
     r"probs contains NaN; the log-probability is undefined \(sklearn raises too\)"),
    (lambda: metrics.accuracy([0, 1], [[.2, .8], [np.nan, .5]]),
     r"contains NaN; the predicted class \(the argmax of each row\) is undefined"),
    (lambda: metrics.accuracy([0, 1], [0.2, np.nan]),
     r"contains NaN; the prediction \(score > threshold\) is undefined"),
    (lambda: metrics.top_k_accuracy([0, 1], [[.2, .8], [np.nan, .5]], 1),
     r"contains NaN; the ranking is undefined"),
    (lambda: metrics.roc_auc([0, 1], [0.2, np.nan]), r"contains NaN; the ranking is undefined"),
])
def test_nan_scores_say_what_they_spoil_per_metric(call, why):
    with pytest.raises(ValueError, match=why) as e:
        call()
    if "ranking" not in why:  # log_loss and accuracy rank nothing
        assert "ranking" not in str(e.value)


def test_uint64_labels_beyond_int64_are_reported_as_given_not_wrapped():
    big = np.array([2**63, 1], np.uint64)
    with pytest.raises(ValueError, match=r"y_true must be class indices below 2\*\*63 \(int64\)"
                                         r", got values from 1 to 9223372036854775808;") as e:
        metrics.accuracy(big, np.array([0, 1]))
    assert "-9223372036854775808" not in str(e.value)
    with pytest.raises(ValueError, match=r"in 0 \.\. 2, got values from 1 to "
                                         r"18446744073709551615; .* or raise num_classes"):
        metrics.confusion_matrix(np.array([2**64 - 1, 1], np.uint64), [0, 1], num_classes=3)
    assert metrics.accuracy(np.array([0, 1], np.uint64), np.array([0, 0])) == 0.5  # in range


# ------------------------------------------------------------------------- io.save


def test_save_over_a_file_in_a_directory_it_cannot_create_in_names_the_temporary_file():
    if not os.path.isfile("/proc/version"):
        pytest.skip("needs Linux's /proc/version")
    # the file exists: ENOENT is about the temporary file that /proc refuses to hold
    with pytest.raises(FileNotFoundError) as e:
        io.save("/proc/version", {"w": np.ones(2)})
    msg = str(e.value)
    assert msg.startswith("[Errno 2] io.save: cannot write '/proc/version': creating the "
                          "temporary file beside it in '/proc' failed (No such file or "
                          "directory); save writes there first, then renames it over the "
                          "path"), msg
    assert e.value.filename == "/proc/version" and e.value.errno == errno.ENOENT


def test_save_into_a_read_only_directory_says_the_temporary_file_failed(tmp_path, monkeypatch):
    # as the kernel answers for a read-only directory (root ignores chmod, so stand in)
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied",
                              str(tmp_path / ".params.npz.abc.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = tmp_path / "params.npz"
    with pytest.raises(PermissionError) as e:
        io.save(target, {"w": np.ones(2)})
    assert str(e.value) == (
        f"[Errno 13] io.save: cannot write {str(target)!r}: creating the temporary file "
        f"beside it in {str(tmp_path)!r} failed (Permission denied); save writes there "
        f"first, then renames it over the path, so the directory must be writable: save "
        f"into a directory you can write to: {str(target)!r}")
    assert not target.exists()


# ------------------------------------------------------------------------- pmean, one process


def test_pmean_on_one_process_returns_each_leaf_as_it_was():
    # the multi-rank result must match this (check_parallel.py, case leaf_types)
    t = {"s": np.float32(1.5), "z": np.array(2.0), "f": 3.0, "a": np.ones(2, np.float32)}
    assert parallel.pmean(t) is t


# ------------------------------------------------------------------------- moments

EPS = np.finfo(np.float64).eps


def test_moments_treat_a_column_equal_but_for_rounding_as_constant():
    # n = 3, mean ~ .1: the bound (3 * .1 * eps)^2 = 4.4e-33 holds var = 1.7e-34; the std
    # would be 1.3e-17 and blow (x - mean) / std up to ~1.4 (sklearn: scale 1)
    x = np.array([[.1, 1.0], [.1, 2.0], [.1 + 2.8e-17, 3.0]])
    mean, std = data.moments(x)
    np.testing.assert_array_equal(std[:, 0], [1.0])
    np.testing.assert_allclose(std[:, 1], [np.sqrt(2 / 3)], rtol=1e-15)
    z = (x - mean) / std
    np.testing.assert_allclose(z[:, 1], [-np.sqrt(1.5), 0, np.sqrt(1.5)], rtol=1e-15)
    assert np.abs(z[:, 0]).max() < 1e-15  # standardises to 0, not to +-1.4


@pytest.mark.parametrize(("k", "constant"), [(4, True), (6, False), (8, False)])
def test_moments_constant_bound_by_hand(k, constant):
    # [1, 1 + k eps], n = 2, mean 1 + k eps / 2: var = (k eps / 2)^2 against the bound
    # 2 eps var + (2 mean eps)^2 = 4 eps^2 (1 + k eps + O(eps^2)): constant iff k <= 4
    # (k = 4: 4 eps^2 <= 4 eps^2 (1 + 4 eps); sklearn agrees, see the peer test below)
    x = np.array([[1.0], [1.0 + k * EPS]])
    _, std = data.moments(x)
    assert std[0, 0] == (1.0 if constant else k * EPS / 2)


def test_moments_constant_rule_is_scale_free_and_float32_alike():
    x = np.array([[.1], [.1], [.1 + 2.8e-17]])
    for scale in (2.0**-900, 2.0**900, 3.0):
        np.testing.assert_array_equal(data.moments(x * scale)[1], [[1.0]])
    tiny = np.array([[1e-20], [2e-20], [3e-20]])  # small, not constant: kept
    np.testing.assert_allclose(data.moments(tiny)[1], [[np.sqrt(2 / 3) * 1e-20]], rtol=1e-14)
    x32 = np.array([[1.0], [1.0 + np.finfo(np.float32).eps]], np.float32)
    _, std = data.moments(x32)
    assert std.dtype == np.float32 and std[0, 0] == np.finfo(np.float32).eps / 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moments_match_standard_scaler_on_near_constant_columns(dtype):
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    rng = np.random.default_rng(0)
    cols = [np.full(7, .1), np.r_[np.full(6, .1), .1 + 2.8e-17], np.r_[1.0, 1 + 4 * EPS],
            np.r_[1.0, 1 + 6 * EPS], np.r_[-3.0, -3.0, -3 * (1 + 2 * EPS)],
            np.r_[1e-300, 1e-300 * (1 + 2 * EPS)], np.array([1e-20, 2e-20, 3e-20]),
            rng.normal(size=9) * 1e-8 + 5.0, np.r_[5.0, 5.0, 5.0 + 1e-12]]
    for col in cols:
        x = col[:, None].astype(dtype)
        mean, std = data.moments(x)
        want = preprocessing.StandardScaler().fit(x)
        # constant or not is the point (1 against ~1e-13): the std's last digits differ,
        # sklearn's variance being computed another way
        np.testing.assert_allclose(std[0], want.scale_, rtol=1e-6, err_msg=str(col))
        np.testing.assert_allclose(mean[0], want.mean_, rtol=1e-6 if dtype == np.float32
                                   else 1e-12, err_msg=str(col))


# ------------------------------------------------------------------------- check_finite


def _model():
    model = L.Sequential(L.Dense(4), L.ReLU(), L.Dense(1))
    _, params = model.init(fd.random.key(0), (None, 3))
    return model, params


def test_check_finite_names_a_nan_in_the_input_not_the_first_layer():
    model, params = _model()
    x, y = np.ones((2, 3), np.float32), np.ones((2, 1), np.float32)
    x[1, 2] = np.nan
    f = fd.value_and_grad(model, losses.mse)
    with fd.debug.check_finite(), pytest.raises(FloatingPointError) as e:
        f(params, x, y)
    assert str(e.value) == ("value_and_grad: NaN in the input x (shape (2, 3)), before any "
                            "layer ran: the data holds it; drop or impute those examples "
                            "(find them with np.argwhere(~np.isfinite(x))); "
                            "funcdl.debug.check_finite is on")
    x[1, 2] = np.inf
    with fd.debug.check_finite(), pytest.raises(FloatingPointError,
                                                match=r"^value_and_grad: inf in the input x "):
        f(params, x, y)


def test_check_finite_names_the_leaf_of_a_tree_input():
    x = (np.ones((2, 3)), np.full((2, 3), np.nan))
    _, params = L.FanInSum().init(fd.random.key(0), ((None, 3), (None, 3)))
    with fd.debug.check_finite(), pytest.raises(FloatingPointError,
                                                match=r"NaN in the input x\[1\] \(shape"
                                                r".*np\.isfinite\(x\[1\]\)\)\)"):
        fd.value_and_grad(L.FanInSum(), losses.mse)(params, x, np.ones((2, 3)))
    with fd.debug.check_finite(), pytest.raises(FloatingPointError,
                                                match=r"inf in the target\['a'\] \(shape"
                                                r".*np\.isfinite\(target\['a'\]\)\)\)"):
        fd.debug.verify_input("m", {"a": np.array([np.inf])}, "target")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="BaseException.add_note is 3.11's")
def test_check_finite_notes_a_nan_in_params_beside_the_layer_it_reached():
    model, params = _model()
    params[2]["b"][0] = np.nan
    x, y = np.ones((2, 3), np.float32), np.ones((2, 1), np.float32)
    with fd.debug.check_finite(), pytest.raises(FloatingPointError) as e:
        fd.value_and_grad(model, losses.mse)(params, x, y)
    # the message names the layer, as before (tests/test_debug.py); the note the params
    assert str(e.value).startswith("Sequential[2] Dense(1): NaN in the forward output")
    assert e.value.__notes__ == [
        "NaN in params[2]['b'] (shape (1,)) already before the model ran: the params are at "
        "fault, not the computation (re-initialise them; after a diverged update, lower the "
        "learning rate)"]
    # a NaN made along the way, from finite params and data: no note
    model = L.Sequential(L.Dense(3), L.Layer(lambda k, sh: (sh, ()),
                                             lambda p, x, **kw: x * np.nan,
                                             lambda p, x, **kw: (x * np.nan, lambda dy: ((), dy)),
                                             name="Broken"))
    _, params = model.init(fd.random.key(1), (None, 3))
    with fd.debug.check_finite(), pytest.raises(FloatingPointError) as e:
        fd.value_and_grad(model, losses.mse)(params, x, np.ones((2, 3), np.float32))
    assert str(e.value).startswith("Sequential[1] Broken: NaN in the forward output")
    assert not getattr(e.value, "__notes__", [])


def test_check_finite_names_the_data_in_vjp_and_a_nan_target() -> None:
    """fd.vjp (a GAN's generator step) names a NaN input as the data's; value_and_grad a
    NaN target as the target's, not as the loss value's."""
    model = L.Sequential(L.Dense(2), L.Tanh())
    _, params = model.init(fd.random.key(0), (None, 3))
    x = np.ones((2, 3), np.float32)
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"^vjp: NaN in the input x \(shape \(2, 3\)\)"):
        fd.vjp(model, params, np.where(np.eye(2, 3) > 0, np.nan, x))
    y = np.array([[0.0, np.inf], [0.0, 0.0]], np.float32)
    with fd.debug.check_finite(), pytest.raises(
            FloatingPointError, match=r"^value_and_grad: inf in the target \(shape \(2, 2\)\)"
                                      r".*np\.isfinite\(target\)"):
        fd.value_and_grad(model, fd.losses.mse)(params, x, y)


def test_moments_never_returns_a_zero_std_in_float32() -> None:
    """A float32 column whose std rounds to 0 on the cast back is standardised as a
    constant (std 1), not divided by 0."""
    _, std = data.moments(np.array([[1.4e-45], [0.0]], np.float32))
    assert std.dtype == np.float32 and std[0, 0] == 1.0


def test_spectral_norm_finds_a_transposed_kernels_output_axis_inside_remat() -> None:
    """dim=None is the child's output axis, -2 for a ConvTranspose2D's (kh, kw, out, C),
    also when Remat (which passes the params through) wraps it, as torch's by module type."""
    import dataclasses

    renamed = dataclasses.replace(L.ConvTranspose2D(4, 3), name="up")  # not by its name
    for child in (L.ConvTranspose2D(4, 3), L.Remat(L.ConvTranspose2D(4, 3)), renamed):
        _, _, state = L.SpectralNorm(child).init(fd.random.key(0), (None, 5, 5, 3))
        assert state["u"].shape == (4,) and state["v"].shape == (27,), child.name
