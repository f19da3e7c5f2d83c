"""HRNet (timm) as a DGCN trunk: the backbone of the extended DGCN code (HRNet-W48), output stride 4."""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import Unpack

from dgcn.errors import InputError
from dgcn.models.options import HRNetOptions, check_options
from dgcn.models.segmenter import SegmentationNet, Trunk, TrunkFeatures, check_num_classes

# HRNet's fusion up-samples by exact factors of 2 down to stride 32.
_SIDE_MULTIPLE = 32
# Parts of timm's ImageNet classifier that the trunk does not have (its classification head).
_CLASSIFIER_PARTS = ("incre_modules", "downsamp_modules", "final_layer", "classifier")


class HRNetTrunk(Trunk):
    """The four parallel branches of a timm HRNet (`variant`, e.g. hrnet_w48), at strides 4, 8, 16, 32.

    early = the stride-4 branch (48 channels for W48); middle = deep = all four branches upsampled to stride 4 and
    concatenated (48 + 96 + 192 + 384 = 720 for W48), the representation of HRNet's segmentation networks.
    Parameter names are timm's under `body.`, so timm's ImageNet checkpoints load (see pretrained_state).
    """

    output_stride = 4

    def __init__(self, **options: Unpack[HRNetOptions]) -> None:
        """variant: a timm HRNet (hrnet_w48 by default)."""
        check_options(options, HRNetOptions, "HRNetTrunk()")
        variant = options.get("variant", "hrnet_w48")
        import timm  # here, not at module level: every stage imports the registry, few build an HRNet

        super().__init__()
        if variant not in timm.list_models("hrnet_*"):
            raise InputError(f"unknown HRNet variant {variant!r}; choices: {timm.list_models('hrnet_*')}")
        self.variant = variant
        self.body = timm.create_model(variant, pretrained=False, features_only=True, feature_location="",
                                      out_indices=(1, 2, 3, 4))
        channels = self.body.feature_info.channels()
        self.early_channels = channels[0]
        self.middle_channels = self.out_channels = sum(channels)

    def forward(self, x: Tensor) -> TrunkFeatures:
        """x: (B, 3, H, W) -> TrunkFeatures, all (B, ., ceil(H / 4), ceil(W / 4)).

        HRNet's branch fusion needs sides divisible by 32: the input is zero-padded (the mean after normalisation) at
        the bottom and right, and the outputs are cropped back.
        """
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % _SIDE_MULTIPLE, 0, -height % _SIDE_MULTIPLE))
        branches = self.body(x)
        size = branches[0].shape[-2:]
        fused = torch.cat([branches[0], *(F.interpolate(b, size=size, mode="bilinear", align_corners=False)
                                          for b in branches[1:])], dim=1)
        fused = fused[..., : -(-height // self.output_stride), : -(-width // self.output_stride)]
        return TrunkFeatures(early=fused[:, : self.early_channels], middle=fused, deep=fused)

    def imagenet_checkpoint(self, cache: Path | None = None) -> Path:
        """timm's ImageNet weights of this variant in the Hugging Face hub cache (`cache` overrides its folder)."""
        import timm
        from huggingface_hub import constants, try_to_load_from_cache

        repo = timm.models.get_pretrained_cfg(self.variant).hf_hub_id
        found = try_to_load_from_cache(repo, "model.safetensors", cache_dir=cache)
        if isinstance(found, str):
            return Path(found)
        folder = cache if cache is not None else constants.HF_HUB_CACHE
        raise FileNotFoundError(
            f"ImageNet weights of {self.variant} not found in the Hugging Face cache {folder}. dgcn never downloads: "
            f"on a machine with internet run `hf download {repo} model.safetensors`, copy its cache folder "
            f"models--{repo.replace('/', '--')} into {folder}, or pass the model.safetensors path as pretrained"
        )

    def pretrained_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A timm HRNet checkpoint (classifier parts dropped, names put under `body.`) or a saved trunk, as is."""
        if all(key.startswith("body.") for key in state):
            return state
        return {f"body.{key}": value for key, value in state.items() if key.split(".")[0] not in _CLASSIFIER_PARTS}


class HRNetHead(nn.Sequential):
    """HRNet's segmentation classifier: 1x1 convolution, BatchNorm, ReLU, 1x1 convolution to class scores."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        scores = nn.Conv2d(in_channels, num_classes, 1)
        super().__init__(nn.Conv2d(in_channels, in_channels, 1, bias=False), nn.BatchNorm2d(in_channels),
                         nn.ReLU(inplace=True), scores)
        nn.init.normal_(scores.weight, std=0.01)
        nn.init.zeros_(scores.bias)


def hrnet(num_classes: int, **options: Unpack[HRNetOptions]) -> SegmentationNet:
    """HRNet segmenter, randomly initialised; output stride 4, feature_dim 768 for W48 (stride-4 branch 48 + 720)."""
    check_num_classes(num_classes)
    check_options(options, HRNetOptions, "hrnet()")
    trunk = HRNetTrunk(**options)
    return SegmentationNet(trunk, HRNetHead(trunk.out_channels, num_classes), num_classes)
