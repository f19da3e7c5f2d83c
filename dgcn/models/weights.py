"""Local pretrained backbone weights: read a state-dict file into a trunk. Never downloads."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from dgcn.errors import ModelFileError
from dgcn.models.segmenter import Trunk

IMAGENET = "imagenet"


def checkpoints_dir(hub_dir: Path | None = None) -> Path:
    """`<hub_dir>/checkpoints`, hub_dir defaulting to torch.hub.get_dir(): where torch keeps downloaded weights."""
    return Path(hub_dir if hub_dir is not None else torch.hub.get_dir()) / "checkpoints"


def imagenet_weights_path(filenames: Sequence[str], hub_dir: Path | None = None) -> Path:
    """The first of `filenames` present in `<hub_dir>/checkpoints` (hub_dir defaults to torch.hub.get_dir())."""
    checkpoints = checkpoints_dir(hub_dir)
    tried = [checkpoints / name for name in filenames]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"ImageNet weights not found; tried {', '.join(str(p) for p in tried)}. dgcn never downloads: copy the "
        f"torchvision file ({' or '.join(filenames)}) into {checkpoints}, or pass the file's path as pretrained"
    )


def weights_path(pretrained: Path | str, hub_dir: Path | None = None) -> Path:
    """The file `pretrained` names: a path (relative to the working directory), or a bare file name found there or
    else in `<hub_dir>/checkpoints`, beside the ImageNet weights (e.g. deeplabv1_resnet101-coco.pth)."""
    path = Path(pretrained)
    if path.is_file() or path.name != str(pretrained):
        return path
    cached = checkpoints_dir(hub_dir) / path.name
    if not cached.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (looked in the working directory and in "
                                f"{cached.parent}; dgcn never downloads)")
    return cached


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

    pretrained: a state-dict file (an ImageNet checkpoint of the trunk's library, a saved trunk, or a layout the
    trunk's pretrained_state renames, e.g. deeplab-pytorch's for ResNet-101; a bare file name may lie in the torch
    hub cache, see weights_path), or "imagenet" for the trunk's standard ImageNet file in its library's cache (torch
    hub for torchvision trunks, the Hugging Face hub for timm trunks; `hub_dir` overrides that cache folder).
    Classifier entries of a checkpoint are ignored. Wrong keys or shapes: one ModelFileError line naming the file.
    """
    path = trunk.imagenet_checkpoint(hub_dir) if pretrained == IMAGENET else weights_path(pretrained, hub_dir)
    state = read_state_dict(path)
    try:
        state = trunk.pretrained_state(state)
    except ModelFileError as error:  # a key of no layout the trunk knows
        raise ModelFileError(f"{path} does not fit {type(trunk).__name__}: {error}") from error
    expected = trunk.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise ModelFileError(
            f"{path} does not fit {type(trunk).__name__}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    wrong = [f"{key} {tuple(state[key].shape)} instead of {tuple(value.shape)}" for key, value in expected.items()
             if state[key].shape != value.shape]
    if wrong:
        raise ModelFileError(f"{path} does not fit {type(trunk).__name__}: {len(wrong)} tensors of another shape, "
                             f"e.g. {wrong[0]}")
    try:
        trunk.load_state_dict(state)
    except RuntimeError as error:
        raise ModelFileError(f"{path} does not fit {type(trunk).__name__}: {error}") from error
    return path
