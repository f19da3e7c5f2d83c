"""Bad input to a stage: one clear error line, a non-zero exit, and no partial output."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import zarr.errors
from PIL import Image
from typer.testing import CliRunner

from dgcn.data.palette import voc_palette
from dgcn.errors import InputError
from dgcn.storage import Evidence, EvidenceStoreWriter, LabelStoreWriter, labels
from dgcn.storage.zarr_store import create_store_group, write_whole_array
from stages.app import anticipated, app, one_line
from stages.runtime import resolve_device

PROVENANCE = {"stage": "test"}  # what a stage would record


def upstream(stage: str) -> dict[str, str]:
    """The provenance `stage` records in a store built from a/prepare/manifest.json (what its readers check)."""
    return {"stage": stage, "manifest_sha256": hashlib.sha256(Path("a/prepare/manifest.json").read_bytes()).hexdigest()}

REPO = Path(__file__).resolve().parents[1]
# The inputs each stage reads besides its config and manifest, as command-line options (dvc.yaml passes them).
INPUTS = {
    "cues": [],
    "train-dgcn": ["--cues", "a/cues/cues.zarr", "--classifier", "a/cues/classifier.pt"],
    "export": ["--cues", "a/cues/cues.zarr", "--model", "a/train_dgcn/model.pt"],
    "crf": ["--evidence", "a/export/evidence.zarr"],
    "retrain": ["--crf-labels", "a/crf/crf_labels.zarr"],
    "evaluate": ["--metrics", "a/cues/metrics.json", "--cues", "a/cues/cues.zarr", "--pseudo-labels",
                 "a/export/pseudo_labels.zarr", "--crf-labels", "a/crf/crf_labels.zarr", "--dgcn-model",
                 "a/train_dgcn/model.pt", "--model",
                 "a/retrain/model.pt", "--upper-bound", "a/upper_bound/model.pt"],
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder holding the shared defaults and the VOC config, as the current directory."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (tmp_path / "voc.yaml").write_text((REPO / "pipelines/voc12.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(stage: str, *args: str, config: str = "voc.yaml") -> tuple[int, str]:
    result = CliRunner().invoke(app, [stage, "--config", config, *args])
    return result.exit_code, result.output


def set_param(path: Path, section: str, /, **values: object) -> None:
    """Change keys of one section of the YAML file at `path`."""
    document = yaml.safe_load(path.read_text())
    document[section] = {**document.get(section, {}), **values}
    path.write_text(yaml.safe_dump(document))


def prepare_voc_mini(voc_mini: Path) -> dict:
    """Run prepare on the vendored photos into a/prepare; return its manifest."""
    assert invoke("prepare", "--root", str(voc_mini), "--out", "a/prepare")[0] == 0
    return json.loads(Path("a/prepare/manifest.json").read_text())


@pytest.mark.parametrize("stage", list(INPUTS))
def test_missing_upstream_artifact_is_named(workdir: Path, stage: str) -> None:
    code, output = invoke(stage, *INPUTS[stage], "--manifest", "a/prepare/manifest.json", "--out", f"a/{stage}")
    assert code == 1
    assert "missing upstream artifact a/prepare/manifest.json" in output
    assert not (workdir / "a").exists()


def test_out_of_range_param_is_named_with_its_file(workdir: Path) -> None:
    set_param(workdir / "voc.yaml", "crf", grown_confidence=1.5)
    code, output = invoke("crf", *INPUTS["crf"], "--manifest", "m.json", "--out", "a/crf")
    assert code == 1 and "voc.yaml: crf.grown_confidence:" in output and "1.5" in output


def test_retrain_needs_the_store_its_label_source_names(workdir: Path) -> None:
    set_param(workdir / "voc.yaml", "retrain_labels", source="cam")
    code, output = invoke("retrain", "--manifest", "m.json", "--crf-labels", "a/crf/crf_labels.zarr", "--out",
                          "a/retrain")
    assert code == 1 and "retrain_labels.source is cam: give --cam-labels <store>" in output


def test_bad_dataset_root_is_named_and_writes_nothing(workdir: Path) -> None:
    code, output = invoke("prepare", "--root", "no/such/root", "--out", "a/prepare")
    assert code == 1 and "data root not found: no/such/root" in output
    assert not (workdir / "a").exists()


def test_wrong_zarr_layout_is_named_and_leaves_no_output(workdir: Path, voc_mini: Path) -> None:
    manifest = prepare_voc_mini(voc_mini)
    assert manifest["splits"]["train"]["names"] == ["2011_000003", "2011_000006", "2011_000025"]
    broken = workdir / "a/export/evidence.zarr"
    broken.mkdir(parents=True)
    (broken / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    code, output = invoke("crf", *INPUTS["crf"], "--manifest", "a/prepare/manifest.json", "--out", "a/crf")
    assert code == 1 and "evidence.zarr: wrong Zarr layout" in output
    assert not (workdir / "a/crf").exists()


def background_evidence(workdir: Path, voc_mini: Path, renamed: dict[int, str] | None = None) -> None:
    """Prepare voc-mini and write an export's evidence that says background everywhere (of the manifest's classes,
    those in `renamed` renamed); the crf stage runs serially."""
    set_param(workdir / "voc.yaml", "crf", workers=0)
    train = prepare_voc_mini(voc_mini)["splits"]["train"]
    manifest = json.loads(Path("a/prepare/manifest.json").read_text())
    class_names = [(renamed or {}).get(i, name) for i, name in enumerate(manifest["class_names"])]
    background = np.zeros((21, 3, 4), np.float16)
    background[0] = 1
    evidence = Evidence(background, np.zeros((21, 3, 4), np.uint8), np.eye(21, dtype=bool)[0])
    with EvidenceStoreWriter(workdir / "a/export/evidence.zarr", train["names"], class_names,
                             (3, 4), provenance=upstream("export")) as writer:
        writer.write(0, [evidence] * len(train["names"]))


def test_evidence_of_other_classes_is_one_line_naming_both_files(workdir: Path, voc_mini: Path) -> None:
    background_evidence(workdir, voc_mini, renamed={3: "zebra"})
    code, output = invoke("crf", *INPUTS["crf"], "--manifest", "a/prepare/manifest.json", "--out", "a/crf")
    assert one_error_line(code, output) == ("a/export/evidence.zarr holds other classes than a/prepare/manifest.json "
                                            "(class 3: 'zebra' there, 'bird' in the manifest); rerun the export stage")
    assert not (workdir / "a/crf").exists()


def test_stage_failing_part_way_publishes_nothing(workdir: Path, voc_mini: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    background_evidence(workdir, voc_mini)
    write_text = Path.write_text

    def full_disk(path: Path, text: str, *args: object, **kwargs: object) -> int:
        """The disk fills up while the metrics are written: the OSError of a failed write names no file."""
        if path.name.startswith("metrics"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_text(path, text, *args, **kwargs)

    # The label store is complete by the time the metrics fail to write: neither may appear.
    monkeypatch.setattr(Path, "write_text", full_disk)
    code, output = invoke("crf", *INPUTS["crf"], "--manifest", "a/prepare/manifest.json", "--out", "a/crf")
    # named as the output the user knows, not as the staging file it was written to
    assert code == 1 and output.splitlines()[-1] == "error: a/crf/metrics.json: No space left on device"
    assert sorted(p.name for p in (workdir / "a").iterdir()) == ["export", "prepare"]


def test_unreplaceable_output_publishes_nothing_and_keeps_the_old(workdir: Path, voc_mini: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The new metrics.json cannot be put in place (by itself or in its folder; as for a metrics.json nobody may
    replace): the crf stage fails, and the old outputs stay as they were, none of the new beside them."""
    background_evidence(workdir, voc_mini)
    out = (workdir / "a/crf").resolve()
    (out / "crf_labels.zarr").mkdir(parents=True)
    (out / "crf_labels.zarr" / "zarr.json").write_text("old")
    (out / "metrics.json").write_text("old")
    replace = os.replace

    def refuse(source: str | Path, destination: str | Path) -> None:
        places = {out / "metrics.json": Path(source), out: Path(source) / "metrics.json"}
        moved = places.get(Path(destination).resolve())
        if moved is not None and moved.is_file() and moved.read_text() != "old":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(destination))
        replace(source, destination)

    monkeypatch.setattr(os, "replace", refuse)
    monkeypatch.setattr(os, "rename", refuse)
    code, output = invoke("crf", *INPUTS["crf"], "--manifest", "a/prepare/manifest.json", "--out", "a/crf")
    assert code == 1 and output.splitlines()[-1].endswith(": Permission denied"), output
    assert {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()} == {
        "crf_labels.zarr/zarr.json": "old", "metrics.json": "old"}
    assert sorted(p.name for p in (workdir / "a").iterdir()) == ["crf", "export", "prepare"]


