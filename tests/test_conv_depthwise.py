"""Grouped convolution with one input channel per group (depthwise, any multiplier): the
NHWC path proved taken, against the nested-loop reference and finite differences, and
which path the layer picks. The rest of groups is in test_conv_groups.py."""

from __future__ import annotations

import numpy as np
import pytest
from _conv_util import close, naive_grouped, run

from funcdl import random
from funcdl.layers import _grouped, conv
from funcdl.layers.conv import Conv1D, Conv2D
from funcdl.testing import check_layer

# ---------------------------------------------------------------------------- Cg = 1


@pytest.fixture(params=["tiled", "plain", "dispatched", "rows", "pieces"])
def depthwise_path(request, monkeypatch):
    """One input channel per group: 'tiled' and 'plain' run every multiplier on the NHWC
    path, proved taken (the group-major layout refuses), 'plain' without the taps' row
    tiling and with the broadcast repeat; 'dispatched' as the layer picks (Og > 2 group-major
    while the im2col buffer is small); 'rows' and 'pieces' on the NHWC path in pieces
    (_grouped._blocks) of one output row, and of 700 bytes: a float64 Conv2D example of
    these cases is one piece (the stride-2 and VALID cases) or 3-9 pieces of 1-3 rows (the
    first case's last piece shorter); a piece holds one to three Conv1D examples."""
    def refuse(*args):
        raise AssertionError("Cg = 1 went group-major")

    if request.param != "dispatched":
        monkeypatch.setattr(conv, "_NHWC_OG", 1 << 30)
        monkeypatch.setattr(_grouped, "to_groups", refuse)
        monkeypatch.setattr(_grouped, "by_group", refuse)
    if request.param in ("rows", "pieces"):
        monkeypatch.setattr(_grouped, "_BLOCK", 1 if request.param == "rows" else 700)
    if request.param == "plain":
        monkeypatch.setattr(_grouped, "_TILE", 0)
        monkeypatch.setattr(_grouped, "_FEW_REPEATS", 0)


DEPTHWISE = [  # layer (Cg = 1, Og = out / C), x's shape; the reference's stride, pads, dilation
    (lambda: Conv2D(4, 3, groups=4), (2, 7, 6, 4), 1, ((1, 1), (1, 1)), 1),  # SAME, Og 1
    (lambda: Conv2D(6, 3, stride=2, padding=1, groups=3), (2, 7, 6, 3), 2,   # Og 2, int pad
     ((1, 1), (1, 1)), 1),
    (lambda: Conv2D(6, (3, 2), padding="VALID", dilation=2, groups=2), (2, 7, 6, 2), 1,
     ((0, 0), (0, 0)), 2),                                                    # Og 3
    (lambda: Conv2D(9, 2, stride=(2, 1), dilation=2, groups=3), (2, 7, 6, 3), (2, 1),
     ((1, 1), (1, 1)), 2),                                                    # SAME, Og 3
    (lambda: Conv2D(10, (2, 3), stride=(1, 2), padding=((1, 0), (0, 2)), dilation=(2, 1),
                    groups=5), (2, 7, 6, 5), (1, 2), ((1, 0), (0, 2)), (2, 1)),
    (lambda: Conv2D(12, 3, padding=2, use_bias=False, groups=2), (2, 7, 6, 2), 1,
     ((2, 2), (2, 2)), 1),                                                    # Og 6
    (lambda: Conv1D(4, 3, groups=4), (3, 9, 4), 1, (1, 1), 1),
    (lambda: Conv1D(9, 3, stride=2, padding=2, groups=3), (3, 9, 3), 2, (2, 2), 1),
    (lambda: Conv1D(4, 2, padding="VALID", dilation=2, groups=2), (3, 9, 2), 1, (0, 0), 2),
]


