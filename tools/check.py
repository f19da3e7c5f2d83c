"""`dgcn check <dataset>`: before a long run, everything `dvc repro evaluate@<dataset>` will read, checked without
decoding an image or building a network in memory.

What is checked, from params.yaml merged with pipelines/<dataset>.yaml as the stages load them: every params section;
the data set in data/<dataset>/ with prepare's own checks (split lists, images, masks: counts, readability, sizes read
from the file headers; `--decode` decodes every pixel and reads the masks' values, as prepare does); the saliency map
of every training image (cues.saliency_dir); cues from files (cues.source): the DSRG pickle against its list and the
training ids, or one file per training image of another method; each network stage's `pretrained` weights (present,
loadable with weights_only, the keys and shapes of the stage's arch: the network is built on torch's meta device, so
no memory is spent on it); each stage's device; the free disk for artifacts/<dataset>/. Nothing is downloaded,
written or trained.

Output: `ok: ...` per thing checked, `problem: ...` per problem (at most LINES_PER_TOPIC of a kind, then their count),
and a summary line; exit status 1 if any problem.
"""

from __future__ import annotations

import math
import shutil
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import typer
import yaml
from pydantic import BaseModel
from torch import nn

from dgcn.cue_files import file_paths
from dgcn.cues import import_published_cues, load_saliency, open_saliency
from dgcn.data.files import SampleCheck
from dgcn.data.voc import SampleInfo
from dgcn.errors import InputError
from dgcn.models.registry import build_classifier, build_segmenter
from dgcn.models.weights import load_backbone_weights
from dgcn.precision import Precision
from stages.app import one_line
from stages.params import ParamsError, load_params
from stages.prepare import FORMATS
from stages.runtime import resolve_device
from tools.add_dataset import PARAMS, STAGE_SECTIONS
from tools.params_schema import SECTIONS

LINES_PER_TOPIC = 20  # problem lines printed per kind; a broken folder would otherwise print one per image
NETWORK_SECTIONS = ("cues", "train_dgcn", "retrain")  # the stages that build a network from `pretrained`
DEVICE_SECTIONS = ("cues", "train_dgcn", "export", "retrain", "evaluate")
GIB = 2**30
CUE_FILE_SUFFIX = {"irn_cam": ".npy", "cam_npy": ".npy", "seed_png": ".png"}  # cues.source -> its files


@dataclass
class Findings:
    """What the check found: `ok` and `problem` lines printed as they come, problems counted per topic."""

    problems: Counter[str] = field(default_factory=Counter)

    def ok(self, message: str) -> None:
        typer.echo(f"ok: {message}")

    def problem(self, topic: str, message: str) -> None:
        self.problems[topic] += 1
        if self.problems[topic] <= LINES_PER_TOPIC:
            typer.echo(f"problem: {message}")

    def reporter(self, topic: str) -> Callable[[BaseException], None]:
        """A callable that reports an anticipated error as one problem line of `topic`."""
        return lambda error: self.problem(topic, one_line(error))

    def close(self, topic: str) -> None:
        """The count of the topic's problems that were not printed."""
        hidden = self.problems[topic] - LINES_PER_TOPIC
        if hidden > 0:
            typer.echo(f"problem: ... and {hidden} more {topic} problems like these")


@dataclass(frozen=True)
class Data:
    """What the data check learnt: the class names and the records of the images that passed, per split."""

    class_names: tuple[str, ...]
    train: list[SampleInfo]
    val: list[SampleInfo]


