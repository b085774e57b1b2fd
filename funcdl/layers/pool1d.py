"""1-D pooling, channels last: MaxPool1D and AvgPool1D on ``(N, L, C)``, each run as a
1 x k 2-D pool on ``(N, 1, L, C)`` (``pool.max_pool``, ``pool.avg_pool``), the way Conv1D
runs as a 1 x k Conv2D: the same window offsets, ties, NaN rule, padding and ``ceil_mode``
as MaxPool2D and AvgPool2D.
"""

from __future__ import annotations

from typing import Any

from funcdl._args import call_name
from funcdl.layers.base import Layer
from funcdl.layers.pool import avg_pool, max_pool

__all__ = ["AvgPool1D", "MaxPool1D"]


def MaxPool1D(window: int = 2, stride: int | None = None, padding: Any = "VALID", *,
              dilation: int = 1, ceil_mode: bool = False) -> Layer:
    """Max over each window, channels last: ``(N, L, C) -> (N, OL, C)``.

    forward: ``y[n,p,c] = max_j xp[n, p·s + j·d, c]`` (xp: x padded with -inf);
    vjp: ``dx[n, p·s + j*·d, c] += dy[n,p,c]`` at each window's arg-max ``j*`` (the first
    maximum; a NaN wins, the last NaN if several; never the padding), as MaxPool2D.
    ``window`` defaults to 2, ``stride`` to the window; ``padding``: ``'VALID'``,
    ``'SAME'``, an int or a pair ``(left, right)``, narrower than ``(window - 1)·d + 1``;
    ``dilation`` and ``ceil_mode`` as PyTorch's MaxPool1d (``ceil_mode`` not with 'SAME').
    """
    name = call_name("MaxPool1D", (window,), stride=(stride, None),
                     padding=(padding, "VALID"), dilation=(dilation, 1),
                     ceil_mode=(ceil_mode, False))
    return max_pool(name, 1, window, stride, padding, dilation, ceil_mode)


def AvgPool1D(window: int = 2, stride: int | None = None, padding: Any = "VALID",
              count_include_pad: bool | None = None, *, ceil_mode: bool = False) -> Layer:
    """Mean over each window, channels last: ``(N, L, C) -> (N, OL, C)``.

    forward: ``y[n,p,c] = Σ_j xp[n, p·s + j, c] / m[p]`` (xp: zero-padded);
    vjp: ``dx[n, p·s + j, c] += dy[n,p,c] / m[p]`` for every ``j``.
    ``m``, ``count_include_pad`` (default: True for explicit padding, False for 'SAME')
    and ``ceil_mode`` as AvgPool2D's, i.e. PyTorch's AvgPool1d for explicit padding.
    ``window`` defaults to 2, ``stride`` to the window; ``padding``: ``'VALID'``,
    ``'SAME'``, an int or a pair ``(left, right)``, narrower than the window.
    """
    name = call_name("AvgPool1D", (window,), stride=(stride, None),
                     padding=(padding, "VALID"), count_include_pad=(count_include_pad, None),
                     ceil_mode=(ceil_mode, False))
    return avg_pool(name, 1, window, stride, padding, count_include_pad, ceil_mode)
