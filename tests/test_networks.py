"""The network a training stage starts from: random or `pretrained`, or the cue classifier's trunk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dgcn.errors import InputError
from dgcn.model_files import save_model
from dgcn.models.registry import build_classifier
from stages.networks import starting_segmenter
from stages.params import load_params
from stages.schemas.retrain import RetrainParams
from stages.schemas.train_dgcn import TrainDGCNParams

ROOT = Path(__file__).resolve().parents[1]


def _settings(kind: type, section: str, tmp_path: Path, init: bool):
    config = tmp_path / f"{section}.yaml"
    config.write_text(f"{section}: {{arch: small, arch_options: {{width: 4}}, pretrained: null, device: cpu, "
                      f"init_from_classifier: {str(init).lower()}}}\n")
    return load_params(section, kind, config=config, defaults=ROOT / "params.yaml")


@pytest.fixture
def classifier(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A saved classifier with the small trunk (width 4) and its trunk's weights, perturbed so they are not an init."""
    torch.manual_seed(3)
    model = build_classifier("small", 5, width=4)
    with torch.no_grad():
        for parameter in model.trunk.parameters():
            parameter.add_(torch.randn_like(parameter))
    path = tmp_path / "classifier.pt"
    save_model(path, model, kind="classifier", arch="small", num_outputs=5, options={"width": 4})
    return path, {name: value.clone() for name, value in model.trunk.state_dict().items()}


@pytest.mark.parametrize(("kind", "section"), [(RetrainParams, "retrain"), (TrainDGCNParams, "train_dgcn")])
def test_init_from_classifier_copies_the_trunk(kind: type, section: str, tmp_path: Path, classifier) -> None:
    path, trunk = classifier
    started = starting_segmenter(_settings(kind, section, tmp_path, True), 6, path, section).trunk.state_dict()
    assert started.keys() == trunk.keys()
    assert all(torch.equal(started[name], trunk[name]) for name in trunk)
    fresh = starting_segmenter(_settings(kind, section, tmp_path, False), 6, path, section).trunk.state_dict()
    assert not all(torch.equal(fresh[name], trunk[name]) for name in trunk if trunk[name].is_floating_point())


def test_init_from_classifier_without_a_classifier_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^retrain.init_from_classifier is true: give --classifier"):
        starting_segmenter(_settings(RetrainParams, "retrain", tmp_path, True), 6, None, "retrain")