def _saved_bytes(model: nn.Module) -> int:
    """A network's saved size: every parameter and buffer at its dtype (meta tensors know both)."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def main(
    dataset: str = typer.Argument(..., help="the data set: data/<dataset>/, pipelines/<dataset>.yaml over params.yaml"),
    decode: bool = typer.Option(False, "--decode", help="decode every image, mask and saliency map in full and read "
                                                        "the masks' values, as prepare does (far slower), instead of "
                                                        "reading the sizes from the file headers"),
) -> None:
    """Check a data set before a long run: lists, images, masks, cues, weights, devices and disk; a line per problem.

    Run it in the project's root. Nothing is downloaded, written or trained; exit status 1 if any problem.
    """
    findings = Findings()
    settings = _settings(dataset, findings)
    if settings is not None:
        data = _data(dataset, settings["prepare"], decode, findings)
        num_classes = len(data.class_names) if data is not None else 2  # the trunks checked do not depend on it
        networks = _networks(settings, num_classes, findings)
        grid = _cue_grid(networks, settings["cues"].input_size)
        if data is not None:
            _cue_inputs(Path("data") / dataset, settings["cues"], data, grid, decode, findings)
        _devices(settings, findings)
        if data is not None:
            _disk(Path("artifacts") / dataset, data, networks, grid, findings)
    total = sum(findings.problems.values())
    if total:
        kinds = ", ".join(f"{topic} {count}" for topic, count in findings.problems.items())
        typer.echo(f"check {dataset}: {total} problem{'s' if total > 1 else ''} ({kinds}): fix them before "
                   f"`dvc repro evaluate@{dataset}`")
        raise typer.Exit(1)
    typer.echo(f"check {dataset}: no problem found; next: dvc repro evaluate@{dataset}")


def _settings(dataset: str, findings: Findings) -> dict[str, BaseModel] | None:
    """Every stage's section, as the stages load them; None when one does not load (its line printed)."""
    config = Path("pipelines") / f"{dataset}.yaml"
    if not PARAMS.is_file() or not config.is_file():
        findings.problem("params", f"{PARAMS} or {config} not found: run check in the project's root with a data set "
                                   f"that has a pipelines/<name>.yaml")
        return None
    settings = {}
    for section in STAGE_SECTIONS:
        try:
            settings[section] = load_params(section, SECTIONS[section], config=config, defaults=PARAMS)
        except ParamsError as error:
            findings.problem("params", one_line(error))
    listed = (yaml.safe_load(PARAMS.read_text(encoding="utf-8")) or {}).get("datasets") or []
    if dataset not in listed:
        findings.problem("params", f"{PARAMS}: datasets {listed} lacks {dataset!r}: dvc has no stage "
                                   f"evaluate@{dataset} (add the name there)")
    if findings.problems["params"]:
        return None
    findings.ok(f"params: {PARAMS} merged with {config}: every stage's section loads")
    return settings


def _data(dataset: str, prepare: BaseModel, decode: bool, findings: Findings) -> Data | None:
    """Prepare's checks of every image, each bad one a problem line; None when the splits cannot be read."""
    root = Path("data") / dataset
    synthetic = (yaml.safe_load(PARAMS.read_text(encoding="utf-8")) or {}).get("synthetic_datasets") or []
    if dataset in synthetic and not root.exists():
        findings.ok(f"data: {root} is generated by the synthesize stage; nothing to check before it runs")
        return None
    check = SampleCheck(decode=decode, report=findings.reporter("data"))
    try:
        class_names, prepared = FORMATS[prepare.format](root, prepare, check)
    except (InputError, OSError) as error:  # a split list, labels or annotations file: no ids to check images by
        findings.problem("data", one_line(error))
        return None
    finally:
        findings.close("data")
    data = Data(class_names, *(prepared[role][2] for role in ("train", "val")))
    masks = sum(info.masked for info in (*data.train, *data.val))
    how = "every image and mask decoded" if decode else "sizes from the file headers (--decode: every pixel)"
    findings.ok(f"data: {root} ({prepare.format}): {len(data.train)} train + {len(data.val)} val images that pass, "
                f"{masks} with a mask, {len(class_names)} classes; {how}")
    return data


def _networks(settings: dict[str, BaseModel], num_classes: int, findings: Findings) -> dict[str, nn.Module]:
    """Each network stage's network on the meta device, its `pretrained` weights loaded into it (checked, nothing
    copied): a line per file and trunk, naming the sections that use them."""
    networks: dict[str, nn.Module] = {}
    uses: dict[tuple, list[str]] = {}  # (file, trunk's keys and shapes) -> the sections loading it
    for section in NETWORK_SECTIONS:
        params = settings[section]
        try:
            with torch.device("meta"):
                build = build_classifier if section == "cues" else build_segmenter
                model = build(params.arch, num_classes - (section == "cues"), **params.arch_options)
        except (InputError, ValueError) as error:
            findings.problem("weights", f"{section}.arch: {one_line(error)}")
            continue
        networks[section] = model
        if section == "cues" and params.source != "classifier":  # cues from files: the classifier never trains
            continue
        trunk = tuple((name, tuple(t.shape)) for name, t in model.trunk.state_dict().items())
        uses.setdefault((params.pretrained, trunk), []).append(section)
    for (pretrained, _), sections in uses.items():
        names = ", ".join(f"{section}.pretrained" for section in sections)
        model, arch = networks[sections[0]], settings[sections[0]].arch
        if pretrained is None:
            findings.ok(f"weights: {names} null: {arch} starts from random weights")
            continue
        result = _load_weights(model.trunk, pretrained)
        if isinstance(result, Path):
            findings.ok(f"weights: {names} {pretrained}: {result} loads (weights_only) and fits {arch}'s "
                        f"{type(model.trunk).__name__}")
        else:
            findings.problem("weights", f"{names}: {result}")
    return networks


