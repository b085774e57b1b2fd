"""REPORT.md for ``examples/reproduce.py``: funcdl's numbers next to the published ones
(``_repro_published``), the settings each report leaves open, and where funcdl differs
(``_repro_notes``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from _repro_notes import (
    deviations_000,
    deviations_001,
    deviations_002,
    deviations_003,
    deviations_004,
)
from _repro_published import (
    PUB_000,
    PUB_001,
    PUB_001_TIME,
    PUB_002,
    PUB_004,
    pm,
    published_mean,
    stuck,
    values,
)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def figure(meta: dict[str, Any], name: str, caption: str) -> str:
    return f"![{caption}]({name})\n\n*{caption}*" if name in meta["figures"] else \
        f"*(figure `{name}` not drawn: matplotlib is not installed)*"


# ---------------------------------------------------------------------------- sections

def section_000(res: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    rows, diffs = [], []
    for name, (p_time, p_train, p_test) in PUB_000.items():
        runs = res[name]
        test = values(runs, "test_error", 100)
        rows.append([name, pm(values(runs, "seconds")), p_time,
                     pm(values(runs, "train_error", 100)), p_train, pm(test), p_test,
                     f"{stuck(runs)} / {len(runs)}"])
        diffs.append(f"{name} {test.mean() - published_mean(p_test):+.2f}")
    n, epochs = len(runs), runs[0]["config"]["epochs"]
    return "\n\n".join([
        "## Report 000: Table 1 (six networks, MSE, SGD lr 0.01)",
        f"2-25-25-25-1, hidden activation ReLU / Tanh / Sigmoid x init normal / uniform, "
        f"Sigmoid output, squared error, SGD lr 0.01, batch 50, {epochs} epochs, 1000 train / "
        f"1000 test points, {n} runs. Published: report 000, Table 1 (mean ± std over 15 "
        f"runs). Time is the training loop of one run on one core.",
        table(["network", "time (s) funcdl", "time (s) report", "train error (%) funcdl",
               "train error (%) report", "test error (%) funcdl", "test error (%) report",
               "runs stuck near 50 %"], rows),
        "**Settings the report leaves unstated.** *Initial scales*: the report names the "
        "distributions only; we take PyTorch's defaults for them, `normal` = N(0, 1) "
        "(`tensor.normal_()`) and `uniform` = U(±1/sqrt(fan_in)) (`nn.Linear`'s), for "
        "weights and biases alike. *Loss reduction*: the report's Linear layers accumulate "
        "per-sample gradients and it says its first version followed the course's Practical 3 "
        "(per-sample squared error, gradients summed); we read its batched version the same "
        "way: squared error summed over the batch of 50 (`mse` with `reduction='sum'`), one "
        "SGD step of lr 0.01 per batch. *Data*: fresh train and test sets per run; the "
        "report's std of 0.00 for the stuck Sigmoid (uniform) network suggests one fixed data "
        "set for all 15 runs.",
        "**Where funcdl differs.** Test error minus published, in points: "
        + ", ".join(diffs) + ". " + deviations_000(res),
        figure(meta, "report000_errors.png", "Report 000: test error of every run (dots) "
               "and the published mean (bar)"),
    ])


def section_001(res: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    names = list(res)
    main = res[names[0]]
    cfg = main[0]["config"]
    has_torch = "torch" in main[0]
    rows = []
    for (published, (p_ours, p_torch)), epoch in zip(PUB_001.items(), cfg["checkpoints"]):
        label = str(published) if published == epoch else f"{published} (quick: {epoch})"
        row = [label]
        for name in names:
            row.append(pm(np.array([r["accuracy"][epoch] * 100 for r in res[name]]), 1))
        row.append(p_ours)
        torch_acc = (pm(np.array([r["torch"]["accuracy"][epoch] * 100 for r in main]), 1)
                     if has_torch else "not installed")
        rows += [[*row, torch_acc, p_torch]]
    t_funcdl = values(main, "seconds_per_epoch")
    t_torch = (np.array([r["torch"]["seconds_per_epoch"] for r in main]) if has_torch
               else None)
    time_rows = [["funcdl (Xavier)", pm(t_funcdl * 1e3, 1),
                  f"{float(PUB_001_TIME[0]) * 1e3:.0f} (the report's framework)"],
                 ["PyTorch", pm(t_torch * 1e3, 1) if t_torch is not None
                  else "not installed", f"{float(PUB_001_TIME[1]) * 1e3:.0f}"]]
    ratio = (f"funcdl takes **{t_funcdl.mean() / t_torch.mean():.2f}x** PyTorch's time per "
             f"epoch on this machine (the report's framework: "
             f"{float(PUB_001_TIME[0]) / float(PUB_001_TIME[1]):.2f}x)."
             if t_torch is not None else
             "PyTorch is not installed in this environment, so the PyTorch columns are "
             "empty and the comparison is skipped (`pip install torch==2.13.0` and rerun to fill "
             "them; the code trains the same network in PyTorch on the same data and batch "
             "order).")
    return "\n\n".join([
        "## Report 001: accuracy after 10, 50, 200 epochs, against PyTorch",
        f"2-25-25-25-1 ReLU, Tanh output, targets ±1, MSE, SGD lr 0.1, batch 50, "
        f"{len(main)} runs; test accuracy (%) at the checkpoints. Published: report 001, "
        "section III-A table (10 runs) and III-B (time per epoch). funcdl (PyTorch's init) "
        "is the same funcdl network initialised as PyTorch's `nn.Linear`, to separate the "
        "effect of the initialisation from that of the framework.",
        table(["epochs", *names, "report's framework", "PyTorch (this run)",
               "PyTorch (report)"], rows),
        table(["time per epoch (ms)", "this machine, one core", "report"], time_rows),
        ratio,
        "**Settings the report leaves unstated.** Hidden width 25 (the project's); 1000 "
        "training and 1000 test points; the loss is MSE against targets ±1 (the report "
        "writes both ±1 and 0/1 labels; a Tanh output calls for ±1); a point is classified "
        "inside when the output is positive; Xavier's bound sqrt(6/(in+out)) for the bias "
        "column too, as the report stores biases as a column of its weight matrix. The "
        "PyTorch network keeps PyTorch's default init, as in the report, and uses one "
        "thread, as each funcdl worker does.",
        "**Where funcdl differs.** " + deviations_001(res),
        figure(meta, "report001_decision_regions.png",
               f"Report 001: decision regions after {cfg['snapshot_epoch']} epochs (run 0); "
               "misclassified test points crossed, the true circle in black"),
    ])


def section_002(res: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    rows, diffs = [], []
    for name, (p_train, p_test, p_lr) in PUB_002.items():
        runs = res[name]
        cfg = runs[0]["config"]
        test = values(runs, "test_error")
        rows.append([name, pm(values(runs, "train_error"), 4), p_train, pm(test, 4), p_test,
                     f"{cfg['lr']:g}", p_lr, f"{cfg['wd']:g}", pm(values(runs, "seconds"))])
        diffs.append(f"{name} {test.mean() - published_mean(p_test):+.4f}")
    n, epochs = len(runs), runs[0]["config"]["epochs"]
    return "\n\n".join([
        "## Report 002: Table I (Net_1, MSE / BCE x SGD / Adam, weight sharing)",
        f"Net_1 = 2-25-25-25-1 with Tanh, ReLU, ReLU hidden and a Sigmoid output, "
        f"PyTorch's init; {epochs} epochs, batch 50, 1000 train / 1000 test points, {n} runs. "
        "Errors are fractions, as in the report. Published: report 002, Table I.",
        table(["setup", "train error funcdl", "train error report", "test error funcdl",
               "test error report", "lr funcdl", "lr report", "weight decay",
               "time per run (s)"], rows),
        "**Settings the report leaves unstated.** Its MSE is `1/(2N) Σ (p - t)²` (eq. 11 "
        "and its backward code), so funcdl uses that half-MSE, not `funcdl.losses.mse`; "
        "BCE on probabilities, clamped as PyTorch (`funcdl.losses.bce`), as the report's. "
        "Adam's learning rate is not given: PyTorch's default 1e-3 (b1 0.9, b2 0.999, eps "
        "1e-8). Weight decay λ = 1e-4 (L2 added to the gradient) with SGD, where the report "
        "uses it (its Figure 1), none with Adam. Batch size 50, 1000 / 1000 points and the "
        f"number of runs ({n}) are ours. The weight-sharing network is not described; ours "
        "applies Net_1's first two layers (Linear-Tanh-Linear-ReLU, 1 -> 25 -> 25) with one "
        "set of weights to each coordinate (the disk is symmetric in x and y), concatenates "
        "the two codes and ends with Linear(50, 25)-ReLU-Linear(25, 1)-Sigmoid, built from "
        "`Slice`, `Shared` and `FanInConcat` as the report built its from slicing and "
        "concatenation.",
        "**Where funcdl differs.** Test error minus published: " + ", ".join(diffs) + ". "
        + deviations_002(res),
        figure(meta, "report002_output.png", "Report 002, Fig. 2: output of each trained "
               "network (run 0; 0 blue, 0.5 yellow, 1 red), misclassified test points crossed, "
               "the true circle in black"),
        figure(meta, "report002_curves.png", "Report 002, Fig. 1: MSE_SGD (lr 0.5, λ = 1e-4) "
               "train and test error and loss per epoch, mean over runs; right: test error of "
               "every setup"),
    ])


def section_003(res: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    rows = []
    for name, runs in res.items():
        loss = np.array([r["loss"][-1] for r in runs])
        rows.append([name, pm(loss, 4), pm(values(runs, "train_error", 100)),
                     pm(values(runs, "test_error", 100)), f"{stuck(runs)} / {len(runs)}",
                     pm(values(runs, "seconds")), "figure only: Tanh's loss lower on average"])
    runs = next(iter(res.values()))
    n, epochs, lr = len(runs), runs[0]["config"]["epochs"], runs[0]["config"]["lr"]
    return "\n\n".join([
        "## Report 003: Tanh against ReLU, loss averaged over 30 models",
        f"2-25-25-25-1 with Tanh or ReLU hidden, linear output, MSE against 0/1 labels, SGD "
        f"lr {lr:g}, batch 50, {epochs} epochs, 1000 train / 1000 test points, {n} models "
        "each. "
        "The report publishes no numbers, only its Figure 1 (loss, log scale, against epoch, "
        "averaged over 30 models) and Figure 2 (predictions).",
        table(["hidden activation", f"final training loss (epoch {epochs})",
               "train error (%)", "test error (%)", "runs above 25 % test error",
               "time per run (s)", "report"], rows),
        "**Settings the report leaves unstated.** Output activation (none: a linear output "
        "regressing the 0/1 label, a point is inside when it predicts above 0.5), optimizer "
        f"(plain SGD; the report mentions no other), learning rate ({lr:g}, see below), "
        "batch size (50), epochs and data size. Its init is a zero-mean Gaussian for "
        "weights and biases with a chosen scale; we use Xavier's, std sqrt(2/(in+out)), "
        "for Tanh and He's, std sqrt(2/in), for ReLU, the usual pairing. The report states "
        "the radius as 1/sqrt(2) (a disk covering the whole square); we use the task's "
        "1/sqrt(2π). The plotted loss is the mean minibatch loss of each epoch.",
        "**Where funcdl differs.** " + deviations_003(res),
        figure(meta, "report003_loss.png", "Report 003, Fig. 1: training loss (log scale) "
               "against epoch, mean over the models, with the 10-90 % band"),
        figure(meta, "report003_predictions.png", "Report 003, Fig. 2: predictions of one "
               "model of each kind on the test set, green correct, red wrong, the true circle"),
    ])


def fmt(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a), precision=4, suppress_small=True,
                           floatmode="fixed", max_line_width=90)


def section_004(res: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    r = next(iter(res.values()))[0]
    cfg = r["config"]
    curve = r["loss"]
    printed = "\n".join([
        f"first training pair: x = {fmt(r['x'])}, target = {r['y']:g}",
        "", "Gradients of the first-layer weights (funcdl vjp, float32):", fmt(r["vjp"]["w"]),
        "Finite differences (central, float64, eps 1e-6):", fmt(r["fd"]["w"]),
        "", "Gradients of the first-layer biases (funcdl vjp, float32):", fmt(r["vjp"]["b"]),
        "Finite differences:", fmt(r["fd"]["b"]),
        "", f"largest |vjp - finite difference|: {r['max_abs_diff']:.2e}",
        "funcdl.testing.check_vjp(network + loss, all params and the input, float64): passed"])
    rows = [["before any update", f"{curve[0]:.5f}"]]
    rows += [[f"after update {i}", f"{curve[i]:.5f}"] for i in (1, 2, 5, 10, 100)
             if i < len(curve)]
    rows.append([f"after update {len(curve) - 1} (last)", f"{curve[-1]:.5f}"])
    return "\n\n".join([
        "## Report 004: first-pair gradients and the training curve",
        "2-10-10-1, ReLU hidden, linear output, Kaiming-normal weights N(0, 2/fan_in), zero "
        "biases, loss ½ (p - t)², on the disk task; the gradients are those of the first "
        "training pair at the initial parameters; then full-batch gradient descent on the "
        f"average loss over the {cfg['n_train']} training points, lr {cfg['lr']:g}, "
        f"{cfg['epochs']} updates.",
        "```\n" + printed + "\n```",
        "The report's values (report 004, Figure 2), from its own weights and data:",
        "```\n" + PUB_004 + "\n```",
        table(["average loss ½ (p - t)² over the training set", "funcdl"], rows),
        "**Settings the report leaves unstated, and why the numbers differ.** The report "
        "loads its weights, inputs and targets from a pickle file it does not publish, so its "
        "gradient values cannot be reproduced digit for digit; what can be reproduced is the "
        "check itself: funcdl's vjp agrees with central finite differences to float32 "
        "precision, entry by entry for the first layer, and `funcdl.testing.check_vjp` "
        "passes on the whole network followed by the loss. "
        f"{int(np.sum(r['vjp']['b'] == 0))} of the 10 bias gradients are exactly 0 (6 of 10 "
        "in the report): first-layer ReLU units inactive for this input, or feeding only "
        "inactive units, pass no gradient. Data set (1000 disk points), learning rate and "
        "number of updates are ours. " + deviations_004(curve),
        figure(meta, "report004_training.png", "Report 004, Figs. 3-4: average loss before "
               "any update and after each, the first updates (left) and the whole run "
               "(right, log scale)"),
    ])


SECTIONS = {"000": section_000, "001": section_001, "002": section_002, "003": section_003,
            "004": section_004}


def render(results: dict[str, Any], meta: dict[str, Any]) -> str:
    """The whole REPORT.md."""
    w = meta["workers"]  # None: a Dask cluster's workers ran them (--scheduler)
    where = (f"on {w} worker processes (one BLAS thread each)" if w else
             "on a Dask cluster's workers (--scheduler)")
    per = f", {meta['cpu'] / w:.1f} s per worker: the wall time on idle cores" if w else ""
    head = [
        "# funcdl reproduces the five reference reports",
        f"Generated by `python examples/reproduce.py{' --quick' if meta['quick'] else ''}`: "
        f"{meta['runs']} training runs {where}, {meta['wall']:.1f} s of wall time for all of "
        f"them ({meta['cpu']:.1f} s of CPU time{per}; by report: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in meta["cpu_by_report"].items())
        + "). PyTorch: "
        f"{meta['torch'] or 'not installed (the PyTorch comparison of report 001 is skipped)'}.",
        "Every run draws its data (points of the disk task: uniform in the unit square, "
        "label 1 inside the disk of centre (0.5, 0.5) and radius 1/sqrt(2π)), its initial "
        "parameters and its batch orders from explicit funcdl keys, "
        "`fold_in(key(report number), run index)`, so each run is reproducible on its own "
        "and the networks of one report are compared on the same data. Mean ± std over runs "
        "(std with n - 1). Times are the training loop of one run on one core, evaluation "
        "excluded; the reports' times come from their own (unknown) machines. The same "
        "machine gives the same numbers on every run; another CPU may round float32 matrix "
        "products differently in its BLAS kernels, and a chaotic SGD run can then end a few "
        "test points apart.",
    ]
    if meta["quick"]:
        head.append("**Quick mode**: a few epochs and runs, a smoke test of every table and "
                    "figure; the numbers below are not the reproduction.")
    body = [SECTIONS[k](results[k], meta) for k in sorted(results)]
    return "\n\n".join(head + body) + "\n"


def summary(results: dict[str, Any]) -> str:
    """A short plain-text summary for the terminal."""
    lines = []
    for report, res in sorted(results.items()):
        for name, runs in res.items():
            if "test_error" in runs[0]:
                te = values(runs, "test_error", 100)
                lines.append(f"{report}  {name:24s} test error {pm(te)} %  "
                             f"({len(runs)} runs)")
            elif "accuracy" in runs[0]:
                last = max(runs[0]["accuracy"])
                acc = np.array([r["accuracy"][last] * 100 for r in runs])
                lines.append(f"{report}  {name:24s} accuracy after {last} epochs {pm(acc, 1)} %")
            elif "train_error" in runs[0]:  # 004: training curves, no test set
                tr = np.array([np.ravel(r["train_error"])[-1] * 100 for r in runs])
                lines.append(f"{report}  {name:24s} final train error {pm(tr)} %  "
                             f"({len(runs)} runs)")
    return "\n".join(lines)
