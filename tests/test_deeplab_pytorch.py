"""The extended code's retraining network: deeplab-pytorch checkpoints (the COCO-pretrained init) read into our
DeepLab-v2 by a key mapping, the MSRA ResNet they were trained as, and DeepLab's multi-scale inputs (MSC).

The published layout is written out here from deeplab-pytorch's resnet.py / deeplabv2.py / convert.py (keys
`layer1.conv1.{conv,bn}.*`, `layer{2-5}.block{j}.{reduce,conv3x3,increase,shortcut}.{conv,bn}.*`, `aspp.c{i}.*`),
independently of dgcn.models.deeplab_pytorch, and filled with random values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models import resnet101

from dgcn.data.augment import CropGeometry
from dgcn.data.loading import normalize
from dgcn.errors import ModelFileError
from dgcn.models.deeplab_pytorch import CAFFE_MEAN_BGR
from dgcn.models.deeplab_v2 import MultiScaleNet
from dgcn.models.registry import build_segmenter
from dgcn.models.resnet import ResNet101Trunk
from dgcn.models.segmenter import SegmentationOutput
from dgcn.models.small import SmallTrunk
from dgcn.models.weights import load_backbone_weights
from dgcn.training.retrain import segmentation_loss, train_segmenter, zoom_labels

# deeplab-pytorch layer -> (torchvision layer, blocks): _ResLayer n_blocks [3, 4, 23, 3] after the stem `layer1`
LAYERS = {2: ("layer1", 3), 3: ("layer2", 4), 4: ("layer3", 23), 5: ("layer4", 3)}
# deeplab-pytorch bottleneck unit -> torchvision (conv, bn)
UNITS = {"reduce": ("conv1", "bn1"), "conv3x3": ("conv2", "bn2"), "increase": ("conv3", "bn3"),
         "shortcut": ("downsample.0", "downsample.1")}
BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
STEM = ("conv1.weight", "bn1.running_mean")  # rewritten for our input (checked by the stem test)


def published_layout() -> dict[str, str]:
    """deeplab-pytorch key -> the torchvision ResNet-101 name it holds."""
    names = {"layer1.conv1.conv.weight": "conv1.weight"}
    names |= {f"layer1.conv1.bn.{leaf}": f"bn1.{leaf}" for leaf in BN_LEAVES}
    for layer, (ours, blocks) in LAYERS.items():
        for block in range(1, blocks + 1):
            for unit, (conv, bn) in UNITS.items():
                if unit == "shortcut" and block > 1:
                    continue
                where, mine = f"layer{layer}.block{block}.{unit}", f"{ours}.{block - 1}"
                names[f"{where}.conv.weight"] = f"{mine}.{conv}.weight"
                names |= {f"{where}.bn.{leaf}": f"{mine}.{bn}.{leaf}" for leaf in BN_LEAVES}
    return names


@pytest.fixture(scope="module")
def coco_init(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor], dict[str, str]]:
    """A random checkpoint in deeplab-pytorch's layout, as deeplabv1_resnet101-coco.pth (91-class ASPP included)."""
    generator = torch.Generator().manual_seed(0)
    shapes = {name: value.shape for name, value in resnet101().state_dict().items()}
    names = published_layout()
    state = {}
    for key, name in names.items():
        if name.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif name.endswith("running_var"):
            state[key] = torch.rand(shapes[name], generator=generator) + 0.5
        else:
            state[key] = torch.randn(shapes[name], generator=generator)
    for i in range(4):
        state[f"aspp.c{i}.weight"] = torch.randn(91, 2048, 3, 3, generator=generator) * 0.01
        state[f"aspp.c{i}.bias"] = torch.randn(91, generator=generator)
    path = tmp_path_factory.mktemp("weights") / "deeplabv1_resnet101-coco.pth"
    torch.save(state, path)
    return path, state, names


@pytest.fixture(scope="module")
def loaded(coco_init: tuple[Path, dict, dict]) -> torch.nn.Module:
    return build_segmenter("deeplab_v2", 21, pretrained=coco_init[0], resnet="msra", msc_scales=[0.5, 0.75]).eval()


def test_every_tensor_lands_in_its_parameter(coco_init: tuple[Path, dict, dict], loaded: torch.nn.Module) -> None:
    _, state, names = coco_init
    ours = loaded.trunk.state_dict()
    assert set(names.values()) == set(ours)  # the layout covers the whole trunk, once
    for key, name in names.items():
        if name not in STEM:
            assert torch.equal(ours[name], state[key]), f"{key} -> {name}"
    assert loaded.head.branches[0].weight.shape == (21, 2048, 3, 3)  # the 91-class ASPP is left out


