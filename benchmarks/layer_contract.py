"""The layer contract of DESIGN.md, measured over the whole layer catalogue (not a test):

- "``apply`` must not be slower than ``vjp(...)[0]``": apply against vjp (the forward that
  keeps residuals), the median over ~10 ms slices of apply's time over vjp's; flagged above
  1.10 (``apply>vjp``).
- "``vjp`` must not redo the forward work in ``pullback``": the pullback's time over
  apply's, flagged above 3 (``pb>3x``: look whether it recomputes the forward).
- "it saves only the residuals it needs": the bytes of the distinct NumPy buffers the
  pullback holds, found by walking its closure (cells, defaults, tuples, lists, dicts,
  NamedTuples, partials, objects' attributes, nested functions; a view counts as its base
  buffer, once; the params and state, which the caller holds anyway, left out), as a
  multiple of the input's bytes plus the output's; flagged above 2.5 (``held``). ``keeps
  x``: whether the pullback holds the input array itself (``x``), a copy of it with the
  same values (``copy``), or neither (``-``); one letter per input of a tuple.

Every layer of ``funcdl.layers.__all__`` runs on an input of a realistic size (CASES
below; the script fails when a public layer has no case). The three steps of a case (apply,
vjp, a call of one pullback) alternate in slices (``timing.interleaved``) and the ratios
are medians of per-slice ratios (``timing.paired_ratio``), so that the machine's swings hit
both sides alike; one BLAS thread; glibc's malloc keeps freed memory. A pullback that does
not give the same result twice is timed as vjp + pullback minus vjp, slice by slice.

    .venv/bin/python -m benchmarks.layer_contract [--only NAME,...] [--quick] [--out FILE]
"""

from __future__ import annotations

import os

os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

import argparse
import functools
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report, timing
from funcdl import layers as L
from funcdl import random, tree
from funcdl.perf import retain_freed_memory

RESULT = Path(__file__).resolve().parent / "results" / "layer_contract.md"
NOT_LAYERS = {"LayerLike", "Pointwise", "Pullback", "Shape", "batch_sum", "summary"}
APPLY_OVER_VJP, PB_OVER_APPLY, HELD_OVER_IO = 1.10, 3.0, 2.5

ROWS, WIDE = (64, 256), (256, 1024)  # Dense-like rows; row-wise ops (softmax, norms)
IMG, SEQ = (32, 16, 16, 32), (32, 32, 64)  # NHWC images; (N, T, E) sequences
Maker = Callable[[np.random.Generator], Any]


def nrm(*shape: int) -> Maker:
    return lambda g: g.standard_normal(shape, np.float32)


def both(*makers: Maker) -> Maker:
    return lambda g: tuple(m(g) for m in makers)


@dataclass(frozen=True)
class Case:
    layer: Any
    x: Maker
    train: bool = False  # train=True with a key (dropout, batch statistics)
    label: str = ""

    @property
    def name(self) -> str:
        return (self.label or self.layer.name) + (" train" if self.train else "")


def _scale() -> L.Layer:
    """A user's own Layer(init, apply, vjp), as the README writes one."""
    def init(key: Any, in_shape: Any) -> Any:
        return in_shape, {"a": random.normal(key, in_shape[-1:], np.float32)}

    def vjp(params: Any, x: Any) -> Any:
        return x * params["a"], lambda dy: ({"a": (dy * x).sum(0)}, dy * params["a"])

    return L.Layer(init, lambda p, x: x * p["a"], vjp, name="Layer(Scale)")


