"""ConvTranspose1D's import path: the layer is conv_transpose.py's rank-1 case of the builder
it shares with ConvTranspose2D (as Conv1D and Conv2D share conv.py's)."""

from funcdl.layers.conv_transpose import ConvTranspose1D

__all__ = ["ConvTranspose1D"]
