"""What a first hour with funcdl met (session 38's review as a JAX/optax/PyTorch user): a
Slice written with NumPy's leading ``:`` for the batch, ``check_layer`` given an in_shape
without its batch axis, and a layer whose init makes float64 params. Each now gets a message
that names the cause and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import layers as L
from funcdl import random
from funcdl.layers import Layer
from funcdl.testing import check_layer


@pytest.mark.parametrize(("index", "in_shape", "entries", "after"), [
    (np.s_[:, 0:2], (None, 4), 2, "1 axis"),
    (np.s_[:, :, 0], (None, 3, 4), 3, "2 axes"),
    (np.s_[:, 0, ..., 1], (None, 4), 3, "1 axis"),
])
def test_slice_with_the_batch_axis_in_its_index_says_to_leave_it_out(index, in_shape, entries,
                                                                     after):
    want = (rf"index has {entries} entries, but an input of shape .* has {after} after the "
            rf"batch axis, which Slice indexes \(y = x\[:, index\]\); leave the batch axis out")
    layer = L.Slice(index)
    with pytest.raises(ValueError, match=want):
        layer.init(random.key(0), in_shape)
    with pytest.raises(ValueError, match=want):
        layer.apply((), np.ones((2, *in_shape[1:]), np.float32))


def test_slice_out_of_bounds_keeps_its_own_message():
    with pytest.raises(ValueError, match=r"Slice\(5\): cannot index an input of shape "
                                         r"\(None, 4\): index 5 is out of bounds"):
        L.Slice(5).init(random.key(0), (None, 4))
    assert L.Slice(np.s_[:, 0:2]).init(random.key(0), (None, 4, 5))[0] == (None, 4, 2)


def test_check_layer_given_an_in_shape_without_the_batch_axis_says_so():
    with pytest.raises(ValueError, match=r"^check_layer\(Dense\(2\)\): .* x of shape \(3,\) "
                                         r"has no axis beside the batch axis 0: in_shape needs "
                                         r"the batch axis first, e.g. \(None, 3\)"):
        check_layer(L.Dense(2), (3,))
    check_layer(L.Dense(2), (None, 3))


def test_check_layer_names_float64_params_before_the_float64_output_they_cause():
    def init(key, in_shape):
        return in_shape, {"w": np.ones(in_shape[-1])}  # float64: np.ones' default

    def vjp(p, x, **kw):
        return x * p["w"], lambda dy: ({"w": (dy * x).sum(0)}, dy * p["w"])

    layer = Layer(init, lambda p, x, **kw: x * p["w"], vjp, name="Ones64")
    with pytest.raises(AssertionError, match=r"^check_layer\(Ones64\): init gave params\['w'\] "
                                             r"of dtype float64, expected float32"):
        check_layer(layer, (None, 3))


def test_a_decoders_memory_of_the_wrong_width_is_named_with_its_own_time_axis():
    dec = L.TransformerDecoderLayer(8, 2, 16, dropout=0.0)
    _, params = dec.init(random.key(0), ((None, 5, 8), (None, 7, 8)))
    tgt, memory = np.ones((2, 5, 8), np.float32), np.ones((2, 7, 9), np.float32)
    with pytest.raises(ValueError, match=r"expected memory \(the input\[1\]\) \(N, S, 8\) "
                                         r"\(batch, source time, d_model\), got \(2, 7, 9\)"):
        dec.apply(params, (tgt, memory))
    with pytest.raises(ValueError, match=r"expected tgt \(the input\[0\]\) \(N, T, 8\) "
                                         r"\(batch, time, d_model\), got \(2, 5, 9\)"):
        dec.apply(params, (np.ones((2, 5, 9), np.float32), memory[..., :8]))
    with pytest.raises(ValueError, match=r"memory \(in_shape\[1\]\) \(N, S, 8\).*token ids "
                                         r"\(N, S\) need an Embedding\(vocab, 8\) first"):
        dec.init(random.key(0), ((None, 5, 8), (None, 7)))


def test_ctc_given_torchs_time_first_log_probs_says_to_transpose():
    from funcdl import losses
    log_probs = np.log(np.full((3, 8, 5), 0.2))  # (N, T, C)
    labels = np.ones((3, 4), np.int64)
    with pytest.raises(ValueError, match=r"got shape \(3, 4\); pred is batch-first \(N, T, C\): "
                                         r"for torch's time-first \(T, N, C\) log-probs pass "
                                         r"pred.transpose\(1, 0, 2\)"):
        losses.ctc(log_probs.transpose(1, 0, 2), labels)
    with pytest.raises(ValueError, match=r"got shape \(5, 4\)$"):  # no hint: not the layout
        losses.ctc(log_probs, np.ones((5, 4), np.int64))
    assert np.isfinite(losses.ctc(log_probs, labels[:, :2]))


# ---------------------------------------------------------------------------- a vision user

@pytest.mark.parametrize(("make", "torch_size", "fix"), [
    (lambda: L.GroupNorm(3, 6), "num_channels", r"GroupNorm\(3, C\) is GroupNorm\(3\)"),
    (lambda: L.LayerNorm(6), "normalized_shape", r"LayerNorm\(C\) is LayerNorm\(\)"),
    (lambda: L.InstanceNorm(6), "num_features", r"InstanceNorm2d\(C\) is InstanceNorm\(\)"),
    (lambda: L.RMSNorm(6), "normalized_shape", r"RMSNorm\(C\) is RMSNorm\(\)"),
    (lambda: L.LayerNorm(np.int64(1)), "normalized_shape", "LayerNorm"),
])
def test_torchs_channel_count_in_eps_place_is_refused(make, torch_size, fix):
    # GroupNorm(3, 6) as torch writes it normalised with eps = 6: an output std of 0.72
    with pytest.raises(ValueError, match=rf"eps=[16] is a count, as torch's {torch_size} in "
                                         rf"its place is, .*{fix}"):
        make()


def test_a_small_or_float_eps_is_still_taken():
    assert L.GroupNorm(3, 1e-3).init(random.key(0), (None, 4, 6))[0] == (None, 4, 6)
    for eps in (1e-6, 0.5, 2.0):  # a float is meant as eps, however large
        x = random.normal(random.key(1), (4, 6))
        _, params = L.LayerNorm(eps).init(random.key(0), (None, 6))
        y = L.LayerNorm(eps).apply(params, x)
        want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match=r"RMSNorm: eps must be a real number, got 'a' \(str\), "
                                        r"or None"):
        L.RMSNorm("a")


@pytest.mark.parametrize(("layer", "in_shape", "given"), [
    (L.Conv2D(8, 3), (None, 9, 9, 3), (2, 3, 9, 9)),
    (L.Conv2D(4, 3, groups=2), (None, 9, 9, 4), (2, 4, 9, 9)),
    (L.Conv1D(4, 3), (None, 20, 6), (2, 6, 20)),
    (L.ConvTranspose2D(4, 3), (None, 9, 9, 3), (2, 3, 9, 9)),
])
def test_a_channels_first_input_is_told_to_move_its_channels_last(layer, in_shape, given):
    _, params = layer.init(random.key(0), in_shape)
    with pytest.raises(ValueError, match=r"it looks channels-first \(N, C, \.\.\.\), torch's "
                                         r"layout: funcdl's is channels-last, so pass "
                                         r"np.moveaxis\(x, 1, -1\)$"):
        layer.apply(params, np.zeros(given, np.float32))
    y = layer.apply(params, np.moveaxis(np.zeros(given, np.float32), 1, -1))
    assert y.dtype == np.float32


def test_one_image_without_its_batch_axis_and_other_wrong_inputs():
    conv = L.Conv2D(8, 3)
    _, params = conv.init(random.key(0), (None, 9, 9, 3))
    with pytest.raises(ValueError, match=r"got shape \(9, 9, 3\); it looks like one example "
                                         r"without its batch axis: pass x\[None\]$"):
        conv.apply(params, np.zeros((9, 9, 3), np.float32))
    with pytest.raises(ValueError, match=r"got shape \(2, 9, 9, 5\)$"):  # no guess to make
        conv.apply(params, np.zeros((2, 9, 9, 5), np.float32))
    grouped = L.Conv2D(4, 3, groups=2)
    _, params = grouped.init(random.key(0), (None, 9, 9, 4))
    with pytest.raises(ValueError, match=r"got shape \(2, 9, 9, 2\); give it 4 channels, or, if "
                                         r"params\['w'\] is your own ungrouped kernel for 2, a "
                                         r"grouped kernel has C // groups in-channels: "
                                         r"\(3, 3, 1, 4\) for this input"):
        grouped.apply(params, np.zeros((2, 9, 9, 2), np.float32))


# ---------------------------------------------------------------------------- an optimizer user

_P = {"w": np.ones((3, 4)), "b": np.ones(4), "s": np.array(1.0)}
_SHORT = {"w": np.ones((3, 4)), "b": np.ones(4)}  # 's' missing


@pytest.mark.parametrize(("make", "first"), [
    (lambda o: o.adopt(learning_rate=0.1), "adopt.update, stage 0: scale_by_adopt.update: "),
    (lambda o: o.muon(learning_rate=0.1), "muon.update: "),
    (lambda o: o.ademamix(learning_rate=0.1), "ademamix.update, stage 0: "),
    (lambda o: o.schedule_free_adamw(learning_rate=0.1), "schedule_free_adamw.update, stage 0: "),
    (lambda o: o.schedule_free_sgd(learning_rate=0.1),
     "schedule_free.update, stage 'base_optimizer': sgd.update, stage 'lr': "),
    (lambda o: o.sam(o.adam(0.1), o.chain(o.normalize(), o.scale(0.05))),
     "sam.update, stage 'adv_optimizer': scale.update: "),
])
def test_an_error_inside_a_built_optimizer_names_that_optimizer_first(make, first):
    # each said only its inner stage (scale_by_adopt.update: ...), never adopt, muon, sam
    from funcdl import optim
    opt = make(optim)
    with pytest.raises(ValueError, match="tree structure mismatch") as info:
        opt.update(opt.init(_P), _SHORT, _P)
    assert str(info.value).startswith(first), str(info.value)


def test_a_users_own_chain_keeps_its_stages_words():
    from funcdl import optim
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.scale(0.1))
    with pytest.raises(ValueError, match=r"^scale\.update: tree structure"):
        opt.update(opt.init(_P), _SHORT, _P)


def test_flatten_called_the_wrong_way_round_says_so():
    from funcdl import optim
    opt = optim.flatten(optim.adam(0.1))
    state = opt.init(_P)
    with pytest.raises(TypeError, match=r"^flatten\.update: the first argument must be the "
                                        r"optimizer state returned by init \(call update\(state, "
                                        r"grads, params\)\); got grads of type NamedChainState"):
        opt.update(dict(_P), state, _P)
    opt.update(state, dict(_P), _P)


def test_a_loaded_stand_in_state_is_named_with_its_article(tmp_path):
    from funcdl import io, optim
    opt = optim.apply_if_finite(optim.sgd(0.1), 3)
    io.save(tmp_path / "state.npz", opt.init(_P))
    with pytest.raises(TypeError, match=r"got an ApplyIfFiniteState that is not funcdl's own"):
        opt.update(io.load(tmp_path / "state.npz"), dict(_P), _P)


def test_muons_learning_rate_and_params_errors_name_muon():
    from funcdl import optim
    grads = {k: np.ones_like(v) for k, v in _P.items()}
    opt = optim.muon(learning_rate=lambda count: np.array([0.1, 0.2]))
    with pytest.raises(TypeError, match=r"^muon\.update, stage 3: scale_by_learning_rate "
                                        r"\(learning_rate\): the schedule must return a number"):
        opt.update(opt.init(_P), grads, _P)
    opt = optim.muon(learning_rate=0.1)
    with pytest.raises(ValueError, match=r"^muon\.update, stage 2: add_decayed_weights\.update: "
                                         r"needs the params"):
        opt.update(opt.init(_P), grads)
