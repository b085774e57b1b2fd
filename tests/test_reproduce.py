"""examples/reproduce.py: ``--quick`` writes every table and figure of the five reports, runs
are pure functions of their configs, and report 004's gradient check is a real check."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import load_example, refused

import funcdl as fd
from funcdl import layers as L

FIGURES = ["report000_errors.png", "report001_decision_regions.png", "report002_output.png",
           "report002_curves.png", "report003_loss.png", "report003_predictions.png",
           "report004_training.png"]


@pytest.fixture(scope="module")
def repro():
    return load_example("reproduce")


@pytest.fixture(scope="module")
def quick(repro, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    result = repro.main(["--quick", "--workers", "2", "--out", str(out)])
    return result, out, (out / "REPORT.md").read_text(encoding="utf-8")


def test_import_leaves_the_environment_alone():
    # Only the script and its pool workers pin BLAS threads; importing it changes nothing.
    before = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    module = load_example("reproduce")
    assert not module._pinned_process()
    assert {k: os.environ.get(k) for k in before} == before


def test_quick_run_writes_every_table(repro, quick):
    result, _, text = quick
    report = repro._repro_published
    for n in ("000", "001", "002", "003", "004"):
        assert f"## Report {n}" in text
    for name, published in report.PUB_000.items():  # report 000, Table 1
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert all(p in row for p in published)
        assert len(result["results"]["000"][name]) == repro.QUICK["000"][0]
    for name, (train, test, lr) in report.PUB_002.items():  # report 002, Table I
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert train in row and test in row and f"| {lr} |" in row
    for published, (ours, torch) in report.PUB_001.items():  # report 001
        row = next(line for line in text.splitlines()
                   if line.startswith(f"| {published} (quick"))
        assert ours in row and torch in row
    assert "time per epoch (ms)" in text and "159" in text and "77" in text
    if repro.torch_version() is None:
        assert "PyTorch is not installed" in text
    assert "| Tanh |" in text and "| ReLU |" in text  # report 003
    assert "Gradients of the first-layer biases (funcdl vjp" in text  # report 004
    assert "check_vjp" in text and "before any update" in text
    assert "Quick mode" in text


def test_quick_run_draws_every_figure(quick):
    pytest.importorskip("matplotlib")
    result, out, text = quick
    assert sorted(result["figures"]) == sorted(FIGURES)
    for name in FIGURES:
        assert (out / name).stat().st_size > 10_000, name
        assert f"]({name})" in text


def test_results_come_back_in_config_order_and_runs_are_pure(repro):
    configs = [c for c in repro.make_configs(quick=True) if c["report"] in ("000", "003")][:3]
    configs = [{**c, "epochs": 2} for c in configs]
    serial = repro.run_all(configs, workers=1)
    again = [repro.run_one(c) for c in configs]
    for a, b in zip(serial, again):
        assert a["train_error"] == b["train_error"] and a["test_error"] == b["test_error"]
    grouped = repro.group(configs, serial)
    assert sum(len(runs) for report in grouped.values() for runs in report.values()) == 3


def test_a_scheduler_nobody_answers_at_is_said_plainly(repro, monkeypatch):
    distributed = pytest.importorskip("distributed")

    def unreachable(address, timeout):  # as Client does after its timeout, without the wait
        raise OSError(f"Timed out trying to connect to {address} after {timeout} s")

    monkeypatch.setattr(distributed, "Client", unreachable)
    with pytest.raises(SystemExit, match=r"no Dask scheduler answers at tcp://127\.0\.0\.1:1 "
                                         r".*`dask scheduler`.*leave out --scheduler"):
        repro.run_all([{"report": "000"}], workers=1, scheduler="tcp://127.0.0.1:1")


def test_a_dask_cluster_started_elsewhere_runs_the_sweep(tmp_path):
    # A cluster started as the docs say, in another folder with no PYTHONPATH: its processes
    # cannot import the examples' modules, and every run failed with ModuleNotFoundError.
    pytest.importorskip("distributed")
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    if not os.path.exists(dask):
        pytest.skip("the dask command is not installed beside this Python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"cwd": tmp_path, "env": env, "stdout": subprocess.DEVNULL,
             "stderr": subprocess.DEVNULL, "start_new_session": True}  # killed as a group
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], **quiet)]
    script = os.path.join(os.path.dirname(__file__), "..", "examples", "reproduce.py")

    def table(*flags: str) -> list[str]:  # the script as a user runs it, from elsewhere
        out = subprocess.run([sys.executable, script, "--quick", "--reports", "003",
                              "--out", str(tmp_path / flags[-1].replace("/", "_")), *flags],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=240)
        assert out.returncode == 0, out.stderr[-2000:]
        return [line for line in out.stdout.splitlines() if "test error" in line]

    try:
        procs.append(subprocess.Popen([dask, "worker", address, "--nworkers", "1",
                                       "--nthreads", "1", "--no-dashboard"], **quiet))
        remote = table("--scheduler", address)
        assert len(remote) == 2 and remote == table("--workers", "1")
    finally:  # the worker's nanny starts the worker process: end both, and the scheduler
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)


def test_report_004_gradients_match_finite_differences(repro):
    runs = repro._repro_runs
    r = runs.gradient_check_004(seed=4, n_train=20)
    assert r["vjp"]["w"].shape == (2, 10) and r["vjp"]["b"].shape == (10,)
    assert r["vjp"]["w"].dtype == np.float32
    for k in ("w", "b"):
        np.testing.assert_allclose(r["vjp"][k], r["fd"][k], rtol=1e-4, atol=1e-6)
    assert r["max_abs_diff"] < 1e-5
    # Zero biases and Kaiming weights: the bias gradient is dL/dp * w2-path, the weight
    # gradient its outer product with the input, as in the report.
    np.testing.assert_allclose(r["vjp"]["w"], np.outer(r["x"], r["vjp"]["b"]), rtol=1e-5,
                               atol=1e-7)


def test_report_004_check_catches_a_wrong_gradient(repro):
    runs = repro._repro_runs
    model = runs.model_004()
    k_data, k_init = fd.random.split(fd.random.key(4))
    x, y = fd.data.disk(k_data, 1)
    _, params = model.init(k_init, (None, 2))
    good = runs.pair_loss(model, y)
    fd.testing.check_vjp(good, params, x)

    def wrong_vjp(p, z, *, key=None, train=False):
        out, pullback = good.vjp(p, z)

        def doubled(dy):
            dp, dz = pullback(dy)
            return fd.tree.map(lambda g: 2 * g, dp), dz

        return out, doubled

    wrong = L.Layer(good.init, good.apply, wrong_vjp, name="doubled")
    with pytest.raises(AssertionError, match="finite differences"):
        fd.testing.check_vjp(wrong, params, x)


# Each case also asks for the quickest run, so that the old code, which did not refuse these
# until after the runs, failed in seconds rather than after the full reproduction.
@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "0"], "argument --workers: expected a positive integer (1 or more), got 0"),
    (["--workers", "-3"], "argument --workers: expected a positive integer (1 or more), got -3"),
    (["--workers", "two"],
     "argument --workers: expected a positive integer (1 or more), got 'two'"),
])
def test_bad_arguments_are_refused_while_parsing(repro, tmp_path, capsys, argv, message):
    # no run started
    err = refused(repro.main, ["--quick", "--reports", "004", "--out", str(tmp_path), *argv],
                  capsys)
    assert err.startswith("usage: ") and f"error: {message}" in err


def test_an_out_that_is_a_file_is_refused_before_the_runs(repro, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    err = refused(repro.main, ["--quick", "--reports", "004", "--workers", "1",
                               "--out", str(tmp_path / "afile")], capsys)
    assert "error: argument --out: expected a folder for the outputs" in err


def test_help_has_the_whole_description_and_the_defaults(repro, capsys):
    with pytest.raises(SystemExit):
        repro.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("Reproduce the five reference reports (../shared/seeds/) with funcdl, side by side "
            "with their published numbers, in one command.") in text
    assert "the cores this process may use" in text and "--out DIR" in text
