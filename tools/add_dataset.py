"""`dgcn add-dataset`: your own images and tags registered as a data set of the pipeline in one command.

It checks the data with the prepare stage's own checks (bad data: prepare's one line, and nothing written), copies it
into data/<name>/ in the generic layout, writes pipelines/<name>.yaml with only what differs from params.yaml (every
stage's section present, `{}` where nothing differs, since dvc.yaml tracks each one) and adds the name to params.yaml's
`datasets` by editing that one line, so that the file keeps its comments.

Copied, not linked: DVC hashes data/<name> as a dependency of the stages and does not follow a symbolic link below it
(only one at data/<name> itself), so a linked images/ would be invisible to it and an edited image would rerun nothing.
A data set too large to copy stays where it is: make data/<name> yourself (a folder, or a link to one) and give paths
inside it; then nothing is copied.
"""

from __future__ import annotations

import re
import shutil
import statistics
import textwrap
from enum import StrEnum
from pathlib import Path

import typer
import yaml

from dgcn.errors import InputError
from dgcn.storage import atomic_output
from stages.params import REPLACED_MAPPINGS, load_params, merge
from stages.prepare import FORMATS
from stages.schemas.prepare import PrepareParams
from tools.params_schema import SECTIONS

PARAMS = Path("params.yaml")
EMBEDDED = Path("pipelines/synthetic.yaml")  # the embedded default: the small network on the CPU
# The sections of the stages a data set of your own runs (not `synthesize`).
STAGE_SECTIONS = [section for section in SECTIONS if section != "synthesize"]
# What the embedded default sets for its synthetic shapes, not for the small network: left out of the cpu preset.
SYNTHETIC_ONLY = {"prepare": ("classes",), "crf": ("grown_confidence",)}
# The image sizes of the cpu preset, set to the images' size: the classifier's input, the crops, the export's input.
SIZED = {"cues": "input_size", "train_dgcn": "crop_size", "export": "input_size", "retrain": "crop_size"}
SIZE_RANGE = (64, 321)
NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
DATASETS_LINE = re.compile(r"^datasets:[ \t]*\[(?P<names>[^\]\n]*)\][ \t]*(#.*)?$", re.MULTILINE)


class Preset(StrEnum):
    cpu = "cpu"
    gpu = "gpu"


