"""data.pad_sequences: a ragged list of sequences as a padded batch (N, T, ...) and its
lengths; against PyTorch's pad_sequence(batch_first=True), and into an LSTM(lengths=True)."""

from __future__ import annotations

import numpy as np
import pytest

import funcdl as fd
from funcdl.data import pad_sequences


def ragged(dtype: type = np.float32) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(t, 3)).astype(dtype) for t in (4, 1, 0, 6)]


def test_steps_in_place_padding_after() -> None:
    seqs = ragged()
    x, lengths = pad_sequences(seqs, padding_value=-7.0)
    assert x.shape == (4, 6, 3) and x.dtype == np.float32
    assert lengths.dtype == np.int64 and lengths.tolist() == [4, 1, 0, 6]
    for n, s in enumerate(seqs):
        np.testing.assert_array_equal(x[n, :len(s)], s)
        assert (x[n, len(s):] == -7.0).all()


def test_tokens_stay_integers_and_max_len_pads_further() -> None:
    x, lengths = pad_sequences([[5, 6, 7], [8], []], padding_value=-100, max_len=5)
    assert x.dtype == np.int64  # the empty list (float64 to NumPy) has no say
    np.testing.assert_array_equal(x, [[5, 6, 7, -100, -100], [8] + [-100] * 4, [-100] * 5])
    np.testing.assert_array_equal(lengths, [3, 1, 0])


def test_dtype_and_a_nan_padding() -> None:
    x, _ = pad_sequences([np.arange(3), np.arange(1)], padding_value=np.nan, dtype=np.float32)
    assert x.dtype == np.float32 and np.isnan(x[1, 1:]).all() and x[0].tolist() == [0, 1, 2]


def test_against_torch() -> None:
    torch = pytest.importorskip("torch")
    seqs = ragged(np.float64)
    want = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], batch_first=True,
                                           padding_value=0.5)
    x, _ = pad_sequences(seqs, padding_value=0.5)
    np.testing.assert_array_equal(x, want.numpy())


def test_feeds_a_padded_lstm() -> None:
    seqs = ragged()
    x, lengths = pad_sequences(seqs)
    layer = fd.layers.LSTM(2, lengths=True, return_sequences=False)
    _, params = layer.init(fd.random.key(0), ((None, 6, 3), (None,)))
    last = layer.apply(params, (x, lengths))
    for n, s in enumerate(seqs):
        if len(s):  # each sequence alone, unpadded, ends in the same state
            alone = fd.layers.LSTM(2, return_sequences=False).apply(params, s[None])
            np.testing.assert_allclose(last[n], alone[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kw, error, words", [
    (dict(sequences=[]), ValueError, "got no sequences"),
    (dict(sequences=[np.zeros((2, 3)), np.zeros((2, 4))]), ValueError,
     "trailing shape of the first, (3,) (its shape (2, 3)); sequence 1 has shape (2, 4)"),
    (dict(sequences=[[1, 2, 3]], max_len=2), ValueError,
     "sequence 0 has 3 steps, more than max_len=2"),
    (dict(sequences=[[1, 2]], padding_value=0.5), ValueError,
     "padding_value must be a number that the batch's dtype int64 holds"),
    (dict(sequences=[np.zeros(2, np.uint8)], padding_value=-1), ValueError, "dtype uint8"),
    (dict(sequences=[np.zeros(2, np.float32)], padding_value=1e300), ValueError, "got 1e+300"),
    # a float that no integer holds: the named error, not NumPy's cast warning (-W error)
    (dict(sequences=[[1, 2]], padding_value=float("nan")), ValueError, "dtype int64 holds"),
    (dict(sequences=[[1, 2]], padding_value=float("inf")), ValueError, "got inf"),
    (dict(sequences=[np.zeros(2, np.int32)], padding_value=1e300), ValueError, "dtype int32"),
    (dict(sequences=[1, 2]), ValueError, "sequence 0 is a scalar"),
    (dict(sequences=[["a", "b"]]), TypeError, "sequence 0 must hold numbers, got dtype <U1"),
    (dict(sequences={1: [1]}), TypeError, "expected a list or tuple of sequences"),
    (dict(sequences=[[1]], max_len=-1), ValueError, "max_len must be >= 0"),
])
def test_bad_input_names_the_function_and_the_shapes(kw: dict, error: type, words: str) -> None:
    with pytest.raises(error, match=r"^pad_sequences: ") as info:
        pad_sequences(**kw)
    assert words in str(info.value)
