"""A throw-away git + DVC copy of this repository for end-to-end tests, and helpers to drive DVC in it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from stages.params import merge

REPO = Path(__file__).resolve().parents[1]
VOC_MINI = REPO / "tests" / "data" / "voc-mini"
# Shrinks any data set's network stages to a tiny CPU run: one epoch of a narrow net on 64-pixel inputs (the
# classifier's resized images, the other networks' crops); two mean-field iterations in every CRF.
TINY_NETWORK = {"arch": "small", "arch_options": {"width": 8}, "pretrained": None, "device": "cpu", "epochs": 1}
TINY = {
    "dense_crf": {"iterations": 2},
    "cues": {**TINY_NETWORK, "input_size": 64, "batch_size": 8},
    "train_dgcn": {**TINY_NETWORK, "crop_size": 64, "batch_size": 8, "init_from_classifier": True, "warmup_iters": 2,
                   "workers": 0, "optimizer": {"lr": 0.01}},
    "export": {"device": "cpu", "input_size": 64, "batch_size": 8, "workers": 0, "shard_images": 16},
    "crf": {"workers": 0},
    "retrain": {**TINY_NETWORK, "iterations": None, "crop_size": 64, "batch_size": 8, "init_from_classifier": True,
                "optimizer": {"name": "adamw", "lr": 0.004}},
    "evaluate": {"device": "cpu", "gallery_train": 1, "gallery_val": 1, "deeplab_crf": {"iterations": 2}},
}


def run(args: list[str], cwd: Path) -> str:
    """Run a command with the test's interpreter first on PATH; fail with its output if it fails. DVC never reports
    usage: `dvc init` would, before the project's config can say core.analytics = false."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1"}
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


def edit_yaml(path: Path, changes: dict) -> None:
    """Deep-merge `changes` into the YAML file at `path`."""
    path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()) or {}, changes), sort_keys=False))


def make_project(root: Path, datasets: list[str], configs: dict[str, dict]) -> Path:
    """A git + DVC project at `root` with this repository's code, dvc.yaml, params.yaml and pipelines/, running
    `datasets`; configs[name] is merged over pipelines/<name>.yaml."""
    for name in ("stages", "tools", "dgcn", "pipelines"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvcignore", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    edit_yaml(root / "params.yaml", {"datasets": datasets})
    for name, changes in configs.items():
        edit_yaml(root / "pipelines" / f"{name}.yaml", changes)
    (root / ".gitignore").write_text("__pycache__/\n.scratch/\n")
    git("init", "-q", cwd=root)
    dvc("init", "-q", cwd=root)
    dvc("config", "core.analytics", "false", cwd=root)
    dvc("config", "core.check_update", "false", cwd=root)
    return root