def main(
    name: str = typer.Argument(..., help="the data set's name (a-z, 0-9, _ and -): data/<name>/, "
                                         "pipelines/<name>.yaml, artifacts/<name>/"),
    images: Path = typer.Option(..., help="folder of the images (JPEG/PNG, any size); an image id is its file name"),
    labels: Path = typer.Option(..., help="the tags: CSV 'image,tags' (tags split by spaces or ';') or JSON lines "
                                          "of {image, tags}; an image without tags is background-only"),
    masks: Path | None = typer.Option(None, help="folder of <stem>.png masks (class indices, 255 = ignore) for any "
                                                 "subset of the images, for the scores; training needs none"),
    classes: Path | None = typer.Option(None, help="the object classes, one per line (default: the tags, sorted)"),
    preset: Preset = typer.Option(Preset.cpu, help="cpu: the embedded default's small network on the CPU, its sizes "
                                                   "set to the images'; gpu: the published recipe (params.yaml)"),
    force: bool = typer.Option(False, "--force", help="replace an existing data/<name>/ and pipelines/<name>.yaml"),
) -> None:
    """Register your own data set: check it, write pipelines/<name>.yaml, add it to params.yaml.

    Run it in the project's root, then `dvc repro evaluate@<name>`.
    """
    params_text = _project_params()
    _check_name(name, yaml.safe_load(params_text) or {})
    root, config = Path("data") / name, Path("pipelines") / f"{name}.yaml"
    sources = {"images": images, "labels": labels, "masks": masks, "class_list": classes}
    in_place = root.exists() and all(_inside(path, root) for path in sources.values() if path is not None)
    existing = [str(path) for path in ([config] if in_place else [root, config]) if path.exists() or path.is_symlink()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise InputError(f"{' and '.join(existing)} already {verb}: choose another name, or --force to replace")
    registered = _register(params_text, name)
    if not images.is_dir():
        raise InputError(f"--images: folder not found: {images}")
    class_names, infos = _check_data({key: path for key, path in sources.items() if path is not None})
    layout = _layout(sources, root if in_place else None)
    size = _size(infos)
    sections = _config(layout, preset, size)
    with atomic_output(config) as config_file, atomic_output(PARAMS) as params_file:
        config_file.write_text(_header(name, preset, size, in_place) + yaml.safe_dump(
            sections, sort_keys=False, default_flow_style=None, width=120))
        for section in STAGE_SECTIONS:  # what the stages will load
            load_params(section, SECTIONS[section], config=config_file, defaults=PARAMS)
        params_file.write_text(registered)
        if not in_place:
            with atomic_output(root) as folder:
                _copy(sources, layout, folder)
    if not in_place:
        _ignore(root)
    typer.echo(_described(name, class_names, infos))
    typer.echo(f"data: {root}/ ({'in place' if in_place else 'a copy'})")
    sized = f", {size}-pixel inputs" if preset is Preset.cpu else ""
    typer.echo(f"settings: {config} ({preset.value} preset{sized})")
    typer.echo(f"{PARAMS}: {DATASETS_LINE.search(registered)[0]}")
    typer.echo(f"next: dvc repro evaluate@{name}")


def _project_params() -> str:
    """params.yaml of the project in the current folder."""
    if not PARAMS.is_file() or not EMBEDDED.is_file():
        raise InputError(f"{PARAMS} or {EMBEDDED} not found: run add-dataset in the project's root")
    return PARAMS.read_text(encoding="utf-8")


def _check_name(name: str, params: dict) -> None:
    """A name usable in paths and `dvc repro <stage>@<name>`, no params key, no generated data set."""
    if not NAME.fullmatch(name):
        raise InputError(f"data set name {name!r}: use a-z, 0-9, _ and - (starting with a letter or digit)")
    if name in params or name in SECTIONS:
        raise InputError(f"data set name {name!r} is a key of {PARAMS}: choose another")
    if name in (params.get("synthetic_datasets") or []):
        raise InputError(f"data set name {name!r}: the synthesize stage generates that one: choose another")


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _register(text: str, name: str) -> str:
    """params.yaml's text with `name` added to its one line `datasets: [...]`."""
    found = list(DATASETS_LINE.finditer(text))
    if len(found) != 1:
        raise InputError(f"{PARAMS}: expected one line 'datasets: [a, b]' to add the name to; add it there by hand")
    names = [item.strip().strip("'\"") for item in found[0]["names"].split(",") if item.strip()]
    if name in names:
        return text
    start, end = found[0].span("names")
    return f"{text[:start]}{', '.join([*names, name])}{text[end:]}"


def _check_data(sources: dict[str, Path]) -> tuple[tuple[str, ...], list]:
    """The prepare stage's checks of the generic layout, on the given paths as they are (so that its messages name
    them): the class names and every image's record (SampleInfo)."""
    settings = load_params("prepare", PrepareParams, config=None, defaults=PARAMS)
    layout = settings.generic.model_copy(update=sources)
    class_names, prepared = FORMATS["generic"](Path("."), settings.model_copy(update={"format": "generic",
                                                                                      "generic": layout}))
    return class_names, [info for _, _, role_infos in prepared.values() for info in role_infos]


def _layout(sources: dict[str, Path | None], root: Path | None) -> dict[str, str | None]:
    """prepare.generic's paths, relative to data/<name>: where the copy puts each source, or (`root`: in place) where
    it is."""
    if root is not None:
        return {key: None if path is None else path.resolve().relative_to(root.resolve()).as_posix()
                for key, path in sources.items()}
    copied = {"images": "images", "labels": f"labels{sources['labels'].suffix}", "masks": "masks",
              "class_list": "classes.txt"}
    return {key: None if sources[key] is None else copied[key] for key in sources}


def _size(infos: list) -> int:
    """The cpu preset's input and crop size: the images' median long side, down to a multiple of 8, in SIZE_RANGE."""
    median = statistics.median(max(info.height, info.width) for info in infos)
    return min(max(int(median) // 8 * 8, SIZE_RANGE[0]), SIZE_RANGE[1])


def _config(layout: dict[str, str | None], preset: Preset, size: int) -> dict[str, dict]:
    """Each stage section of pipelines/<name>.yaml: what the data set and the preset change in params.yaml."""
    changes: dict[str, dict] = {"prepare": {"format": "generic", "generic": layout}, "cues": {"saliency_dir": None}}
    defaults = {section: _loaded(section, None) for section in STAGE_SECTIONS}
    if preset is Preset.cpu:  # what pipelines/synthetic.yaml changes in params.yaml
        embedded = {section: _changed(defaults[section], _loaded(section, EMBEDDED)) for section in STAGE_SECTIONS}
        for section, keys in SYNTHETIC_ONLY.items():
            for key in keys:
                embedded[section].pop(key, None)
        changes = merge(merge(embedded, {section: {key: size} for section, key in SIZED.items()}), changes)
    return {section: _changed(defaults[section], merge(defaults[section], changes.get(section, {})))
            for section in STAGE_SECTIONS}


def _loaded(section: str, config: Path | None) -> dict:
    return load_params(section, SECTIONS[section], config=config, defaults=PARAMS).model_dump(mode="json")


def _changed(before: dict, after: dict) -> dict:
    """The keys of `after` whose values differ from `before`, mappings compared key by key (but REPLACED_MAPPINGS
    whole, as `merge` replaces them)."""
    changed = {}
    for key, value in after.items():
        if isinstance(value, dict) and isinstance(before.get(key), dict) and key not in REPLACED_MAPPINGS:
            nested = _changed(before[key], value)
            if nested:
                changed[key] = nested
        elif value != before.get(key):
            changed[key] = value
    return changed


def _header(name: str, preset: Preset, size: int, in_place: bool) -> str:
    """The comment at the top of pipelines/<name>.yaml."""
    recipe = {Preset.cpu: f"the embedded default's small network on the CPU (pipelines/synthetic.yaml), at "
                          f"{size}-pixel inputs and crops (the images' median long side)",
              Preset.gpu: "the published recipe of params.yaml"}[preset]
    text = (f"{name}: your own images and tags in data/{name}/ (generic layout{'' if in_place else ', a copy'}), "
            f"registered by `dgcn add-dataset` with the {preset.value} preset: {recipe}. Only what differs from "
            f"params.yaml; every stage's section is present, empty where nothing differs, so that DVC tracks each "
            f"stage's own settings.")
    return "".join(f"# {line}\n" for line in textwrap.wrap(text, 118))


def _copy(sources: dict[str, Path | None], layout: dict[str, str | None], folder: Path) -> None:
    """Copy each given folder or file to its place in the new data/<name>/ (`folder`)."""
    folder.mkdir()
    for key, source in sources.items():
        if source is None:
            continue
        if source.is_dir():
            shutil.copytree(source, folder / layout[key])
        else:
            shutil.copy2(source, folder / layout[key])


def _ignore(root: Path) -> None:
    """Keep the copy out of git (DVC hashes it as a dependency): a line in data/.gitignore."""
    ignore = root.parent / ".gitignore"
    lines = ignore.read_text(encoding="utf-8").splitlines() if ignore.is_file() else []
    if f"/{root.name}" not in lines:
        ignore.write_text("\n".join([*lines, f"/{root.name}"]) + "\n", encoding="utf-8")


def _described(name: str, class_names: tuple[str, ...], infos: list) -> str:
    """One line: the images, how many have a mask or no tag, the classes."""
    masked, background = sum(info.masked for info in infos), sum(not info.classes for info in infos)
    return (f"{name}: {len(infos)} images ({masked} with a mask, {background} background-only), classes "
            f"{', '.join(class_names[1:])}")
