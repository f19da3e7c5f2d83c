"""The `cues` section: the cue classifier and the CAM thresholds."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from dgcn.models.options import TRUNK_OPTIONS
from stages.params import BatchSize, Epochs, InputSize, OptionalPath, Probability, Scales, Seed
from stages.schemas.network import DataWorkers, NetworkParams, OptimizerParams


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