def _load_weights(trunk: nn.Module, pretrained: str) -> Path | str:
    """The file `pretrained` names, read and loaded into the meta `trunk` (keys and shapes checked); its error's line
    instead when it is missing, unreadable or does not fit."""
    try:
        with warnings.catch_warnings():  # "copying ... to a meta parameter is a no-op": the no-op is the point
            warnings.simplefilter("ignore", UserWarning)
            return load_backbone_weights(trunk, pretrained)
    except (InputError, OSError) as error:
        return one_line(error)


def _cue_inputs(root: Path, cues: BaseModel, data: Data, grid: int | None, decode: bool, findings: Findings) -> None:
    """The cue stage's own files (cues.source): the DSRG pickle, or one file per training image of another method;
    and the saliency maps of every training image where CAMs (ours or a file's) take their background from them."""
    if cues.source == "dsrg":
        _published_cues(root, cues, data, grid, findings)
    elif cues.source in CUE_FILE_SUFFIX:
        _cue_files(root / cues.path, CUE_FILE_SUFFIX[cues.source], data, findings)
    if cues.saliency_dir is not None and cues.source not in ("dsrg", "seed_png"):
        _saliency_maps(root / cues.saliency_dir, data.train, grid, decode, findings)


def _cue_files(folder: Path, suffix: str, data: Data, findings: Findings) -> None:
    """`<folder>/<stem of id><suffix>` for exactly the training images (their content is read by the cues stage)."""
    try:
        paths = file_paths(folder, suffix, [info.name for info in data.train])
    except InputError as error:
        findings.problem("cues", one_line(error))
        return
    findings.ok(f"cues: {folder} holds one {suffix} file per training image ({len(paths)})")


def _cue_grid(networks: dict[str, nn.Module], input_size: int) -> int | None:
    """The classifier's CAM grid G (the cues' grid), from a meta forward; None without a classifier."""
    if "cues" not in networks:
        return None
    with torch.no_grad():
        return int(networks["cues"].cams(torch.zeros(1, 3, input_size, input_size, device="meta")).shape[-1])


def _published_cues(root: Path, cues: BaseModel, data: Data, grid: int | None, findings: Findings) -> None:
    """The DSRG/DGCN pickle read by the cue stage's importer (restricted unpickler), its entries against its list,
    and every training image among them."""
    if grid is None:  # the cue grid is the classifier's, which did not build (its line printed)
        return
    pickle_path, list_path = root / cues.path, root / cues.input_list
    try:
        names, _, _ = import_published_cues(pickle_path, list_path, len(data.class_names), grid)
    except (InputError, OSError, ValueError) as error:
        findings.problem("cues", one_line(error))
        return
    listed = set(names)
    missing = [info.name for info in data.train if info.name not in listed]
    for name in missing:
        findings.problem("cues", f"{pickle_path}: no cues for training image {name!r} (not in {list_path})")
    findings.close("cues")
    if not missing:
        findings.ok(f"cues: {pickle_path} holds {len(names)} images' cues on the {grid}x{grid} grid, every training "
                    f"image among them")


