"""ResNet18 and ResNet50 in the four-stage ImageNet layout adapted to 32x32 images, as the Tf-KD code
takes them from kuangliu/pytorch-cifar (`model/resnet.py`): a 3x3 stem with 64 channels and no
max-pool, stages of 64/128/256/512 channels (x4 for bottlenecks) with stride 2 entering stages 2-4,
global average pool, FC; projection shortcuts; PyTorch's default initialisation.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from kdrepro.models.registry import register_model, scaled


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(out_channels)]


class Block(nn.Module):
    """Basic block (two 3x3 convs, expansion 1) or bottleneck (1x1, 3x3, 1x1, expansion 4)."""

    def __init__(self, in_channels: int, planes: int, stride: int, bottleneck: bool):
        super().__init__()
        out_channels = planes * (4 if bottleneck else 1)
        if bottleneck:
            layers = [*conv_bn(in_channels, planes, 1), nn.ReLU(inplace=True), *conv_bn(planes, planes, 3, stride),
                      nn.ReLU(inplace=True), *conv_bn(planes, out_channels, 1)]
        else:
            layers = [*conv_bn(in_channels, planes, 3, stride), nn.ReLU(inplace=True), *conv_bn(planes, planes, 3)]
        self.residual = nn.Sequential(*layers)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))

    def forward(self, x):
        return F.relu(self.residual(x) + self.shortcut(x))


class ImageNetStyleResNet(nn.Module):
    def __init__(self, blocks: list[int], bottleneck: bool, num_classes: int, in_channels: int, width: float):
        super().__init__()
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(*conv_bn(in_channels, planes[0], 3), nn.ReLU(inplace=True))
        stages, channels = [], planes[0]
        for index, (count, plane) in enumerate(zip(blocks, planes)):
            stride = 1 if index == 0 else 2
            stage = []
            for i in range(count):
                stage.append(Block(channels, plane, stride if i == 0 else 1, bottleneck))
                channels = plane * (4 if bottleneck else 1)
            stages.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*stages)
        self.embedding = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # AvgPool(4) on 32x32 inputs
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.embedding(self.layers(self.stem(x))))


@register_model("resnet18", family="resnet_imagenet", depth=18)
def resnet18(num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> nn.Module:
    """ResNet18 (basic blocks [2, 2, 2, 2]); `width` scales the 64..512 channels."""
    return ImageNetStyleResNet([2, 2, 2, 2], False, num_classes, in_channels, width)


@register_model("resnet50", family="resnet_imagenet", depth=50)
def resnet50(num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> nn.Module:
    """ResNet50 (bottlenecks [3, 4, 6, 3]); `width` scales the 64..512 channels."""
    return ImageNetStyleResNet([3, 4, 6, 3], True, num_classes, in_channels, width)
