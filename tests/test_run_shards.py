"""tests/run_shards.py, make test's runner, and the split of tests/conftest.py: the shards split
the test files exactly and evenly, and a failing shard, or shards that split the tests
differently, fail the run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import conftest
import numpy as np
import pytest
from conftest import DURATIONS, TESTS, file_shards, load_module, shard_spec

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "run_shards.py"


@pytest.fixture
def runner() -> Any:
    return load_module(RUNNER)


def counts(out: str) -> list[int]:
    return [int(m) for m in re.findall(r"(\d+) passed", out)]


def _skips_whole(path: Path) -> bool:
    """Whether the test file skips at import when a module is missing (a module-level
    ``pytest.importorskip``), as the torch cross-checks do without torch."""
    return path.is_file() and re.search(r"^(\w+ = )?pytest\.importorskip\(", path.read_text(),
                                         re.MULTILINE) is not None


def test_two_shards_run_each_selected_test_exactly_once() -> None:
    # the lightest file of each shard's among those of a fraction of a second
    record, split = json.loads(DURATIONS.read_text()), file_shards(2)
    # and not one that skips itself whole without a peer (torch): that shard would run nothing
    light = sorted((seconds, name) for name, seconds in record.items() if 0.1 < seconds < 1
                   and not _skips_whole(ROOT / "tests" / name))
    files = [f"tests/{next(name for _, name in light if split[name] == i)}" for i in (0, 1)]
    select = [*files, "-p", "no:cacheprovider"]
    env = {**os.environ, "FUNCDL_TEST_SHARDS": "2"}
    plain = subprocess.run([sys.executable, "-m", "pytest", *select], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    sharded = subprocess.run([sys.executable, str(RUNNER), *select], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and sharded.returncode == 0, sharded.stdout
    (total,) = counts(plain.stdout)
    each = counts(sharded.stdout)
    assert total >= 6 and sum(each) == total and len(each) == 2 and min(each) > 0
    assert "---- shard 1 of 2 ----" in sharded.stdout
    assert re.search(r"2 shards of \d+ tests, exit statuses \[0, 0\]", sharded.stdout)


def test_the_split_gives_the_heaviest_file_first_to_the_lightest_shard(tmp_path) -> None:
    for name in ("test_a.py", "test_b.py", "test_c.py", "test_d.py", "test_e.py", "util.py"):
        (tmp_path / name).write_text("")
    record = tmp_path / "durations.json"
    # e is not in the record: it weighs the median, 3.5; gone.py is no longer a file
    record.write_text(json.dumps({"test_a.py": 5, "test_b.py": 4, "test_c.py": 3,
                                  "test_d.py": 3, "gone.py": 100}))
    # a -> 0 (5), b -> 1 (4), e -> 1 (7.5), c -> 0 (8), d -> 1 (10.5)
    assert file_shards(2, tmp_path, record) == {"test_a.py": 0, "test_b.py": 1, "test_e.py": 1,
                                                "test_c.py": 0, "test_d.py": 1}
    assert file_shards(3, tmp_path, record) == {"test_a.py": 0, "test_b.py": 1, "test_e.py": 2,
                                                "test_c.py": 2, "test_d.py": 1}
    record.unlink()  # no record: every file weighs the same, taken in name order
    assert file_shards(2, tmp_path, record) == {"test_a.py": 0, "test_b.py": 1, "test_c.py": 0,
                                                "test_d.py": 1, "test_e.py": 0}


def test_every_test_file_is_in_exactly_one_shard_and_the_shards_are_balanced() -> None:
    record = json.loads(DURATIONS.read_text())
    for n in (2, 3, 4):
        split = file_shards(n)
        assert sorted(split) == sorted(p.name for p in TESTS.glob("test_*.py"))
        loads = [sum(record.get(name, 0) for name, i in split.items() if i == shard)
                 for shard in range(n)]
        assert max(loads) - min(loads) <= max(record.values())


def test_a_shard_does_not_collect_another_shards_files() -> None:
    class Config:
        def __init__(self, stash: dict[Any, Any]) -> None:
            self.stash = stash
    sharded = Config({conftest._SHARD: (0, 2, {"test_mine.py": 0, "test_theirs.py": 1})})
    assert conftest.pytest_ignore_collect(TESTS / "test_theirs.py", sharded) is True
    for path in (TESTS / "test_mine.py", TESTS / "test_new.py", ROOT / "test_theirs.py",
                 TESTS / "mpi_scripts"):
        assert conftest.pytest_ignore_collect(path, sharded) is None
    assert conftest.pytest_ignore_collect(TESTS / "test_theirs.py", Config({})) is None


def test_stored_durations_merge_with_the_record_and_drop_files_gone(runner, tmp_path,
                                                                    monkeypatch) -> None:
    for name in ("test_a.py", "test_b.py", "test_c.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "durations.json").write_text(json.dumps({"test_a.py": 1.0, "test_c.py": 3.0,
                                                         "test_gone.py": 9.0}))
    shards = [tmp_path / "s0.json", tmp_path / "s1.json", tmp_path / "missing.json"]
    shards[0].write_text(json.dumps({"test_a.py": 1.5}))
    shards[1].write_text(json.dumps({"test_b.py": 2.5, "conftest.py": 0.1}))
    monkeypatch.setattr(runner, "TESTS", tmp_path)
    runner.store_durations(shards)
    assert json.loads((tmp_path / "durations.json").read_text()) == {
        "test_a.py": 1.5, "test_b.py": 2.5, "test_c.py": 3.0}
    assert not list(tmp_path.glob("*.part"))


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


def test_shards_that_split_the_tests_differently_fail_the_run(runner, monkeypatch,
                                                            capsys) -> None:
    monkeypatch.setenv("FUNCDL_TEST_SHARDS", "2")
    monkeypatch.setattr(runner.subprocess, "Popen", _Fake([0, 0], ["9 ab", "9 cd"]))
    assert runner.main([]) == 1
    assert "did not all split the tests alike" in capsys.readouterr().out


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


# conftest's pytest_runtest_protocol gives each test this module's RNG seeded afresh from the
# test's id, so that the module's own generator is never drawn from.
RNG = np.random.default_rng(7)
_MODULE_RNG = RNG


@pytest.mark.parametrize("run", [0, 1])
def test_a_modules_rng_is_seeded_afresh_from_the_tests_id(run, request) -> None:
    del run  # the second run sees what the first drew, had the generator been shared
    seeded = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
    assert RNG is not _MODULE_RNG  # this test's own generator, not the module's
    assert RNG.random() == seeded.random()
    fresh = np.random.default_rng(7).bit_generator.state
    assert _MODULE_RNG.bit_generator.state == fresh  # never drawn from
