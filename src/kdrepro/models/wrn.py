"""Wide ResNets (Zagoruyko & Komodakis 2016) for CIFAR, as the KTG code builds them.

The official KTG code (somaminami/DCL, lib/models.py) uses the common `WideResNet(depth, num_classes,
widen_factor, dropRate)`: 3x3 stem with 16 channels, three groups of (depth-4)/6 pre-activation basic
blocks (BN-ReLU-conv twice) of 16k/32k/64k channels, stride 2 entering groups 2 and 3, a 1x1 conv
shortcut where the width changes (not the zero-padding of the CIFAR ResNets), a final BN-ReLU, global
average pooling and FC. Convs start from N(0, sqrt(2/(k*k*out))), BN from (1, 0), FC biases from 0.
WRN-28-2: 28 layers, k = 2, widths 16/32/64/128, no dropout (dropRate 0 in the KTG code).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from kdrepro.models.registry import ModelError, fan_out_init, register_model, scaled


class WideBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal = in_channels == out_channels
        self.shortcut = None if self.equal else nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # as in the reference: where the width changes, the pre-activation also feeds the shortcut
        pre = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(pre)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return (x if self.equal else self.shortcut(pre)) + out


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen_factor: int, num_classes: int, in_channels: int, dropout: float, width: float):
        super().__init__()
        if (depth - 4) % 6:
            raise ModelError(f"wide resnet: depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [scaled(c, width) for c in (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        groups, channels = [], widths[0]
        for index, out in enumerate(widths[1:]):
            stride = 1 if index == 0 else 2
            groups.append(nn.Sequential(*[WideBlock(channels if i == 0 else out, out, stride if i == 0 else 1, dropout)
                                          for i in range(n)]))
            channels = out
        self.block1, self.block2, self.block3 = groups
        self.bn1 = nn.BatchNorm2d(channels)
        self.embedding = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)
        fan_out_init(self, zero_linear_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.embedding(F.relu(self.bn1(x))))


def make_wrn(depth: int, widen_factor: int):
    def build(num_classes: int, in_channels: int, image_size: int, width: float = 1.0, dropout: float = 0.0):
        if not 0 <= dropout < 1:
            raise ModelError(f"wrn{depth}_{widen_factor}: dropout must lie in [0, 1), got {dropout}")
        return WideResNet(depth, widen_factor, num_classes, in_channels, dropout, width)

    build.__doc__ = (f"WRN-{depth}-{widen_factor} (KTG's WideResNet): `width` scales every channel count, "
                     "`dropout` is the blocks' dropRate (0 in KTG).")
    return build


for _depth, _k in ((16, 2), (28, 2), (28, 10)):
    register_model(f"wrn{_depth}_{_k}", family="wrn", depth=_depth)(make_wrn(_depth, _k))
