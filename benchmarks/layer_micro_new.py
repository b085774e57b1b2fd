"""Micro-benchmark of the recurrent, attention, grouped-conv, upsampling and pooling layers
against PyTorch, one thread each, in one run (not a test).

For each case, float32, µs per call: funcdl's ``apply`` and ``vjp`` then the pullback
(parameter and input gradients) against torch's forward (``eval()``, under ``no_grad``) and
forward + backward (``train()``, ``backward(dy)``, the input's gradient too). Each side
runs on its own layout (funcdl NHWC / NLC, torch NCHW / NCL; sequences are (N, T, E) for
both), on the same numbers. ``--rounds`` rounds go over every case in turn, so that a
swing of the machine shows as a spread between rounds; each round of a case times funcdl's
two steps, alternating in ~10 ms slices, then torch's (``timing.interleaved``). A cell is
the median over all timed calls, and in brackets the lowest and highest median of a round.

NumPy's BLAS (and OpenMP, MKL) is pinned to one thread: the variables below are set before
NumPy is imported, and threadpoolctl, when installed, limits the pools already loaded;
``torch.set_num_threads(1)``. glibc's malloc keeps freed memory
(``funcdl.perf.retain_freed_memory``), for both sides, as ``python -m benchmarks`` does.

    /tmp/benchenv/bin/python -m benchmarks.layer_micro_new      # writes results/layer_micro_new.md
    .venv/bin/python -m benchmarks.layer_micro_new --quick --no-peers   # smoke test, ~5 s
"""

from __future__ import annotations

import os

# Before NumPy loads its BLAS: the comparison is one thread against one thread.
os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

import argparse
import datetime
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:  # run as a script: this folder is on the path
    import report
    import timing
except ModuleNotFoundError:  # python -m benchmarks.layer_micro_new
    from benchmarks import report, timing

from funcdl import layers as L
from funcdl import random, tree
from funcdl.perf import retain_freed_memory

RESULT = Path(__file__).resolve().parent / "results" / "layer_micro_new.md"


@dataclass(frozen=True)
class Case:
    label: str
    layer: Callable[[], Any]  # builds the funcdl layer
    shape: tuple[int, ...]  # funcdl's input
    torch: Callable[[Any], tuple[Any, Callable[[Any, Any], Any]]]  # nn -> (module, call)
    channels_first: bool = True  # torch's input is (N, C, ...) where funcdl's is (N, ..., C)


def _module(build: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, Callable[..., Any]]]:
    def make(nn: Any) -> tuple[Any, Callable[[Any, Any], Any]]:
        return build(nn), lambda m, x: m(x)
    return make


def _recurrent(kind: str) -> Callable[[Any], tuple[Any, Callable[..., Any]]]:
    def make(nn: Any) -> tuple[Any, Callable[[Any, Any], Any]]:
        return getattr(nn, kind)(32, 128, batch_first=True), lambda m, x: m(x)[0]
    return make


def _attention(causal: bool) -> Callable[[Any], tuple[Any, Callable[..., Any]]]:
    def make(nn: Any) -> tuple[Any, Callable[[Any, Any], Any]]:
        m = nn.MultiheadAttention(128, 4, batch_first=True)
        if not causal:
            return m, lambda m, x: m(x, x, x, need_weights=False)[0]
        mask = nn.Transformer.generate_square_subsequent_mask(64)  # is_causal is a hint only
        return m, lambda m, x: m(x, x, x, need_weights=False, attn_mask=mask,
                                 is_causal=True)[0]
    return make


