"""Typed stage params: params.yaml holds the shared defaults of every section, pipelines/<name>.yaml what differs.

A stage loads its section as the defaults section deep-merged with the config's section, validated by a pydantic schema.
Every problem is a one-line ParamsError naming the file that set the value and the dotted key.
`python -m stages.params` prints the JSON Schema of the whole params document (committed as docs/params.schema.json).
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from dgcn.errors import InputError
from dgcn.models.options import SEGMENTER_OPTIONS, TRUNK_OPTIONS, option_names


class ParamsError(InputError):
    """A params file or value is wrong; the message is one line naming the file and the dotted key."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


class Section(BaseModel):
    """Base of every schema: unknown keys, NaN/inf and lax coercions (bool -> int, "1" -> 1) are errors."""

    # strict: YAML's `yes` or `"3"` must not silently become 1 or 3; strict floats still take ints, and OptionalPath
    # relaxes strictness so that paths can be written as strings.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


S = TypeVar("S", bound=Section)

OptionalPath = Annotated[Path, Strict(False)] | None
Probability = Annotated[float, Field(ge=0, le=1)]
Workers = Annotated[int, Field(ge=0, le=64, description="worker processes (0 = in-process)")]
InputSize = Annotated[int, Field(ge=32, le=1024, description="images resized to input_size x input_size")]
CropSize = Annotated[int, Field(ge=32, le=1024, description="side of the square random crop of the native image "
                                                            "(padded where the image is smaller)")]
BatchNorm = Annotated[Literal["train", "frozen"], Field(
    description="train: BatchNorm as usual; frozen: affine parameters fixed, running statistics, also in training")]
DataWorkers = Annotated[int, Field(ge=0, le=64, description="DataLoader processes reading samples (0 = in-process); "
                                                            "results do not depend on it")]
Scales = Annotated[list[Annotated[float, Field(ge=0.25, le=4)]], Field(min_length=1, description="test-time scales")]
Device = Annotated[str, Field(min_length=1, description="cpu (byte-identical artifacts), cuda, cuda:N, or auto")]
# YAML 1.1 reads a bare `off` as false: that is the "off" the file says.
Amp = Annotated[Literal["bf16", "fp16", "off"], BeforeValidator(lambda value: "off" if value is False else value),
                Field(description="mixed precision of the network on CUDA: autocast to bf16, or fp16 with gradient "
                                  "scaling; off: float32 (the only choice on the CPU)")]
Seed = Annotated[int, Field(ge=0)]
Epochs = Annotated[int, Field(ge=1)]
BatchSize = Annotated[int, Field(ge=1)]


class SynthesizeParams(Section):
    """The embedded generator of a synthetic VOC-layout data set."""

    num_train: int = Field(ge=1)
    num_val: int = Field(ge=1)
    image_size: int = Field(ge=64, le=512)
    object_area: Annotated[list[Annotated[float, Field(gt=0, le=0.5)]], Field(min_length=2, max_length=2)] = Field(
        description="[low, high] fraction of the image one object covers before occlusion (difficulty)")
    clutter: Annotated[list[Annotated[int, Field(ge=0, le=50)]], Field(min_length=2, max_length=2)] = Field(
        description="[low, high] number of clutter items per image (difficulty)")
    seed: Seed

    @field_validator("object_area", "clutter")
    @classmethod
    def _ordered_bounds(cls, values: list[float], info: ValidationInfo) -> list[float]:
        return _check_range(values, info.field_name)


RelativePath = Annotated[Path, Strict(False), Field(description="relative to the data root")]


class GenericLayout(Section):
    """Your own data set (prepare.format generic): a folder of images and a labels file of tags."""

    images: RelativePath = Field(description="folder of the images (JPEG/PNG); an image id is its file name")
    labels: RelativePath = Field(description="CSV 'image,tags' (tags separated by spaces or ';') or JSON lines")
    class_list: RelativePath | None = Field(
        description="one object class per line (background is class 0, implicit); null: the tags, sorted")
    masks: RelativePath | None = Field(description="folder of <stem>.png masks for any subset of the images (or null)")
    train_list: RelativePath | None = Field(description="image ids of the training split; null: a seeded val_fraction")
    val_list: RelativePath | None = Field(description="image ids of the validation split (with train_list)")
    val_fraction: float = Field(gt=0, lt=1, description="without lists: this fraction of the images, drawn at random")
    seed: Seed

    @field_validator("val_list")
    @classmethod
    def _both_lists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if (value is None) != (info.data.get("train_list") is None):
            raise PydanticCustomError("both_lists", "train_list and val_list are given together, or neither", {})
        return value


