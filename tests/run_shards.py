"""``make test``'s pytest on every core: N pytest processes at once, each running the test
files of its ``--shard I/N`` (tests/conftest.py: whole files, balanced by their seconds in
tests/durations.json), N the usable cores up to 4 (``FUNCDL_TEST_SHARDS`` sets it; 1 is one
plain pytest). Shard 0 prints as it goes, the others when they end; the exit status is the
first failing shard's. Arguments are passed on to every pytest, but ``--store-durations``,
which renews tests/durations.json from this run's seconds when every shard passed::

    python tests/run_shards.py [--store-durations] [pytest arguments]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
TESTS = Path(__file__).resolve().parent


def shard_count() -> int:
    given = os.environ.get("FUNCDL_TEST_SHARDS")
    if given is not None:
        if not given.isdigit() or int(given) < 1:
            sys.exit(f"run_shards: FUNCDL_TEST_SHARDS must be a count >= 1, got {given!r}")
        return int(given)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(usable or 1, 4))


def main(argv: list[str]) -> int:
    n = shard_count()
    store = "--store-durations" in argv
    argv = [arg for arg in argv if arg != "--store-durations"]
    pytest = [sys.executable, "-m", "pytest"]
    with tempfile.TemporaryDirectory(prefix="funcdl-shards-") as tmp:
        root = Path(tmp)
        seconds = [root / f"durations{i}.json" for i in range(n)]
        if n == 1:
            code = subprocess.call([*pytest, *argv, *(
                [f"--store-durations={seconds[0]}"] if store else [])])
            if store and code == 0:
                store_durations(seconds)
            return code
        procs, logs = [], []
        try:
            for i in range(n):
                # its own temp root and no shared cache: the shards write nothing in common
                cmd = [*pytest, "-p", "no:cacheprovider", f"--shard={i}/{n}",
                       f"--basetemp={root / f'base{i}'}", *argv]
                if store:
                    cmd.append(f"--store-durations={seconds[i]}")
                env = {**os.environ, "FUNCDL_SHARD_DIGEST": str(root / f"digest{i}")}
                for var in _THREADS:  # BLAS threads spinning while they wait for a core
                    env.setdefault(var, "1")  # that another shard holds: slower than 1 pytest
                log = None if i == 0 else (root / f"shard{i}.log").open("w")
                logs.append(log)
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=(
                    None if log is None else subprocess.STDOUT)))
            codes = [p.wait() for p in procs]
        finally:
            for p in procs:  # an interrupt, or a shard that failed to start
                if p.poll() is None:
                    p.terminate()
                    p.wait()
            for log in logs:
                if log is not None:
                    log.close()
        for i in range(1, n):
            print(f"\n---- shard {i} of {n} ----")
            print((root / f"shard{i}.log").read_text(), end="")
        written = [(root / f"digest{i}").read_text().split() if (root / f"digest{i}").exists()
                   else None for i in range(n)]
        if None in written or len({digest for _, digest in written}) != 1:
            print(f"\nrun_shards: the {n} shards did not all split the tests alike "
                  f"({written}); run plain pytest to see which ids differ")
            return max(1, *codes)
        print(f"\nrun_shards: {n} shards of {sum(int(count) for count, _ in written)} tests, "
              f"exit statuses {codes}")
        failed = [c for c in codes if c not in (0, 5)]  # 5: this shard had no tests
        code = failed[0] if failed else (0 if 0 in codes else 5)
        if store and code == 0:
            store_durations(seconds)
        return code


def store_durations(paths: list[Path]) -> None:
    """Merge the shards' seconds per test file into tests/durations.json, keeping the files
    this run did not take and dropping those no longer in tests/."""
    record = TESTS / "durations.json"
    merged = json.loads(record.read_text()) if record.exists() else {}
    for path in paths:
        if path.exists():
            merged.update(json.loads(path.read_text()))
    names = {path.name for path in TESTS.glob("test_*.py")}
    text = json.dumps({k: v for k, v in sorted(merged.items()) if k in names}, indent=0)
    partial = record.with_suffix(".json.part")
    partial.write_text(text + "\n")
    os.replace(partial, record)
    print(f"run_shards: wrote the seconds of {len(names & merged.keys())} test files to {record}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
