"""ResNet-101 checkpoints in deeplab-pytorch's layout (kazuto1011/deeplab-pytorch, vendored by the extended DGCN code
as DeepLab-V2-PyTorch), read into our torchvision-named trunk.

Those files are DeepLab's caffe weights converted by deeplab-pytorch's convert.py, e.g. the COCO-pretrained init
`deeplabv1_resnet101-coco.pth`: keys `layer1.conv1.conv.weight` (the stem), `layer{2-5}.block{j}.{reduce, conv3x3,
increase, shortcut}.{conv.weight, bn.*}` (torchvision's layer{1-4}.{j-1}), possibly under `base.` (a saved
DeepLabV2_ResNet101_MSC) or `scale.` (older versions, whose shortcut is `proj`), and a classifier `aspp.c{i}.*` or
`fc.*`. Caffe networks take BGR images in 0-255 minus DeepLab's mean; the stem's weights are rewritten to take our
normalised RGB input instead (from_deeplab_pytorch).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from dgcn.data.loading import MEAN, STD
from dgcn.errors import ModelFileError

# DeepLab's caffe input mean, B, G, R in 0-255 (deeplab-pytorch configs IMAGE.MEAN; voc12_2gpu.yaml:21-24)
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)

_PREFIX = r"^(?:(?:module|base|scale)\.)*"
_STEM = re.compile(_PREFIX + r"layer1\.conv1\.(conv|bn)\.(\w+)$")
_BLOCK = re.compile(_PREFIX + r"layer([2-5])\.block(\d+)\.(reduce|conv3x3|increase|shortcut|proj)\.(conv|bn)\.(\w+)$")
_CLASSIFIER = re.compile(_PREFIX + r"(?:aspp|fc)\.")
# deeplab-pytorch unit -> torchvision (conv, bn) names within a bottleneck
_UNITS = {"reduce": ("conv1", "bn1"), "conv3x3": ("conv2", "bn2"), "increase": ("conv3", "bn3"),
          "shortcut": ("downsample.0", "downsample.1"), "proj": ("downsample.0", "downsample.1")}


def is_deeplab_pytorch(state: dict[str, Tensor]) -> bool:
    """Whether a checkpoint is in deeplab-pytorch's layout: it has that layout's stem convolution."""
    return any(_STEM.match(key) and key.endswith("conv.weight") for key in state)


def torchvision_name(key: str) -> str | None:
    """The torchvision ResNet name of a deeplab-pytorch key; None for a classifier key (aspp.*, fc.*), which a trunk
    does not hold (deeplab-pytorch itself skips the ASPP when it starts from this file). ModelFileError for any other
    key."""
    if _CLASSIFIER.match(key):
        return None
    if stem := _STEM.match(key):
        return f"{'conv1' if stem[1] == 'conv' else 'bn1'}.{stem[2]}"
    if block := _BLOCK.match(key):
        layer, index, unit, part, leaf = block.groups()
        names = _UNITS[unit]
        return f"layer{int(layer) - 1}.{int(index) - 1}.{names[0] if part == 'conv' else names[1]}.{leaf}"
    raise ModelFileError(f"key {key!r} is not in deeplab-pytorch's ResNet-101 layout")


def from_deeplab_pytorch(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A deeplab-pytorch checkpoint's trunk under torchvision's names, for our normalised RGB input.

    The stem convolution of caffe weights sees x_bgr = 255 * pixel - CAFFE_MEAN_BGR; ours sees (pixel - MEAN) / STD in
    RGB. Its weights are reordered to RGB and scaled by 255 * STD, and the constant difference of the two inputs,
    a per-channel offset after the (bias-free) convolution, is folded into the stem BatchNorm's running mean. Exact
    away from the image border, where the zero padding stands for the two means (within 1 of 255 apart).
    """
    out = {}
    for key, value in state.items():
        name = torchvision_name(key)
        if name is not None:
            if name in out:
                raise ModelFileError(f"key {key!r} repeats {name} of deeplab-pytorch's layout under another prefix")
            out[name] = value
    if "conv1.weight" not in out or "bn1.running_mean" not in out:
        raise ModelFileError("deeplab-pytorch layout without the stem (layer1.conv1.conv.weight, "
                             "layer1.conv1.bn.running_mean)")
    weight = out["conv1.weight"].float()
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ModelFileError(f"layer1.conv1.conv.weight must be (64, 3, 7, 7), got {tuple(weight.shape)}")
    rgb = weight.flip(1)  # caffe's input channels are B, G, R
    std = torch.tensor(STD).view(1, 3, 1, 1)
    # per RGB channel, the caffe input at our input 0: 255 * MEAN - the caffe mean
    shift = (255 * torch.tensor(MEAN) - torch.tensor(CAFFE_MEAN_BGR[::-1])).view(1, 3, 1, 1)
    out["conv1.weight"] = (rgb * 255 * std).to(out["conv1.weight"].dtype)
    out["bn1.running_mean"] = out["bn1.running_mean"] - (rgb * shift).sum(dim=(1, 2, 3))
    for name in [key[: -len("running_mean")] for key in out if key.endswith("running_mean")]:
        out.setdefault(name + "num_batches_tracked", torch.tensor(0))  # older conversions have none
    return out