class CocoLayout(Section):
    """COCO 2014 (prepare.format coco): image folders and their instances JSON."""

    train_images: RelativePath
    train_annotations: RelativePath
    val_images: RelativePath
    val_annotations: RelativePath


class PrepareParams(Section):
    """Which data set layout to read: VOC (class list by name, ImageSets lists), your own (generic), or COCO."""

    format: Literal["voc", "generic", "coco"] = Field(
        description="voc: the VOC layout (classes, train_split, val_split); generic: a folder of images and tags "
                    "(the generic section); coco: COCO instances (the coco section)")
    classes: Literal["voc", "synthetic"] = Field(description="format voc: the class list by name")
    train_split: str = Field(min_length=1, description="format voc: ImageSets/Segmentation/<split>.txt")
    val_split: str
    generic: GenericLayout
    coco: CocoLayout


class GraphCutParams(Section):
    """Seed growth by per-class graph cut on the kNN feature graph (spec 2.3-2.4)."""

    knn_k: int = Field(ge=2)
    threshold: Probability = Field(description="grown mask used where P_c > threshold, original cue elsewhere")
    seed_capacity: float = Field(ge=0)
    network_seeds: Probability | None = Field(
        description="the cut's seeds are the cues plus the pixels where the network's P_c > this (growth from its "
                    "own confident pixels); null = the cues alone, as published")


class DenseCRFParams(Section):
    """Full-resolution dense-CRF kernels (spec 4), shared by the crf stage, the test-time CRF and training."""

    gaussian_sxy: float = Field(gt=0)
    gaussian_compat: float = Field(ge=0)
    bilateral_sxy: float = Field(gt=0)
    bilateral_srgb: float = Field(gt=0)
    bilateral_compat: float = Field(ge=0)
    iterations: int = Field(ge=0, le=100)

    def kernels(self) -> dict[str, float]:
        """The keyword arguments of `dgcn.crf.dense_crf`."""
        return self.model_dump()


class OptimizerParams(Section):
    """The optimizer of a training stage."""

    name: Literal["sgd", "adamw"]
    lr: float = Field(gt=0, le=1)
    weight_decay: float = Field(ge=0, le=1)
    momentum: float = Field(ge=0, lt=1)
    head_lr_mult: float = Field(ge=1, description="learning-rate multiplier of the classifier head")


Arch = Literal["small", "deeplab_v2", "deeplab_v3", "hrnet"]


