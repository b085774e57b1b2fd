"""``make test``'s pytest on every core: N pytest processes at once, each running the tests
of its ``--shard I/N`` (tests/conftest.py), N the usable cores up to 4 (``FUNCDL_TEST_SHARDS``
sets it; 1 is one plain pytest). Shard 0 prints as it goes, the others when they end; the
exit status is the first failing shard's. Arguments are passed on to every pytest::

    python tests/run_shards.py [pytest arguments]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


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
    pytest = [sys.executable, "-m", "pytest"]
    if n == 1:
        return subprocess.call([*pytest, *argv])
    with tempfile.TemporaryDirectory(prefix="funcdl-shards-") as tmp:
        root, procs, logs = Path(tmp), [], []
        try:
            for i in range(n):
                # its own temp root and no shared cache: the shards write nothing in common
                cmd = [*pytest, "-p", "no:cacheprovider", f"--shard={i}/{n}",
                       f"--basetemp={root / f'base{i}'}", *argv]
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
        digests = {(root / f"digest{i}").read_text() if (root / f"digest{i}").exists()
                   else None for i in range(n)}
        if None in digests or len(digests) != 1:
            print(f"\nrun_shards: the {n} shards did not all collect the same tests "
                  f"({sorted(map(str, digests))}); run plain pytest to see which ids differ")
            return max(1, *codes)
        print(f"\nrun_shards: {n} shards of {next(iter(digests)).split()[0]} tests, exit "
              f"statuses {codes}")
        failed = [c for c in codes if c not in (0, 5)]  # 5: this shard had no tests
        return failed[0] if failed else (0 if 0 in codes else 5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
