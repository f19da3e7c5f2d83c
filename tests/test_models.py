"""Networks: shapes and strides, parameter split, CAM/GAP consistency, trunk transfer, determinism, weights, errors."""

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import get_args, get_origin

import pytest
import torch
from torchvision.models import resnet101
from typing_extensions import Unpack

from dgcn.models import (
    SEGMENTERS,
    CamClassifier,
    SegmentationNet,
    build_classifier,
    build_segmenter,
    load_backbone_weights,
)
from dgcn.models.classifier import TRUNK_BUILDERS
from dgcn.models.options import SEGMENTER_OPTIONS, TRUNK_OPTIONS, option_names
from dgcn.models.segmenter import TrunkFeatures, graph_features

NUM_CLASSES = 4
TINY = {"width": 8}


def _images(size: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key, value in state_a.items():
        assert torch.equal(value, state_b[key]), key


@pytest.fixture(scope="module")
def deeplab_v2() -> SegmentationNet:
    torch.manual_seed(0)
    return build_segmenter("deeplab_v2", NUM_CLASSES).eval()


@pytest.fixture(scope="module")
def deeplab_v3() -> SegmentationNet:
    torch.manual_seed(0)
    # eval: torchvision's ASPP pooling branch has a BatchNorm over a 1x1 map, which rejects batch 1 in training.
    return build_segmenter("deeplab_v3", NUM_CLASSES).eval()


@pytest.fixture(scope="module")
def resnet_classifier() -> CamClassifier:
    torch.manual_seed(1)
    return build_classifier("deeplab_v2", NUM_CLASSES - 1).eval()


@pytest.fixture(scope="module")
def resnet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision-format ResNet-101 state dict (fc included) saved under the standard file name."""
    torch.manual_seed(2)
    state = resnet101(weights=None).state_dict()
    path = tmp_path_factory.mktemp("hub") / "checkpoints" / "resnet101-63fe2227.pth"
    path.parent.mkdir()
    torch.save(state, path)
    return path, state


def test_small_shapes_stride_and_feature_dim() -> None:
    model = build_segmenter("small", NUM_CLASSES)
    assert (model.output_stride, model.feature_dim) == (4, 160)
    out = model(_images(96, batch=2))
    assert out.scores.shape == (2, NUM_CLASSES, 24, 24)
    assert out.features.shape == (2, 160, 24, 24)
    tiny = build_segmenter("small", NUM_CLASSES, **TINY)
    assert tiny.feature_dim == 40
    assert tiny(_images(65)).features.shape == (1, 40, 17, 17)
    shallow = build_segmenter("small", NUM_CLASSES, context_rates=(2,), **TINY)
    assert len(shallow.trunk.context) == 1 and len(tiny.trunk.context) == 3
    assert shallow(_images(40)).scores.shape == (1, NUM_CLASSES, 10, 10)


@pytest.mark.parametrize("name", ["deeplab_v2", "deeplab_v3"])
def test_resnet_shapes_stride_and_feature_dim(name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(name)
    assert (model.output_stride, model.feature_dim) == (8, 1280)
    with torch.no_grad():
        out = model(_images(33))
    assert out.scores.shape == (1, NUM_CLASSES, 5, 5)
    assert out.features.shape == (1, 1280, 5, 5)
    assert torch.isfinite(out.scores).all() and torch.isfinite(out.features).all()


@pytest.mark.parametrize("name", ["small", "deeplab_v2", "deeplab_v3", "classifier"])
def test_head_and_backbone_parameters_cover_all_exactly_once(name: str, request: pytest.FixtureRequest) -> None:
    if name == "small":
        model = build_segmenter("small", NUM_CLASSES, **TINY)
    elif name == "classifier":
        model = request.getfixturevalue("resnet_classifier")
    else:
        model = request.getfixturevalue(name)
    head = [id(p) for p in model.head_parameters()]
    backbone = [id(p) for p in model.backbone_parameters()]
    assert head and backbone
    assert not set(head) & set(backbone)
    assert sorted(head + backbone) == sorted(id(p) for p in model.parameters())


@pytest.mark.parametrize("size", [96, 65])
def test_classifier_logits_are_the_mean_of_the_cams(size: int) -> None:
    torch.manual_seed(0)
    classifier = build_classifier("small", NUM_CLASSES - 1, **TINY)
    torch.nn.init.normal_(classifier.classifier.bias)
    x = _images(size, batch=2)
    cams = classifier.cams(x)
    assert cams.shape == (2, NUM_CLASSES - 1, -(-size // 4), -(-size // 4))
    torch.testing.assert_close(classifier(x), cams.mean(dim=(2, 3)))


def test_resnet_classifier_cams_at_stride_8(resnet_classifier: CamClassifier) -> None:
    with torch.no_grad():
        assert resnet_classifier.cams(_images(33)).shape == (1, NUM_CLASSES - 1, 5, 5)


def test_trunk_transfer_copies_weights_small() -> None:
    torch.manual_seed(0)
    classifier = build_classifier("small", NUM_CLASSES - 1, **TINY)
    with torch.no_grad():
        next(classifier.trunk.parameters()).add_(1.0)
        classifier.trunk.stem[1].running_mean.fill_(0.5)
    model = build_segmenter("small", NUM_CLASSES, **TINY)
    head_before = [p.clone() for p in model.head_parameters()]
    assert not torch.equal(next(model.trunk.parameters()), next(classifier.trunk.parameters()))
    model.load_trunk_from(classifier)
    _assert_same_state(model.trunk, classifier.trunk)
    assert all(torch.equal(a, b) for a, b in zip(head_before, model.head_parameters(), strict=True))
    with torch.no_grad():
        next(classifier.trunk.parameters()).add_(1.0)
    assert not torch.equal(next(model.trunk.parameters()), next(classifier.trunk.parameters())), "copied, not shared"


@pytest.mark.parametrize("name", ["deeplab_v2", "deeplab_v3"])
def test_trunk_transfer_copies_weights_resnet(
    name: str, resnet_classifier: CamClassifier, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(name)
    assert not torch.equal(model.trunk.conv1.weight, resnet_classifier.trunk.conv1.weight)
    model.load_trunk_from(resnet_classifier)
    _assert_same_state(model.trunk, resnet_classifier.trunk)


def test_trunk_transfer_rejects_a_different_trunk(deeplab_v2: SegmentationNet) -> None:
    small = build_classifier("small", NUM_CLASSES - 1, **TINY)
    with pytest.raises(ValueError, match="ResNet101Trunk from a SmallTrunk"):
        deeplab_v2.load_trunk_from(small)
    with pytest.raises(ValueError, match="width"):
        build_segmenter("small", NUM_CLASSES, width=4).load_trunk_from(small)
    with pytest.raises(TypeError, match="trunk"):
        deeplab_v2.load_trunk_from(torch.nn.Linear(1, 1))


def test_forward_is_deterministic_under_a_seed() -> None:
    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(seed)
        out = build_segmenter("small", NUM_CLASSES, **TINY)(_images(48, batch=2))
        return out.scores, out.features

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])


def test_resnet_weights_load_from_a_local_file(
    deeplab_v2: SegmentationNet, resnet_checkpoint: tuple[Path, dict[str, torch.Tensor]]
) -> None:
    path, state = resnet_checkpoint
    assert load_backbone_weights(deeplab_v2.trunk, path) == path
    trunk_state = deeplab_v2.trunk.state_dict()
    assert trunk_state.keys() == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(v, state[k]) for k, v in trunk_state.items())


def test_imagenet_weights_come_from_the_hub_cache(
    deeplab_v3: SegmentationNet, resnet_checkpoint: tuple[Path, dict[str, torch.Tensor]]
) -> None:
    path, state = resnet_checkpoint
    assert load_backbone_weights(deeplab_v3.trunk, "imagenet", hub_dir=path.parent.parent) == path
    assert torch.equal(deeplab_v3.trunk.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])


def test_missing_imagenet_file_names_the_paths_tried(tmp_path: Path, deeplab_v2: SegmentationNet) -> None:
    with pytest.raises(FileNotFoundError) as error:
        load_backbone_weights(deeplab_v2.trunk, "imagenet", hub_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "checkpoints" / "resnet101-63fe2227.pth") in message
    assert "resnet101-cd907fc2.pth" in message and "never downloads" in message


def test_segmenter_pretrained_from_a_saved_trunk(tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = build_classifier("small", NUM_CLASSES - 1, **TINY)
    path = tmp_path / "trunk.pt"
    torch.save(source.trunk.state_dict(), path)
    model = build_segmenter("small", NUM_CLASSES, pretrained=path, **TINY)
    _assert_same_state(model.trunk, source.trunk)
    classifier = build_classifier("small", NUM_CLASSES - 1, pretrained=str(path), **TINY)
    _assert_same_state(classifier.trunk, source.trunk)


def test_bad_weights_files_fail_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        build_segmenter("small", NUM_CLASSES, pretrained=missing, **TINY)
    with pytest.raises(ValueError, match="no ImageNet weights exist for SmallTrunk"):
        build_segmenter("small", NUM_CLASSES, pretrained="imagenet", **TINY)
    wrong = tmp_path / "wrong.pth"
    torch.save(build_segmenter("small", NUM_CLASSES, width=4).trunk.state_dict(), wrong)
    with pytest.raises(ValueError, match="wrong.pth does not fit SmallTrunk"):
        build_segmenter("small", NUM_CLASSES, pretrained=wrong, **TINY)
    not_a_state_dict = tmp_path / "list.pth"
    torch.save([1, 2], not_a_state_dict)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        build_classifier("small", NUM_CLASSES - 1, pretrained=not_a_state_dict, **TINY)


def test_bad_names_and_arguments_fail_clearly() -> None:
    with pytest.raises(ValueError, match=r"unknown segmentation network 'unet'.*deeplab_v2.*small"):
        build_segmenter("unet", NUM_CLASSES)
    with pytest.raises(ValueError, match=r"unknown backbone_name 'vgg16'.*small"):
        build_classifier("vgg16", NUM_CLASSES - 1)
    with pytest.raises(ValueError, match="num_classes"):
        build_segmenter("small", 1)
    with pytest.raises(ValueError, match="num_foreground"):
        build_classifier("small", 0)
    with pytest.raises(ValueError, match="width"):
        build_segmenter("small", NUM_CLASSES, width=0)
    with pytest.raises(ValueError, match="context_rates"):
        build_segmenter("small", NUM_CLASSES, context_rates=())
    with pytest.raises(ValueError, match="x must be"):
        build_segmenter("small", NUM_CLASSES, **TINY)(torch.zeros(1, 1, 32, 32))


def test_unknown_network_options_are_named() -> None:
    with pytest.raises(TypeError, match=r"network 'small' takes no option 'aspp_rates'; its options: width, "
                                        r"context_rates, head_dilation"):
        build_segmenter("small", NUM_CLASSES, aspp_rates=[12])
    with pytest.raises(TypeError, match=r"network 'deeplab_v3' takes no option 'width'; its options: none"):
        build_segmenter("deeplab_v3", NUM_CLASSES, width=8)


def accepted_keywords(builder: Callable[..., object]) -> set[str]:
    """The keywords `builder` takes: its named parameters, and the keys of the TypedDict its `**options` unpacks."""
    names = set()
    for parameter in inspect.signature(builder, eval_str=True).parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD:
            assert get_origin(parameter.annotation) is Unpack, f"{builder.__name__}: **{parameter.name} is no TypedDict"
            names |= set(get_args(parameter.annotation)[0].__annotations__)
        else:
            names.add(parameter.name)
    return names


@pytest.mark.parametrize("arch", sorted(SEGMENTERS))
def test_each_builder_takes_exactly_the_options_of_its_typed_dict(arch: str) -> None:
    # the options are defined once (dgcn.models.options), and the params schema validates a config's against them
    assert set(SEGMENTERS) == set(SEGMENTER_OPTIONS) == set(TRUNK_BUILDERS) == set(TRUNK_OPTIONS)
    assert accepted_keywords(SEGMENTERS[arch]) - {"num_classes"} == set(option_names(SEGMENTER_OPTIONS[arch]))
    trunk = accepted_keywords(TRUNK_BUILDERS[arch]) - {"body"}  # body: ResNet101Trunk's torch module, no option
    assert trunk == set(option_names(TRUNK_OPTIONS[arch]))
    # an unknown option fails before any network is built
    with pytest.raises(TypeError, match="zzz"):
        SEGMENTERS[arch](NUM_CLASSES, zzz=1)
    with pytest.raises(TypeError, match="zzz"):
        TRUNK_BUILDERS[arch](zzz=1)


def _dilated_branches(model: SegmentationNet) -> list[tuple[int, int, int, int, int]]:
    """(in channels, out channels, kernel, dilation, padding) of each convolution of the head."""
    return [(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.dilation[0], conv.padding[0])
            for conv in model.head.modules() if isinstance(conv, torch.nn.Conv2d)]


def test_dgcn_head_is_one_dilated_conv_at_rate_12(deeplab_v2: SegmentationNet) -> None:
    dgcn = build_segmenter("deeplab_v2", 21, aspp_rates=[12])
    assert _dilated_branches(dgcn) == [(2048, 21, 3, 12, 12)]
    assert _dilated_branches(deeplab_v2) == [(2048, NUM_CLASSES, 3, rate, rate) for rate in (6, 12, 18, 24)]
    x = _images(33)
    with torch.no_grad():
        out = dgcn.eval()(x)
        head = dgcn.head.branches[0]
        assert torch.equal(out.scores, head(dgcn.trunk(x).deep))  # the single branch is the whole head
    assert out.scores.shape == (1, 21, 5, 5)


def test_graph_features_resize_the_early_level_with_the_corners_aligned() -> None:
    """As published (train.py:370): the early level's corner samples land on the grid's corners (align_corners=True);
    pixel-centre resizing would average 2 x 2 blocks of this ramp instead."""
    early = torch.arange(16.0).view(1, 1, 4, 4)
    middle = torch.full((1, 2, 2, 2), -1.0)
    features = graph_features(TrunkFeatures(early=early, middle=middle, deep=middle))
    assert features.shape == (1, 3, 2, 2)
    assert features[0, 0].tolist() == [[0.0, 3.0], [12.0, 15.0]]
    assert torch.equal(features[:, 1:], middle)
