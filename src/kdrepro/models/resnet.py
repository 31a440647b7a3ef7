"""CIFAR ResNets (He et al. 2016, section 4.2) as TAKD's official `resnet_cifar.py` builds them.

3x3 stem with 16 channels, three stages of 16/32/64 channels with n = (depth-2)/6 basic blocks,
stride 2 entering stages 2 and 3, global average pool, FC. The shortcut where the shape changes is
a 1x1 conv + BN ("projection", option B, TAKD's code) or strided identity padded with zero
channels ("zeropad", option A, the KTG code). Convs start from N(0, sqrt(2/(k*k*out))).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from kdrepro.models.registry import ModelError, fan_out_init, register_model, scaled


class ZeroPadShortcut(nn.Module):
    """Option A: the strided identity, then the extra channels as zeros, all of them after the identity's.
    The KTG code (somaminami/DCL b9c5cf1, lib/models.py lines 54-63, DownsampleA) does
    torch.cat((x, x.mul(0)), 1) after a stride-2 AvgPool2d of kernel 1 (a plain subsampling); padding
    with out - in zero channels at the end is that when out = 2 * in, and stays defined for widths
    scaled by another factor."""

    def __init__(self, out_channels: int, stride: int):
        super().__init__()
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - x.shape[1]))


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = (
                nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))
                if shortcut == "projection"
                else ZeroPadShortcut(out_channels, stride)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class CifarResNet(nn.Module):
    def __init__(self, blocks: int, num_classes: int, in_channels: int, shortcut: str, width: float):
        super().__init__()
        widths = [scaled(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, channels = [], widths[0]
        for index, out in enumerate(widths):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(channels if i == 0 else out, out, stride if i == 0 else 1, shortcut) for i in range(blocks)]
            stages.append(nn.Sequential(*stage))
            channels = out
        self.layer1, self.layer2, self.layer3 = stages
        self.embedding = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)
        fan_out_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.embedding(x))


def make_resnet(depth: int):
    def build(num_classes: int, in_channels: int, image_size: int, shortcut: str = "projection", width: float = 1.0):
        if shortcut not in ("projection", "zeropad"):
            raise ModelError(f"resnet{depth}: shortcut must be 'projection' or 'zeropad', got {shortcut!r}")
        return CifarResNet((depth - 2) // 6, num_classes, in_channels, shortcut, width)

    build.__doc__ = f"CIFAR ResNet-{depth}: `shortcut` projection|zeropad, `width` scales the 16/32/64 channels."
    return build


for _depth in (8, 14, 20, 26, 32, 44, 56, 110):
    register_model(f"resnet{_depth}", family="resnet", depth=_depth)(make_resnet(_depth))