def _saliency_maps(folder: Path, train: list[SampleInfo], grid: int | None, decode: bool, findings: Findings) -> None:
    """`<folder>/<id>.png` of every training image: present, an image, of its image's size (decoded with --decode)."""
    if not folder.is_dir():
        findings.problem("saliency", f"saliency folder not found: {folder} (cues.saliency_dir, relative to the data "
                                     f"root; null gives a CAM-only background)")
        return
    report = findings.reporter("saliency")
    for info in train:
        path, size = folder / f"{info.name}.png", (info.height, info.width)
        try:
            if decode:
                load_saliency(path, size, grid or 1)
            else:
                open_saliency(path, size).close()
        except (OSError, InputError) as error:
            report(error)
    findings.close("saliency")
    if not findings.problems["saliency"]:
        findings.ok(f"saliency: {folder}: a map of its image's size for each of the {len(train)} training images")


def _devices(settings: dict[str, BaseModel], findings: Findings) -> None:
    """Each stage's device (CUDA present, the index among the visible GPUs), a line per device name; then each stage's
    mixed precision on it."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    by_name: dict[str, list[str]] = {}
    for section in DEVICE_SECTIONS:
        by_name.setdefault(settings[section].device, []).append(section)
    before = findings.problems["device"]
    chosen = []
    for name, sections in by_name.items():
        where = ", ".join(f"{section}.device" for section in sections)
        try:
            device = resolve_device(name, where)
            if device.type == "cuda" and device.index is not None and device.index >= count:
                visible = f"{count} CUDA device{'s are' if count != 1 else ' is'} visible"
                raise InputError(f"{where}: {name!r} requested but {visible} (cuda:0..cuda:{count - 1})")
            for section in sections:
                if hasattr(settings[section], "amp"):
                    Precision(settings[section].amp, device, f"{section}.amp")
        except InputError as error:
            findings.problem("device", one_line(error))
            continue
        chosen.append(f"{name}{f' ({device})' if name == 'auto' else ''} for {', '.join(sections)}")
    if findings.problems["device"] == before:
        gpus = ", ".join(torch.cuda.get_device_name(index) for index in range(count))
        findings.ok(f"devices: {'; '.join(chosen)}; {count} CUDA GPU{'s' if count != 1 else ''} visible"
                    f"{f' ({gpus})' if gpus else ''}")


def _disk(artifacts: Path, data: Data, networks: dict[str, nn.Module], grid: int | None, findings: Findings) -> None:
    """An upper bound of what the stages write under `artifacts` (uncompressed stores) against the free disk there."""
    estimate, basis = _artifact_bytes(data, networks, grid or 41)
    where = next(path for path in (artifacts, *artifacts.parents) if path.exists()).resolve()
    free = shutil.disk_usage(where).free
    line = f"{artifacts} needs at most {estimate / GIB:.1f} GiB ({basis}); {free / GIB:.1f} GiB free on {where}"
    if free < estimate:
        findings.problem("disk", line)
    else:
        findings.ok(f"disk: {line}")


def _artifact_bytes(data: Data, networks: dict[str, nn.Module], grid: int) -> tuple[int, str]:
    """Bytes the stages write per training image and per network, uncompressed (the Zarr stores are zstd-compressed:
    an upper bound), and the basis in words."""
    classes, count = len(data.class_names), len(data.train)
    stride = networks["train_dgcn"].output_stride if "train_dgcn" in networks else 8
    pixels = sum(info.height * info.width for info in data.train)
    cells = sum(math.ceil(info.height / stride) * math.ceil(info.width / stride) for info in data.train)
    stores = 3 * pixels + 3 * classes * cells + count * classes * grid * grid
    # classifier.pt, train_dgcn's model.pt, retrain's and upper_bound's (retrain's network twice)
    saved = [_saved_bytes(networks[section]) for section in ("cues", "train_dgcn", "retrain", "retrain")
             if section in networks]
    checkpoint = 3 * max(saved, default=0)  # a training checkpoint under .scratch/: network + optimiser (AdamW: 2x)
    height, width = (sum(getattr(info, side) for info in data.train) / max(count, 1) for side in ("height", "width"))
    basis = (f"{count} training images of {height:.0f}x{width:.0f} pixels on average: 3 label maps at 1 B/pixel, "
             f"evidence 3 B per class and cell of the /{stride} grid, cues {classes}x{grid}x{grid} B, all "
             f"uncompressed; {len(saved)} networks of {sum(saved) / len(saved) / 2**20 if saved else 0:.0f} MiB "
             f"and a checkpoint of 3x one")
    return stores + sum(saved) + checkpoint, basis
