"""Bad input of every kind a careless user or a damaged remote brings gives one clear line and exit 1, never a
traceback, a native crash or a silent run; and nothing is published. One row per case (issue 25, points 3 to 6):
how the tiny chain's files are spoilt, which stage then runs, and a fragment of the line it must print."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from dvc_project import REPO
from stage_chain import run_chain, write_config, write_generic
from typer.testing import CliRunner

from dgcn.cues import CueStore, write_cue_store
from dgcn.model_files import save_model
from dgcn.models.registry import build_segmenter
from dgcn.storage import Evidence, EvidenceStore, EvidenceStoreWriter
from stages.app import app

CONFIG = {"prepare": {"format": "generic", "generic": {"val_fraction": 0.25, "seed": 3, "masks": "masks"}},
          "cues": {"saliency_dir": None}}
# Each stage's upstream inputs in the chain's folder `a` (what dvc.yaml passes).
INPUTS = {
    "prepare": ["--root", "data"],
    "cues": [],
    "train-dgcn": ["--cues", "a/cues/cues.zarr", "--classifier", "a/cues/classifier.pt"],
    "export": ["--cues", "a/cues/cues.zarr", "--model", "a/train_dgcn/model.pt"],
    "crf": ["--evidence", "a/export/evidence.zarr"],
    "retrain": ["--crf-labels", "a/crf/crf_labels.zarr", "--classifier", "a/cues/classifier.pt"],
    "evaluate": ["--metrics", "a/cues/metrics.json", "--cues", "a/cues/cues.zarr", "--pseudo-labels",
                 "a/export/pseudo_labels.zarr", "--crf-labels", "a/crf/crf_labels.zarr", "--dgcn-model",
                 "a/train_dgcn/model.pt", "--model", "a/retrain/model.pt", "--upper-bound", "a/upper_bound/model.pt"],
}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole chain run once on 8 tiny images (relative paths: a copy of the folder is a project of its own)."""
    root = tmp_path_factory.mktemp("chain")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        write_generic(Path("data"), 8, masked=set(range(8)))
        write_config(Path("own.yaml"), CONFIG)
        shutil.copy(REPO / "params.yaml", "params.yaml")
        run_chain(Path("data"), Path("own.yaml"), Path("a"))
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def project(chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the chain's folder, as the current directory; one torch thread (two cores shared by the tests)."""
    copy = tmp_path / "p"
    shutil.copytree(chain, copy)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return copy


def invoke(stage: str, *extra: str, out: str = "a/out") -> tuple[int, str]:
    manifest = [] if stage == "prepare" else ["--manifest", "a/prepare/manifest.json"]
    result = CliRunner().invoke(app, [stage, "--config", "own.yaml", "--defaults", "params.yaml", *manifest,
                                      *INPUTS[stage], *extra, "--out", out])
    return result.exit_code, result.output


def edit_yaml(path: str, changes: dict) -> None:
    """Set keys of sections of a params file (`changes`: {section: {key: value}}), other keys kept."""
    document = yaml.safe_load(Path(path).read_text())
    for section, values in changes.items():
        document[section] = {**document.get(section, {}), **values}
    Path(path).write_text(yaml.safe_dump(document))


def append(path: str, text: str) -> None:
    Path(path).write_text(Path(path).read_text() + text)


def flip(path: str, byte: int, bit: int) -> None:
    """Flip one bit of a file."""
    data = bytearray(Path(path).read_bytes())
    data[byte] ^= 1 << bit
    Path(path).write_bytes(bytes(data))


def edit_json(path: str, change: Callable[[dict], object]) -> None:
    document = json.loads(Path(path).read_text())
    change(document)
    Path(path).write_text(json.dumps(document))


# --- stores of another class list, rewritten from the chain's own (same stage, images and manifest) ---

def cues_with_an_extra_class() -> None:
    store = CueStore("a/cues/cues.zarr")
    cues = np.stack([np.concatenate([item, np.zeros((1, *item.shape[1:]), np.uint8)]) for item in store])
    labels = np.concatenate([store.image_labels, np.zeros((len(store), 1), np.uint8)], axis=1)
    shutil.rmtree("a/cues/cues.zarr")
    write_cue_store("a/cues/cues.zarr", store.names, cues, labels, [*store.class_names, "triangle"],
                    provenance=store.provenance)


def evidence_with_an_extra_class() -> None:
    store = EvidenceStore("a/export/evidence.zarr")
    items = [Evidence(np.concatenate([e.probs, np.zeros((1, *e.grid), np.float16)]),
                      np.concatenate([e.grown, np.zeros((1, *e.grid), np.uint8)]), np.append(e.present, False))
             for e in store]
    shutil.rmtree("a/export/evidence.zarr")
    grid = tuple(int(v) for v in store.grids.max(axis=0))
    with EvidenceStoreWriter("a/export/evidence.zarr", store.names, [*store.class_names, "triangle"], grid,
                             shard_images=store.shard_images, provenance=store.provenance) as writer:
        for start in range(0, len(items), store.shard_images):
            writer.write(start, items[start : start + store.shard_images])


def model_of_four_classes() -> None:
    save_model(Path("a/train_dgcn/model.pt"), build_segmenter("small", 4, width=8), kind="segmenter", arch="small",
               num_outputs=4, options={"width": 8})


def stale_manifest() -> None:
    """prepare run again on a changed val split: the training images are the same, every store is stale."""
    edit_json("a/prepare/manifest.json", lambda m: m["splits"]["val"]["names"].reverse())


def published_cues(bad: dict) -> Callable[[], None]:
    """A DSRG cue pickle for the training images (idx i: no cues), entries of the first replaced by `bad`."""
    def write() -> None:
        names = json.loads(Path("a/prepare/manifest.json").read_text())["splits"]["train"]["names"]
        published: dict[str, object] = {}
        for i in range(len(names)):
            published |= {f"{i}_labels": np.array([1]), f"{i}_cues": (np.array([0]), np.array([0]), np.array([0]))}
        published |= bad
        Path("data/cues.pickle").write_bytes(pickle.dumps(published, protocol=2))
        Path("data/input_list.txt").write_text("".join(f"{name} {i}\n" for i, name in enumerate(names)))
        edit_yaml("own.yaml", {"cues": {"source": "dsrg", "path": "cues.pickle", "input_list": "input_list.txt"}})
    return write


class HugeArray:
    """Pickles as numpy's own array reconstruction asking for 32 TiB: a 100-byte file, a MemoryError when trusted."""

    def __reduce__(self) -> tuple:
        return np._core.multiarray._reconstruct, (np.ndarray, (2**45,), b"b")


BILLION_LAUGHS = "\nlol:\n" + "".join(
    f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else '0'] * 9)}]\n" for i in range(9))


