"""Files from elsewhere (a shared DVC remote) never run code when loaded: models, checkpoints, cue pickles,
pretrained weights."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dgcn.cues import export_published_cues, import_published_cues
from dgcn.errors import InputError, ModelFileError
from dgcn.model_files import load_model, save_model
from dgcn.models.registry import build_segmenter
from dgcn.models.resnet import ResNet101Trunk
from dgcn.models.weights import load_backbone_weights
from dgcn.training.loop import fit


class Payload:
    """Unpickling this creates `marker`: the stand-in for an attacker's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_crafted_model_file_runs_nothing_and_is_named(tmp_path: Path) -> None:
    path, marker = tmp_path / "model.pt", tmp_path / "pwned"
    torch.save({"kind": "segmenter", "arch": "small", "num_outputs": 2, "options": {"width": 4},
                "state_dict": Payload(marker)}, path)
    with pytest.raises(ModelFileError, match=rf"^unreadable model file {path}: "):
        load_model(path, "segmenter")
    assert not marker.exists()


def test_crafted_pretrained_weights_run_nothing_and_are_named(tmp_path: Path) -> None:
    path, marker = tmp_path / "deeplabv1_resnet101-coco.pth", tmp_path / "pwned"
    torch.save({"layer1.conv1.conv.weight": Payload(marker)}, path)
    with pytest.raises(ModelFileError, match=rf"^unreadable weights file {path}: "):
        load_backbone_weights(ResNet101Trunk(), path)
    assert not marker.exists()


def test_legitimate_model_file_still_loads(tmp_path: Path) -> None:
    model = build_segmenter("small", 3, width=4)
    save_model(tmp_path / "model.pt", model, kind="segmenter", arch="small", num_outputs=3, options={"width": 4})
    loaded = load_model(tmp_path / "model.pt", "segmenter")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(),
                                                   strict=True))


def test_crafted_checkpoint_runs_nothing_and_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint, marker = tmp_path / "last.pt", tmp_path / "pwned"
    model = torch.nn.Linear(2, 2)
    torch.save({"model": model.state_dict(), "optimizer": Payload(marker), "scheduler": {}, "epoch": 0,
                "log": {"epochs": [], "steps": []}}, checkpoint)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    log = fit(model=model, optimizer=optimizer, scheduler=scheduler, step=lambda batch: {"loss": 0.0},
              batches=lambda epoch: [], epochs=1, checkpoint=checkpoint)
    assert not marker.exists() and [row["epoch"] for row in log.epochs] == [1]  # trained from the start
    assert capsys.readouterr().err.startswith(f"warning: damaged checkpoint {checkpoint} (UnpicklingError: ")
    assert (tmp_path / "last.pt.damaged").is_file()


def test_crafted_cue_pickle_runs_nothing_and_is_named(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "input_list.txt").write_text("a.jpg 0\n")
    pickle_path = tmp_path / "cues.pickle"
    pickle_path.write_bytes(pickle.dumps({"0_labels": Payload(marker), "0_cues": ([], [], [])}, protocol=2))
    with pytest.raises(InputError, match=rf"^{pickle_path}: not a DSRG/DGCN cue pickle: refused to load "):
        import_published_cues(pickle_path, tmp_path / "input_list.txt", num_classes=3, grid=4)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_legitimate_cue_pickle_still_loads_with_any_protocol(tmp_path: Path, protocol: int) -> None:
    cues = np.zeros((1, 3, 4, 4), np.uint8)
    cues[0, 1, 2, 3] = cues[0, 0, 0, 0] = 1
    labels = np.array([[1, 1, 0]], np.uint8)
    export_published_cues(tmp_path / "cues.pickle", tmp_path / "input_list.txt", ["a"], cues, labels)
    payload = pickle.loads((tmp_path / "cues.pickle").read_bytes())
    (tmp_path / "cues.pickle").write_bytes(pickle.dumps(payload, protocol=protocol))
    names, imported, _ = import_published_cues(tmp_path / "cues.pickle", tmp_path / "input_list.txt",
                                               num_classes=3, grid=4)
    assert names == ["a"] and np.array_equal(imported, cues)


def test_numpy_1_cue_pickle_still_loads(tmp_path: Path) -> None:
    # The published file was written by numpy 1, whose arrays unpickle through numpy.core.multiarray
    cues = np.zeros((1, 3, 4, 4), np.uint8)
    cues[0, 1, 2, 3] = cues[0, 0, 0, 0] = 1
    export_published_cues(tmp_path / "cues.pickle", tmp_path / "input_list.txt", ["a"], cues,
                          np.array([[1, 1, 0]], np.uint8))
    payload = pickle.dumps(pickle.loads((tmp_path / "cues.pickle").read_bytes()), protocol=2)
    assert b"numpy._core" in payload
    (tmp_path / "cues.pickle").write_bytes(payload.replace(b"numpy._core", b"numpy.core"))
    names, imported, _ = import_published_cues(tmp_path / "cues.pickle", tmp_path / "input_list.txt",
                                               num_classes=3, grid=4)
    assert names == ["a"] and np.array_equal(imported, cues)
