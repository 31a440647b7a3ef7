"""Building blocks shared by architectures and by the modules of loss edges: pylearn2's maxout units
(the maxout networks of kdrepro.models.maxout, FitNets' hint regressor in kdrepro.losses.fitnets)."""

from __future__ import annotations

import torch
from torch import nn


class MaxoutConv2d(nn.Module):
    """Convolution to out_channels * pieces channels, then the max over each unit's `pieces` channels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], pieces: int = 2,
                 padding: int = 0):
        super().__init__()
        self.out_channels, self.pieces = out_channels, pieces
        self.conv = nn.Conv2d(in_channels, out_channels * pieces, kernel_size, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n, _, h, w = y.shape
        return y.view(n, self.out_channels, self.pieces, h, w).amax(dim=2)


class MaxoutLinear(nn.Module):
    """Linear map to out_features * pieces, then the max over each unit's `pieces` outputs."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 5):
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(len(x), self.out_features, self.pieces).amax(dim=2)
