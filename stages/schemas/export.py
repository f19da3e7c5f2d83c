"""The `export` section: multi-scale inference and the graph-cut export of pseudo-labels and evidence."""

from __future__ import annotations

from pydantic import Field

from stages.params import Amp, BatchSize, Device, InputSize, Probability, Scales, Section, Workers


class ExportParams(Section):
    """Multi-scale inference of the trained DGCN and graph-cut export of its pseudo-labels and evidence."""

    device: Device
    amp: Amp
    input_size: InputSize | None = Field(
        description="longer side of the scale-1 network input, the aspect ratio kept; null = the image's native size "
                    "(published: the scale the network was trained at, grid native / stride)")
    scales: Scales
    flip: bool
    batch_size: BatchSize
    threshold: Probability | None = Field(
        description="graph cut at export: the grown mask claims a pixel where P_c > threshold and the cue elsewhere "
                    "(0 = every grown pixel, 1 = the cues alone); null = no cut, the network's argmax (published)")
    workers: Workers
    shard_images: int = Field(ge=1, description="images per Zarr shard file")