SEQ, TOKENS = (64, 50, 32), (32, 64, 128)
CASES = (
    Case("LSTM(128)", lambda: L.LSTM(128), SEQ, _recurrent("LSTM"), False),
    Case("GRU(128)", lambda: L.GRU(128), SEQ, _recurrent("GRU"), False),
    Case("SimpleRNN(128)", lambda: L.SimpleRNN(128), SEQ, _recurrent("RNN"), False),
    Case("MultiHeadAttention(4)", lambda: L.MultiHeadAttention(4), TOKENS,
         _attention(False), False),
    Case("MultiHeadAttention(4, causal)", lambda: L.MultiHeadAttention(4, causal=True), TOKENS,
         _attention(True), False),
    Case("GroupNorm(8)", lambda: L.GroupNorm(8), (32, 28, 28, 64),
         _module(lambda nn: nn.GroupNorm(8, 64))),
    Case("Conv2D(32, 3, p=1, groups=32)", lambda: L.Conv2D(32, 3, padding=1, groups=32),
         (32, 28, 28, 32), _module(lambda nn: nn.Conv2d(32, 32, 3, padding=1, groups=32))),
    Case("Conv2D(64, 3, p=1, groups=4)", lambda: L.Conv2D(64, 3, padding=1, groups=4),
         (32, 28, 28, 32), _module(lambda nn: nn.Conv2d(32, 64, 3, padding=1, groups=4))),
    Case("Conv1D(64, 7, groups=64)", lambda: L.Conv1D(64, 7, groups=64), (32, 256, 64),
         _module(lambda nn: nn.Conv1d(64, 64, 7, padding=3, groups=64))),
    Case("ConvTranspose2D(16, 4, 2, p=1)", lambda: L.ConvTranspose2D(16, 4, stride=2, padding=1),
         (32, 14, 14, 32), _module(lambda nn: nn.ConvTranspose2d(32, 16, 4, stride=2,
                                                                  padding=1))),
    Case("Upsample(2) nearest", lambda: L.Upsample(2), (32, 16, 16, 64),
         _module(lambda nn: nn.Upsample(scale_factor=2, mode="nearest"))),
    Case("Upsample(2, bilinear)", lambda: L.Upsample(2, "bilinear"), (32, 16, 16, 64),
         _module(lambda nn: nn.Upsample(scale_factor=2, mode="bilinear",
                                        align_corners=False))),
    Case("MaxPool2D(3, 2, ceil_mode)", lambda: L.MaxPool2D(3, 2, ceil_mode=True),
         (64, 28, 28, 16), _module(lambda nn: nn.MaxPool2d(3, 2, ceil_mode=True))),
)


def _first(shape_len: int, channels_first: bool) -> tuple[int, ...]:
    """The axis order taking funcdl's layout to torch's."""
    if not channels_first:
        return tuple(range(shape_len))
    return (0, shape_len - 1, *range(1, shape_len - 1))


def funcdl_steps(case: Case) -> tuple[dict[str, Callable[[], Any]], np.ndarray, np.ndarray,
                                      list[str]]:
    """The two timed steps, the input, the cotangent, and problems seen (a float64 path)."""
    layer = case.layer()
    _, params = layer.init(random.key(0), (None, *case.shape[1:]))[:2]
    x = random.normal(random.key(1), case.shape, np.float32)
    y, pullback = layer.vjp(params, x)
    dy = random.normal(random.key(2), y.shape, np.float32)
    grads, dx = pullback(dy)
    leaves = [a for a in (np.asarray(v) for v in tree.leaves(grads)) if a.size]
    odd = [f"{what} is {a.dtype}" for what, a in (("y", y), ("dx", dx),
                                                   *(("a gradient", g) for g in leaves))
           if a.dtype != np.float32]
    steps = {"funcdl apply": lambda: layer.apply(params, x),
             "funcdl vjp": lambda: layer.vjp(params, x)[1](dy)}
    return steps, x, dy, odd


def torch_steps(torch: Any, case: Case, x: np.ndarray, dy: np.ndarray
                ) -> dict[str, Callable[[], Any]]:
    """torch's forward and forward + backward, on funcdl's numbers in torch's layout; for
    images also in channels_last memory (NHWC in memory, funcdl's layout), which changes
    which kernels torch runs."""
    perm = _first(x.ndim, case.channels_first)
    tx = torch.from_numpy(np.ascontiguousarray(x.transpose(perm)))
    tdy = torch.from_numpy(np.ascontiguousarray(dy.transpose(perm)))
    layouts = [("torch", torch.contiguous_format)]
    if case.channels_first and x.ndim == 4:
        layouts.append(("torch CL", torch.channels_last))
    steps: dict[str, Callable[[], Any]] = {}
    for prefix, fmt in layouts:
        torch.manual_seed(0)
        module, call = case.torch(torch.nn)
        module.to(memory_format=fmt)
        steps |= _torch_pair(torch, case, module, call, tx.contiguous(memory_format=fmt),
                             tdy.contiguous(memory_format=fmt), prefix)
    return steps


