"""Conv3D, MaxPool3D and AvgPool3D against PyTorch's Conv3d, MaxPool3d and AvgPool3d on a
small video-like input, one thread each (not a test); and each Conv3D case by the path
conv3d.py takes at its size against the other (one im2col product over all kd·kh·kw·C
columns, or a Conv2D per depth offset), which sets conv3d._COLS3_BYTES.

The timing is ``layer_micro_new``'s: float32, µs per call, funcdl's steps alternating in
~10 ms slices, then torch's (``timing.interleaved``); ``--rounds`` rounds over every case,
a cell the median over all timed calls with the lowest and highest median of a round in
brackets; ratios per round, then their median. NumPy's BLAS on one thread
(``layer_micro_new`` sets the variables before NumPy loads), ``torch.set_num_threads(1)``.
The other path is checked against the path taken before it is timed, and runs in the same
slices as the path taken.

    /tmp/benchenv/bin/python -m benchmarks.conv3d          # writes results/conv3d.md
    /tmp/benchenv/bin/python -m benchmarks.conv3d --quick  # smoke test, writes nothing
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:  # run as a script: this folder is on the path
    import layer_micro_new as micro
    import report
except ModuleNotFoundError:  # python -m benchmarks.conv3d
    from benchmarks import layer_micro_new as micro
    from benchmarks import report

import numpy as np

from funcdl import layers as L
from funcdl import random
from funcdl.layers import conv3d

RESULT = Path(__file__).resolve().parent / "results" / "conv3d.md"
Case, _module = micro.Case, micro._module
VIDEO, FEATURES = (8, 16, 16, 16, 8), (8, 16, 16, 16, 32)  # NDHWC; torch's (8, 8, 16, 16, 16)
LARGER = (8, 16, 32, 32, 8)  # 113 MiB of columns at stride 1: past conv3d._COLS3_BYTES
CASES = (
    Case("Conv3D(32, 3)", lambda: L.Conv3D(32, 3), VIDEO,
         _module(lambda nn: nn.Conv3d(8, 32, 3, padding=1))),
    Case("Conv3D(32, 3, stride=2, padding=1)", lambda: L.Conv3D(32, 3, stride=2, padding=1),
         VIDEO, _module(lambda nn: nn.Conv3d(8, 32, 3, stride=2, padding=1))),
    Case("Conv3D(32, 3) larger", lambda: L.Conv3D(32, 3), LARGER,
         _module(lambda nn: nn.Conv3d(8, 32, 3, padding=1))),
    Case("MaxPool3D(2)", lambda: L.MaxPool3D(2), FEATURES, _module(lambda nn: nn.MaxPool3d(2))),
    Case("MaxPool3D(3, 2, 1)", lambda: L.MaxPool3D(3, 2, 1), FEATURES,
         _module(lambda nn: nn.MaxPool3d(3, 2, 1))),
    Case("AvgPool3D(2)", lambda: L.AvgPool3D(2), FEATURES, _module(lambda nn: nn.AvgPool3d(2))),
)


def _other_path(case: Any, x: np.ndarray, dy: np.ndarray) -> dict[str, Callable[[], Any]]:
    """For a Conv3D case: its apply and vjp + pullback by the path conv3d.py does not take
    at this size (``conv3d._COLS3_BYTES`` set for the call: one product against a Conv2D per
    depth offset), checked against the path it takes on the same numbers."""
    if not case.label.startswith("Conv3D"):
        return {}
    layer = case.layer()
    _, params = layer.init(random.key(0), (None, *case.shape[1:]))
    rows = x.shape[0] * math.prod(layer.init(random.key(0), x.shape)[0][1:4])
    taken = rows * 27 * x.shape[-1] * x.itemsize <= conv3d._COLS3_BYTES
    limit = 0 if taken else 1 << 62

    def other(f: Callable[[], Any]) -> Any:
        saved, conv3d._COLS3_BYTES = conv3d._COLS3_BYTES, limit
        try:
            return f()
        finally:
            conv3d._COLS3_BYTES = saved

    y, pullback = layer.vjp(params, x)
    y1, pullback1 = other(lambda: layer.vjp(params, x))
    (g, dx), (g1, dx1) = pullback(dy), other(lambda: pullback1(dy))
    for a, b in ((y, y1), (dx, dx1), (g["w"], g1["w"]), (g["b"], g1["b"])):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * float(np.abs(b).max()))
    label = "funcdl by depth" if taken else "funcdl one product"
    OTHER[case.label] = label[len("funcdl "):]
    return {f"{label} apply": lambda: other(lambda: layer.apply(params, x)),
            f"{label} vjp": lambda: other(lambda: layer.vjp(params, x)[1](dy))}


OTHER: dict[str, str] = {}  # case label -> the path not taken, as timed


def main() -> str:
    args = micro.parse(None)
    args.out = None if args.quick else RESULT
    cases = [c for c in CASES
             if not args.only or any(s.strip() in c.label for s in args.only.split(","))]
    text = _markdown(args, cases, *micro.measure(args, cases, _other_path))
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        micro.log(f"wrote {args.out}")
    return text


def _markdown(args: Any, cases: list[Any], stats: dict[str, Any], torch: Any, why: str, loads: Any,
              share: float | None, date: float, notes: list[str]) -> str:
    m = report.machine({"torch": torch} if torch else {})
    peer = (f"torch {m['torch']}, {m['torch_threads']} thread(s)" if torch
            else f"torch skipped ({why})")
    when = datetime.datetime.fromtimestamp(date, datetime.timezone.utc)
    others = "–" if share is None else f"{share:.0%}"
    lines = [
        "# benchmarks/conv3d.py: Conv3D and the 3-D pools against PyTorch, one thread", "",
        f"- command: `{shlex.join([sys.executable, '-m', 'benchmarks.conv3d', *sys.argv[1:]])}`"
        f" (in `{os.getcwd()}`)",
        f"- date: {when.isoformat(timespec='seconds')}; git {report._git()}",
        f"- machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable); "
        f"{platform.platform()}; Python {m['python']}; "
        f"NumPy {m['numpy']} ({m['blas']}); {peer}; thread pools: {micro._blas_threads()}",
        f"- load average (1 min) {loads[0][0]:.2f} at the start, {loads[1][0]:.2f} at the "
        f"end; other processes kept {others} of the cores busy during the run (/proc/stat)",
        f"- {args.rounds} rounds, {args.budget:g} s of timed calls per step and round; "
        "float32; µs per call: median over all calls (lowest – highest median of a round); "
        "ratios: per round, then the median (lowest – highest) of the rounds' ratios", "",
        "| layer | funcdl input | step | funcdl | funcdl, other path | torch "
        "| funcdl / torch | funcdl / other path | calls |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for c in cases:
        s = stats[c.label]
        for step, f_step, t_step in (("forward", "funcdl apply", "torch fwd"),
                                     ("fwd + bwd", "funcdl vjp", "torch fwd+bwd")):
            f, t = s.get(f_step), s.get(t_step)
            other = OTHER.get(c.label)
            o = s.get(f_step.replace("funcdl", f"funcdl {other}")) if other else None
            calls = "/".join(str(x["calls"]) for x in (f, o, t) if x)
            lines.append(f"| {c.label} | {c.shape} | {step} | {micro._cell(f)} | "
                         f"{micro._cell(o)}{f' ({other})' if other else ''} | "
                         f"{micro._cell(t)} | {micro._ratio(f, t)} | "
                         f"{micro._ratio(f, o)} | {calls} |")
    lines += ["", "torch: NCDHW (contiguous), forward in eval mode under no_grad, forward + "
              "backward in train mode with the input's gradient. other path: Conv3D "
              "forced down the path conv3d.py does not take at that size (one product of "
              "all kd·kh·kw·C columns, or a Conv2D per depth offset), in the same slices "
              "as the path taken; calls: funcdl / other path / torch."]
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
