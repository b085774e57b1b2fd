"""The figures of ``examples/reproduce.py``, drawn as the reports drew theirs; matplotlib is
optional (Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from funcdl.data import RADIUS


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _square(ax: Any, plt: Any, title: str) -> None:
    ax.add_patch(plt.Circle((0.5, 0.5), RADIUS, fill=False, lw=1.5, color="k"))
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)


def _regions(ax: Any, plt: Any, snap: dict[str, Any], threshold: float, title: str) -> None:
    """Decision regions, test points by class, misclassified ones crossed, the circle."""
    grid = np.linspace(0, 1, snap["grid"].shape[0])
    ax.contourf(grid, grid, snap["grid"] > threshold, levels=[-0.5, 0.5, 1.5],
                colors=["#f3d9c6", "#c6dbf3"])
    x, inside = snap["x"], snap["y"] > threshold
    wrong = (snap["pred"] > threshold) != inside
    ax.scatter(*x[~wrong & inside].T, s=4, c="tab:blue", label="inside")
    ax.scatter(*x[~wrong & ~inside].T, s=4, c="tab:orange", label="outside")
    ax.scatter(*x[wrong].T, s=30, c="k", marker="x", label=f"misclassified ({wrong.sum()})")
    _square(ax, plt, title)
    ax.legend(loc="upper right", fontsize=6)


def _save(fig: Any, plt: Any, path: Path) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def fig_000(plt: Any, res: dict[str, list[dict[str, Any]]], published: dict[str, Any],
            path: Path) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    for i, (name, runs) in enumerate(res.items()):
        te = np.maximum(np.array([r["test_error"] for r in runs]) * 100, 0.05)  # log axis
        jitter = np.linspace(-0.15, 0.15, len(te))
        ax.scatter(i + jitter, te, s=12, color="tab:blue", label="funcdl runs" if i == 0 else None)
        pub = float(published[name][2].split("±")[0])
        ax.plot([i - 0.3, i + 0.3], [pub, pub], color="tab:red", lw=2,
                label="report 000, mean" if i == 0 else None)
    ax.set_xticks(range(len(res)), list(res), fontsize=8)
    ax.set(ylabel="test error (%, log)", yscale="log", ylim=(0.05, 100),
           title="Report 000, Table 1: test error")
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def fig_001(plt: Any, res: dict[str, list[dict[str, Any]]], path: Path) -> str:
    panels = [(name, runs[0]["snapshot"]) for name, runs in res.items()]
    if "torch" in next(iter(res.values()))[0]:
        panels.append(("PyTorch", next(iter(res.values()))[0]["torch"]["snapshot"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.2),
                             layout="constrained", squeeze=False)
    epoch = next(iter(res.values()))[0]["config"]["snapshot_epoch"]
    for ax, (name, snap) in zip(axes[0], panels):
        _regions(ax, plt, snap, 0.0, f"{name}, epoch {epoch}")
    return _save(fig, plt, path)


def fig_002_output(plt: Any, res: dict[str, list[dict[str, Any]]], path: Path) -> str:
    fig, axes = plt.subplots(2, 3, figsize=(11, 7.4), layout="constrained")
    image = None
    for ax, (name, runs) in zip(axes.ravel(), res.items()):
        snap = runs[0]["snapshot"]
        image = ax.imshow(snap["grid"], origin="lower", extent=(0, 1, 0, 1), cmap="RdYlBu_r",
                          vmin=0, vmax=1)
        wrong = (snap["pred"] > 0.5) != (snap["y"] > 0.5)
        ax.scatter(*snap["x"][wrong].T, s=25, c="k", marker="x", lw=1)
        _square(ax, plt, f"{name}: {wrong.sum()} of {len(wrong)} wrong")
    fig.colorbar(image, ax=axes, shrink=0.6, label="network output")
    return _save(fig, plt, path)


def fig_002_curves(plt: Any, res: dict[str, list[dict[str, Any]]], path: Path) -> str:
    fig, (ax, ax_all) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    runs = res["MSE_SGD"]
    epochs = np.arange(1, len(runs[0]["curves"]["loss"]) + 1)

    def mean(name: str, key: str) -> np.ndarray:
        return np.mean([r["curves"][key] for r in res[name]], axis=0)

    ax.plot(epochs, mean("MSE_SGD", "train_error"), label="train error")
    ax.plot(epochs, mean("MSE_SGD", "test_error"), label="test error")
    ax.set(xlabel="epoch", ylabel="error (fraction)", title="MSE_SGD, mean over runs")
    ax_loss = ax.twinx()
    ax_loss.semilogy(epochs, mean("MSE_SGD", "loss"), color="tab:green", label="loss")
    ax_loss.set_ylabel("training loss (half-MSE, log)")
    lines = ax.get_legend_handles_labels()
    more = ax_loss.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8)
    for name in res:
        ax_all.plot(epochs, np.maximum(mean(name, "test_error"), 1e-3), label=name)
    ax_all.set(xlabel="epoch", ylabel="test error (fraction, log)", yscale="log",
               title="every setup, mean over runs")
    ax_all.legend(fontsize=8)
    return _save(fig, plt, path)


def fig_003_loss(plt: Any, res: dict[str, list[dict[str, Any]]], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for name, runs in res.items():
        curves = np.array([r["loss"] for r in runs])
        epochs = np.arange(1, curves.shape[1] + 1)
        line = ax.plot(epochs, curves.mean(axis=0), label=f"{name} (mean of {len(runs)})")
        ax.fill_between(epochs, *np.percentile(curves, [10, 90], axis=0), alpha=0.2,
                        color=line[0].get_color())
    ax.set(xlabel="epoch", ylabel="training loss (MSE)", yscale="log",
           title="Report 003: Tanh against ReLU")
    ax.legend()
    return _save(fig, plt, path)


def fig_003_predictions(plt: Any, res: dict[str, list[dict[str, Any]]], path: Path) -> str:
    fig, axes = plt.subplots(1, len(res), figsize=(4 * len(res), 4.2), layout="constrained",
                             squeeze=False)
    for ax, (name, runs) in zip(axes[0], res.items()):
        snap = runs[0]["snapshot"]
        right = (snap["pred"] > 0.5) == (snap["y"] > 0.5)
        ax.scatter(*snap["x"][right].T, s=5, c="tab:green", label="correct")
        ax.scatter(*snap["x"][~right].T, s=12, c="tab:red", label=f"wrong ({(~right).sum()})")
        _square(ax, plt, f"{name} (run 0)")
        ax.legend(loc="upper right", fontsize=7)
    return _save(fig, plt, path)


def fig_004(plt: Any, res: dict[str, list[dict[str, Any]]], path: Path) -> str:
    curve = np.array(next(iter(res.values()))[0]["loss"])
    fig, (ax, ax_all) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    first = min(len(curve), 21)
    ax.plot(range(first), curve[:first], "o-", ms=3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="updates", ylabel="average loss over the training set",
           title="before any update (0) and after each")
    ax_all.semilogy(range(len(curve)), curve)
    ax_all.set(xlabel="updates", ylabel="average loss (log)", title="the whole run")
    return _save(fig, plt, path)


def draw_all(results: dict[str, Any], out: Path) -> list[str]:
    """Every figure into ``out``; returns the file names (empty without matplotlib)."""
    plt = _pyplot()
    if plt is None:
        return []
    from _repro_published import PUB_000

    names = []
    if "000" in results:
        names.append(fig_000(plt, results["000"], PUB_000, out / "report000_errors.png"))
    if "001" in results:
        names.append(fig_001(plt, results["001"], out / "report001_decision_regions.png"))
    if "002" in results:
        names.append(fig_002_output(plt, results["002"], out / "report002_output.png"))
        names.append(fig_002_curves(plt, results["002"], out / "report002_curves.png"))
    if "003" in results:
        names.append(fig_003_loss(plt, results["003"], out / "report003_loss.png"))
        names.append(fig_003_predictions(plt, results["003"],
                                         out / "report003_predictions.png"))
    if "004" in results:
        names.append(fig_004(plt, results["004"], out / "report004_training.png"))
    return names
