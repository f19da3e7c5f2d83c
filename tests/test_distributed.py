"""torchrun on the CPU with the gloo backend, 2 processes on a tiny configuration: the replicas hold the same weights
after a DGCN step (BatchNorm trained, or batch_stats with its affine parameters kept), and the 2-process export and
crf stages write the same store bytes as one process. One launch does it all (tests/distributed/ranks.py): starting
torch in three processes is most of the time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_cues_stage import TINY_CUES
from test_stage_errors import REPO, invoke, prepare_voc_mini, set_param

from dgcn import distributed
from dgcn.errors import InputError

EXPORT = ["--cues", "a/cues/cues.zarr", "--model", "a/train/model.pt", "--manifest", "a/prepare/manifest.json"]
CRF = ["--evidence", "a/one/evidence.zarr", "--manifest", "a/prepare/manifest.json"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, voc_mini: Path) -> Iterator[Path]:
    """A tiny project on the vendored photos: cues, a trained DGCN and its 1-process export (in a/one), in this
    process, and its crf (a/crf_one); then one torchrun launch of 2 ranks: a DGCN step each (ranks/rank<R>.pt), the
    export into a/two, the crf of a/one's evidence into a/crf_two."""
    root = tmp_path_factory.mktemp("distributed")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    shutil.copy(REPO / "pipelines/voc12.yaml", root / "voc.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("OMP_NUM_THREADS", "1")  # one thread, as each rank (the stages keep it)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _one_process(voc_mini, root / "voc.yaml")
        finally:
            torch.set_num_threads(threads)
    (root / "ranks").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests" / "distributed" / "ranks.py"), "ranks", "export", "--config", "voc.yaml", *EXPORT,
               "--out", "a/two", "--", "crf", "--config", "voc.yaml", *CRF, "--out", "a/crf_two"]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout}\n{result.stderr}"
    yield root


def _one_process(voc_mini: Path, config: Path) -> None:
    prepare_voc_mini(voc_mini)
    set_param(config, "cues", **TINY_CUES, saliency_dir=None)
    set_param(config, "train_dgcn", arch="small", arch_options={"width": 8}, pretrained=None, device="cpu",
              crop_size=64, epochs=1, batch_size=3, workers=0, warmup_iters=1)
    # 3 images in shards of 1: rank 0 computes shards 0 and 2, rank 1 shard 1.
    set_param(config, "export", device="cpu", input_size=64, batch_size=2, workers=0, shard_images=1, scales=[1.0])
    set_param(config, "dense_crf", iterations=2)
    set_param(config, "crf", workers=0)
    manifest = ["--manifest", "a/prepare/manifest.json"]
    for stage, *args in (["cues", *manifest, "--out", "a/cues"],
                         ["train-dgcn", *manifest, "--cues", "a/cues/cues.zarr", "--classifier", "a/cues/classifier.pt",
                          "--out", "a/train"],
                         ["export", *EXPORT, "--out", "a/one"], ["crf", *CRF, "--out", "a/crf_one"]):
        code, output = invoke(stage, *args)
        assert code == 0, f"{stage}: {output}"


@pytest.mark.slow
def test_replicas_hold_the_same_weights_after_a_step(project: Path) -> None:
    first, second = (torch.load(project / "ranks" / f"rank{rank}.pt") for rank in (0, 1))
    # Each rank drew its own initial weights: DistributedDataParallel starts both from rank 0's.
    assert not torch.equal(first["before"]["head.1.weight"], second["before"]["head.1.weight"])
    assert first["after"].keys() == second["after"].keys()
    for name, value in first["after"].items():
        assert torch.equal(value, second["after"][name]), name
        assert not torch.equal(value, first["before"][name]), f"{name} did not train"


@pytest.mark.slow
def test_batch_stats_replicas_keep_the_affine_parameters_and_stay_plain_on_the_cpu(project: Path) -> None:
    """`batchnorm: batch_stats` under torchrun on the CPU: the BatchNorm weights and biases stay rank 0's initial ones
    on both ranks, everything else trained alike, the running statistics moved; no SyncBatchNorm (it needs CUDA)."""
    first, second = (torch.load(project / "ranks" / f"batch_stats{rank}.pt") for rank in (0, 1))
    assert len(first["batchnorm"]) == 14 and not first["synced"] and not second["synced"]
    for name, value in first["after"].items():
        assert torch.equal(value, second["after"][name]), name
        assert torch.equal(value, first["before"][name]) == (name in first["batchnorm"]), name
    for saved in (first, second):
        means = [name for name in saved["buffers_after"] if name.endswith("running_mean")]
        assert len(means) == 7 and not any(torch.equal(saved["buffers_after"][name], first["buffers_before"][name])
                                           for name in means)


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize(("one", "two"), [("one", "two"), ("crf_one", "crf_two")], ids=["export", "crf"])
def test_two_processes_write_the_one_process_bytes(project: Path, one: str, two: str) -> None:
    first, second = _files(project / "a" / one), _files(project / "a" / two)
    labels = "pseudo_labels.zarr" if one == "one" else "crf_labels.zarr"
    assert any(name.startswith(f"{labels}/labels/c/2") for name in first)  # a shard file per image
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name


@pytest.mark.parametrize("world", [2, 3, 4])
def test_the_ranks_blocks_cover_every_item_once(monkeypatch: pytest.MonkeyPatch, world: int) -> None:
    """Counts that do not divide by the world size too: no item lost, none twice, shares differ by at most one."""
    monkeypatch.setenv("WORLD_SIZE", str(world))
    for count in range(12):
        blocks = []
        for rank in range(world):
            monkeypatch.setenv("RANK", str(rank))
            blocks.append(distributed.my_block(count))
        assert [item for block in blocks for item in block] == list(range(count))
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_rank_one_of_two_takes_every_other_row_and_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.local_rows(list(range(4)), 4) == [1, 3]
    with pytest.raises(InputError, match="batch_size 3 must be a multiple of the 2 torchrun processes"):
        distributed.local_rows(list(range(3)), 3)
    assert distributed.my_shards(7, 2) == [range(2, 4), range(6, 7)]