def test_the_stem_takes_our_normalised_rgb_as_caffe_took_bgr(coco_init: tuple[Path, dict, dict],
                                                             loaded: torch.nn.Module) -> None:
    """The caffe stem on BGR - DeepLab's mean (0-255) equals ours on normalize(RGB), away from the padded border."""
    _, state, _ = coco_init
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 40, 40, 3), dtype=np.uint8))
    bgr = image.flip(-1).permute(0, 3, 1, 2).float() - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    bn = {leaf: state[f"layer1.conv1.bn.{leaf}"] for leaf in ("running_mean", "running_var", "weight", "bias")}
    caffe = F.batch_norm(F.conv2d(bgr, state["layer1.conv1.conv.weight"], stride=2, padding=3), bn["running_mean"],
                         bn["running_var"], bn["weight"], bn["bias"], training=False, eps=1e-5)
    with torch.no_grad():
        ours = loaded.trunk.bn1(loaded.trunk.conv1(normalize(image)))
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # outputs whose 7x7 window stays in the image
    torch.testing.assert_close(ours[inner], caffe[inner], rtol=1e-4, atol=1e-5 * caffe.abs().max().item())


def test_a_saved_msc_model_and_an_older_conversion_load_alike(tmp_path: Path, coco_init: tuple[Path, dict, dict],
                                                              loaded: torch.nn.Module) -> None:
    """`base.` (a saved DeepLabV2_ResNet101_MSC) and `scale.` with `proj` and no num_batches_tracked (older
    convert.py) are the same layout."""
    _, state, _ = coco_init
    saved = {f"base.{key}": value for key, value in state.items()}
    older = {f"scale.{key.replace('.shortcut.', '.proj.')}": value for key, value in state.items()
             if not key.endswith("num_batches_tracked")}
    expected = loaded.trunk.state_dict()
    for name, variant in (("saved.pth", saved), ("older.pth", older)):
        torch.save(variant, tmp_path / name)
        trunk = ResNet101Trunk(resnet="msra")
        load_backbone_weights(trunk, tmp_path / name)
        assert all(torch.equal(value, expected[key]) for key, value in trunk.state_dict().items()), name


