"""examples/tiny_lm.py and examples/ctc_sequences.py: each reaches its target in a few
epochs, bit-identically per seed, and their pieces (data, custom layer, decoding) are right."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_example, refused

import funcdl as fd
from funcdl import layers as L


@pytest.fixture(scope="module")
def lm():
    return load_example("tiny_lm")


@pytest.fixture(scope="module")
def ctc():
    return load_example("ctc_sequences")


# ---------------------------------------------------------------------------- tiny_lm

def test_tiny_lm_completions_are_balanced(lm, capsys):
    result = lm.main(["--epochs", "6"])
    out = capsys.readouterr().out
    assert "completions balanced" in out and "prompt -> completion" in out
    assert result["valid"] >= 0.8  # an untrained model: a few percent
    assert result["valid_untrained"] <= 0.2
    assert result["distinct"] >= 100  # not one memorised answer
    assert result["test_loss"] < 0.65  # uniform over the 5 characters: log 5 = 1.61
    assert all(p.dtype == np.float32 for p in fd.tree.leaves(result["params"]))


def test_tiny_lm_tied_head_reads_the_embedding_table(lm):
    result = lm.train(epochs=4, verbose=False, tie=True)
    assert result["params"][-1] == {"table": None}  # one copy, the Embedding's
    assert result["test_loss"] < 0.65  # uniform: log 5 = 1.61
    assert result["valid"] >= 0.5 and result["valid_untrained"] <= 0.2


def test_tiny_lm_same_seed_gives_the_same_run(lm):
    a, b = (lm.train(epochs=1, n_train=300, n_prompts=40, verbose=False) for _ in range(2))
    for pa, pb in zip(fd.tree.leaves(a["params"]), fd.tree.leaves(b["params"])):
        assert np.array_equal(pa, pb)
    assert a["samples"] == b["samples"] and a["curve"] == b["curve"]
    c = lm.train(epochs=1, seed=1, n_train=300, n_prompts=40, verbose=False)
    assert c["curve"] != a["curve"]


def test_dyck_words_are_balanced_words_between_marks(lm):
    seq = lm.dyck_words(fd.random.key(3), 500)
    assert seq.shape == (500, lm.T + 1) and seq.dtype == np.int64
    words = ["".join(lm.CHARS[i] for i in row[1:]).split(";")[0] for row in seq]
    assert all(lm.balanced(w) for w in words)
    lengths = {len(w) for w in words}
    assert lengths == set(range(2, 2 * lm.MAX_HALF + 1, 2))
    assert (seq[:, 0] == 0).all() and (seq[:, -1] == 0).all()
    # nothing but ';' after a word's end
    ends = (seq[:, 1:] == 0).argmax(axis=1) + 1
    assert ((seq == 0) | (np.arange(lm.T + 1) < ends[:, None])).all()
    assert {"([", "[(", "((", "[["} <= {w[:2] for w in words}  # nesting of both kinds


@pytest.mark.parametrize(("word", "ok"), [
    ("()", True), ("([])[]", True), ("[(())]", True), ("", False), ("(]", False),
    ("([)]", False), ("(()", False), ("())(", False), ("()…", False), ("(;)", False),
])
def test_balanced(lm, word, ok):
    assert lm.balanced(word) is ok


def test_complete_keeps_the_prompt_and_stops_at_the_mark(lm, key):
    model = lm.make_model()
    _, params = model.init(key, (None, lm.T))
    prompts = lm.dyck_words(fd.random.key(5), 20)
    lengths = np.full(20, 3)
    words = lm.complete(model, params, fd.random.key(6), prompts, lengths)
    for row, w in zip(prompts, words):
        assert w.startswith(lm.CHARS[row[1]] + lm.CHARS[row[2]]) and ";" not in w


def test_complete_reads_nothing_past_the_prompt(lm, key):
    """Even a model that looks ahead (causal=False) gets nothing of the words' rest."""
    model = L.Sequential(L.Embedding(5, 8), L.TransformerEncoderLayer(
        8, 2, 16, dropout=0.0), L.Dense(5))
    _, params = model.init(key, (None, lm.T))
    prompts = lm.dyck_words(fd.random.key(5), 30)
    other = np.where(np.arange(lm.T + 1) < 4, prompts, (prompts + 1) % 5)
    lengths = np.full(30, 4)
    assert (lm.complete(model, params, fd.random.key(6), prompts, lengths)
            == lm.complete(model, params, fd.random.key(6), other, lengths))


# ---------------------------------------------------------------------------- ctc_sequences

