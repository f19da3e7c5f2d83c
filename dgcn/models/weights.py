"""Local pretrained backbone weights: read a state-dict file into a trunk. Never downloads."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from dgcn.errors import ModelFileError
from dgcn.models.segmenter import Trunk

IMAGENET = "imagenet"


def imagenet_weights_path(filenames: Sequence[str], hub_dir: Path | None = None) -> Path:
    """The first of `filenames` present in `<hub_dir>/checkpoints` (hub_dir defaults to torch.hub.get_dir())."""
    checkpoints = Path(hub_dir if hub_dir is not None else torch.hub.get_dir()) / "checkpoints"
    tried = [checkpoints / name for name in filenames]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"ImageNet weights not found; tried {', '.join(str(p) for p in tried)}. dgcn never downloads: copy the "
        f"torchvision file ({' or '.join(filenames)}) into {checkpoints}, or pass the file's path as pretrained"
    )


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a torch.save(module.state_dict(), path) file, or of a .safetensors file, loaded on the CPU."""
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (pass an existing state-dict file)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise several unrelated types for a damaged file
        raise ModelFileError(f"unreadable weights file {path}: {error}") from error
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelFileError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    return dict(state)


def load_backbone_weights(trunk: Trunk, pretrained: Path | str, *, hub_dir: Path | None = None) -> Path:
    """Load a trunk's weights from a local file; returns the path read.

    pretrained: a state-dict file (an ImageNet checkpoint of the trunk's library, or a saved trunk), or "imagenet"
    for the trunk's standard ImageNet file in its library's cache (torch hub for torchvision trunks, the Hugging Face
    hub for timm trunks; `hub_dir` overrides that cache folder). Classifier entries of a checkpoint are ignored.
    """
    path = trunk.imagenet_checkpoint(hub_dir) if pretrained == IMAGENET else Path(pretrained)
    state = trunk.pretrained_state(read_state_dict(path))
    expected = trunk.state_dict().keys()
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise ModelFileError(
            f"{path} does not fit {type(trunk).__name__}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    try:
        trunk.load_state_dict(state)
    except RuntimeError as error:
        raise ModelFileError(f"{path} does not fit {type(trunk).__name__}: {error}") from error
    return path