def test_missing_cuda_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"train_dgcn\.device: 'cuda' requested but no CUDA device is available"):
        resolve_device("cuda", "train_dgcn.device")
    with pytest.raises(ValueError, match=r"cues\.device: unknown device 'tpu'"):
        resolve_device("tpu", "cues.device")
    assert resolve_device("auto", "x").type == "cpu"


def one_error_line(code: int, output: str) -> str:
    """The single line a stage prints for bad input (exit 1, nothing else on stdout or stderr), without `error: `."""
    assert code == 1, output
    assert len(output.splitlines()) == 1 and output.startswith("error: "), output
    return output.rstrip("\n").removeprefix("error: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_named(workdir: Path, voc_mini: Path) -> None:
    (workdir / "a").mkdir()
    (workdir / "a").chmod(0o555)
    try:
        code, output = invoke("prepare", "--root", str(voc_mini), "--out", "a/prepare")
    finally:
        (workdir / "a").chmod(0o755)
    assert one_error_line(code, output) == "a/prepare: Permission denied"


@pytest.mark.parametrize("errno_code", [errno.EROFS, errno.EACCES])
def test_unwritable_output_is_named(workdir: Path, voc_mini: Path, monkeypatch: pytest.MonkeyPatch,
                                    errno_code: int) -> None:
    # as root (CI) a chmod cannot make a folder read-only: the first write into the output fails instead
    mkdir = Path.mkdir

    def refuse(path: Path, *args: object, **kwargs: object) -> None:
        if path.parent.name == "a":
            raise OSError(errno_code, os.strerror(errno_code), str(path))
        mkdir(path, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, output = invoke("prepare", "--root", str(voc_mini), "--out", "a/prepare")
    assert one_error_line(code, output) == f"a/prepare: {os.strerror(errno_code)}"
    assert not (workdir / "a").exists() or not any((workdir / "a").iterdir())


def test_disk_full_while_writing_is_named(workdir: Path, voc_mini: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # PIL writes the contact sheet straight into the staging folder: the failed write names the output folder
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("PIL.Image.Image.save", full_disk)
    code, output = invoke("prepare", "--root", str(voc_mini), "--out", "a/prepare")
    assert one_error_line(code, output) == "a/prepare: No space left on device"
    assert not (workdir / "a/prepare").exists()


def test_malformed_yaml_is_one_line_with_line_and_column(workdir: Path, voc_mini: Path) -> None:
    (workdir / "voc.yaml").write_text("prepare: {}\ncues:\n  epochs: 3\n   lr: 2\n")
    code, output = invoke("prepare", "--root", str(voc_mini), "--out", "a/prepare")
    assert one_error_line(code, output).startswith("voc.yaml:4:6: malformed YAML: mapping values are not allowed")


def test_unknown_arch_option_is_named_with_its_dotted_key(workdir: Path) -> None:
    set_param(workdir / "voc.yaml", "cues", arch="small", arch_options={"widht": 32})
    code, output = invoke("cues", "--manifest", "m.json", "--out", "a/cues")
    assert one_error_line(code, output) == "voc.yaml: cues.arch_options.widht: unknown parameter; did you mean 'width'?"


def test_truncated_model_file_is_named(workdir: Path, voc_mini: Path) -> None:
    from dgcn.model_files import save_model
    from dgcn.models.registry import build_segmenter

    prepare_voc_mini(voc_mini)
    model = workdir / "a/train_dgcn/model.pt"
    save_model(model, build_segmenter("small", 21, width=4), kind="segmenter", arch="small", num_outputs=21,
               options={"width": 4})
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    code, output = invoke("export", *INPUTS["export"], "--manifest", "a/prepare/manifest.json", "--out", "a/export")
    assert one_error_line(code, output).startswith("unreadable model file a/train_dgcn/model.pt: ")
    assert not (workdir / "a/export").exists()


def _retrain_ground_truth() -> tuple[int, str]:
    return invoke("retrain", "--ground-truth", "--manifest", "a/prepare/manifest.json", "--out", "a/upper_bound")


@pytest.fixture
def small_retrain(workdir: Path, voc_mini: Path) -> Path:
    """A prepared project whose retrain stage trains a tiny network for 2 epochs; its checkpoints' folder."""
    set_param(workdir / "voc.yaml", "retrain", arch="small", arch_options={"width": 4}, pretrained=None, device="cpu",
              crop_size=32, batch_size=5, epochs=2, iterations=None)
    prepare_voc_mini(voc_mini)
    return workdir / ".scratch/checkpoints/retrain"


def test_published_stage_leaves_no_checkpoint_and_a_rerun_trains(small_retrain: Path) -> None:
    # `dvc repro --force` reruns a finished stage: it must train again, not return the finished run's state
    for _ in range(2):
        code, output = _retrain_ground_truth()
        assert code == 0, output
        assert "retrain epoch 1/2:" in output and "resuming" not in output
        assert not list(small_retrain.iterdir())  # checkpoint and digest folder gone


def test_class_weights_come_from_the_training_labels(small_retrain: Path, voc_mini: Path) -> None:
    """retrain.class_weights: inverse_sqrt_frequency weighs each class by the masks' pixel shares (recorded in the
    metrics): 0 for a class no mask holds, rarer classes more, a mean of 1 per labelled pixel."""
    set_param(Path("voc.yaml"), "retrain", class_weights="inverse_sqrt_frequency", epochs=1)
    code, output = _retrain_ground_truth()
    assert code == 0, output
    weights = np.array(json.loads(Path("a/upper_bound/metrics.json").read_text())["class_weights"])
    names = (voc_mini / "ImageSets/Segmentation/train_aug.txt").read_text().split()
    counts = sum(np.bincount(np.asarray(Image.open(voc_mini / "SegmentationClassAug" / f"{name}.png")).ravel(),
                             minlength=256)[:21] for name in names)
    share = counts / counts.sum()
    assert weights.shape == (21,) and np.array_equal(weights == 0, share == 0)
    present = share > 0
    assert np.all(np.diff(weights[present][np.argsort(share[present])]) <= 1e-3)  # rarer classes weigh more
    assert (share * weights).sum() == pytest.approx(1.0, abs=1e-3)


def test_damaged_checkpoint_is_set_aside_and_the_stage_trains(small_retrain: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import dgcn.training.loop as loop

    save = loop._save_checkpoint

    def save_then_die(path, *args) -> None:
        save(path, *args)
        raise KeyboardInterrupt  # the stage is killed after its first epoch

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    assert _retrain_ground_truth()[0] != 0
    monkeypatch.setattr(loop, "_save_checkpoint", save)
    [checkpoint] = small_retrain.glob("*/last.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    code, output = _retrain_ground_truth()
    assert code == 0, output
    [warning] = [line for line in output.splitlines() if "checkpoint" in line]
    assert warning.startswith(f"warning: damaged checkpoint {checkpoint.relative_to(small_retrain.parents[2])} (")
    assert "retrain epoch 1/2:" in output
    assert [path.name for path in checkpoint.parent.iterdir()] == ["last.pt.damaged"]  # kept for a look


def damaged_crf_labels(workdir: Path, voc_mini: Path) -> None:
    """Prepare voc-mini and write CRF labels whose first image's chunk is damaged; retrain a small network."""
    set_param(workdir / "voc.yaml", "retrain", arch="small", arch_options={"width": 4}, pretrained=None, device="cpu",
              crop_size=64, batch_size=3)
    manifest = prepare_voc_mini(voc_mini)
    train = manifest["splits"]["train"]
    store = workdir / "a/crf/crf_labels.zarr"
    with LabelStoreWriter(store, train["names"], train["sizes"], manifest["class_names"],
                          voc_palette()[:21].tolist(), provenance=upstream("crf")) as writer:
        writer.write(0, [np.full(size, 1, np.uint8) for size in train["sizes"]])
    shard = store / "labels/c/0/0/0"
    damaged = bytearray(shard.read_bytes())
    damaged[20] ^= 0xFF  # inside the first image's compressed chunk
    shard.write_bytes(bytes(damaged))


DAMAGED_SHARD = "error: a/crf/crf_labels.zarr: damaged shard labels/c/0/0/0 (image '2011_000003'): "


def test_damaged_shard_is_named_with_store_and_shard(workdir: Path, voc_mini: Path) -> None:
    damaged_crf_labels(workdir, voc_mini)
    code, output = invoke("retrain", *INPUTS["retrain"], "--manifest", "a/prepare/manifest.json", "--out",
                          "a/retrain")
    line = output.splitlines()[-1]
    assert code == 1 and line.startswith(DAMAGED_SHARD), output
    assert not (workdir / "a/retrain").exists()


def test_a_damaged_shard_prints_its_line_and_nothing_after_it(workdir: Path, voc_mini: Path) -> None:
    # Zarr reads a shard's chunks as concurrent tasks on its event loop: the damaged chunk fails the read while the
    # others may still run (a race: about one run in ten), and Zarr's exit closed the loop under them, printing "Task
    # was destroyed but it is pending!" after the error. Here each read leaves such a task behind (a short sleep).
    damaged_crf_labels(workdir, voc_mini)
    arguments = ["stages", "retrain", "--config", "voc.yaml", *INPUTS["retrain"], "--manifest",
                 "a/prepare/manifest.json", "--out", "a/retrain"]
    code = ("import asyncio, sys; import zarr.core.sync; from dgcn.storage import zarr_store\n"
            "from stages.app import app\n"
            "decode = zarr_store.NamedImageStore._decode\n"
            "def leave_a_read_running(*args):\n"
            "    asyncio.run_coroutine_threadsafe(asyncio.sleep(0.5), zarr.core.sync._get_loop())\n"
            "    return decode(*args)\n"
            "zarr_store.NamedImageStore._decode = leave_a_read_running\n"
            f"sys.argv = {arguments!r}\n"
            "app()\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(DAMAGED_SHARD), result.stderr


def test_wrong_zarr_dtype_is_named(workdir: Path, voc_mini: Path) -> None:
    # 16-bit labels of the right shape: read as labels, they failed deep inside the CRF with a bare ValueError
    train = prepare_voc_mini(voc_mini)["splits"]["train"]
    group = create_store_group(workdir / "a/crf/crf_labels.zarr", "dgcn-labels", labels.FORMAT_VERSION,
                               {"class_names": [str(i) for i in range(21)], "palette": voc_palette()[:21].tolist()},
                               PROVENANCE)
    write_whole_array(group, "names", np.asarray(train["names"], dtype=str), ["image"])
    write_whole_array(group, "shapes", np.asarray(train["sizes"], dtype=np.int32), ["image", "hw"])
    write_whole_array(group, "labels", np.full((len(train["names"]), 513, 513), 300, np.uint16), ["image", "y", "x"])
    code, output = invoke("retrain", *INPUTS["retrain"], "--manifest", "a/prepare/manifest.json", "--out", "a/retrain")
    assert one_error_line(code, output) == ("a/crf/crf_labels.zarr: wrong Zarr layout: array 'labels' is 3-d "
                                            "uint16, expected 3-d uint8")


@pytest.mark.parametrize(("text", "problem"), [
    ("{not json", "a/prepare/manifest.json is not a JSON file (the prepare stage's manifest): Expecting"),
    ('{"root": "data"}', "a/prepare/manifest.json is not a manifest of the prepare stage (KeyError: 'class_names')"),
    ("[1, 2]", "a/prepare/manifest.json is not a manifest of the prepare stage (TypeError: "),
])
def test_damaged_manifest_is_named(workdir: Path, text: str, problem: str) -> None:
    (workdir / "a/prepare").mkdir(parents=True)
    (workdir / "a/prepare/manifest.json").write_text(text)
    code, output = invoke("crf", *INPUTS["crf"], "--manifest", "a/prepare/manifest.json", "--out", "a/crf")
    assert one_error_line(code, output).startswith(problem)


def test_a_bug_keeps_its_traceback(workdir: Path, voc_mini: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A KeyError from a typo in our code is no bad input: it must not shrink to one line
    def typo(self: object, *check: object) -> None:
        return {}["naems"]

    monkeypatch.setattr("dgcn.data.voc.VOCDataset.validate", typo)
    result = CliRunner().invoke(app, ["prepare", "--config", "voc.yaml", "--root", str(voc_mini), "--out", "a/p"])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError) and "error:" not in result.output


def test_a_bug_prints_its_traceback_from_the_command_line(workdir: Path, voc_mini: Path) -> None:
    code = ("import sys; import dgcn.data.voc as voc; from stages.app import app\n"
            "voc.VOCDataset.validate = lambda self, *check: {}['naems']\n"
            f"sys.argv = ['stages', 'prepare', '--config', 'voc.yaml', '--root', {str(voc_mini)!r}, '--out', 'a/p']\n"
            "app()\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and result.stderr.endswith("KeyError: 'naems'\n")
    assert "error:" not in result.stderr


@pytest.mark.parametrize(("error", "expected"), [
    (InputError("x"), True),
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (PermissionError(errno.EACCES, "Permission denied", "f"), True),
    (zarr.errors.MetadataValidationError("x"), True),
    (json.JSONDecodeError("Expecting value", "", 0), True),
    (ValueError("x"), False),
    (KeyError("x"), False),
    (RuntimeError("x"), False),
    (TypeError("x"), False),
])
def test_only_bad_input_and_io_errors_are_anticipated(error: Exception, expected: bool) -> None:
    assert anticipated(error) is expected


def test_one_line_names_the_file_of_an_os_error() -> None:
    assert one_line(OSError(errno.ENOSPC, "No space left on device", "a/x.json")) == "a/x.json: No space left on device"
    moved = OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")
    assert one_line(moved) == "a -> b: Invalid cross-device link"
    assert one_line(OSError(errno.EBADF, "Bad file descriptor", 3)) == "3: Bad file descriptor"
    assert one_line(OSError(errno.EIO, "Input/output error", b"caf\xe9")) == "caf\udce9: Input/output error"
    assert one_line(InputError("first\n  second")) == "first second"
    assert one_line(json.JSONDecodeError("Expecting value", "", 0)).startswith("JSONDecodeError: Expecting value")
