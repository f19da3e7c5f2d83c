"""The `evaluate` section: validation mIoU and the prediction galleries."""

from __future__ import annotations

from pydantic import Field

from stages.params import Device, Scales, Section


class EvaluateParams(Section):
    """Validation mIoU and the prediction galleries."""

    device: Device
    scales: Scales
    flip: bool
    crf: bool = Field(description="refine val predictions with the dense_crf kernels")
    gallery_train: int = Field(ge=1, le=50)
    gallery_val: int = Field(ge=0, le=50)
