"""Maxout networks of FitNets (Romero et al., ICLR 2015): the maxout teachers, FitNets 1-4, the
MNIST FitNet and the depth family of the paper's Fig. 3, with the paper's way of counting
multiplications and parameters (scripts/computeNumberMult.py and computeNumberParams.py of the
official code, adri-romsor/FitNets).

A maxout unit is the maximum over `pieces` affine pieces: MaxoutConv2d convolves to out * pieces
channels and keeps, per output channel, the largest of its `pieces` consecutive channels (pylearn2's
grouping); MaxoutLinear likewise. A layer here is one pylearn2 MaxoutConvC01B: maxout convolution,
then its own max-pool, so a layer's output (what a hint or a guided layer is) is the pooled map.

Submodules: features.h0 ... features.hN (the conv layers), embedding (flatten, then the maxout FC
where the network has one: the penultimate representation), classifier (the softmax layer's linear
map). Each model carries `hint_layer` (the module path a FitNet student is guided *by*, on
teachers) or `guided_layer` (the path of its guided layer, on students); `hint_layers(arch)` gives
them without building the model.

Architectures and their provenance (docs/protocols/fitnets.md):
  fitnet4               the 19-layer CIFAR FitNet of the official YAML (yaml/cifar10_fitnet19_all.yaml), EXACT;
                        guided layer h10 (`hints: [[10, 1]]`). Its FC has the YAML's 5 pieces, so it counts
                        2.74M parameters against Table 5's ~2.5M (2.545M with 2 pieces, as FitNets 1-3)
  fitnet1, fitnet2,     the conv widths of the re-implementations (fitnet1: zhuangzi926 nets/fitnet.py; all three:
  fitnet3               cicicici/deeptensor 4823109, deeptensor/model/fitnet.py, which also has their FC of 500
                        units), then a maxout FC of 500 units x 2 pieces and the softmax: 11, 11 and 13 layers as
                        Table 5 counts them. The 2 pieces are fitted to Table 5: they give its parameter counts
                        (fitnet1 249.6K, ~250K; fitnet2 861,928, ~862K) and, with the teacher's, its compression
                        rates. FitNet 3's stage-1 widths 32,48,80,80 are ours, not a source's: the
                        re-implementations' 32,48,64,64 count 324M multiplications and 1.50M parameters against
                        Table 5's ~392M and ~1.6M; 80,80 for the last two layers, the smallest change found that
                        brings both within 2%, gives 386M and 1.58M (docs/protocol-decisions.md, item 6)
  fitnet_mnist          the MNIST FitNet of yaml/MNIST_fitnet_valid.yaml, EXACT; guided layer h3 (`[[3, 1]]`)
  maxout_teacher_cifar  the maxout paper's CIFAR-10 network (Goodfellow et al. 2013; lisa-lab/pylearn2
                        scripts/papers/maxout/cifar10.yaml): maxout conv 96 (8x8, pad 4, pool 4/2), 192 (8x8,
                        pad 3, pool 4/2), 192 (5x5, pad 3, pool 2/2), pooled as pylearn2 rounds, a maxout FC of
                        500 units and the softmax. The FitNets teacher YAMLs are not released; with the FC at 2
                        pieces (the yaml has 5) it counts Table 5's ~9M parameters and ~725M multiplications
                        (9.04M, 725.1M; 5 pieces: 16.2M, 732M). Dropout is an option (the maxout recipe's)
  maxout_teacher_mnist  3 maxout conv (48, 48, 24), zhuangzi926's sizes; the paper reports ~361K parameters
  fitnet_depth{3..13}   Fig. 3's students: `depth` maxout conv layers in three stages of widths w, 2w, 3w
                        (pools after stages 1 and 2, a global max-pool after stage 3), w chosen by the
                        multiplication counter so that the net costs `budget` multiplications (within ~10%)
Pylearn2 pools round the output size up where a window overhangs the map (Conv.round_up, torch's
ceil_mode); the MNIST teacher, a PyTorch re-implementation's, rounds down. Only the teachers' windows
overhang: the FitNets' pools tile their maps exactly.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
import torch
from torch import nn

from kdrepro.catalog import ModelError
from kdrepro.models.layers import MaxoutConv2d, MaxoutLinear
from kdrepro.models.maxout_layout import (
    ARCHS,
    DEFAULT_BUDGET,
    DEPTHS,
    FC,
    GLOBAL,
    HINT_LAYERS,
    INIT_RANGE,
    TEACHERS,
    Conv,
    hint_layers,
    layers_for,
)
from kdrepro.models.registry import register_model

class MaxoutLayer(nn.Sequential):
    def __init__(self, in_channels: int, spec: Conv):
        layers: list[nn.Module] = [MaxoutConv2d(in_channels, spec.out, spec.kernel, spec.pieces, spec.pad)]
        if spec.pool == GLOBAL:
            layers.append(nn.AdaptiveMaxPool2d(1))
        elif spec.pool > 1:  # torch's ceil_mode is pylearn2's rounding up wherever pool >= stride, as in every net here
            layers.append(nn.MaxPool2d(spec.pool, spec.stride or spec.pool, ceil_mode=spec.round_up))
        super().__init__(*layers)


class InputDropout(nn.Module):
    """pylearn2's dropout of a layer's input (pylearn2/models/mlp.py MLP.dropout_fprop and apply_dropout, c3fb3c9
    lines 769-850): in training each unit of each example is kept with probability `include_prob` and
    multiplied by `scale`, which pylearn2 does not tie to 1/include_prob (the maxout paper keeps the
    image's pixels with 0.8 at scale 1); at evaluation the input passes unchanged."""

    def __init__(self, include_prob: float, scale: float):
        super().__init__()
        if not 0 < include_prob <= 1:
            raise ModelError(f"dropout include_prob must lie in (0, 1], got {include_prob}")
        self.include_prob, self.scale = include_prob, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * torch.bernoulli(torch.full_like(x, self.include_prob)) * self.scale


@dataclass(frozen=True)
class Dropout:
    """pylearn2's Dropout cost: the network's input (h0's) kept with `input_include_prob` and scaled by
    `input_scale`, every later layer's input (the conv layers', the maxout FC's, the softmax's) with
    `hidden_include_prob` and `hidden_scale`. Include probability 1: no dropout there."""

    input_include_prob: float = 1.0
    input_scale: float = 1.0
    hidden_include_prob: float = 1.0
    hidden_scale: float = 1.0

    def before(self, index: int) -> nn.Module | None:
        """The dropout of layer `index`'s input (0: the network's input), None where there is none."""
        prob, scale = (self.input_include_prob, self.input_scale) if index == 0 else (self.hidden_include_prob, self.hidden_scale)
        return InputDropout(prob, scale) if prob < 1 else None


@dataclass(frozen=True)
class LayerRules:
    """The training rules pylearn2 layers carry, which the engine honours (engine/train.py make_optimizer):
    `conv_lr_scale` multiplies the rate of every maxout conv layer's weights and biases (W_lr_scale,
    b_lr_scale); `max_kernel_norm` bounds the norm of each conv output channel's kernel (one value, or
    one per conv layer); `max_col_norm` bounds each maxout FC unit's weights, `softmax_max_col_norm` each
    class's softmax weights. None: no constraint."""

    conv_lr_scale: float = 1.0
    max_kernel_norm: float | list[float] | None = None
    max_col_norm: float | None = None
    softmax_max_col_norm: float | None = None

    def apply(self, net: "MaxoutNet") -> None:
        convs = [block[0].conv for block in net.features if isinstance(block, MaxoutLayer)]
        kernel_norms = self.max_kernel_norm if isinstance(self.max_kernel_norm, (list, tuple)) else [self.max_kernel_norm] * len(convs)
        if len(kernel_norms) != len(convs):
            raise ModelError(f"max_kernel_norm: {len(kernel_norms)} values for {len(convs)} conv layers")
        for conv, norm in zip(convs, kernel_norms):
            conv.lr_scale, conv.max_norm = self.conv_lr_scale, norm
        for module in net.embedding:
            if isinstance(module, MaxoutLinear):
                module.linear.max_norm = self.max_col_norm
        net.classifier.max_norm = self.softmax_max_col_norm


class MaxoutNet(nn.Module):
    """Submodules: features.h0 ... (the conv layers; features.h<i>_dropout before h<i> when its input is
    dropped), embedding (flatten, then the maxout FC layers, each after its input's dropout), classifier
    (the softmax's linear map), classifier_dropout (its input's dropout, or Identity)."""

    def __init__(self, layers: list[Conv | FC], num_classes: int, in_channels: int, image_size: int,
                 hint_layer: str | None = None, guided_layer: str | None = None, init_range: float | None = None,
                 rules: LayerRules = LayerRules(), dropout: Dropout = Dropout()):
        super().__init__()
        convs = [s for s in layers if isinstance(s, Conv)]
        fcs = [s for s in layers if isinstance(s, FC)]
        blocks, channels, size = OrderedDict(), in_channels, image_size
        for i, spec in enumerate(convs):
            if spec.detector_size(size) < 1:
                raise ModelError(f"maxout net: {image_size}x{image_size} input is too small for these layers")
            if (drop := dropout.before(i)) is not None:
                blocks[f"h{i}_dropout"] = drop
            blocks[f"h{i}"] = MaxoutLayer(channels, spec)
            channels, size = spec.out, spec.output_size(size)
        self.features = nn.Sequential(blocks)
        head: list[nn.Module] = [nn.Flatten()]
        features = channels * size * size
        for j, spec in enumerate(fcs):
            if (drop := dropout.before(len(convs) + j)) is not None:
                head.append(drop)
            head.append(MaxoutLinear(features, spec.out, spec.pieces))
            features = spec.out
        self.embedding = nn.Sequential(*head)
        self.classifier_dropout = dropout.before(len(layers)) or nn.Identity()
        self.classifier = nn.Linear(features, num_classes)
        if hint_layer:
            self.hint_layer = hint_layer
        if guided_layer:
            self.guided_layer = guided_layer
        if init_range:  # pylearn2's `irange`: weights uniform in +-init_range, biases 0
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.uniform_(module.weight, -init_range, init_range)
                    nn.init.zeros_(module.bias)
        rules.apply(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.classifier_dropout(self.embedding(self.features(x))))


def make(arch: str):
    def build(num_classes: int, in_channels: int, image_size: int, width: float = 1.0, init_range: float = INIT_RANGE,
              conv_lr_scale: float = 1.0, max_kernel_norm: float | list[float] | None = None, max_col_norm: float | None = None,
              softmax_max_col_norm: float | None = None, input_include_prob: float = 1.0, input_scale: float = 1.0,
              hidden_include_prob: float = 1.0, hidden_scale: float = 1.0) -> nn.Module:
        role = "hint_layer" if arch in TEACHERS else "guided_layer"
        rules = LayerRules(conv_lr_scale, max_kernel_norm, max_col_norm, softmax_max_col_norm)
        dropout = Dropout(input_include_prob, input_scale, hidden_include_prob, hidden_scale)
        return MaxoutNet(layers_for(arch, in_channels, image_size, num_classes, width), num_classes, in_channels, image_size,
                         init_range=init_range, rules=rules, dropout=dropout, **{role: HINT_LAYERS[arch]})

    build.__doc__ = (f"FitNets {arch}: `width` scales every layer; `init_range` 0.005 = pylearn2's irange (0: PyTorch's init); "
                     "the pylearn2 layer rules (LayerRules) conv_lr_scale, max_kernel_norm, max_col_norm, softmax_max_col_norm; "
                     "pylearn2's dropout (Dropout) input_include_prob, input_scale, hidden_include_prob, hidden_scale.")
    return build


def make_depth(depth: int):
    def build(num_classes: int, in_channels: int, image_size: int, budget: float = DEFAULT_BUDGET, width: float = 1.0,
              init_range: float = INIT_RANGE, conv_lr_scale: float = 1.0, max_kernel_norm: float | None = None,
              max_col_norm: float | None = None, softmax_max_col_norm: float | None = None) -> nn.Module:
        layers = layers_for(f"fitnet_depth{depth}", in_channels, image_size, num_classes, width, budget)
        rules = LayerRules(conv_lr_scale, max_kernel_norm, max_col_norm, softmax_max_col_norm)
        return MaxoutNet(layers, num_classes, in_channels, image_size, guided_layer=hint_layers(f"fitnet_depth{depth}"),
                         init_range=init_range, rules=rules)

    build.__doc__ = (f"Fig. 3 student of {depth} maxout conv layers costing `budget` multiplications at the input it is "
                     "built for (widths w, 2w, 3w by stage); `width` scales it afterwards; the layer rules as FitNets'.")
    return build


for _name in ARCHS:  # depth: the layers as Table 5 counts them (conv and maxout FC layers and the softmax)
    register_model(_name, family="maxout", depth=len(ARCHS[_name]) + 1)(make(_name))
for _depth in DEPTHS:
    register_model(f"fitnet_depth{_depth}", family="fitnet_depth", depth=_depth)(make_depth(_depth))


@torch.no_grad()
def count_multiplications(model: nn.Module, in_channels: int, image_size: int) -> int:
    """Multiplications of one image through `model`, counted on a forward pass: every Conv2d costs
    (output map area) x (kernel area) x (in / groups) x out, every Linear in x out. On maxout layers
    this is the paper's count (pieces included: their convs have out x pieces channels)."""
    total = 0

    def conv_hook(module: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output.shape[2] * output.shape[3] * kh * kw * (module.in_channels // module.groups) * module.out_channels

    def linear_hook(module: nn.Linear, inputs, output) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()(torch.zeros(1, in_channels, image_size, image_size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def count_weights(model: nn.Module) -> int:
    """Parameters as the paper counts them: the weights of every conv and linear map, no biases."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
