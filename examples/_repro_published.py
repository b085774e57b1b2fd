"""The numbers published by the five reports, copied exactly from their texts in
../shared/seeds/ (report and table named at each), and how funcdl's runs are summarised
next to them."""

from __future__ import annotations

from typing import Any

import numpy as np

ACT_NAMES = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}

# Report 000, Table 1 (time in s, errors in %), mean ± std over 15 runs.
PUB_000 = {
    "ReLU (normal)": ("1.82 ± 0.01", "0.84 ± 0.41", "1.95 ± 0.28"),
    "ReLU (uniform)": ("1.87 ± 0.09", "0.85 ± 0.22", "1.87 ± 0.22"),
    "Tanh (normal)": ("2.50 ± 0.23", "0.77 ± 0.17", "1.77 ± 0.27"),
    "Tanh (uniform)": ("2.12 ± 0.19", "1.7 ± 0.90", "2.07 ± 0.81"),
    "Sigmoid (normal)": ("2.07 ± 0.16", "0.48 ± 0.21", "1.09 ± 0.23"),
    "Sigmoid (uniform)": ("2.13 ± 0.12", "49.9 ± 0.00", "50.1 ± 0.00"),
}
# Report 001, section III-A table (accuracy in %, averaged over 10 runs) and III-B (s/epoch).
PUB_001 = {10: ("85.3", "73.1"), 50: ("95.6", "96.4"), 200: ("96.9", "97.8")}
PUB_001_TIME = ("0.159", "0.077")
# Report 002, Table I (errors as fractions) and the learning rates it lists.
PUB_002 = {
    "MSE_SGD": ("0.0317 ± 0.0137", "0.0352 ± 0.0114", "0.5"),
    "BCE_SGD": ("0.0642 ± 0.0177", "0.0856 ± 0.0188", "0.3"),
    "MSE_Adam": ("0.0072 ± 0.0021", "0.0157 ± 0.0056", "-"),
    "BCE_Adam": ("0.0095 ± 0.0100", "0.0167 ± 0.0100", "-"),
    "WS_MSE_SGD": ("0.1141 ± 0.0921", "0.1172 ± 0.0812", "0.5"),
    "WS_MSE_Adam": ("0.0062 ± 0.0036", "0.0099 ± 0.0028", "-"),
}
# Report 004, Figure 2 (its own weights and data, which the report does not publish).
PUB_004 = """Gradients of the first-layer weights:
[[-0.0210 -0.0184  0.      0.0178  0.      0.
  -0.0097  0.      0.      0.      ]
 [-0.0926 -0.0815  0.      0.0783  0.      0.
  -0.0430  0.      0.      0.      ]]

Gradients of the first-layer biases:
[-0.2151 -0.1893  0.      0.1820  0.      0.
 -0.0998  0.      0.      0.      ]"""


def values(runs: list[dict[str, Any]], key: str, scale: float = 1.0) -> np.ndarray:
    return np.array([r[key] for r in runs], dtype=np.float64) * scale


def pm(a: np.ndarray, digits: int = 2) -> str:
    """Mean ± std over runs (std with n - 1; 0 for one run)."""
    std = a.std(ddof=1) if len(a) > 1 else 0.0
    return f"{a.mean():.{digits}f} ± {std:.{digits}f}"


def published_mean(text: str) -> float:
    return float(text.split("±")[0])


def stuck(runs: list[dict[str, Any]]) -> int:
    """Runs that did not leave chance level (test error above 25 %)."""
    return int(sum(r["test_error"] > 0.25 for r in runs))
