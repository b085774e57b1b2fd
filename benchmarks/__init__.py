"""funcdl's benchmark suite: ``python -m benchmarks`` (or ``make bench``).

Not a test suite: it times a full training step of four workloads (disk, mlp, cnn, resmlp)
for funcdl, a hand-written NumPy floor, PyTorch eager and JAX jit (when importable), plus
import time, time to the first step and peak memory, and writes ``benchmarks/results/``.
``python -m benchmarks.profile_step`` profiles funcdl's step against the floor.

This module imports nothing, so that ``python -m benchmarks._child`` (a fresh process timing
one implementation's first step) pays only for what it measures.
"""