def non_utf8_mask_name() -> None:
    Path(os.fsdecode(b"data/masks/\xff.png")).write_bytes(Path("data/masks/img00.png").read_bytes())


def disk_fills_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint's write stops half-way on a full disk."""
    write_bytes = Path.write_bytes

    def full_disk(path: Path, data: bytes) -> int:
        if path.name.startswith("last"):
            write_bytes(path, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)


@dataclass(frozen=True)
class Case:
    setup: Callable[[], None] | None  # spoils the project's files (None: the arguments alone are wrong)
    stage: str
    fragment: str  # of the one line the stage prints
    args: tuple[str, ...] = ()


CASES = {
    # point 3: values the native libraries crash on
    "crf gaussian_sxy 1e-6": Case(lambda: edit_yaml("own.yaml", {"dense_crf": {"gaussian_sxy": 1e-6}}), "crf",
                                  "own.yaml: dense_crf.gaussian_sxy: input should be greater than or equal to 0.1 "
                                  "(got 1e-06)"),
    "crf bilateral_sxy 1e-6": Case(lambda: edit_yaml("own.yaml", {"dense_crf": {"bilateral_sxy": 1e-6}}), "crf",
                                   "own.yaml: dense_crf.bilateral_sxy: input should be greater than or equal to 0.1"),
    "crf bilateral_srgb 1e-9": Case(lambda: edit_yaml("own.yaml", {"dense_crf": {"bilateral_srgb": 1e-9}}),
                                    "evaluate", "own.yaml: dense_crf.bilateral_srgb: input should be greater than or "
                                                "equal to 0.1"),
    "crf compat 1e300": Case(lambda: edit_yaml("params.yaml", {"dense_crf": {"bilateral_compat": 1e300}}), "crf",
                             "params.yaml: dense_crf.bilateral_compat: input should be less than or equal to 1000"),
    "train crf_scale 1e-300": Case(lambda: edit_yaml("own.yaml", {"train_dgcn": {"crf_scale": 1e-300}}),
                                   "train-dgcn", "own.yaml: train_dgcn.crf_scale: input should be greater than or "
                                                 "equal to 0.001"),
    "train crf_scale x sxy": Case(lambda: edit_yaml("own.yaml", {"train_dgcn": {"crf_scale": 0.01}}), "train-dgcn",
                                  "train_dgcn.crf_scale x dense_crf.gaussian_sxy = 0.03 pixels is narrower than 0.1, "
                                  "the narrowest kernel the dense CRF survives: raise train_dgcn.crf_scale"),
    # point 3: grids and seeds the data's sizes or the libraries do not allow
    "cues seed 2**40": Case(lambda: edit_yaml("own.yaml", {"cues": {"seed": 2**40}}), "cues",
                            "own.yaml: cues.seed: input should be less than or equal to 4294967295"),
    "knn_k beyond the crop grid": Case(lambda: edit_yaml("own.yaml", {"graph_cut": {"knn_k": 257}}), "train-dgcn",
                                       "graph_cut.knn_k = 257 exceeds the 256 nodes of the 16 x 16 feature grid of a "
                                       "train_dgcn.crop_size 64 crop: lower graph_cut.knn_k or raise "
                                       "train_dgcn.crop_size"),
    "export grid below knn_k": Case(lambda: edit_yaml("own.yaml", {"export": {"input_size": 32, "scales": [0.25]}}),
                                    "export", "graph_cut.knn_k = 10 exceeds the 4 nodes of the 2 x 2 feature grid of "
                                              "the smallest training image at export.input_size 32 x scale 0.25"),
    # point 5: tracebacks where one line is due
    "mask name not UTF-8": Case(non_utf8_mask_name, "prepare", "data/masks: file name b'\\xff.png' is not UTF-8"),
    "crf: evidence of other classes": Case(evidence_with_an_extra_class, "crf",
                                           "a/export/evidence.zarr holds other classes than a/prepare/manifest.json "
                                           "(class 3: 'triangle' there, none in the manifest); rerun the export stage"),
    "train: cues of other classes": Case(cues_with_an_extra_class, "train-dgcn",
                                         "a/cues/cues.zarr holds other classes than a/prepare/manifest.json"),
    "export: cues of other classes": Case(cues_with_an_extra_class, "export",
                                          "a/cues/cues.zarr holds other classes than a/prepare/manifest.json"),
    "export: model of other classes": Case(model_of_four_classes, "export",
                                           "a/train_dgcn/model.pt is a network of 4 classes, a/prepare/manifest.json "
                                           "has 3; rerun the train_dgcn stage"),
    "retrain: stale store": Case(stale_manifest, "retrain", "a/crf/crf_labels.zarr was built from another manifest "
                                                            "than a/prepare/manifest.json (a stale store)"),
    "evaluate: stale stores": Case(stale_manifest, "evaluate", "a/cues/cues.zarr was built from another manifest"),
    "pickle asks for 32 TiB": Case(published_cues({"0_labels": HugeArray()}), "cues",
                                   "data/cues.pickle: not a DSRG/DGCN cue pickle: refused an array of shape "
                                   "(35184372088832,) int8"),
    "pickle cues of a number": Case(published_cues({"0_cues": 5}), "cues",
                                    "data/cues.pickle, image 'img00' (idx 0): cues must be three equally long "
                                    "arrays (class, row, col), got int"),
    "pickle labels of text": Case(published_cues({"0_labels": "abc"}), "cues",
                                  "(idx 0): labels are <U3 values, not integers"),
    "pickle float indices": Case(published_cues({"0_cues": ([0], np.array([1.7]), [0])}), "cues",
                                 "(idx 0): cue row indices are float64 values, not integers"),
    "root zarr.json []": Case(lambda: Path("a/export/evidence.zarr/zarr.json").write_text("[]"), "crf",
                              "a/export/evidence.zarr/zarr.json: damaged Zarr metadata (a JSON list, not an object)"),
    "labels dtype int8": Case(lambda: edit_json("a/crf/crf_labels.zarr/labels/zarr.json",
                                                lambda m: m.update(data_type="int8")), "retrain",
                              "a/crf/crf_labels.zarr/labels/zarr.json: damaged Zarr metadata"),
    "metadata flip: JSON": Case(lambda: flip("a/cues/cues.zarr/zarr.json", 0, 0), "train-dgcn",
                                "a/cues/cues.zarr/zarr.json: damaged Zarr metadata (JSONDecodeError"),
    "metadata flip: UTF-8": Case(lambda: flip("a/crf/crf_labels.zarr/names/zarr.json", 3, 7), "retrain",
                                 "a/crf/crf_labels.zarr/names/zarr.json: damaged Zarr metadata (UnicodeDecodeError"),
    "metadata flip: dtype": Case(lambda: Path("a/crf/crf_labels.zarr/shapes/zarr.json").write_text(
        Path("a/crf/crf_labels.zarr/shapes/zarr.json").read_text().replace('"int32"', '"int33"')), "retrain",
        "a/crf/crf_labels.zarr/shapes/zarr.json: damaged Zarr metadata (ValueError"),
    # point 6: params accepted silently
    "misspelt section in the config": Case(lambda: append("own.yaml", "trian_dgcn: {epochs: 3}\n"), "train-dgcn",
                                           "own.yaml: unknown section 'trian_dgcn'; did you mean 'train_dgcn'?"),
    "misspelt section in params.yaml": Case(lambda: append("params.yaml", "\nevalute: {}\n"), "crf",
                                            "params.yaml: unknown section 'evalute'; did you mean 'evaluate'?"),
    "duplicate key": Case(lambda: append("own.yaml", "crf: {workers: 0}\n"), "crf",
                          "malformed YAML: found duplicate key 'crf'"),
    "NaN overridden by the config": Case(lambda: (edit_yaml("params.yaml", {"crf": {"grown_confidence": float("nan")}}),
                                                  edit_yaml("own.yaml", {"crf": {"grown_confidence": 0.9}})), "crf",
                                         "params.yaml: crf.grown_confidence: must be a finite number (got nan)"),
    "NaN in a section not read": Case(lambda: edit_yaml("own.yaml", {"evaluate": {"scales": [float("nan")]}}), "crf",
                                      "own.yaml: evaluate.scales[0]: must be a finite number (got nan)"),
    "bad default overridden": Case(lambda: (edit_yaml("params.yaml", {"evaluate": {"gallery_val": -1}}),
                                            edit_yaml("own.yaml", {"evaluate": {"gallery_val": 1}})), "evaluate",
                                   "params.yaml: evaluate.gallery_val: input should be greater than or equal to 0 "
                                   "(got -1)"),
    "billion laughs": Case(lambda: append("own.yaml", BILLION_LAUGHS.replace("lol:", "crf_laughs:")), "crf",
                           "own.yaml: more than 100000 values once its aliases are expanded; refused"),
    # point 4: stores that are not what they are passed as
    "pseudo-labels as CRF labels": Case(None, "retrain", "a/export/pseudo_labels.zarr was written by the export "
                                                         "stage, not the crf stage: pass the crf stage's store",
                                        ("--crf-labels", "a/export/pseudo_labels.zarr")),
    "CAM labels as CRF labels": Case(None, "retrain", "a/cues/cam_labels.zarr was written by the cues stage, not the "
                                                      "crf stage", ("--crf-labels", "a/cues/cam_labels.zarr")),
    "a shard of another store": Case(lambda: shutil.copy("a/export/pseudo_labels.zarr/labels/c/0/0/0",
                                                         "a/crf/crf_labels.zarr/labels/c/0/0/0"), "retrain",
                                     "a/crf/crf_labels.zarr: damaged shard labels/c/0/0/0: intact, but not the shard "
                                     "written to this store"),
    "class names renamed in a store": Case(lambda: edit_json("a/cues/cues.zarr/zarr.json", lambda m: m["attributes"][
        "class_names"].__setitem__(1, "circle")), "export", "a/cues/cues.zarr: damaged shard names/c/0: intact, but "
                                                            "not the shard written to this store"),
    "manifest id outside the root": Case(lambda: edit_json("a/prepare/manifest.json", lambda m: m["splits"]["train"][
        "names"].__setitem__(0, "../../../outside/x.jpg")), "cues",
        "a/prepare/manifest.json is not a manifest of the prepare stage (bad image id '../../../outside/x.jpg'"),
    "manifest folder outside the root": Case(lambda: edit_json("a/prepare/manifest.json", lambda m: m["splits"]["val"][
        "reader"].update(images="../../outside")), "evaluate",
        "a/prepare/manifest.json is not a manifest of the prepare stage (split 'val': reader images '../../outside' "
        "is not a path inside the data root)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_line_and_nothing_published(project: Path, case: str) -> None:
    row = CASES[case]
    if row.setup is not None:
        row.setup()
    code, output = invoke(row.stage, *row.args)
    assert code == 1, output
    # the line ends the output; before it at most the progress lines of work done before the problem showed
    assert output.splitlines()[-1].startswith("error: ") and row.fragment in output.splitlines()[-1], output
    assert "Traceback" not in output
    assert not Path("a/out").exists()


def test_a_full_disk_while_checkpointing_leaves_no_partial_file(project: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    disk_fills_up(monkeypatch)
    code, output = invoke("retrain")
    line = output.splitlines()[-1]
    assert code == 1 and line.startswith("error: .scratch/checkpoints/retrain/"), output
    assert line.endswith("/last.pt: No space left on device"), output
    assert [p for p in Path(".scratch").rglob("*") if p.is_file()] == []
    assert not Path("a/out").exists()


@pytest.mark.parametrize(("stage", "knn_k"), [("train-dgcn", 256), ("export", 208)])
def test_knn_k_at_the_grid_size_runs(project: Path, stage: str, knn_k: int) -> None:
    # the small net's stride is 4: the crop's grid is 16 x 16; the narrowest image at export, 32 x 40, is 51 x 64
    # at input 64: a 13 x 16 grid
    edit_yaml("own.yaml", {"graph_cut": {"knn_k": knn_k}})
    assert invoke(stage)[0] == 0
    edit_yaml("own.yaml", {"graph_cut": {"knn_k": knn_k + 1}})
    code, output = invoke(stage)
    assert code == 1 and f"graph_cut.knn_k = {knn_k + 1} exceeds the {knn_k} nodes" in output, output


def test_every_store_records_the_manifest_it_was_built_from(chain: Path) -> None:
    digest = hashlib.sha256((chain / "a/prepare/manifest.json").read_bytes()).hexdigest()
    for store in ("cues/cues.zarr", "cues/cam_labels.zarr", "export/pseudo_labels.zarr", "export/evidence.zarr",
                  "crf/crf_labels.zarr"):
        attributes = json.loads((chain / "a" / store / "zarr.json").read_text())["attributes"]
        assert attributes["provenance"]["manifest_sha256"] == digest
