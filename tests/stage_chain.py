"""Run dvc.yaml's chain of stages in-process, in order, on one data root with a tiny config; and tiny data sets of
your own (images + tags, optional masks) for it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from dvc_project import REPO, TINY
from PIL import Image
from typer.testing import CliRunner

from stages.app import app
from stages.params import merge
from tools.params_schema import SECTIONS

# tag -> (colour, mask value in the derived class list [background, disc, square])
SHAPES = {"disc": ((220, 40, 40), 1), "square": ((40, 60, 220), 2)}


def write_config(path: Path, config: dict) -> Path:
    """A pipelines/<name>.yaml: every section, the TINY network settings, `config` merged on top."""
    path.write_text(yaml.safe_dump(merge({name: {} for name in SECTIONS} | TINY, config), sort_keys=False))
    return path


def invoke(*args: str | Path) -> str:
    """Run one stage command; fail the test with its output unless it succeeds."""
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, f"{' '.join(map(str, args))}:\n{result.output}\n{result.exception!r}"
    return result.output


def run_chain(root: Path, config: Path, out: Path) -> Path:
    """prepare -> cues -> train-dgcn -> export -> crf -> retrain -> upper bound -> evaluate, as dvc.yaml runs them
    (the current directory must be a scratch folder: retraining keeps checkpoints under it). Returns `out`."""
    common = ["--config", config, "--defaults", REPO / "params.yaml"]
    manifest = ["--manifest", out / "prepare/manifest.json"]
    invoke("prepare", *common, "--root", root, "--out", out / "prepare")
    invoke("cues", *common, *manifest, "--out", out / "cues")
    invoke("train-dgcn", *common, *manifest, "--cues", out / "cues/cues.zarr", "--classifier",
           out / "cues/classifier.pt", "--out", out / "train_dgcn")
    invoke("export", *common, *manifest, "--cues", out / "cues/cues.zarr", "--model", out / "train_dgcn/model.pt",
           "--out", out / "export")
    invoke("crf", *common, *manifest, "--evidence", out / "export/evidence.zarr", "--out", out / "crf")
    start = ["--classifier", out / "cues/classifier.pt"]
    invoke("retrain", *common, *manifest, "--crf-labels", out / "crf/crf_labels.zarr", *start, "--out", out / "retrain")
    invoke("retrain", *common, *manifest, "--ground-truth", *start, "--out", out / "upper_bound")
    invoke("evaluate", *common, *manifest, *(arg for stage in ("cues", "export", "crf")
                                             for arg in ("--metrics", out / stage / "metrics.json")),
           "--cues", out / "cues/cues.zarr", "--pseudo-labels", out / "export/pseudo_labels.zarr",
           "--crf-labels", out / "crf/crf_labels.zarr", "--dgcn-model", out / "train_dgcn/model.pt",
           "--model", out / "retrain/model.pt", "--upper-bound", out / "upper_bound/model.pt",
           "--out", out / "evaluate")
    return out


def scene(index: int, size: tuple[int, int] = (32, 40)) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A small RGB picture with one or two flat shapes, its mask in the derived classes, and its tags."""
    rng = np.random.default_rng(index)
    height, width = size
    image = rng.integers(90, 150, (height, width, 3), dtype=np.uint8)
    mask = np.zeros(size, dtype=np.uint8)
    tags = ["disc", "square"] if index % 3 == 0 else [["disc"], ["square"]][index % 2]
    rows, cols = np.mgrid[:height, :width]
    for k, tag in enumerate(tags):
        colour, value = SHAPES[tag]
        cy, cx = int(rng.integers(8, height - 8)), (width // 4) * (1 + 2 * k) if len(tags) == 2 else width // 2
        inside = np.hypot(rows - cy, cols - cx) < 7 if tag == "disc" else (abs(rows - cy) < 6) & (abs(cols - cx) < 6)
        image[inside], mask[inside] = colour, value
    return image, mask, tags


def write_generic(root: Path, count: int, masked: set[int] = frozenset()) -> list[str]:
    """`count` images (PNG and JPEG, one grey-scale, one RGBA) under root/images, root/labels.csv, masks of the
    `masked` ones under root/masks; returns the image ids."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names, lines = [], ["image,tags"]
    for index in range(count):
        image, mask, tags = scene(index)
        name = f"img{index:02d}.{'jpg' if index % 2 else 'png'}"
        picture = Image.fromarray(image)  # one grey-scale and one RGBA picture: prepare reads them as RGB
        {1: picture.convert("L"), 2: picture.convert("RGBA")}.get(index, picture).save(root / "images" / name)
        if index in masked:
            Image.fromarray(mask).save(root / "masks" / f"img{index:02d}.png")
        names.append(name)
        lines.append(f"{name},{';'.join(tags) if index % 2 else ' '.join(tags)}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return names


def read(path: Path) -> dict:
    return json.loads(path.read_text())
