"""InstanceNorm: PyTorch's ``nn.InstanceNorm1d/2d/3d`` (``track_running_stats=False``, its
default) on channels-last input (N, *spatial, C): each example's each channel normalised
over its spatial axes. It is GroupNorm with one group per channel (``groupnorm.group_norm``
with C groups, C read at ``init``), the same numbers as ``GroupNorm(C, affine=...)``.
"""

from __future__ import annotations

from funcdl._args import bool_arg, call_name, eps_arg
from funcdl.layers.base import Layer
from funcdl.layers.groupnorm import group_norm

__all__ = ["InstanceNorm"]


def InstanceNorm(eps: float = 1e-5, affine: bool = False) -> Layer:
    """Instance normalisation of channels-last input (N, *spatial, C), at least one spatial
    axis and more than one spatial element (PyTorch's rules; it takes (N, C, *spatial)).

    params: ``()``, or with ``affine=True`` ``{'scale': ones(C), 'bias': zeros(C)}``
    (PyTorch's weight and bias); no state: training and inference compute alike.
    forward: ``y = scale·x̂ + bias``, ``x̂ = (x - μ)/sqrt(σ² + eps)``, μ and (biased) σ² of
    each example's channel over all spatial axes;
    vjp: ``dx = (g - mean(g) - x̂·mean(g·x̂))/sqrt(σ² + eps)`` with ``g = dy·scale``, means
    over the spatial axes; ``dscale = Σ dy·x̂``, ``dbias = Σ dy``, sums over all axes but C.
    Equal to ``GroupNorm(C, eps, affine)``.
    """
    eps = eps_arg(eps, "InstanceNorm", "num_features",
                  "so torch's InstanceNorm2d(C) is InstanceNorm() here, with eps 1e-5")
    affine = bool_arg(affine, "InstanceNorm", "affine")
    name = call_name("InstanceNorm", (), eps=(eps, 1e-5), affine=(affine, False))
    return group_norm(name, None, eps, affine)
