"""The `evaluate` section: validation mIoU and the prediction galleries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stages.params import Device, Scales, Section
from stages.schemas.dense_crf import DenseCRFParams

KernelSet = Literal["dense_crf", "deeplab"]


class CRFKernelChoice(Section):
    """Which kernels each network's test-time CRF uses: dense_crf (the dense_crf section, DGCN's published kernels)
    or deeplab (evaluate.deeplab_crf)."""

    dgcn: KernelSet = Field(description="the DGCN network (train_dgcn)")
    retrained: KernelSet = Field(description="the retrained network and the upper bound")


class EvaluateParams(Section):
    """Validation mIoU and the prediction galleries."""

    device: Device
    scales: Scales
    flip: bool
    crf: bool = Field(description="refine the retrained networks' val predictions with a dense CRF (the DGCN network "
                                  "is scored with and without)")
    crf_kernels: CRFKernelChoice
    deeplab_crf: DenseCRFParams = Field(description="DeepLab's test-time CRF kernels (deeplab-pytorch's CRF config)")
    gallery_train: int = Field(ge=1, le=50)
    gallery_val: int = Field(ge=0, le=50)

    def kernels(self, dense_crf: DenseCRFParams) -> dict[str, dict[str, float]]:
        """Role (dgcn, retrained, upper_bound) -> keyword arguments of dgcn.crf.dense_crf; dense_crf: that section."""
        sets = {"dense_crf": dense_crf.kernels(), "deeplab": self.deeplab_crf.kernels()}
        retrained = sets[self.crf_kernels.retrained]
        return {"dgcn": sets[self.crf_kernels.dgcn], "retrained": retrained, "upper_bound": retrained}
