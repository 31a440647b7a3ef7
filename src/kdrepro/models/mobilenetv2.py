"""MobileNetV2 for CIFAR as the Tf-KD code takes it from weiaicunzai/pytorch-cifar100.

Its quirks are kept: the stem is a 1x1 conv with padding 1 (32x32 -> 34x34), the first bottleneck
also has an expansion conv (t=1), convs keep their biases, stages 5-7 do not downsample, and the
classifier is a 1x1 conv after global pooling. `width` scales every channel count.
"""

from __future__ import annotations

from torch import nn

from kdrepro.models.registry import register_model, scaled


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1,
            relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups),
                               nn.BatchNorm2d(out_channels)]
    return layers + [nn.ReLU6(inplace=True)] if relu else layers


class LinearBottleneck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.residual = nn.Sequential(
            *conv_bn(in_channels, hidden, 1),
            *conv_bn(hidden, hidden, 3, stride, 1, groups=hidden),
            *conv_bn(hidden, out_channels, 1, relu=False),
        )
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x):
        return self.residual(x) + x if self.skip else self.residual(x)


# (repeats, output channels, stride of the first block, expansion)
STAGES = [(1, 16, 1, 1), (2, 24, 2, 6), (3, 32, 2, 6), (4, 64, 2, 6), (3, 96, 1, 6), (3, 160, 1, 6), (1, 320, 1, 6)]


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: float):
        super().__init__()
        channels = scaled(32, width)
        self.stem = nn.Sequential(*conv_bn(in_channels, channels, 1, padding=1))
        blocks = []
        for repeats, out, stride, expansion in STAGES:
            for i in range(repeats):
                blocks.append(LinearBottleneck(channels, scaled(out, width), stride if i == 0 else 1, expansion))
                channels = scaled(out, width)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(*conv_bn(channels, scaled(1280, width), 1))
        self.embedding = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Conv2d(scaled(1280, width), num_classes, 1), nn.Flatten())

    def forward(self, x):
        return self.classifier(self.embedding(self.head(self.blocks(self.stem(x)))))


@register_model("mobilenetv2", family="mobilenet", depth=54)
def mobilenetv2(num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> nn.Module:
    """MobileNetV2 (CIFAR variant of weiaicunzai/pytorch-cifar100); `width` scales every layer."""
    return MobileNetV2(num_classes, in_channels, width)
