"""The maxout networks' layouts and the paper's counts of them, known without building one (no torch): the
layer lists of FitNets 1-4, the MNIST FitNet and the teachers, the Fig. 3 students by depth and budget, the
hint and guided layers, and the multiplications and parameters as the paper counts them. kdrepro.models.maxout
builds the networks (its docstring gives the sources); the FitNets registry and tables read these.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kdrepro.catalog import ModelError
from kdrepro.models.width import scaled

GLOBAL = -1  # pool over the whole map


@dataclass(frozen=True)
class Conv:
    """One pylearn2 MaxoutConvC01B: maxout conv, then a max-pool (pool 0: none; GLOBAL: the whole map).
    `round_up`: where the last window overhangs the map, pylearn2's pool (cuda-convnet's, lisa-lab/pylearn2
    c3fb3c9 pylearn2/sandbox/cuda_convnet/pool.py line 258: outputs = ceil((size - pool) / stride) + 1)
    keeps it; False rounds down, as torch's default and the PyTorch re-implementations do."""

    out: int
    kernel: int = 3
    pad: int = 1
    pieces: int = 2
    pool: int = 0
    stride: int = 0  # pool stride (0: the pool size)
    round_up: bool = True

    def detector_size(self, size: int) -> int:
        """The side of the conv's output map (pylearn2's detector space), before pooling."""
        return size + 2 * self.pad - self.kernel + 1

    def output_size(self, size: int) -> int:
        """The side of the layer's output map: the detector map pooled."""
        size = self.detector_size(size)
        if self.pool == GLOBAL:
            return 1
        if self.pool <= 1:
            return size
        stride = self.stride or self.pool
        return (-(-(size - self.pool) // stride) if self.round_up else (size - self.pool) // stride) + 1


@dataclass(frozen=True)
class FC:
    out: int
    pieces: int = 5


def _stages(widths: list[list[int]], last_pool: int = GLOBAL) -> list[Conv]:
    """3x3/pad 1 maxout convs (2 pieces); a 2x2 pool closes every stage but the last (global pool)."""
    out = []
    for k, stage in enumerate(widths):
        for j, w in enumerate(stage):
            end = j == len(stage) - 1
            out.append(Conv(w, pool=(last_pool if k == len(widths) - 1 else 2) if end else 0))
    return out


ARCHS: dict[str, list[Conv | FC]] = {
    # FitNets 1-3 (Table 5: 11, 11, 13 layers): conv layers, a maxout FC of 500 units x 2 pieces, the softmax
    "fitnet1": _stages([[16, 16, 16], [32, 32, 32], [48, 48, 64]]) + [FC(500, 2)],
    "fitnet2": _stages([[16, 32, 32], [48, 64, 80], [96, 96, 128]]) + [FC(500, 2)],
    "fitnet3": _stages([[32, 48, 80, 80], [80, 80, 80, 80], [128, 128, 128]]) + [FC(500, 2)],
    "fitnet4": _stages([[32, 32, 32, 48, 48], [80] * 6, [128] * 6]) + [FC(500, 5)],
    "fitnet_mnist": [Conv(16, 5, 0), Conv(16, 3, 0, pool=4, stride=2), Conv(16, 5, 3), Conv(16, 3, 0, pool=4, stride=2),
                     Conv(12, 3, 3, pieces=4), Conv(12, 3, 0, pieces=4, pool=2)],
    # the maxout paper's CIFAR-10 net (lisa-lab/pylearn2 af81e5c, pylearn2/scripts/papers/maxout/cifar10.yaml lines
    # 9-65), its FC at 2 pieces (the yaml's 5 count 16.2M parameters; 2 give Table 5's ~9M, item 5 of
    # docs/protocol-decisions.md)
    "maxout_teacher_cifar": [Conv(96, 8, 4, pool=4, stride=2), Conv(192, 8, 3, pool=4, stride=2),
                             Conv(192, 5, 3, pool=2), FC(500, 2)],
    # zhuangzi926's PyTorch sizes, pooled as torch rounds (down): rounded up, its h1 hint map would be 5x5, larger than
    # the MNIST FitNet's 4x4 guided h3
    "maxout_teacher_mnist": [Conv(48, 7, 3, pool=4, stride=2, round_up=False), Conv(48, 7, 2, pool=4, stride=2, round_up=False),
                             Conv(24, 5, 2, pool=2, round_up=False)],
}
# the module a student is guided by (teachers) / the student's guided layer (FitNets)
HINT_LAYERS = {
    "maxout_teacher_cifar": "features.h1",  # the teacher's 2nd layer (`hints: [[10, 1]]`)
    "maxout_teacher_mnist": "features.h1",  # `[[3, 1]]`
    "fitnet1": "features.h5", "fitnet2": "features.h5", "fitnet3": "features.h7",  # the end of the 2nd stage
    "fitnet4": "features.h10",  # `hints: [[10, 1]]`
    "fitnet_mnist": "features.h3",
}
TEACHERS = ("maxout_teacher_cifar", "maxout_teacher_mnist")
INIT_RANGE = 0.005  # the official YAMLs' irange (option init_range; 0 = PyTorch's default initialisation)
DEPTHS = (3, 5, 7, 9, 11, 13)
DEFAULT_BUDGET = 30e6  # a Fig. 3 student's multiplications, unless its `budget` option says otherwise
STAGE_RATIO = (1, 2, 3)


def hint_layers(arch: str) -> str:
    """The module path of `arch`'s hint layer (teachers) or guided layer (students)."""
    if arch.startswith("fitnet_depth"):
        first, second, _ = depth_split(int(arch.removeprefix("fitnet_depth")))
        return f"features.h{first + second - 1}"  # the end of the second stage, as in FitNets 1-4
    if arch not in HINT_LAYERS:
        raise ModelError(f"{arch!r} has no hint/guided layer (known: {', '.join(sorted(HINT_LAYERS))}, fitnet_depthN)")
    return HINT_LAYERS[arch]


def depth_split(depth: int) -> list[int]:
    """Layers per stage: as equal as possible, the earlier stages taking the remainder."""
    return [depth // 3 + (1 if i < depth % 3 else 0) for i in range(3)]


def depth_layers(depth: int, base: float) -> list[Conv]:
    split = depth_split(depth)
    return _stages([[max(1, round(base * r))] * n for r, n in zip(STAGE_RATIO, split) if n])


def depth_base_width(depth: int, budget: float, in_channels: int, image_size: int, num_classes: int = 10) -> float:
    """The stage-1 width (in quarter channels; stages round w, 2w, 3w) whose net costs the multiplications
    closest to `budget`: the counter decides."""
    candidates = [q / 4 for q in range(4, 2049)]
    return min(candidates, key=lambda w: abs(count_layers(depth_layers(depth, w), num_classes, in_channels, image_size)[0] - budget))


def layers_for(arch: str, in_channels: int, image_size: int, num_classes: int, width: float = 1.0,
               budget: float = DEFAULT_BUDGET) -> list[Conv | FC]:
    """The layers `arch` is built with for these options (kdrepro.models.maxout builds exactly these, so the
    paper's counts of a network as trained need no network: count_layers of these)."""
    if arch.startswith("fitnet_depth"):
        depth = int(arch.removeprefix("fitnet_depth"))
        layers = depth_layers(depth, depth_base_width(depth, budget, in_channels, image_size, num_classes))
    elif arch in ARCHS:
        layers = ARCHS[arch]
    else:
        raise ModelError(f"{arch!r} is not a maxout network (known: {', '.join(ARCHS)}, fitnet_depthN)")
    return [replace(s, out=scaled(s.out, width)) for s in layers]


# -- counting as the paper does ---------------------------------------------------------------------

def count_layers(layers: list[Conv | FC], num_classes: int, in_channels: int, image_size: int) -> tuple[int, int]:
    """(multiplications, parameters) of a layer list by computeNumberMult.py / computeNumberParams.py:
    a maxout conv costs pieces * (detector rows x cols) * kernel area * in * out multiplications (the
    detector map is the conv output before pooling) and has pieces * kernel area * in * out weights;
    a maxout FC pieces * in * out of each; the softmax in * classes. Biases are not counted."""
    mult = params = 0
    channels, size = in_channels, image_size
    for spec in layers:
        if isinstance(spec, Conv):
            mult += spec.pieces * spec.detector_size(size) ** 2 * spec.kernel**2 * channels * spec.out
            params += spec.pieces * spec.kernel**2 * channels * spec.out
            channels, size = spec.out, spec.output_size(size)
        else:
            inputs = channels * size * size
            mult += spec.pieces * inputs * spec.out
            params += spec.pieces * inputs * spec.out
            channels, size = spec.out, 1
    inputs = channels * size * size
    return mult + inputs * num_classes, params + inputs * num_classes


def budget_error(depth: int, budget: float, in_channels: int, image_size: int, num_classes: int = 10) -> float:
    """Relative distance of fitnet_depth{depth}'s multiplications from the budget."""
    base = depth_base_width(depth, budget, in_channels, image_size, num_classes)
    return abs(count_layers(depth_layers(depth, base), num_classes, in_channels, image_size)[0] - budget) / budget