class NetworkParams(Section):
    """Which network a training stage builds and where it runs."""

    arch: Arch = Field(description="network by name")
    arch_options: dict[str, Any] = Field(description="keyword arguments of the network builder, per arch (a config's "
                                                     "mapping replaces the defaults' whole)")
    pretrained: str | None = Field(description='backbone weights: a file, or "imagenet" (local cache only)')
    device: Device
    amp: Amp

    # what builds this section's network: a segmentation network, or (cues) a classifier on a segmenter's trunk
    builder_options: ClassVar[dict[str, type]] = SEGMENTER_OPTIONS

    @field_validator("arch_options")
    @classmethod
    def _builder_keywords(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        arch = info.data.get("arch")
        if arch is None:  # the arch itself is wrong: that is the error to report
            return options
        schema = cls.builder_options[arch]
        try:
            return TypeAdapter(schema).validate_python(options)
        except ValidationError as error:
            # ctx "nested" carries the option's own error; _explain appends its location to arch_options
            raise PydanticCustomError("nested", "{arch} option", {"arch": arch, "nested": error.errors()[0],
                                                                  "known": option_names(schema)}) from None


class ColorJitterParams(Section):
    """Random colour changes of a training image; all 0 = off."""

    brightness: float = Field(ge=0, le=1, description="factor drawn from [1 - x, 1 + x]")
    contrast: float = Field(ge=0, le=1, description="factor drawn from [1 - x, 1 + x]")
    saturation: float = Field(ge=0, le=1, description="factor drawn from [1 - x, 1 + x]")
    hue: float = Field(ge=0, le=0.5, description="shift drawn from [-x, x] of the colour circle")


class CropTrainingParams(NetworkParams):
    """A network trained on random crops of the native images, read per sample."""

    crop_size: CropSize
    color_jitter: ColorJitterParams
    batchnorm: BatchNorm
    data_workers: DataWorkers
    init_from_classifier: bool = Field(description="start from the cue classifier's trunk (learned from the image "
                                                   "labels alone) instead of `pretrained`")


def _check_range(values: list, name: str) -> list:
    """A [low, high] pair with low <= high."""
    if values[0] > values[1]:
        raise PydanticCustomError("range_order", f"{name} must be [low, high] with low <= high", {})
    return values


class CuesParams(NetworkParams):
    """The cue classifier and the CAM thresholds that turn it into localization cues."""

    builder_options: ClassVar[dict[str, type]] = TRUNK_OPTIONS

    input_size: InputSize
    epochs: Epochs
    batch_size: BatchSize
    optimizer: OptimizerParams
    data_workers: DataWorkers
    scales: Scales = Field(description="CAM scales: long side = input_size x scale, aspect ratio kept")
    fg_threshold: Probability = Field(description="foreground cue: max-normalised CAM >= this")
    bg_threshold: Probability = Field(description="background cue: every present class's normalised CAM < this")
    saliency_dir: OptionalPath = Field(
        description="folder of <id>.png saliency maps relative to the data root: background where saliency is below "
                    "saliency_threshold; null: background from the CAMs (bg_threshold)")
    saliency_threshold: Probability = Field(description="background cue: saliency < this (published DRFI: 0.07)")
    cam_background: Probability = Field(description="background score of the plain-CAM baseline")
    published_cues: OptionalPath = Field(
        description="a DSRG/DGCN cue pickle (relative to the data root) to import instead of our own cues")
    published_list: OptionalPath = Field(description="its input_list.txt (relative to the data root)")
    seed: Seed


class TrainDGCNParams(CropTrainingParams):
    """The DGCN segmentation network trained on cues grown by graph cut."""

    resize_long: Annotated[list[Annotated[int, Field(ge=32, le=4096)]], Field(min_length=2, max_length=2)] | None = (
        Field(description="the extended recipe: long side resized to a random [low, high] before the crop; null = off"))
    epochs: Epochs
    batch_size: BatchSize
    optimizer: OptimizerParams
    warmup_iters: int = Field(ge=0, description="linear warm-up, then x decay_gamma every decay_every_epochs")
    decay_every_epochs: int = Field(ge=1)
    decay_gamma: float = Field(gt=0, le=1)
    crf_scale: float = Field(gt=0, le=1, description="training-time CRF on the feature grid: dense_crf sxy x this")
    constrain_weight: float = Field(ge=0, le=100, description="weight of the constrain (CRF) loss beside the seeding "
                                                              "loss; 0 = seeding loss alone")
    graph_features: Literal["network", "rgb"] = Field(
        description="the training-time cut's kNN graph: network (a shallow + a deep layer, published) or rgb (the "
                    "crop's colour on the grid); the export's cut always uses the network's")
    growth_start_epoch: int = Field(ge=0, description="epochs trained on the cues alone before the cut grows them "
                                                      "(a warm-up); 0 = from the first step, as published")
    workers: Workers
    seed: Seed

    @field_validator("resize_long")
    @classmethod
    def _ordered_long(cls, values: list[int] | None) -> list[int] | None:
        return None if values is None else _check_range(values, "resize_long")

    @field_validator("optimizer")
    @classmethod
    def _sgd_only(cls, optimizer: OptimizerParams) -> OptimizerParams:
        if optimizer.name != "sgd":
            # ctx "key" makes the error name optimizer.name, so that it blames the file that set the name
            raise PydanticCustomError(
                "sgd_only", "the DGCN schedule is SGD with warm-up and step decay: name must be 'sgd'", {"key": "name"}
            )
        return optimizer


class ExportParams(Section):
    """Multi-scale inference of the trained DGCN and graph-cut export of its pseudo-labels and evidence."""

    device: Device
    amp: Amp
    input_size: InputSize = Field(description="longer side of the scale-1 network input; the aspect ratio is kept")
    scales: Scales
    flip: bool
    batch_size: BatchSize
    threshold: Probability | None = Field(
        description="graph cut at export: the grown mask claims a pixel where P_c > threshold and the cue elsewhere "
                    "(0 = every grown pixel, 1 = the cues alone); null = no cut, the network's argmax (published)")
    workers: Workers
    shard_images: int = Field(ge=1, description="images per Zarr shard file")


class CRFStageParams(Section):
    """Dense-CRF refinement of the export's evidence (network probabilities and grown masks)."""

    grown_confidence: float = Field(
        ge=0.5, le=1, description="unary of a pixel the graph cut grew: probability on its label, the rest (1 - this) "
                                  "shared as the network's probabilities; every other pixel: the network's probability")
    workers: Workers


class RetrainParams(CropTrainingParams):
    """The final segmentation network retrained on the CRF-refined pseudo-labels."""

    scale_range: Annotated[list[Annotated[float, Field(gt=0, le=4)]], Field(min_length=2, max_length=2)] = Field(
        description="image and labels rescaled by a random factor in [low, high] before the crop (published 0.5-1.5)")
    epochs: Epochs
    batch_size: BatchSize
    optimizer: OptimizerParams
    class_weights: Literal["none", "inverse_sqrt_frequency"] = Field(
        description="cross-entropy weight per class: none (the published loss), or 1 / sqrt(the class's share of the "
                    "training labels' pixels), scaled to a mean of 1 per pixel")
    seed: Seed

    @field_validator("scale_range")
    @classmethod
    def _ordered_scales(cls, values: list[float]) -> list[float]:
        return _check_range(values, "scale_range")


class RetrainLabelsParams(Section):
    """Which pseudo-labels the retrain stage trains on (its own section, so that the upper bound does not depend on
    it)."""

    source: Literal["crf", "export", "cam"] = Field(
        description="the crf stage's labels (published), the export's (no CRF stage), or the cues stage's plain-CAM "
                    "labels (the CAM baseline)")


class EvaluateParams(Section):
    """Validation mIoU and the prediction galleries."""

    device: Device
    scales: Scales
    flip: bool
    crf: bool = Field(description="refine val predictions with the dense_crf kernels")
    gallery_train: int = Field(ge=1, le=50)
    gallery_val: int = Field(ge=0, le=50)


SECTIONS: dict[str, type[Section]] = {
    "synthesize": SynthesizeParams,
    "prepare": PrepareParams,
    "graph_cut": GraphCutParams,
    "dense_crf": DenseCRFParams,
    "cues": CuesParams,
    "train_dgcn": TrainDGCNParams,
    "export": ExportParams,
    "crf": CRFStageParams,
    "retrain": RetrainParams,
    "retrain_labels": RetrainLabelsParams,
    "evaluate": EvaluateParams,
}


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when built with it: 10x faster
    """PyYAML (YAML 1.1) reads `1e-4` as a string; DVC's YAML 1.2 reads it as a float, and so do we."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


# Mappings replaced whole, not merged: a network's builder options belong to its arch, so a config that picks another
# arch must not inherit options (e.g. the DGCN head's aspp_rates) that its builder does not take.
REPLACED_MAPPINGS = frozenset({"arch_options"})


def merge(base: dict, override: dict) -> dict:
    """`base` with `override` on top: mappings merged key by key, recursively (except those under a key of
    REPLACED_MAPPINGS); any other value (lists too) replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in REPLACED_MAPPINGS:
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_params(section: str, schema: type[S], *, config: Path | None, defaults: Path = Path("params.yaml")) -> S:
    """Section `section` of `defaults` deep-merged with the same section of `config` (if any), checked by `schema`."""
    values = _section(_read(defaults), section, defaults, hint="")
    overrides = {}
    if config is not None:
        overrides = _section(_read(config), section, config, hint=f" (write '{section}: {{}}' when nothing differs)")
    try:
        return schema.model_validate(merge(values, overrides))
    except ValidationError as error:
        first = error.errors()[0]
        raise ParamsError(_explain(first, section, schema, overrides, defaults=defaults, config=config)) from None


def json_schema() -> dict:
    """JSON Schema of the whole params document: the DVC templating vars and every section."""
    document = create_model(
        "ParamsDocument",
        __base__=Section,
        __doc__="params.yaml: the shared defaults of every stage section (pipelines/<name>.yaml overrides them).",
        datasets=(list[str], Field(min_length=1, description="the data sets `dvc repro` runs (a DVC var)")),
        synthetic_datasets=(list[str], Field(description="those the `synthesize` stage generates (a DVC var)")),
        **{name: (schema, ...) for name, schema in SECTIONS.items()},
    )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **document.model_json_schema()}


