"""ResNeXt29 (8x64d) for CIFAR as the Tf-KD code takes it from prlz77/ResNeXt.pytorch: a 3x3 stem with
64 channels, three stages of (29-2)/9 = 3 bottlenecks (1x1 reduce to D = cardinality * out / widen,
grouped 3x3, 1x1 expand) with 256/512/1024 output channels (widen factor 4), stride 2 entering stages
2 and 3, average pool, FC; convs start from Kaiming normal (fan out), BN from 1/0.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from kdrepro.models.registry import register_model, scaled


class ResNeXtBottleneck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, cardinality: int, inner: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
            nn.Conv2d(inner, inner, 3, stride, 1, groups=cardinality, bias=False), nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
            nn.Conv2d(inner, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential()
        if in_channels != out_channels:  # as in prlz77's code: a projection only where the width changes
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return F.relu(self.residual(x) + self.shortcut(x))


class CifarResNeXt(nn.Module):
    def __init__(self, depth: int, cardinality: int, base_width: int, widen: int, num_classes: int, in_channels: int,
                 width: float):
        super().__init__()
        stem = scaled(64, width)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        blocks, channels = [], stem
        for index, out in enumerate(c * widen for c in (64, 128, 256)):
            out = scaled(out, width)
            # D = cardinality * out / widen: base_width (64) channels per group in stage 1, doubling per stage
            inner = cardinality * scaled(base_width * 2**index, width)
            for i in range((depth - 2) // 9):
                blocks.append(ResNeXtBottleneck(channels, out, (1 if index == 0 else 2) if i == 0 else 1, cardinality, inner))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.embedding = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # avg_pool2d(8) on 32x32 inputs
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.kaiming_normal_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        return self.fc(self.embedding(self.blocks(self.stem(x))))


@register_model("resnext29", family="resnext", depth=29)
def resnext29(num_classes: int, in_channels: int, image_size: int, cardinality: int = 8, width: float = 1.0) -> nn.Module:
    """ResNeXt29 8x64d (prlz77/ResNeXt.pytorch, as in the Tf-KD code); `width` scales every layer."""
    return CifarResNeXt(29, cardinality, 64, 4, num_classes, in_channels, width)