def _torch_pair(torch: Any, case: Case, module: Any, call: Callable[[Any, Any], Any],
                tx: Any, tdy: Any, prefix: str) -> dict[str, Callable[[], Any]]:
    with torch.no_grad():
        got = tuple(call(module, tx).shape)
    if got != tuple(tdy.shape):
        raise RuntimeError(f"{case.label}: torch gives {got}, funcdl {tuple(tdy.shape)} "
                           f"(in torch's layout): not the same operation")

    def forward() -> Any:
        module.train(False)
        with torch.no_grad():
            return call(module, tx)

    def both() -> Any:
        module.train(True)
        module.zero_grad(set_to_none=True)
        xg = tx.detach().requires_grad_(True)
        call(module, xg).backward(tdy)
        return xg.grad

    return {f"{prefix} fwd": forward, f"{prefix} fwd+bwd": both}


def _cell(s: dict[str, Any] | None) -> str:
    if s is None:
        return "–"
    return f"{s['median']:,.0f} ({s['low']:,.0f}–{s['high']:,.0f})"


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if a is None or b is None:
        return "–"
    per_round = [x / y for x, y in zip(a["rounds"], b["rounds"], strict=True)]
    return (f"{statistics.median(per_round):.2f}× "
            f"({min(per_round):.2f}–{max(per_round):.2f})")


def _blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl absent; pinned by the environment only"
    return ", ".join(f"{i['internal_api']} ({i['prefix']}) {i['num_threads']}"
                     for i in threadpool_info())


