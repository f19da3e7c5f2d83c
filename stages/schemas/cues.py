"""The `cues` section: the cue classifier and the CAM thresholds, or the files of another method to read instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from dgcn.models.options import TRUNK_OPTIONS
from stages.params import BatchSize, Epochs, InputSize, OptionalPath, Probability, Scales, Seed
from stages.schemas.network import DataWorkers, NetworkParams, OptimizerParams

CueSource = Literal["classifier", "dsrg", "irn_cam", "cam_npy", "seed_png"]


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
    source: CueSource = Field(
        description="where the cues come from: classifier (CAMs of the classifier above, trained here); or another "
                    "method's files, read instead of training it: dsrg (the DSRG/DGCN cue pickle), irn_cam "
                    "(IRN-style <id>.npy CAM dicts), cam_npy (plain <id>.npy CAM arrays), seed_png (<id>.png seeds)")
    path: OptionalPath = Field(
        description="the source's files relative to the data root: the dsrg pickle, or the folder of <id>.npy / "
                    "<id>.png files; null for classifier")
    input_list: OptionalPath = Field(description="dsrg: the pickle's input_list.txt (relative to the data root)")
    class_list: OptionalPath = Field(
        description="irn_cam, cam_npy, seed_png: the object classes the files' indices count, one name per line "
                    "(relative to the data root); null: the data set's own class list")
    seed: Seed

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, values: Any) -> Any:
        """The former keys of the DSRG import name their replacement."""
        for key in ("published_cues", "published_list"):
            if isinstance(values, dict) and key in values:
                raise PydanticCustomError("renamed", "renamed: write source: dsrg, path: <the pickle>, input_list: "
                                                     "<its input_list.txt>", {"key": key})
        return values

    @field_validator("path")
    @classmethod
    def _files_named(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        source = info.data.get("source")
        if source not in (None, "classifier") and path is None:
            raise PydanticCustomError("files_unnamed", f"source {source} reads files: name them (relative to the data "
                                                       "root)", {})
        if source == "classifier" and path is not None:  # files named, but the classifier would train: say so
            raise PydanticCustomError("files_unread", "source classifier reads no files: set cues.source to their "
                                                      "format, or path to null", {})
        return path

    @field_validator("input_list")
    @classmethod
    def _list_named(cls, input_list: Path | None, info: ValidationInfo) -> Path | None:
        if info.data.get("source") == "dsrg" and input_list is None:
            raise PydanticCustomError("list_unnamed", "source dsrg needs the pickle's input_list.txt", {})
        return input_list