@pytest.mark.parametrize(("make", "shape", "stride", "pads", "dilation"), DEPTHWISE)
def test_depthwise_matches_nested_loops(make, shape, stride, pads, dilation, depthwise_path):
    layer = make()
    x = random.normal(random.key(5), shape, np.float64)
    params, y, dy, (grads, dx) = run(layer, x)
    if len(shape) == 3:  # Conv1D: the reference's 1 x k Conv2D on (N, 1, L, C)
        x4, w4, dy4, pads = x[:, None], params["w"][None], dy[:, None], ((0, 0), pads)
        stride, dilation = (1, stride), (1, dilation)
    else:
        x4, w4, dy4 = x, params["w"], dy
        stride, dilation = (v if isinstance(v, tuple) else (v, v) for v in (stride, dilation))
    y_ref, pullback_ref = naive_grouped(x4, w4, params.get("b", 0.0), stride, pads,
                                        dilation, shape[-1])
    close(y, y_ref.reshape(y.shape))
    dw, db, dx_ref = pullback_ref(dy4)
    close(grads["w"], dw.reshape(params["w"].shape))
    close(dx, dx_ref.reshape(x.shape))
    assert sorted(grads) == sorted(params)
    if "b" in grads:
        close(grads["b"], db)
    grads_only, none = layer.vjp(params, x)[1](dy, need_dx=False)
    assert none is None and all(np.array_equal(grads_only[k], grads[k]) for k in grads)


@pytest.mark.parametrize(("make", "shape"), [case[:2] for case in DEPTHWISE])
def test_depthwise_check_layer(make, shape, depthwise_path):
    check_layer(make(), (None, *shape[1:]), batch=2)


def test_multiplier_maps_output_o_to_input_o_over_og(depthwise_path):
    # Og = 2, a kernel of ones: outputs 2c and 2c + 1 are the window sums of input c (not
    # c and c + C, the tiled order); dx of c gathers dy's channels 2c and 2c + 1
    x = np.ones((1, 4, 5, 3)) * np.array([1.0, 10.0, 100.0])
    y, pb = Conv2D(6, 3, use_bias=False, groups=3).vjp({"w": np.ones((3, 3, 1, 6))}, x)
    count = np.array([[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]])
    np.testing.assert_array_equal(y[0], count[..., None] * np.repeat([1.0, 10.0, 100.0], 2))
    _, dx = pb(np.ones_like(y) * np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0]))
    np.testing.assert_array_equal(dx[0], count[..., None] * [3.0, 12.0, 48.0])


@pytest.mark.parametrize(("og", "big", "path"), [(1, False, "depthwise"), (2, False, "depthwise"),
                                                 (3, False, "to_groups"), (3, True, "depthwise")])
def test_cg_1_runs_nhwc_up_to_og_2_or_past_the_buffer(og, big, path, key, monkeypatch):
    seen = set()
    for fn in ("depthwise", "to_groups"):
        f = getattr(_grouped, fn)
        monkeypatch.setattr(_grouped, fn, lambda *a, f=f, fn=fn: seen.add(fn) or f(*a))
    if big:  # an im2col buffer past the limit: group-major would go one offset at a time
        monkeypatch.setattr(conv, "_COLS_BYTES", 0)
    layer = Conv2D(6 * og, 3, groups=6)
    _, params = layer.init(key, (None, 5, 5, 6))
    layer.vjp(params, np.ones((2, 5, 5, 6), np.float32))[1](np.ones((2, 5, 5, 6 * og)))
    assert seen == {path}


@pytest.mark.parametrize(("shape", "block", "want"), [
    ((5, 4, 3, 2), 200, [(slice(0, 2), 0, 4), (slice(2, 4), 0, 4), (slice(4, 6), 0, 4)]),
    ((2, 5, 3, 2), 50, [(slice(e, e + 1), r, min(r + 2, 5)) for e in range(2)
                        for r in (0, 2, 4)]),
    ((1, 3, 100, 2), 8, [(slice(0, 1), r, r + 1) for r in range(3)]),  # a row past the block
    ((0, 3, 3, 2), 8, []),
])
def test_blocks_cover_each_output_row_once_in_pieces_under_the_block(shape, block, want,
                                                                     monkeypatch):
    # float32 items: (5, 4, 3, 2) examples are 96 bytes, two to a 200-byte piece
    monkeypatch.setattr(_grouped, "_BLOCK", block)
    assert _grouped._blocks(shape, 4) == want


def test_pieces_narrow_a_strided_offset_slice_to_their_rows():
    sl = (slice(None), slice(2, 2 + 4 * 3 + 1, 3), slice(1, 9, 2))  # rows 2, 5, ..., 14
    x = np.arange(3 * 20 * 10).reshape(3, 20, 10, 1)
    got = x[_grouped._piece(sl, slice(1, 3), 1, 4)]
    np.testing.assert_array_equal(got, x[sl][1:3, 1:4])
