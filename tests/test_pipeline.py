"""The whole pipeline through DVC on a tiny configuration: repro, determinism, partial reruns, push/pull."""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SUMMARY_KEYS = {"cam_baseline_miou", "cues_miou", "pseudo_miou", "crf_miou", "val_miou", "upper_bound_val_miou"}


def tiny_params() -> dict:
    """The embedded default shrunk to a few dozen 64-pixel images and one epoch per stage."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prepare"]["synthetic"].update(num_train=24, num_val=8, image_size=64)
    for stage in ("cues", "train_dgcn", "retrain"):
        params[stage].update(input_size=64, epochs=1, batch_size=8, arch_options={"width": 8})
    params["train_dgcn"].update(workers=0, warmup_iters=2)
    params["export"].update(input_size=64, shard_images=16)
    params["crf"].update(workers=0, iterations=2)
    params["evaluate"].update(gallery_train=1, gallery_val=1)
    return params


def run(args: list[str], cwd: Path) -> str:
    """Run a command with the test's interpreter first on PATH; fail with its output if it fails."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def dvc(*args: str, cwd: Path) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd)


def git(*args: str, cwd: Path) -> str:
    return run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd)


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def lock_hashes(root: Path) -> dict[str, str]:
    """Output path -> content hash, from dvc.lock."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh git + DVC project holding our code, dvc.yaml and the tiny params, reproduced once."""
    root = tmp_path_factory.mktemp("project")
    for name in ("stages", "dgcn"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    (root / ".gitignore").write_text("__pycache__/\n.scratch/\n")
    git("init", "-q", cwd=root)
    dvc("init", "-q", cwd=root)
    dvc("config", "core.analytics", "false", cwd=root)
    dvc("config", "core.check_update", "false", cwd=root)
    output = dvc("repro", cwd=root)
    assert ran_stages(output) == {"prepare", "cues", "train_dgcn", "export", "crf", "retrain@pseudo", "retrain@gt",
                                  "evaluate"}
    return root


def test_repro_writes_the_summary_and_every_picture(project: Path) -> None:
    summary = json.loads((project / "artifacts/evaluate/summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert all(0.0 <= summary[key] <= 1.0 for key in SUMMARY_KEYS)
    for picture in ("gallery.png", "per_class_iou.png", "confusion.png"):
        assert (project / "artifacts/evaluate" / picture).stat().st_size > 1000
    assert "cam_baseline_miou" in dvc("metrics", "show", cwd=project)


def test_second_repro_does_nothing(project: Path) -> None:
    assert ran_stages(dvc("repro", cwd=project)) == set()


def test_forced_rerun_gives_identical_artifacts(project: Path) -> None:
    before = lock_hashes(project)
    dvc("repro", "--force", cwd=project)
    assert lock_hashes(project) == before


def test_parameter_change_reruns_only_downstream_stages(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["crf"]["iterations"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(dvc("repro", cwd=project)) == {"crf", "retrain@pseudo", "evaluate"}


def test_push_then_pull_in_a_fresh_clone_restores_identical_pseudo_labels(project: Path, tmp_path: Path) -> None:
    dvc("remote", "add", "-f", "-d", "shared", str(tmp_path / "remote"), cwd=project)
    dvc("push", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "-qm", "pipeline run", cwd=project)
    clone = tmp_path / "clone"
    git("clone", "-q", str(project), str(clone), cwd=tmp_path)
    dvc("pull", cwd=clone)
    store = Path("artifacts/export/pseudo_labels.zarr")
    files = sorted(p.relative_to(project / store) for p in (project / store).rglob("*") if p.is_file())
    assert files, "the pseudo-label store is empty"
    _, mismatch, errors = filecmp.cmpfiles(project / store, clone / store, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
    assert ran_stages(dvc("repro", cwd=clone)) == set()
    assert "up to date" in dvc("status", cwd=clone)
