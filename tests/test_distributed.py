"""torchrun on the CPU with the gloo backend, 2 processes on a tiny configuration: the replicas hold the same weights
after a DGCN step, and the 2-process export writes the same store bytes as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cues_stage import TINY_CUES
from test_stage_errors import invoke, prepare_voc_mini, set_param, workdir  # noqa: F401 (workdir: a fixture)

from dgcn import distributed

REPO = Path(__file__).resolve().parents[1]


def launch(*args: str, processes: int | None = 2) -> None:
    """`torchrun --nproc_per_node=<processes> <args>` (None: plain `python <args>`, no torchrun) with this checkout
    importable and one thread per process; fails the test with the output on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    runner = [] if processes is None else ["-m", "torch.distributed.run", "--standalone",
                                           f"--nproc_per_node={processes}"]
    result = subprocess.run([sys.executable, *runner, *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"


def test_replicas_hold_the_same_weights_after_a_step(tmp_path: Path) -> None:
    launch(str(REPO / "tests" / "distributed" / "dgcn_step.py"), str(tmp_path))
    first, second = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    # Each rank drew its own initial weights: DistributedDataParallel starts both from rank 0's.
    assert not torch.equal(first["before"]["head.1.weight"], second["before"]["head.1.weight"])
    assert first["after"].keys() == second["after"].keys()
    for name, value in first["after"].items():
        assert torch.equal(value, second["after"][name]), name
        assert not torch.equal(value, first["before"][name]), f"{name} did not train"


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_two_process_export_writes_the_one_process_bytes(workdir: Path, voc_mini: Path) -> None:  # noqa: F811
    prepare_voc_mini(voc_mini)
    set_param(workdir / "voc.yaml", "cues", **TINY_CUES, saliency_dir=None)
    set_param(workdir / "voc.yaml", "train_dgcn", arch="small", arch_options={"width": 8}, pretrained=None,
              device="cpu", crop_size=64, epochs=1, batch_size=3, workers=0, warmup_iters=1)
    # 3 images in shards of 1: rank 0 computes shards 0 and 2, rank 1 shard 1.
    set_param(workdir / "voc.yaml", "export", device="cpu", input_size=64, batch_size=2, workers=0, shard_images=1,
              scales=[1.0])
    assert invoke("cues", "--manifest", "a/prepare/manifest.json", "--out", "a/cues")[0] == 0
    code, output = invoke("train-dgcn", "--cues", "a/cues/cues.zarr", "--classifier", "a/cues/classifier.pt",
                          "--manifest", "a/prepare/manifest.json", "--out", "a/train")
    assert code == 0, output
    export = ["-m", "stages", "export", "--config", "voc.yaml", "--cues", "a/cues/cues.zarr", "--model",
              "a/train/model.pt", "--manifest", "a/prepare/manifest.json", "--out"]
    launch(*export, "a/one", processes=None)
    launch(*export, "a/two")
    one, two = _files(workdir / "a/one"), _files(workdir / "a/two")
    assert any(name.startswith("pseudo_labels.zarr/labels/c/2") for name in one)  # a shard file per image
    assert one.keys() == two.keys()
    for name in one:
        assert one[name] == two[name], name


def test_rank_one_of_two_takes_every_other_row_and_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.local_rows(list(range(4)), 4) == [1, 3]
    with pytest.raises(ValueError, match="batch_size 3 must be a multiple of the 2 processes"):
        distributed.local_rows(list(range(3)), 3)
    assert distributed.my_shards(7, 2) == [range(2, 4), range(6, 7)]
