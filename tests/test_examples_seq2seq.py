"""examples/seq2seq_lstm.py: an encoder LSTM(return_state=True) whose (h_n, c_n) start a decoder
LSTM(initial_state=True), the gradient chained across the two, reverses digit sequences."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_example, refused

import funcdl as fd
from funcdl import layers as L


@pytest.fixture(scope="module")
def s2s():
    return load_example("seq2seq_lstm")


# ---------------------------------------------------------------------------- seq2seq_lstm

def test_seq2seq_reverses_held_out_sequences(s2s, capsys):
    result = s2s.main(["--epochs", "6"])
    out = capsys.readouterr().out
    assert "sequence -> greedy reversal" in out and "reversed exactly" in out
    assert result["digits"] >= 0.97 and result["sequences"] >= 0.9
    assert result["digits_untrained"] <= 0.2 and result["sequences_untrained"] <= 0.01
    assert all(p.dtype == np.float32 for p in fd.tree.leaves(result["params"]))


def test_seq2seq_same_seed_gives_the_same_run(s2s):
    a, b = (s2s.train(epochs=1, n_train=300, n_test=50, verbose=False) for _ in range(2))
    for pa, pb in zip(fd.tree.leaves(a["params"]), fd.tree.leaves(b["params"])):
        assert np.array_equal(pa, pb)
    assert a["curve"] == b["curve"] and np.array_equal(a["written"], b["written"])
    c = s2s.train(epochs=1, seed=1, n_train=300, n_test=50, verbose=False)
    assert c["curve"] != a["curve"]


def test_seq2seq_chained_gradient_is_the_whole_models(s2s):
    """The encoder's pullback fed the decoder's cotangent of (h0, c0) gives the gradient of
    one model routing the state itself: Parallel(encoder, Identity), Select(1, 0), decoder."""
    encoder, decoder = s2s.make_models(embed=4, hidden=6)
    whole = L.Sequential(L.Parallel(encoder, L.Identity()), L.Select(1, 0), decoder)
    src, target = s2s.sequences(fd.random.key(1), 8)
    _, params = whole.init(fd.random.key(2), ((None, s2s.LENGTH), (None, s2s.LENGTH)))
    params = fd.tree.map(lambda p: p.astype(np.float64), params)
    mine = (params[0][0], params[2])  # (encoder's, decoder's)
    loss, (g_enc, g_dec) = s2s.grads_fn(encoder, decoder)(mine, src, target)
    ref_loss, ref = fd.value_and_grad(whole, fd.losses.softmax_cross_entropy)(
        params, (src, s2s.teacher_input(target)), target)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    for a, b in zip(fd.tree.leaves((g_enc, g_dec)), fd.tree.leaves((ref[0][0], ref[2]))):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "0"], "argument --epochs: expected a positive integer (1 or more), got 0"),
    (["--seed", "-1"], "argument --seed: expected a seed: an integer in [0, 2**128), got -1"),
])
def test_bad_arguments_are_refused_while_parsing(argv, message, capsys):
    err = refused(load_example("seq2seq_lstm").main, argv, capsys)
    assert err.startswith("usage: seq2seq_lstm.py ") and f"error: {message}" in err
