"""Command-line pieces shared by the example scripts: argument types that refuse a bad value
while parsing, and the output folder made before any training.

A bad value has to be refused by argparse, not by the library minutes later: argparse
prints the usage line and one message and exits with status 2, where a value that reaches
the training ends in a traceback (``--epochs 0`` in the learning-rate schedule), a crash
after the whole run (``--out`` naming a file), or a silently meaningless run.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def description(doc: str | None) -> str:
    """The docstring's first paragraph on one line: a whole sentence for ``--help``, where the
    first line alone may stop mid-sentence."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def _int(text: str, what: str, low: int, high: int | None = None) -> int:
    """``text`` as an int in ``[low, high)``, else an ArgumentTypeError that argparse prints
    after the option's name."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low or (high is not None and value >= high):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type for counts (epochs, runs, workers): an int >= 1."""
    return _int(text, "a positive integer (1 or more)", 1)


def positive_float(text: str) -> float:
    """An argparse type for a finite float > 0 (a target loss, a rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def seed(text: str) -> int:
    """An argparse type for a seed of ``funcdl.random.key``: an int in [0, 2**128)."""
    return _int(text, "a seed: an integer in [0, 2**128)", 0, 1 << 128)


def out_dir(text: str) -> Path:
    """An argparse type for ``--out``: refuses a path that exists and is not a folder while
    parsing; ``make_out_dir`` then creates it."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"expected a folder for the outputs, got {text!r}, which exists and is not a "
            f"folder; pass a folder's path (it is created when missing)")
    return path


def make_out_dir(parser: argparse.ArgumentParser, path: Path) -> Path:
    """Create ``path`` (and its parents) before any training, so that a folder that cannot be
    made ends the script at once with one line instead of after the whole run."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a parent that is a file, no permission, a read-only disk, ...
        parser.error(f"argument --out: cannot create the folder {str(path)!r} "
                     f"({err.strerror or err}); pass a folder you can write to")
    return path


def parser(script: str, doc: str | None) -> argparse.ArgumentParser:
    """An example's parser: the script's name in its messages (``disk.py: error: ...``, also
    when ``main`` is called from pytest) and its docstring's first paragraph as the help."""
    return argparse.ArgumentParser(prog=Path(script).name, description=description(doc))


def add_epochs_and_seed(parser: argparse.ArgumentParser, epochs: int, epoch: str,
                        draws: str) -> None:
    """``--epochs`` (default ``epochs``, each a pass over ``epoch``) and ``--seed`` (of the
    key that draws ``draws``)."""
    parser.add_argument("--epochs", type=positive_int, default=epochs,
                        help=f"passes over {epoch} (default: %(default)s)")
    parser.add_argument("--seed", type=seed, default=0,
                        help=f"seed of the key that draws {draws} (default: %(default)s)")


def add_out(parser: argparse.ArgumentParser, default: Path, files: str) -> None:
    """The ``--out DIR`` option of a script that writes ``files``."""
    parser.add_argument("--out", type=out_dir, default=default, metavar="DIR",
                        help=f"folder for {files}, created when missing (default: "
                             f"%(default)s)")


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with the ``--out`` folder (when the script has one) made at once:
    before any training, so that a bad --out costs nothing."""
    args = parser.parse_args(argv)
    if getattr(args, "out", None) is not None:
        make_out_dir(parser, args.out)
    return args
