"""HRNet trunk (timm): shapes at stride 4, parameter split, CAM classifier, timm ImageNet files from the HF cache."""

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from dgcn.models import SegmentationNet, build_classifier, build_segmenter, load_backbone_weights

VARIANT = "hrnet_w18_small"  # the smallest HRNet: branches of 16, 32, 64, 128 channels
NUM_CLASSES = 3


@pytest.fixture(scope="module")
def model() -> SegmentationNet:
    torch.manual_seed(0)
    return build_segmenter("hrnet", NUM_CLASSES, variant=VARIANT).eval()


def test_hrnet_shapes_stride_and_feature_dim(model: SegmentationNet) -> None:
    out = model(torch.randn(2, 3, 66, 72))  # sides not multiples of 32: padded inside, cropped back to ceil(side / 4)
    assert model.output_stride == 4 and model.feature_dim == 16 + (16 + 32 + 64 + 128)
    assert out.scores.shape == (2, NUM_CLASSES, 17, 18)
    assert out.features.shape == (2, model.feature_dim, 17, 18)
    head = {id(p) for p in model.head_parameters()}
    trunk = {id(p) for p in model.backbone_parameters()}
    assert head and trunk and not head & trunk and len(head | trunk) == len(list(model.parameters()))


def test_hrnet_classifier_shares_the_trunk_and_initialises_the_segmenter(model: SegmentationNet) -> None:
    torch.manual_seed(1)
    classifier = build_classifier("hrnet", NUM_CLASSES - 1, variant=VARIANT).eval()
    assert classifier(torch.randn(1, 3, 64, 64)).shape == (1, NUM_CLASSES - 1)
    assert classifier.cams(torch.randn(1, 3, 64, 64)).shape == (1, NUM_CLASSES - 1, 16, 16)
    segmenter = build_segmenter("hrnet", NUM_CLASSES, variant=VARIANT)
    segmenter.load_trunk_from(classifier)
    for key, value in classifier.trunk.state_dict().items():
        assert torch.equal(value, segmenter.trunk.state_dict()[key]), key


def _hf_cache(root: Path, state: dict[str, torch.Tensor]) -> Path:
    """A Hugging Face hub cache holding `state` as the variant's timm ImageNet file, as `hf download` leaves it."""
    repo = timm.models.get_pretrained_cfg(VARIANT).hf_hub_id
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123456789abcdef")
    save_file(state, snapshot / "model.safetensors")
    return snapshot / "model.safetensors"


def test_timm_imagenet_file_loads_from_the_hf_cache(tmp_path: Path, model: SegmentationNet) -> None:
    torch.manual_seed(2)
    imagenet = {key: value.contiguous() for key, value in timm.create_model(VARIANT).state_dict().items()}
    path = _hf_cache(tmp_path, imagenet)
    assert load_backbone_weights(model.trunk, "imagenet", hub_dir=tmp_path) == path
    loaded = model.trunk.state_dict()
    assert all(torch.equal(value, imagenet[key.removeprefix("body.")]) for key, value in loaded.items())
    # The same file given by path, and a saved trunk, load too.
    assert load_backbone_weights(model.trunk, path) == path
    saved = tmp_path / "trunk.pt"
    torch.save(model.trunk.state_dict(), saved)
    assert build_segmenter("hrnet", NUM_CLASSES, variant=VARIANT, pretrained=saved).trunk.state_dict().keys() == \
        loaded.keys()


def test_missing_timm_imagenet_file_says_where_to_put_it(tmp_path: Path, model: SegmentationNet) -> None:
    with pytest.raises(FileNotFoundError) as error:
        load_backbone_weights(model.trunk, "imagenet", hub_dir=tmp_path)
    message = str(error.value)
    assert "never downloads" in message and str(tmp_path) in message
    assert f"hf download timm/{VARIANT}" in message


def test_unknown_hrnet_variant_is_named() -> None:
    with pytest.raises(ValueError, match="unknown HRNet variant 'hrnet_w7'"):
        build_segmenter("hrnet", NUM_CLASSES, variant="hrnet_w7")
