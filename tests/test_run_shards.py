"""tests/run_shards.py, make test's runner: the shards split the tests exactly, and a failing
shard, or shards that collected different tests, fail the run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import load_module, shard_spec

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "run_shards.py"


@pytest.fixture
def runner() -> Any:
    return load_module(RUNNER)


def counts(out: str) -> list[int]:
    return [int(m) for m in re.findall(r"(\d+) passed", out)]


def test_two_shards_run_each_selected_test_exactly_once() -> None:
    select = ["tests/test_sums.py", "-k", "block_sum or gemv or rows_sum or matrix_vector", "-p",
              "no:cacheprovider"]
    env = {**os.environ, "FUNCDL_TEST_SHARDS": "2"}
    plain = subprocess.run([sys.executable, "-m", "pytest", *select], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    sharded = subprocess.run([sys.executable, str(RUNNER), *select], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and sharded.returncode == 0, sharded.stdout
    (total,) = counts(plain.stdout)
    assert total >= 6 and sum(counts(sharded.stdout)) == total
    assert len(counts(sharded.stdout)) == 2 and "---- shard 1 of 2 ----" in sharded.stdout
    assert re.search(r"2 shards of \d+ tests, exit statuses \[0, 0\]", sharded.stdout)


class _Fake:
    """subprocess.Popen standing in for a shard: writes the digest, exits with a given code."""

    def __init__(self, codes: list[int], digests: list[str]) -> None:
        self.codes, self.digests = codes, digests

    def __call__(self, cmd: list[str], env: dict[str, str], **_: Any) -> Any:
        i = int(next(a for a in cmd if a.startswith("--shard=")).split("=")[1].split("/")[0])
        assert env["OPENBLAS_NUM_THREADS"] == "1" and f"base{i}" in " ".join(cmd)
        Path(env["FUNCDL_SHARD_DIGEST"]).write_text(self.digests[i])
        code = self.codes[i]

        class Done:
            def wait(self) -> int:
                return code

            def poll(self) -> int:
                return code
        return Done()


@pytest.mark.parametrize(("codes", "status"), [
    ([0, 0], 0), ([0, 1], 1), ([1, 0], 1), ([2, 1], 2), ([5, 0], 0), ([5, 5], 5), ([5, 1], 1),
])
def test_the_run_fails_as_its_first_failing_shard(runner, monkeypatch, capsys, codes,
                                                  status) -> None:
    monkeypatch.setenv("FUNCDL_TEST_SHARDS", "2")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setattr(runner.subprocess, "Popen", _Fake(codes, ["9 ab", "9 ab"]))
    assert runner.main([]) == status
    assert f"exit statuses {codes}" in capsys.readouterr().out


def test_shards_that_collected_different_tests_fail_the_run(runner, monkeypatch,
                                                            capsys) -> None:
    monkeypatch.setenv("FUNCDL_TEST_SHARDS", "2")
    monkeypatch.setattr(runner.subprocess, "Popen", _Fake([0, 0], ["9 ab", "9 cd"]))
    assert runner.main([]) == 1
    assert "did not all collect the same tests" in capsys.readouterr().out


def test_bad_shard_counts_and_specs_are_refused(runner, monkeypatch) -> None:
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("FUNCDL_TEST_SHARDS", bad)
        with pytest.raises(SystemExit, match="FUNCDL_TEST_SHARDS must be a count >= 1"):
            runner.shard_count()
    monkeypatch.setenv("FUNCDL_TEST_SHARDS", "3")
    assert runner.shard_count() == 3
    assert shard_spec("1/2") == (1, 2)
    for spec in ("2/2", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(pytest.UsageError, match="--shard expects I/N"):
            shard_spec(spec)
