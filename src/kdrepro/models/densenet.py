"""DenseNet121 for CIFAR as the Tf-KD code takes it from weiaicunzai/pytorch-cifar100: a 3x3 stem
with 2k channels (growth k = 32), dense blocks of [6, 12, 24, 16] bottleneck layers (BN-ReLU-1x1 conv
to 4k, BN-ReLU-3x3 conv to k, concatenated), transitions halving channels and size, BN-ReLU, global
pooling, FC. `width` scales the growth rate.
"""

from __future__ import annotations

import torch
from torch import nn

from kdrepro.models.registry import register_model, scaled


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth: int):
        super().__init__()
        self.bottleneck = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True), nn.Conv2d(in_channels, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True), nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x):
        return torch.cat([x, self.bottleneck(x)], dim=1)


class DenseNet(nn.Module):
    def __init__(self, blocks: list[int], growth: int, num_classes: int, in_channels: int, reduction: float = 0.5):
        super().__init__()
        channels = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)]
        for index, count in enumerate(blocks):
            for _ in range(count):
                layers.append(DenseLayer(channels, growth))
                channels += growth
            if index < len(blocks) - 1:
                out = int(reduction * channels)
                layers.append(nn.Sequential(nn.BatchNorm2d(channels), nn.Conv2d(channels, out, 1, bias=False), nn.AvgPool2d(2)))
                channels = out
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.embedding(self.features(x)))


@register_model("densenet121", family="densenet", depth=121)
def densenet121(num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> nn.Module:
    """DenseNet121, growth 32 (CIFAR variant of weiaicunzai/pytorch-cifar100); `width` scales the growth rate."""
    return DenseNet([6, 12, 24, 16], scaled(32, width), num_classes, in_channels)
