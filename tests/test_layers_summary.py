"""``layers.summary``: a row per part with its output shape, params and state, read off the
model's init, and the totals; README's table is the function's output."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import funcdl as fd
from funcdl import layers as L
from funcdl import tree
from funcdl.layers import _children

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _rows(table: str) -> list[list[str]]:
    """The body rows, split on runs of two spaces or more (names keep their indent)."""
    lines = table.splitlines()
    assert set(lines[1].replace(" ", "")) == {"-"}
    return [re.split(r"(?<=\S)\s{2,}", line) for line in lines[2:-1]]


def test_mlp_rows_shapes_counts_and_total() -> None:
    model = L.Sequential(L.Dense(512), L.ReLU(), L.Dense(512), L.ReLU(), L.Dense(10))
    table = L.summary(model, (None, 784))
    rows = _rows(table)
    assert [r[0] for r in rows] == ["Sequential", "  Dense(512)", "  ReLU()", "  Dense(512)",
                                    "  ReLU()", "  Dense(10)"]
    assert [r[1] for r in rows] == ["(None, 10)", "(None, 512)", "(None, 512)", "(None, 512)",
                                    "(None, 512)", "(None, 10)"]
    # 784·512 + 512, 512·512 + 512, 512·10 + 10
    assert [r[2] for r in rows] == ["669,706", "401,920", "0", "262,656", "0", "5,130"]
    assert table.splitlines()[-1] == "Total: 669,706 params, 2.68 MB: 669,706 float32"
    assert "State" not in table.splitlines()[0]


def test_nesting_state_and_the_total_are_the_params_tree() -> None:
    model = L.Sequential(L.Conv2D(4, 3, padding="SAME"), L.BatchNorm(momentum=None), L.ReLU(),
                         L.Residual(L.Sequential(L.Conv2D(4, 3, padding="SAME"), L.Tanh())),
                         L.Flatten(), L.Dense(3))
    shape = (None, 6, 6, 2)
    out_shape, params, state = model.init(fd.random.key(0), shape)
    table = L.summary(model, shape)
    rows = _rows(table)
    assert table.splitlines()[0].split() == ["Layer", "Output", "shape", "Params", "State"]
    names = [r[0] for r in rows]
    assert names[:5] == ["Sequential", "  Conv2D(4, 3)", "  BatchNorm(momentum=None)",
                         "  ReLU()", "  Residual"]
    assert names[5:8] == ["    Sequential", "      Conv2D(4, 3)", "      Tanh()"]
    assert rows[0][1] == str(out_shape) and rows[-1][1] == "(None, 3)"
    n_params = sum(a.size for a in tree.leaves(params))
    n_state = sum(np.size(a) for a in tree.leaves(state))  # mean, var (4 each), count
    assert n_params == 2 * (3 * 3 * 2 * 4 + 4) // 2 + 8 + (3 * 3 * 4 * 4 + 4) + 144 * 3 + 3
    assert rows[0][2:] == [f"{n_params:,}", f"{n_state:,}"] and rows[2][2:] == ["8", "9"]
    assert table.splitlines()[-1] == (f"Total: {n_params:,} params, {4 * n_params:,} bytes: "
                                      f"{n_params:,} float32; 9 state entries, 40 bytes: "
                                      f"8 float32, 1 int64")


def test_shared_params_count_once_in_the_total() -> None:
    model = L.Shared(L.Dense(3), 2)
    table = L.summary(model, ((None, 3), (None, 3)))
    rows = _rows(table)
    assert [r[0] for r in rows] == ["Shared", "  Dense(3)", "  Dense(3)"]
    assert [r[2] for r in rows] == ["12", "12", "(shared)"]
    assert table.splitlines()[-1] == "Total: 12 params, 48 bytes: 12 float32"


def test_a_shared_combinator_shows_its_parts_once() -> None:
    body = L.Sequential(L.Dense(4), L.Tanh())
    model = L.Sequential(L.FanOut(3), L.Shared(body, 3))
    rows = _rows(L.summary(model, (None, 2)))
    assert [(r[0], r[2]) for r in rows[2:]] == [
        ("  Shared", "12"), ("    Sequential", "12"), ("      Dense(4)", "12"),
        ("      Tanh()", "0"), ("    Sequential", "(shared)"), ("    Sequential", "(shared)")]
    assert [r[1] for r in rows[6:]] == ["(None, 4)"] * 2
    cut = _rows(L.summary(model, (None, 2), depth=2))  # the first by its full name too
    assert [r[0] for r in cut[2:]] == ["  Shared"] + ["    " + body.name] * 3


def test_a_shared_stateful_part_shows_its_state_once() -> None:
    model = L.Sequential(L.FanOut(2), L.Shared(L.Sequential(L.Dense(3), L.BatchNorm()), 2))
    rows = _rows(L.summary(model, (None, 4)))
    assert [(r[0], r[2], r[3]) for r in rows[2:]] == [
        ("  Shared", "21", "6"), ("    Sequential", "21", "6"), ("      Dense(3)", "15", "0"),
        ("      BatchNorm()", "6", "6"), ("    Sequential", "(shared)", "(shared)")]
    # Tied does not tie state: each place keeps its own BatchNorm statistics
    tied = L.Tied(L.Sequential(L.Dense(4), L.BatchNorm(), L.Dense(4), L.BatchNorm()), [0, 2])
    assert [(r[2], r[3]) for r in _rows(L.summary(tied, (None, 4)))] == [
        ("36", "16"), ("36 (+20 tied)", "16"), ("20", "0"), ("8", "8"), ("(20 tied)", "0"),
        ("8", "8")]


def test_a_repeat_shows_its_count() -> None:
    model = L.Sequential(L.Repeat(L.Residual(L.Dense(4)), 3), L.Dense(2))
    rows = _rows(L.summary(model, (None, 4)))
    assert [(r[0], r[2]) for r in rows] == [
        ("Sequential", "30"), ("  Repeat ×3", "20"), ("    Residual", "20"),
        ("      Dense(4)", "20"), ("  Dense(2)", "10")]
    cut = _rows(L.summary(model, (None, 4), depth=1))  # cut: its full name, which says 3
    assert cut[1][0] == "  Repeat(Residual(Dense(4)), 3)"


def test_tied_rows_add_up_to_their_parents() -> None:
    model = L.Tied(L.Sequential(L.Dense(4), L.Dense(4), L.Dense(4), L.Dense(4)),
                   [0, 2], [(1, "w"), (3, "w")])
    table = L.summary(model, (None, 4))
    assert [(r[0], r[2]) for r in _rows(table)] == [
        ("Tied", "44"), ("  Sequential", "44 (+36 tied)"), ("    Dense(4)", "20"),
        ("    Dense(4)", "20"), ("    Dense(4)", "(20 tied)"), ("    Dense(4)", "4 (+16 tied)")]
    assert table.splitlines()[-1] == "Total: 44 params, 176 bytes: 44 float32"


def test_a_leaf_layer() -> None:
    assert L.summary(L.Dense(2), (None, 3)).splitlines()[2:] == [
        "Dense(2)  (None, 2)          8", "Total: 8 params, 32 bytes: 8 float32"]


def test_long_names_are_cut_and_parents_shown_by_kind() -> None:
    inner = L.Sequential(*[L.Dense(2) for _ in range(12)])
    rows = _rows(L.summary(L.Sequential(inner, L.Tanh()), (None, 2)))
    assert rows[1][0] == "  Sequential"  # a part with parts: its kind, not its long name
    conv = L.Conv2D(4, (3, 5), stride=(2, 1), padding=((1, 2), (0, 3)), dilation=2)
    assert len(conv.name) > 44
    shown = _rows(L.summary(L.Sequential(conv), (None, 9, 9, 2)))[1][0]
    assert len(shown) == 44 and shown == "  " + conv.name[:41] + "…"


def test_the_readme_table_is_summarys_output() -> None:
    block = re.search(r"print\(L\.summary\(model, \(None, 2\)\)\)\n```\n\n```text\n(.*?)```",
                      README, flags=re.S)
    assert block is not None, "README's summary example moved"
    model = L.Sequential(L.Dense(25), L.ReLU(), L.Dense(25), L.ReLU(), L.Dense(1))
    assert L.summary(model, (None, 2)) + "\n" == block.group(1)


def test_pure_repeatable_and_no_record_left_behind() -> None:
    model = L.Sequential(L.Dense(4), L.ReLU())
    first = L.summary(model, (None, 3))
    assert L.summary(model, (None, 3), key=fd.random.key(5)) == first
    assert _children.TRACE.get() is None
    with pytest.raises(ValueError, match=r"Sequential\[0\] Dense\(4\)"):
        L.summary(model, (None,))  # init's own error, naming the part
    assert _children.TRACE.get() is None  # reset after an error too


def test_not_a_layer_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"layers.summary: expected a layer .*got"):
        L.summary(lambda x: x, (None, 3))  # type: ignore[arg-type]


def test_depth_hides_deeper_parts_and_keeps_the_totals() -> None:
    model = L.Sequential(L.Residual(L.Sequential(L.Dense(3), L.ReLU())), L.Dense(2))
    full = _rows(L.summary(model, (None, 3)))
    assert [r[0] for r in full] == ["Sequential", "  Residual", "    Sequential",
                                    "      Dense(3)", "      ReLU()", "  Dense(2)"]
    one = L.summary(model, (None, 3), depth=1)
    rows = _rows(one)
    # the part at the deepest level shown by its full name, its parts' params in its row
    assert [r[0] for r in rows] == ["Sequential", "  Residual(Sequential(Dense(3), ReLU()))",
                                    "  Dense(2)"]
    assert [r[2] for r in rows] == ["20", "12", "8"]
    assert one.splitlines()[-1] == L.summary(model, (None, 3)).splitlines()[-1]
    top = _rows(L.summary(model, (None, 3), depth=0))
    assert len(top) == 1 and top[0][2] == "20" and top[0][0].startswith("Sequential(")
    assert L.summary(model, (None, 3), depth=9) == L.summary(model, (None, 3))


@pytest.mark.parametrize(("depth", "error"), [(-1, ValueError), (1.5, TypeError),
                                              ("2", TypeError), (True, TypeError)])
def test_a_bad_depth_is_named(depth, error) -> None:
    with pytest.raises(error, match=r"layers.summary: depth must"):
        L.summary(L.Dense(2), (None, 3), depth=depth)