def _cheap_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same keys and shapes, each tensor one stored value broadcast (a small file)."""
    return {key: value.flatten()[:1].clone().expand(value.shape) if value.dim() else value
            for key, value in state.items()}


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s | {"layer6.block1.reduce.conv.weight": torch.zeros(1)},
     "key 'layer6.block1.reduce.conv.weight' is not in deeplab-pytorch's ResNet-101 layout"),
    (lambda s: {k: v for k, v in s.items() if not k.startswith("layer4.block23.")},
     "18 missing keys ['layer3.22.bn1.bias'"),
    (lambda s: s | {"layer3.block2.conv3x3.conv.weight": torch.zeros(128, 128, 1, 1)},
     "1 tensors of another shape, e.g. layer2.1.conv2.weight (128, 128, 1, 1) instead of (128, 128, 3, 3)"),
])
def test_a_file_of_wrong_keys_or_shapes_is_one_line(tmp_path: Path, coco_init: tuple[Path, dict, dict], change,
                                                    message: str) -> None:
    path = tmp_path / "bad.pth"
    torch.save(change(_cheap_copy(coco_init[1])), path)
    with pytest.raises(ModelFileError) as error:
        load_backbone_weights(ResNet101Trunk(), path)
    assert str(error.value).startswith(f"{path} does not fit ResNet101Trunk: ")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_bare_file_name_is_found_in_the_torch_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trunk = SmallTrunk(width=4)
    (tmp_path / "checkpoints").mkdir()
    torch.save(trunk.state_dict(), tmp_path / "checkpoints" / "trunk.pth")
    monkeypatch.chdir(tmp_path)  # not in the working directory
    assert load_backbone_weights(SmallTrunk(width=4), "trunk.pth", hub_dir=tmp_path) == (
        tmp_path / "checkpoints" / "trunk.pth")
    with pytest.raises(FileNotFoundError, match=r"absent.pth \(looked in the working directory and in .*checkpoints"):
        load_backbone_weights(SmallTrunk(width=4), "absent.pth", hub_dir=tmp_path)


def test_msra_resnet_strides_in_the_1x1_and_dilates_every_block() -> None:
    msra, torchvision = ResNet101Trunk(resnet="msra"), ResNet101Trunk()
    assert msra.layer2[0].conv1.stride == (2, 2) and msra.layer2[0].conv2.stride == (1, 1)
    assert torchvision.layer2[0].conv1.stride == (1, 1) and torchvision.layer2[0].conv2.stride == (2, 2)
    assert [block.conv2.dilation[0] for block in msra.layer3] == [2] * 23
    assert [block.conv2.dilation[0] for block in msra.layer4] == [4] * 3
    assert torchvision.layer3[0].conv2.dilation[0] == 1 and torchvision.layer4[0].conv2.dilation[0] == 2
    assert msra.maxpool.ceil_mode and not torchvision.maxpool.ceil_mode


def test_msc_fuses_the_scales_by_their_max_and_keeps_each() -> None:
    torch.manual_seed(0)
    trunk = SmallTrunk(width=4)
    net = MultiScaleNet(trunk, torch.nn.Conv2d(trunk.out_channels, 3, 1), 3, [0.5, 0.75]).eval()  # same in train()
    x = torch.randn(2, 3, 61, 61)
    out = net(x)
    full, half, three_quarters = out.scale_scores
    assert torch.equal(full, net.head(trunk(x).deep))
    half_input = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    assert torch.equal(half, net.head(trunk(half_input).deep))
    assert three_quarters.shape[-2:] == net.head(trunk(torch.zeros(1, 3, 45, 45)).deep).shape[-2:]  # floor(61 x .75)
    grid = full.shape[-2:]
    resized = [F.interpolate(s, size=grid, mode="bilinear", align_corners=False) for s in (half, three_quarters)]
    assert torch.equal(out.scores, torch.maximum(full, torch.maximum(*resized)))
    assert out.features.shape[-2:] == grid


def test_deeplab_v2_options_build_the_published_network() -> None:
    net = build_segmenter("deeplab_v2", 21, msc_scales=[0.5, 0.75], resnet="msra")
    assert isinstance(net, MultiScaleNet) and net.scales == (0.5, 0.75)
    assert net.trunk.layer2[0].conv1.stride == (2, 2)
    assert type(build_segmenter("deeplab_v2", 21)) is not MultiScaleNet


def _pil_nearest(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """deeplab-pytorch's resize_labels (main.py:105-117): PIL's NEAREST resize of each label map."""
    return torch.stack([torch.from_numpy(np.asarray(Image.fromarray(label.numpy()).resize(size[::-1], Image.NEAREST),
                                                    dtype=np.int64)) for label in labels.to(torch.uint8)])


def test_msc_supervises_every_scale_with_labels_zoomed_as_pil_does() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (2, 381, 381), generator=generator)
    labels[:, 300:] = 255  # padding
    for size in ((48, 48), (24, 24), (36, 36), (31, 47)):  # the grids of 381, 190 and 285 crops; a non-square one
        assert torch.equal(zoom_labels(labels, size), _pil_nearest(labels, size)), size
    scales = tuple(torch.randn(2, 3, side, side, generator=generator) for side in (48, 24, 36))
    fused = torch.randn(2, 3, 48, 48, generator=generator)
    loss = segmentation_loss(SegmentationOutput(fused, torch.zeros(2, 1, 48, 48), scales), labels, None)
    expected = sum(F.cross_entropy(scores, _pil_nearest(labels, tuple(scores.shape[-2:])), ignore_index=255)
                   for scores in (*scales, fused))
    torch.testing.assert_close(loss, expected)


def test_msc_network_retrains() -> None:
    torch.manual_seed(0)
    trunk = SmallTrunk(width=4)
    net = MultiScaleNet(trunk, torch.nn.Conv2d(trunk.out_channels, 2, 1), 2, [0.5, 0.75])
    images = np.random.default_rng(0).integers(0, 255, (4, 40, 40, 3), dtype=np.uint8)
    log = train_segmenter(net, images, (images[..., 0] > 128).astype(np.uint8), geometry=CropGeometry(33),
                          iterations=3, iter_size=2, batch_size=2, lr=0.01, weight_decay=0.0, seed=0,
                          batchnorm="frozen", optimizer="sgd", head_bias_lr_mult=20.0, head_bias_weight_decay=0.0)
    assert len(log.steps) == 3 and all(np.isfinite(row["loss"]) for row in log.steps)