def _cases() -> list[Case]:
    r, w, im, sq = nrm(*ROWS), nrm(*WIDE), nrm(*IMG), nrm(*SEQ)
    r2, sq2, n, t = both(r, r), both(sq, sq), SEQ[0], SEQ[1]
    ids: Maker = lambda g: g.integers(0, 1000, (n, t))  # noqa: E731
    lengths: Maker = lambda g: g.integers(t // 2, t + 1, n)  # noqa: E731
    # a key-padding mask, True at padding; every row keeps at least half its steps
    pad: Maker = lambda g: np.arange(t) >= g.integers(t // 2, t + 1, (n, 1))  # noqa: E731
    mlp = (L.Dense(256), L.ReLU(), L.Dense(256))
    pointwise = [L.ReLU(), L.LeakyReLU(0.2), L.Tanh(), L.Sigmoid(), L.Softplus(), L.GELU(),
                 L.GELU(approximate=True), L.SiLU(), L.ELU(), L.ReLU6(), L.Hardtanh(),
                 L.Hardsigmoid(), L.Hardswish(), L.Mish(), L.SELU(), L.CELU(0.5),
                 L.Softsign(), L.LogSigmoid(), L.PReLU(), L.PReLU(IMG[-1]), L.Softshrink(),
                 L.Hardshrink(), L.Tanhshrink(), L.Threshold(0.1, 0.0), L.Identity(),
                 L.Flatten(), L.Reshape(-1)]
    rowwise = [L.Softmax(), L.LogSoftmax(), L.Softmin(), L.Sparsemax(), L.GLU(), L.LayerNorm(),
               L.RMSNorm(), L.BatchNorm()]
    return [
        *(Case(a, im) for a in pointwise), *(Case(a, w) for a in rowwise),
        Case(L.Dense(256), r), Case(_scale(), r),
        Case(L.Dense(256, use_bias=False), r, label="Dense(256, no bias)"),
        Case(L.Bilinear(64), both(nrm(64, 128), nrm(64, 64))),
        Case(L.Sequential(*mlp), r), Case(L.Parallel(L.Dense(256), L.ReLU()), r2),
        Case(L.FanOut(2), r), Case(L.FanInSum(), r2), Case(L.FanInConcat(), r2),
        Case(L.Select(1), r2), Case(L.Slice(np.s_[:128]), r, label="Slice[:128]"),
        Case(L.Residual(L.Dense(256)), r), Case(L.Shared(L.Dense(256)), r2),
        Case(L.Repeat(L.Dense(256), 2), r),
        Case(L.Tied(L.Sequential(L.Dense(256), L.Tanh(), L.Dense(256)), [0, 2]), r),
        Case(L.Remat(L.Sequential(*mlp)), r), Case(L.BatchThreads(L.Sequential(*mlp), 2), r),
        Case(L.WeightNorm(L.Dense(256)), r), Case(L.SpectralNorm(L.Dense(256)), r, True),
        Case(L.WeightNorm(L.Conv2D(32, 3)), im),
        Case(L.Dropout(0.5), im, True), Case(L.DropPath(0.1), sq, True),
        Case(L.AlphaDropout(0.1), im, True), Case(L.FeatureAlphaDropout(0.1), im, True),
        Case(L.BatchNorm(), r, True), Case(L.BatchNorm(), im, True), Case(L.BatchNorm(), im),
        Case(L.BatchNorm(track_running_stats=False), im, True),
        Case(L.GroupNorm(8), im), Case(L.InstanceNorm(affine=True), im),
        Case(L.LayerNorm(), im), Case(L.LocalResponseNorm(5), im),
        Case(L.Conv2D(32, 3), im), Case(L.Conv2D(64, 3, stride=2), im),
        Case(L.Conv2D(32, 3, groups=32), im), Case(L.Conv1D(64, 5), sq),
        Case(L.ConvTranspose2D(16, 4, stride=2, padding=1), im),
        Case(L.ConvTranspose1D(64, 3), sq),
        Case(L.Upsample(2), im), Case(L.Upsample(2, "bilinear"), im),
        Case(L.MaxPool2D(), im), Case(L.MaxPool2D(3, 2, "SAME"), im), Case(L.AvgPool2D(), im),
        Case(L.GlobalAvgPool(), im), Case(L.MaxPool1D(), sq), Case(L.AvgPool1D(3, 2), sq),
        Case(L.AdaptiveAvgPool2D(4), im), Case(L.AdaptiveMaxPool2D(4), im),
        Case(L.AdaptiveAvgPool1D(8), sq), Case(L.AdaptiveMaxPool1D(8), sq),
        Case(L.Pad2D(1), im), Case(L.Pad2D(1, "reflect"), im), Case(L.Pad1D(2), sq),
        Case(L.PixelShuffle(2), im), Case(L.PixelUnshuffle(2), im),
        Case(L.Embedding(1000, 64), ids),
        Case(L.PositionalEmbedding(64), sq), Case(L.SinusoidalPositionalEncoding(), sq),
        Case(L.SimpleRNN(64), sq), Case(L.LSTM(64), sq), Case(L.GRU(64), sq),
        Case(L.LSTM(64, return_sequences=False), sq),
        Case(L.GRU(64, lengths=True), both(sq, lengths)),
        Case(L.Bidirectional(L.LSTM(64)), sq),
        Case(L.MultiHeadAttention(4), sq), Case(L.MultiHeadAttention(4, causal=True), sq),
        Case(L.MultiHeadAttention(4), sq2),
        Case(L.MultiHeadAttention(4, masked=True), both(sq, pad)),
        Case(L.MultiHeadAttention(4, dropout=0.1), sq, True),
        Case(L.MultiHeadAttention(4, normalizer="sparsemax"), sq),
        Case(L.TransformerEncoderLayer(64, 4, 256, dropout=0.1), sq, True),
        Case(L.TransformerEncoderLayer(64, 4, 256, dropout=0.0), sq),
        Case(L.TransformerDecoderLayer(64, 4, 256, dropout=0.0), sq2),
        Case(L.Carry(L.MultiHeadAttention(4, masked=True)), both(sq, pad)),
        Case(L.MaskedMean(), both(sq, pad)),
        Case(L.MaskedMean("lengths"), both(sq, lengths)),
    ]


def constructor(layer: Any) -> str:
    return "Layer" if layer.name.startswith("Layer(") else layer.name.split("(")[0]


def check_complete(cases: list[Case]) -> None:
    """Every public layer has a case: a new layer cannot be forgotten here."""
    missing = set(L.__all__) - NOT_LAYERS - {constructor(c.layer) for c in cases}
    if missing:
        raise SystemExit(f"layer_contract: no case for {sorted(missing)}; add one to _cases()")


# ------------------------------------------------------------------ what a pullback holds

def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


_ATOMS = (str, bytes, int, float, complex, bool, type(None), type, types.ModuleType,
          np.dtype, np.generic, slice, range)


def held_arrays(pullback: Any) -> list[np.ndarray]:
    """The distinct base buffers reachable from ``pullback`` (see the module docstring).
    Layer values met on the way (a combinator's children) are configuration, not
    residuals, and are not entered."""
    seen: set[int] = set()
    found: dict[int, np.ndarray] = {}
    stack: list[Any] = [pullback]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, _ATOMS) or isinstance(o, L.Layer):
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            base = _root(o)
            found[id(base)] = base
            if o.dtype == object:
                stack.extend(o.ravel().tolist())
        elif isinstance(o, (tuple, list, set, frozenset)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, functools.partial):
            stack += [o.func, o.args, o.keywords]
        elif isinstance(o, types.MethodType):
            stack += [o.__func__, o.__self__]
        elif isinstance(o, types.FunctionType):
            stack += [o.__defaults__, o.__kwdefaults__]
            for cell in o.__closure__ or ():
                try:
                    stack.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    pass
        else:
            stack.extend(getattr(o, "__dict__", {}).values())
            for cls in type(o).__mro__:
                for s in getattr(cls, "__slots__", ()):
                    if hasattr(o, s):
                        stack.append(getattr(o, s))
    return list(found.values())


def _arrays(t: Any) -> list[np.ndarray]:
    return [a for a in tree.leaves(t) if isinstance(a, np.ndarray)]


def keeps_x(x: Any, held: list[np.ndarray]) -> str:
    """Per input array: ``x`` (its own buffer held), ``copy`` (an array of equal values), ``-``."""
    roots = {id(a) for a in held}
    out = []
    for xi in _arrays(x):
        if id(_root(xi)) in roots:
            out.append("x")
        elif any(a.size == xi.size and a.dtype.kind == xi.dtype.kind
                 and np.array_equal(a.reshape(-1), xi.reshape(-1)) for a in held):
            out.append("copy")
        else:
            out.append("-")
    return ",".join(out)


# --------------------------------------------------------------------------- measuring

@dataclass
class Row:
    case: Case
    x_shape: str
    us: dict[str, float] = field(default_factory=dict)
    apply_vjp: float = 0.0
    pb_apply: float = 0.0
    held_mib: float = 0.0
    held_io: float = 0.0
    keeps: str = ""
    flags: list[str] = field(default_factory=list)
    note: str = ""


def _cotangent(y: Any, g: np.random.Generator) -> Any:
    if isinstance(y, (tuple, list)):
        return type(y)(_cotangent(e, g) for e in y)
    return g.standard_normal(np.shape(y)).astype(y.dtype if y.dtype.kind == "f" else np.float32)


def measure(case: Case, budget: float, rounds: int) -> Row:
    g = np.random.default_rng(0)
    layer, x = case.layer, case.x(g)
    in_shape = tuple(a.shape for a in x) if isinstance(x, tuple) else x.shape
    init = layer.init(random.key(0), in_shape)
    params = init[1]
    kw: dict[str, Any] = {"train": True, "key": random.key(1)} if case.train else {}
    if layer.stateful:
        kw["state"] = init[2]
    out = layer.vjp(params, x, **kw)
    y, pb = out[0], out[1]
    dy = _cotangent(y, g)
    row = Row(case, " ".join(str(a.shape) for a in _arrays(x)))

    owned = {id(_root(a)) for a in _arrays((params, kw.get("state"), kw.get("key")))}
    held = [a for a in held_arrays(pb) if id(a) not in owned]
    io = sum(a.nbytes for a in _arrays(x) + _arrays(y))
    row.held_mib = sum(a.nbytes for a in held) / 2**20
    row.held_io = sum(a.nbytes for a in held) / io
    row.keeps = keeps_x(x, held)
    del held

    first, second = tree.leaves(pb(dy)), tree.leaves(pb(dy))
    again = len(first) == len(second) and all(
        np.array_equal(u, v, equal_nan=True) for u, v in zip(first, second))
    steps: dict[str, Callable[[], Any]] = {
        "apply": lambda: layer.apply(params, x, **kw),
        "vjp": lambda: layer.vjp(params, x, **kw),
    }
    if again:
        steps["pullback"] = lambda: pb(dy)
    else:
        row.note = "pullback not repeatable: timed as vjp+pullback - vjp"
        steps["vjp+pb"] = lambda: layer.vjp(params, x, **kw)[1](dy)
    slices: dict[str, list[float]] = {}
    times = timing.interleaved([steps], budget, rounds=rounds, warmup=min(0.05, budget),
                               settle=0.005, slices=slices)
    row.us = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    if not again:
        slices["pullback"] = [max(a - b, 1e-9) for a, b in zip(slices.pop("vjp+pb"),
                                                                  slices["vjp"], strict=True)]
        row.us["pullback"] = row.us.pop("vjp+pb") - row.us["vjp"]
    row.apply_vjp = timing.paired_ratio(slices["apply"], slices["vjp"])
    row.pb_apply = timing.paired_ratio(slices["pullback"], slices["apply"])
    row.flags = [f for f, bad in (("apply>vjp", row.apply_vjp > APPLY_OVER_VJP),
                                  ("pb>3x", row.pb_apply > PB_OVER_APPLY),
                                  ("held", row.held_io > HELD_OVER_IO)) if bad]
    return row


# ----------------------------------------------------------------------------- report

def header(args: argparse.Namespace, share: float | None, seconds: float) -> list[str]:
    m = report.machine({})
    date = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime())
    cmd = " ".join([Path(sys.executable).name, "-m", "benchmarks.layer_contract",
                    *sys.argv[1:]])
    return [
        f"{date} · git {report._git()} · {m['cpu']}, {m['cores']} cores, "
        f"{platform.platform()}, Python {m['python']}, NumPy {m['numpy']} ({m['blas']}), "
        f"one BLAS thread", "",
        "# benchmarks/layer_contract.py: apply vs vjp, pullback vs apply, residual bytes", "",
        f"- command: `{cmd}`; {args.budget:g} s of timed calls per step, {args.rounds} "
        f"rounds; {seconds:.0f} s; other processes kept "
        f"{'–' if share is None else f'{share:.0%}'} of the cores busy (/proc/stat)",
        f"- flags: `apply>vjp` apply/vjp > {APPLY_OVER_VJP}; `pb>3x` pullback/apply > "
        f"{PB_OVER_APPLY}; `held` pullback's buffers / (input + output bytes) > "
        f"{HELD_OVER_IO}. Ratios: medians of per-slice ratios (~10 ms slices); µs: medians "
        "per call. `keeps x`: the input itself (x), a copy (copy), neither (-).", "",
        "| layer | input | apply µs | vjp µs | pullback µs | apply/vjp | pb/apply | held MiB "
        "| held/(in+out) | keeps x | flags |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]


def line(r: Row) -> str:
    u = r.us
    return (f"| {r.case.name} | {r.x_shape} | {u['apply']:,.0f} | {u['vjp']:,.0f} | "
            f"{u['pullback']:,.0f} | {r.apply_vjp:.2f} | {r.pb_apply:.2f} | "
            f"{r.held_mib:.2f} | {r.held_io:.2f} | {r.keeps} | "
            f"{' '.join(r.flags)}{' (' + r.note + ')' if r.note else ''} |")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.layer_contract",
                                 description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--only", default="", help="comma-separated layer names (Dense, LSTM) or "
                    "substrings of case names to run (default all)")
    ap.add_argument("--quick", action="store_true",
                    help="a few calls per step: a smoke test; writes no file unless --out")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timed calls per step (default 0.4; 0.02 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="default 2; 1 with --quick")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"markdown file (default {RESULT.relative_to(timing.REPO)} for a "
                    "full run; none with --quick or --only)")
    args = ap.parse_args(argv)
    args.budget = args.budget if args.budget is not None else (0.02 if args.quick else 0.4)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.out is None and not (args.quick or args.only):
        args.out = RESULT
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse(argv)
    cases = _cases()
    check_complete(cases)
    if args.only:
        want = [s.strip() for s in args.only.split(",") if s.strip()]
        cases = [c for c in cases if any(w == constructor(c.layer) or w in c.name
                                         for w in want)]
        if not cases:
            raise SystemExit(f"layer_contract: no case matches --only {args.only!r}")
    retain_freed_memory()
    snap, t0 = timing.cpu_snapshot(), time.perf_counter()
    rows = []
    for i, c in enumerate(cases):
        print(f"[{i + 1}/{len(cases)}] {c.name}", file=sys.stderr, flush=True)
        rows.append(measure(c, args.budget, args.rounds))
    lines = header(args, timing.others_share(snap, timing.cpu_snapshot()),
                   time.perf_counter() - t0) + [line(r) for r in rows]
    flagged = [r for r in rows if r.flags]
    lines += ["", f"## Flagged: {len(flagged)} of {len(rows)}", "",
              *(f"- {r.case.name}: {', '.join(r.flags)} (apply/vjp {r.apply_vjp:.2f}, "
                f"pb/apply {r.pb_apply:.2f}, held {r.held_io:.2f}x)" for r in flagged)]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