def test_ctc_label_error_rate_below_ten_percent(ctc, capsys):
    result = ctc.main(["--epochs", "3"])
    out = capsys.readouterr().out
    assert "label error rate" in out and "truth -> decoded" in out
    assert result["test_ler"] < 0.10 and result["train_ler"] < 0.10
    assert result["curve"][-1] < result["curve"][0] / 4
    assert all(p.dtype == np.float32 for p in fd.tree.leaves(result["params"]))


def test_ctc_same_seed_gives_the_same_run(ctc):
    a, b = (ctc.train(epochs=1, n_train=100, n_test=20, verbose=False) for _ in range(2))
    for pa, pb in zip(fd.tree.leaves(a["params"]), fd.tree.leaves(b["params"])):
        assert np.array_equal(pa, pb)
    assert a["curve"] == b["curve"] and a["decoded"] == b["decoded"]
    c = ctc.train(epochs=1, seed=1, n_train=100, n_test=20, verbose=False)
    assert c["curve"] != a["curve"]


def test_noiseless_frames_spell_their_labels(ctc, monkeypatch):
    """Without noise each frame is its class's prototype: nearest-prototype classes, decoded
    greedily, give the labels back, so every label is held, equal neighbours are split by
    silence, and the lengths are right."""
    monkeypatch.setattr(ctc, "NOISE", 0.0)
    prototypes = fd.random.normal(fd.random.key(0), (ctc.LABELS + 1, ctc.FEATURES))
    prototypes[0] = 0.0
    x, labels, input_len, target_len = ctc.sequences(fd.random.key(1), 400, prototypes)
    assert x.shape == (400, ctc.T, ctc.FEATURES) and x.dtype == np.float32
    assert set(target_len.tolist()) == set(range(ctc.MIN_LEN, ctc.MAX_LEN + 1))
    assert input_len.max() <= ctc.T and (input_len >= 2 * target_len).all()
    assert (labels[:, 1:] == labels[:, :-1])[labels[:, 1:] > 0].any()  # repeats occur
    scores = -((x[:, :, None, :] - prototypes) ** 2).sum(axis=-1)
    decoded = ctc.greedy_decode(scores, input_len)
    assert decoded == [lab[:n].tolist() for lab, n in zip(labels, target_len)]
    assert (x[np.arange(ctc.T) >= input_len[:, None]] == 0).all()  # silence after


def test_greedy_decode_merges_repeats_then_drops_blanks(ctc):
    best = np.array([[0, 1, 1, 0, 1, 2, 2, 0, 3, 3],
                     [2, 2, 2, 2, 0, 0, 5, 5, 0, 0]])
    log_probs = np.log(np.full((2, 10, 7), 0.01))
    np.put_along_axis(log_probs, best[:, :, None], 0.0, axis=2)
    assert ctc.greedy_decode(log_probs, np.array([8, 10])) == [[1, 1, 2], [2, 5]]


@pytest.mark.parametrize(("a", "b", "d"), [
    ([], [], 0), ([1, 2], [], 2), ([], [3], 1), ([1, 2, 3], [1, 2, 3], 0),
    ([1, 2, 3], [1, 3], 1), ([1, 3], [1, 2, 3], 1), ([1, 2, 3], [1, 4, 3], 1),
    ([1, 2, 3, 4], [2, 3, 4, 5], 2), ([5, 1, 2], [1, 2, 6, 6], 3),
])
def test_edit_distance(ctc, a, b, d):
    assert ctc.edit_distance(a, b) == d == ctc.edit_distance(b, a)


# ---------------------------------------------------------------------------- command line

@pytest.mark.parametrize("name", ["tiny_lm", "ctc_sequences"])
@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "0"], "argument --epochs: expected a positive integer (1 or more), got 0"),
    (["--seed", "-1"], "argument --seed: expected a seed: an integer in [0, 2**128), got -1"),
])
def test_bad_arguments_are_refused_while_parsing(name, argv, message, capsys):
    err = refused(load_example(name).main, argv, capsys)
    assert err.startswith(f"usage: {name}.py ") and f"error: {message}" in err


@pytest.mark.parametrize(("name", "text"), [
    ("tiny_lm", "A character-level causal transformer that learns to write balanced "
                "brackets. (default: 10)"),
    ("ctc_sequences", "Read label sequences off unsegmented frames with a bidirectional GRU "
                      "and the CTC loss. (default: 6)"),
    ("seq2seq_lstm", "A seq2seq encoder-decoder of two LSTMs that learns to reverse digit "
                     "sequences: the encoder's final state starts the decoder, and the "
                     "gradient crosses from one to the other. (default: 12)"),
])
def test_help_shows_the_description_and_defaults(name, text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example(name).main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    description, default = text.rsplit(" ", 2)[0], text.rsplit(" ", 2)[1:]
    assert description in out and " ".join(default) in out and "(default: 0)" in out
