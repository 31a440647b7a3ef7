"""Architectures: parameter counts against the layer lists of the official code, shapes, options, hooks."""

import pytest
import torch

from kdrepro.catalog import ModelError, list_models, model_info
from kdrepro.models.zoo import FeatureTap, create_model

# [COMPUTED] in docs/protocols/takd.md from the official layer lists (CIFAR-10 / CIFAR-100 heads)
PARAMS = {
    "plane2": (13_082, 215_172), "plane4": (37_338, 475_652), "plane6": (82_778, 1_107_204),
    "plane8": (327_962, 1_246_276), "plane10": (2_487_850, 2_931_460),
    "resnet8": (78_042, 83_892), "resnet14": (175_258, 181_108), "resnet20": (272_474, 278_324),
    "resnet26": (369_690, 375_540), "resnet32": (466_906, 472_756), "resnet44": (661_338, 667_188),
    "resnet56": (855_770, 861_620), "resnet110": (1_730_714, 1_736_564),
}


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_match_the_official_layer_lists(name):
    assert (count(create_model(name, 10)), count(create_model(name, 100))) == PARAMS[name]


def test_every_model_is_counted_and_registered_with_its_depth():
    assert set(PARAMS) <= set(list_models())
    assert model_info("resnet110") == {"family": "resnet", "depth": 110, "options": ["shortcut", "width"]}
    assert model_info("plane6")["family"] == "plane"


@pytest.mark.parametrize("name", ["plane2", "plane6", "plane10", "resnet8", "resnet20"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_output_shape_and_backward(name, in_channels):
    model = create_model(name, 7, in_channels)
    out = model(torch.randn(4, in_channels, 32, 32))
    assert out.shape == (4, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_resnet_zeropad_shortcut_is_the_parameter_free_option_a():
    # option A drops the two 1x1 projection convs and their BNs: 16*32 + 32*64 weights + 2*(32+64) BN params
    assert count(create_model("resnet20", 10, shortcut="zeropad")) == 272_474 - (16 * 32 + 32 * 64) - 2 * (32 + 64)
    assert create_model("resnet20", 10, shortcut="zeropad")(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_zeropad_shortcut_is_the_strided_identity_followed_by_zero_channels():
    # the KTG code's DownsampleA: torch.cat((x, x.mul(0)), 1) after a stride-2 subsampling (somaminami/DCL lib/models.py)
    block = create_model("resnet20", 10, shortcut="zeropad").layer2[0]
    x = torch.randn(2, 16, 8, 8)
    out = block.shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and torch.equal(out[:, 16:], torch.zeros(2, 16, 4, 4))


def test_book_and_width_options():
    assert count(create_model("plane2", 10, book="cifar100")) == 32 * 27 + 32 + 64 + 32 * 9 * 32 + 32 + 64 + 32 * 64 * 10 + 10
    half = create_model("resnet8", 10, width=0.5)
    assert half.fc.in_features == 32 and half.conv1.out_channels == 8
    assert create_model("plane4", 10, image_size=28)(torch.randn(2, 3, 28, 28)).shape == (2, 10)


def test_resnet_init_follows_the_official_code():
    torch.manual_seed(0)
    conv = create_model("resnet110", 10).layer3[0].conv2  # 3x3, 64 out: std sqrt(2/576)
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 64)) ** 0.5, rel=0.05)


def test_bad_names_and_options_are_rejected_with_the_alternatives():
    with pytest.raises(ModelError, match="known models: .*plane2"):
        create_model("resnet7", 10)
    with pytest.raises(ModelError, match="shortcut"):
        create_model("resnet8", 10, shorcut="zeropad")
    with pytest.raises(ModelError, match="projection"):
        create_model("resnet8", 10, shortcut="option-c")
    with pytest.raises(ModelError, match="book"):
        create_model("plane2", 10, book="imagenet")


def test_feature_tap_reads_named_outputs_and_removes_its_hooks():
    model = create_model("resnet8", 10).eval()
    x = torch.randn(3, 3, 32, 32)
    with FeatureTap(model, ["layer2", "embedding"]) as tap:
        logits = model(x)
    assert tap.features["layer2"].shape == (3, 32, 16, 16)
    assert torch.allclose(model.fc(tap.features["embedding"]), logits)
    assert not model.layer2._forward_hooks
    with pytest.raises(ModelError, match="no module 'layer9'"):
        FeatureTap(model, ["layer9"])