def _command() -> str:
    if __spec__ is not None and __spec__.name:  # python -m benchmarks.layer_micro_new
        return shlex.join([sys.executable, "-m", __spec__.name, *sys.argv[1:]])
    return shlex.join([sys.executable, *sys.argv])


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.layer_micro_new",
                                 description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--quick", action="store_true",
                    help="a few calls of each step, 2 rounds: a smoke test; writes no file "
                         "unless --out is given")
    ap.add_argument("--no-peers", action="store_true", help="skip PyTorch")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 5; 2 with --quick)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timed calls per step and round (default 0.3; ~0 with "
                         "--quick)")
    ap.add_argument("--only", default="",
                    help="comma-separated substrings of the case labels to run (default all)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"markdown file to write (default {RESULT.relative_to(timing.REPO)}; "
                         "none with --quick)")
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.budget = args.budget if args.budget is not None else (1e-4 if args.quick else 0.3)
    if args.out is None and not args.quick:
        args.out = RESULT
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> str:
    args = parse(argv)
    cases = [c for c in CASES
             if not args.only or any(s.strip() in c.label for s in args.only.split(","))]
    text = markdown(args, cases, *measure(args, cases))
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        log(f"wrote {args.out}")
    return text


def measure(args: argparse.Namespace, cases: list[Any],
            extra: Callable[[Any, np.ndarray, np.ndarray], dict[str, Callable[[], Any]]]
            | None = None) -> tuple[Any, ...]:
    """Each case's funcdl steps (and ``extra(case, x, dy)``'s, timed on funcdl's side) and
    torch's, in interleaved rounds on one thread: ``(stats, torch, why, loads, share, date,
    notes)``, the arguments ``markdown`` takes after the cases (conv3d.py's too)."""
    retain_freed_memory()
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    torch, why = (None, "--no-peers") if args.no_peers else _torch()
    load0, snap0, date = os.getloadavg(), timing.cpu_snapshot(), time.time()
    notes: list[str] = []
    steps: dict[str, dict[str, Callable[[], Any]]] = {}
    for case in cases:
        f_steps, x, dy, odd = funcdl_steps(case)
        notes += [f"{case.label}: funcdl's {o}, not float32" for o in odd]
        steps[case.label] = {**f_steps, **(extra(case, x, dy) if extra else {}),
                             **(torch_steps(torch, case, x, dy) if torch else {})}
    times: dict[str, dict[str, list[list[float]]]] = {
        c: {s: [] for s in st} for c, st in steps.items()}
    warmup = 0.0 if args.quick else 0.1
    for r in range(args.rounds):
        log(f"round {r + 1}/{args.rounds}")
        for label, st in steps.items():
            groups = [{n: f for n, f in st.items() if n.startswith(side)}
                      for side in ("funcdl", "torch")]
            got = timing.interleaved([g for g in groups if g], args.budget, rounds=1,
                                     warmup=warmup if r == 0 else 0.0, settle=0.02)
            for name, t in got.items():
                times[label][name].append(t)
    load1, share = os.getloadavg(), timing.others_share(snap0, timing.cpu_snapshot())
    stats = {c: {s: _round_stats(rs) for s, rs in per.items()} for c, per in times.items()}
    return stats, torch, why, (load0, load1), share, date, notes


def _round_stats(rounds: list[list[float]]) -> dict[str, Any]:
    """µs per call of one step: the median of all calls, each round's median, their span."""
    per = [statistics.median(r) * 1e6 for r in rounds]
    return {"median": statistics.median(v for r in rounds for v in r) * 1e6, "rounds": per,
            "calls": sum(len(r) for r in rounds), "low": min(per), "high": max(per)}


def _torch() -> tuple[Any, str]:
    try:
        import torch
    except Exception as e:  # ImportError, or a broken install raising anything
        return None, f"`import torch` failed: {type(e).__name__}: {e}"
    torch.set_num_threads(1)
    return torch, ""


def markdown(args: argparse.Namespace, cases: list[Case], stats: dict[str, Any], torch: Any,
             why: str, loads: tuple[Any, Any], share: float | None, date: float,
             notes: list[str]) -> str:
    m = report.machine({"torch": torch} if torch else {})
    peer = (f"torch {m['torch']}, {m['torch_threads']} thread(s)" if torch
            else f"torch skipped ({why})")
    when = datetime.datetime.fromtimestamp(date, datetime.timezone.utc)
    others = "–" if share is None else f"{share:.0%}"
    lines = [
        "# benchmarks/layer_micro_new.py: new layers against PyTorch, one thread", "",
        f"- command: `{_command()}` (in `{os.getcwd()}`)",
        f"- date: {when.isoformat(timespec='seconds')}; git {report._git()}",
        f"- machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable); "
        f"{platform.platform()}; Python {m['python']}; NumPy {m['numpy']} ({m['blas']}); "
        f"{peer}; thread pools: {_blas_threads()}; thread env: {m['thread_env']}",
        f"- load average (1 min) {loads[0][0]:.2f} at the start, {loads[1][0]:.2f} at the "
        f"end (this run's own process counts in it); other processes kept {others} of the "
        "cores busy during the run (/proc/stat)",
        f"- {args.rounds} rounds over all cases, {args.budget:g} s of timed calls per step "
        "and round; float32; µs per call: median over all calls (lowest – highest median of "
        "a round); ratio: per round, funcdl's median over torch's (the two timed one "
        "after the other), then the median (lowest – highest) of those rounds' ratios; "
        "below 1 means funcdl is faster", "",
    ]
    for title, f_step, t_step in (("Forward: funcdl apply, torch forward", "funcdl apply",
                                   "fwd"),
                                  ("Forward + backward: funcdl vjp then pullback, torch "
                                   "forward + backward", "funcdl vjp", "fwd+bwd")):
        lines += [f"## {title}", "",
                  "| layer | funcdl input | funcdl | torch | torch channels_last "
                  "| funcdl / torch | funcdl / torch channels_last | calls |",
                  "|---|---|--:|--:|--:|--:|--:|--:|"]
        for c in cases:
            s = stats[c.label]
            f, t, cl = s.get(f_step), s.get(f"torch {t_step}"), s.get(f"torch CL {t_step}")
            calls = "/".join(str(x["calls"]) for x in (f, t, cl) if x)
            lines.append(f"| {c.label} | {c.shape} | {_cell(f)} | {_cell(t)} | {_cell(cl)} | "
                         f"{_ratio(f, t)} | {_ratio(f, cl)} | {calls} |")
        lines.append("")
    lines += ["torch: its own layout (NCHW / NCL; sequences (N, T, E) as funcdl's) and, for "
              "images, channels_last memory too (the same bytes in the same order as "
              "funcdl's NHWC input; torch picks other kernels for it). Forward in eval mode "
              "under no_grad (MultiheadAttention: need_weights=False; causal: a float mask "
              "with is_causal=True); forward + backward in train mode, "
              "zero_grad(set_to_none=True) before each call, the input's gradient too, as "
              "funcdl's pullback gives parameter and input gradients. calls: timed calls of "
              "funcdl / torch / torch channels_last."]
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