def _read(path: Path) -> dict:
    """The YAML mapping of sections in `path`."""
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        document = yaml.load(path.read_bytes(), Loader=_Loader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else f"{path}"
        raise ParamsError(f"{where}: malformed YAML: {error.problem or error.context}") from error
    except yaml.YAMLError as error:  # e.g. undecodable bytes: no line/column mark
        raise ParamsError(f"{path}: malformed YAML: {error}") from error
    if document is None:  # an empty file: every section is then reported missing
        return {}
    if not isinstance(document, dict):
        raise ParamsError(f"{path}: expected a mapping of sections (got {type(document).__name__})")
    return document


def _section(document: dict, name: str, path: Path, *, hint: str) -> dict:
    """Section `name` of a params document, which must be a mapping."""
    if name not in document:
        raise ParamsError(f"{path}: missing section '{name}'{hint}")
    values = document[name]
    if not isinstance(values, dict):
        raise ParamsError(f"{path}: section '{name}' must be a mapping (got {values!r})")
    return values


def _explain(error: ErrorDetails, section: str, schema: type[Section], overrides: dict, *, defaults: Path,
             config: Path | None) -> str:
    """One line for a pydantic error: the file that set the value, the dotted key, the problem and the value."""
    loc = tuple(error["loc"])
    kind, text, value = error["type"], error["msg"], error.get("input")
    ctx = error.get("ctx") or {}
    known = None
    if kind == "nested":  # an arch option: the option's own error, one level below arch_options
        nested = ctx["nested"]
        loc += tuple(nested["loc"])
        kind, text, value, known = nested["type"], nested["msg"], nested.get("input"), ctx["known"]
    elif ctx.get("key") is not None:  # a group's validator blaming one of the group's keys
        loc += (ctx["key"],)
        value = value.get(ctx["key"]) if isinstance(value, dict) else getattr(value, ctx["key"], value)
    if kind == "missing":
        message = "missing"
    elif kind == "extra_forbidden":
        known = _field_names(schema, loc[:-1]) if known is None else known
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        message = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known) or 'none'}"
        message = f"unknown parameter; {message}"
    elif kind == "finite_number":
        message = f"must be a finite number (got {_short(value)})"
    else:
        message = f"{text[:1].lower()}{text[1:]} (got {_short(value)})"
        if kind == "literal_error" and isinstance(value, str):  # a misspelt choice: name the closest
            close = difflib.get_close_matches(value, re.findall(r"'([^']*)'", str(ctx.get("expected", ""))), n=1)
            message += f"; did you mean {close[0]!r}?" if close else ""
    source = config if config is not None and _sets(overrides, loc) else defaults
    dotted = section + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return f"{source}: {dotted}: {message}"


def _short(value: Any, limit: int = 80) -> str:
    """repr of a value, cut to `limit` characters: the line must stay one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _sets(overrides: dict, loc: tuple) -> bool:
    """Whether the config's section sets the value at `loc`."""
    node: Any = overrides
    for part in loc:
        if not isinstance(node, dict):  # a list or scalar the config wrote replaced the default whole
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def _field_names(schema: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) model at `loc` of `schema`."""
    model: Any = schema
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        model = field.annotation if field is not None else None
    return list(getattr(model, "model_fields", {}))


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
